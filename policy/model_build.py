"""Build the shipped charge-curve model end to end: teacher labels -> student -> ONNX fp32 + int8 -> card.

`build(out_dir, ...)` is what `chargeagent train` runs. It is reproducible for a given seed (teacher
sampling, the train/hold-out split and torch are all seeded; torch runs on one thread). The model card
(`MODEL_CARD.md`) records the data, the ranges, the metrics against the teacher on held-out states, the
int8-vs-fp32 agreement, the trajectory-head error against the surrogate and the files' sha256.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import structlog

from policy.charge_sim import HORIZONS_MIN, MAX_MINUTES, ChargeStates, simulate
from policy.curve import FEATURES, CurveModel, decode, feature_matrix, feature_ranges
from policy.physics import FloatArray
from policy.teacher import Dataset, generate_dataset
from policy.train import TrainConfig, metadata_for, quantize_int8, sha256_file, to_onnx, train

log = structlog.get_logger(__name__)

FP32_NAME = "charge_curve.fp32.onnx"
INT8_NAME = "charge_curve.int8.onnx"


@dataclass(frozen=True)
class HoldoutMetrics:
    n_states: int
    fraction_mae: float  # student vs teacher stage fractions
    loss_ratio_median: float  # student's simulated capacity loss / teacher's
    loss_ratio_p90: float
    minutes_ratio_median: float  # student's simulated charge time / teacher's
    int8_vs_fp32_fraction_mae: float
    horizon_temp_mae_c: float  # multi-horizon head vs the surrogate running the student's own curve
    horizon_voltage_mae_v: float


def _subset(ds: Dataset, idx: np.ndarray) -> Dataset:
    return Dataset(
        chemistry_lfp=ds.chemistry_lfp[idx],
        states={k: v[idx] for k, v in ds.states.items()},
        fractions=ds.fractions[idx],
        stage_end_minutes=ds.stage_end_minutes[idx],
        stage_end_temp_c=ds.stage_end_temp_c[idx],
        horizon_temp_c=ds.horizon_temp_c[idx],
        horizon_voltage_v=ds.horizon_voltage_v[idx],
        loss=ds.loss[idx],
        minutes=ds.minutes[idx],
    )


def _predict(model: CurveModel, features: FloatArray) -> list[object]:
    raw, gate = model.infer(features)
    return [decode(raw[i], gate[i], features[i]) for i in range(features.shape[0])]


def evaluate_holdout(holdout: Dataset, fp32: CurveModel, int8: CurveModel) -> HoldoutMetrics:
    """Compare the int8 student with the teacher on states it never saw, on the surrogate itself."""
    features = feature_matrix(holdout)
    lo, hi = feature_ranges()[-1]
    features[:, -1] = np.clip(features[:, -1], lo, hi)
    dec8 = _predict(int8, features)
    dec32 = _predict(fp32, features)
    frac8 = np.stack([d.fractions for d in dec8])  # type: ignore[attr-defined]
    frac32 = np.stack([d.fractions for d in dec32])  # type: ignore[attr-defined]
    loss = np.zeros(holdout.loss.size)
    minutes = np.zeros_like(loss)
    h_temp = np.zeros((loss.size, len(HORIZONS_MIN)))
    h_volt = np.zeros_like(h_temp)
    for lfp, chemistry in ((0.0, "nmc"), (1.0, "lfp")):
        idx = np.flatnonzero(holdout.chemistry_lfp == lfp)
        if idx.size == 0:
            continue
        s = holdout.states
        states = ChargeStates(
            chemistry,  # type: ignore[arg-type]
            *(s[k][idx] for k in ("soc", "target_soc", "soh", "cell_temp_c", "ambient_c", "max_c_rate")),
        )
        sim = simulate(states, frac8[idx])
        loss[idx], minutes[idx] = sim.loss, sim.minutes
        h_temp[idx], h_volt[idx] = sim.horizon_temp_c, sim.horizon_voltage_v
    pred_temp = np.stack([d.horizon_temp_c for d in dec8])  # type: ignore[attr-defined]
    pred_volt = np.stack([d.horizon_voltage_v for d in dec8])  # type: ignore[attr-defined]
    loss_ratio = loss / holdout.loss
    return HoldoutMetrics(
        n_states=int(loss.size),
        fraction_mae=float(np.mean(np.abs(frac8 - holdout.fractions))),
        loss_ratio_median=float(np.median(loss_ratio)),
        loss_ratio_p90=float(np.quantile(loss_ratio, 0.9)),
        minutes_ratio_median=float(np.median(minutes / holdout.minutes)),
        int8_vs_fp32_fraction_mae=float(np.mean(np.abs(frac8 - frac32))),
        horizon_temp_mae_c=float(np.mean(np.abs(pred_temp - h_temp))),
        horizon_voltage_mae_v=float(np.mean(np.abs(pred_volt - h_volt))),
    )


def build(
    out_dir: Path,
    *,
    n_states: int = 4800,
    seed: int = 7,
    config: TrainConfig | None = None,
    workers: int = 2,
    population: int = 48,
    iterations: int = 5,
    holdout_fraction: float = 0.15,
    dataset: Dataset | None = None,
) -> HoldoutMetrics:
    """Label, train, export, quantize and document; returns the hold-out metrics."""
    cfg = config or TrainConfig(seed=seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    ds = dataset or generate_dataset(
        n_states, seed=seed, workers=workers, population=population, iterations=iterations
    )
    # States where even the teacher's fastest curve cannot reach the target within the simulated
    # horizon (very low max C-rate and cold) have no meaningful label: leave them out.
    n_labelled = ds.loss.size
    reached = np.flatnonzero(ds.minutes < MAX_MINUTES - 1e-9)
    ds = _subset(ds, reached)
    n = ds.loss.size
    order = np.random.default_rng(seed).permutation(n)
    n_hold = max(1, round(n * holdout_fraction))
    train_ds, hold_ds = _subset(ds, order[n_hold:]), _subset(ds, order[:n_hold])
    log.info("train_start", samples=train_ds.loss.size, holdout=n_hold)
    state, train_metrics = train(train_ds, cfg)
    meta = metadata_for(
        cfg, train_ds.loss.size, {"feature_ranges": feature_ranges(), "horizons_min": HORIZONS_MIN}
    )
    fp32_path, int8_path = out_dir / FP32_NAME, out_dir / INT8_NAME
    fp32_path.write_bytes(to_onnx(state, meta))
    quantize_int8(fp32_path, int8_path)
    metrics = evaluate_holdout(hold_ds, CurveModel(fp32_path), CurveModel(int8_path))
    _write_card(out_dir, cfg, (n_labelled, n, n_hold), population, iterations, train_metrics, metrics)
    return metrics


def _write_card(
    out_dir: Path,
    cfg: TrainConfig,
    counts: tuple[int, int, int],
    population: int,
    iterations: int,
    train_metrics: dict[str, float],
    m: HoldoutMetrics,
) -> None:
    n_labelled, n, n_hold = counts
    fp32, int8 = out_dir / FP32_NAME, out_dir / INT8_NAME
    ranges = dict(zip(FEATURES, feature_ranges(), strict=True))
    lines = [
        "# Model card: charge_curve (chargeagent)",
        "",
        "**What it does.** Maps a charging situation (SoC, target SoC, SoH, cell and ambient °C, chemistry,",
        "the BMS's max C-rate, a time budget) to a 6-stage constant-current curve and, in the same pass,",
        "the minutes and mean cell temperature at each stage end and the hottest-cell temperature and",
        f"highest-cell voltage {', '.join(f'{h:g}' for h in HORIZONS_MIN)} min ahead. Gated mixture of 4",
        "experts, top-2 routing.",
        "",
        "**Training data.** Teacher labels (`policy/teacher.py`: cross-entropy search over 6-stage curves",
        f"on the surrogate, {population} candidates x {iterations} iterations per state) for {n_labelled}",
        f"random states, of which {n} reach the target within {MAX_MINUTES:g} min and are kept",
        f"({n - n_hold} train, {n_hold} held out), seed {cfg.seed}. Ranges (outside: CC-CV fallback):",
        "",
        "| feature | min | max |",
        "|---|---|---|",
        *[f"| {k} | {lo:g} | {hi:g} |" for k, (lo, hi) in ranges.items()],
        "",
        "**Metrics on held-out states (int8 model; curves simulated on the surrogate).**",
        "",
        "| metric | value |",
        "|---|---|",
        *[f"| {k} | {v:.4g} |" for k, v in asdict(m).items()],
        *[f"| train: {k} | {v:.4g} |" for k, v in train_metrics.items()],
        "",
        "`loss_ratio` = student capacity loss per charge / teacher's (1.0 = as good as the teacher);",
        "`minutes_ratio` the same for charge time. The multi-horizon heads are compared with the surrogate",
        "running the student's own curve.",
        "",
        "**Files.**",
        "",
        "| file | bytes | sha256 |",
        "|---|---|---|",
        *[f"| {p.name} | {p.stat().st_size} | `{sha256_file(p)}` |" for p in (int8, fp32)],
        "",
        "**Retrain.** `pip install -e '.[train]'` then",
        f"`chargeagent train --out policy/models --states {n_labelled} --seed {cfg.seed} "
        f"--epochs {cfg.epochs}`",
        "(deterministic for a seed on one machine; torch runs on one thread).",
        "",
        "**Limits.** The surrogate, not a cell: its aging parameters are assumptions (`config/aging.toml`).",
        "The envelope (`policy/envelope.py`) clamps every step whatever the model says.",
        "",
        f"Train config: `{json.dumps(asdict(cfg), sort_keys=True)}`",
    ]
    (out_dir / "MODEL_CARD.md").write_text("\n".join(lines) + "\n")
