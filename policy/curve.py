"""Runtime of the charge-curve model: onnxruntime session, input normalisation, output decoding.

The model (`policy/models/charge_curve.int8.onnx`, built by `policy.train`) maps one charging situation
to a K-stage constant-current curve plus its predicted trajectory in one pass. This module owns the
contract between training and runtime: the feature order (`FEATURES`), how features are normalised
(`normalisation`) and how the heads are encoded (`encode_targets` / `decode`). Only onnxruntime and
NumPy are needed here; the session runs on one thread (`intra_op_num_threads=1`), as on edge hardware.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from chargeagent.errors import ChargeAgentError
from policy.charge_sim import HORIZONS_MIN, N_STAGES
from policy.physics import FloatArray
from policy.teacher import MIN_FRACTION, STATE_RANGES

if TYPE_CHECKING:
    from policy.teacher import Dataset

MODELS_DIR = Path(__file__).resolve().parent / "models"
DEFAULT_MODEL = MODELS_DIR / "charge_curve.int8.onnx"
FP32_MODEL = MODELS_DIR / "charge_curve.fp32.onnx"

FEATURES = (
    "soc",
    "target_soc",
    "soh",
    "cell_temp_c",
    "ambient_c",
    "chemistry_lfp",
    "max_c_rate",
    "log_budget_ratio",
)
N_HORIZONS = len(HORIZONS_MIN)
# Output layout: fractions | stage-end minutes | stage-end temperature | horizon temp | horizon voltage |
# cc_share (the stages' constant-current time / the real charge time: the rest is CV tail and derating) |
# loss (capacity lost by this charge, log-scaled; reported with the plan).
_SLICES = {
    "fractions": slice(0, N_STAGES),
    "stage_minutes": slice(N_STAGES, 2 * N_STAGES),
    "stage_temp": slice(2 * N_STAGES, 3 * N_STAGES),
    "horizon_temp": slice(3 * N_STAGES, 3 * N_STAGES + N_HORIZONS),
    "horizon_voltage": slice(3 * N_STAGES + N_HORIZONS, 3 * N_STAGES + 2 * N_HORIZONS),
    "cc_share": slice(3 * N_STAGES + 2 * N_HORIZONS, 3 * N_STAGES + 2 * N_HORIZONS + 1),
    "loss": slice(3 * N_STAGES + 2 * N_HORIZONS + 1, 3 * N_STAGES + 2 * N_HORIZONS + 2),
}
OUTPUT_SIZE = 3 * N_STAGES + 2 * N_HORIZONS + 2
_LOSS_SCALE = 1e-4  # capacity lost per charge is of this order (config/aging.toml)
_TEMP_SCALE_C = 10.0
_VOLT_CENTER_V, _VOLT_SCALE_V = 3.7, 0.3
_HEAD_WEIGHT = 0.3  # the curve matters most; trajectory heads weigh less in the loss


def feature_ranges() -> list[tuple[float, float]]:
    """Training range per feature (runtime inputs outside these fall back to CC-CV)."""
    out = []
    for name in FEATURES:
        if name == "chemistry_lfp":
            out.append((0.0, 1.0))
        elif name == "log_budget_ratio":
            lo, hi = STATE_RANGES["budget_ratio"]
            out.append((math.log(lo), math.log(hi)))
        else:
            out.append(STATE_RANGES[name])
    return out


def normalisation() -> tuple[FloatArray, FloatArray]:
    """(mean, scale) per feature: the middle and half-width of its training range."""
    ranges = np.asarray(feature_ranges(), dtype=np.float64)
    return (ranges[:, 0] + ranges[:, 1]) / 2.0, np.maximum((ranges[:, 1] - ranges[:, 0]) / 2.0, 1e-6)


def feature_matrix(dataset: Dataset) -> FloatArray:
    s = dataset.states
    cols = [s[name] for name in FEATURES[:5]]
    cols += [dataset.chemistry_lfp, s["max_c_rate"], np.log(s["budget_ratio"])]
    return np.stack(cols, axis=1).astype(np.float64)


def ideal_minutes_of(soc: FloatArray, target_soc: FloatArray, max_c_rate: FloatArray) -> FloatArray:
    return np.asarray((target_soc - soc) * 60.0 / max_c_rate, dtype=np.float64)


def encode_targets(dataset: Dataset) -> tuple[FloatArray, FloatArray]:
    """Normalised head targets (N, OUTPUT_SIZE) and the per-column loss weights."""
    s = dataset.states
    # Stage C-rates relative to the budget's mean rate (max_c_rate / budget_ratio): O(1) whatever the
    # budget, so slow and fast curves are learned with the same relative precision.
    relative = np.maximum(dataset.fractions, MIN_FRACTION) * s["budget_ratio"][:, None]
    ideal = ideal_minutes_of(s["soc"], s["target_soc"], s["max_c_rate"])[:, None]
    t0 = s["cell_temp_c"][:, None]
    share = np.clip(cc_minutes(dataset.fractions, s) / np.maximum(dataset.minutes, 1e-3), 0.02, 0.98)
    y = np.concatenate(
        [
            np.log(relative),
            np.log(np.maximum(dataset.stage_end_minutes, 0.05) / ideal),
            (dataset.stage_end_temp_c - t0) / _TEMP_SCALE_C,
            (dataset.horizon_temp_c - t0) / _TEMP_SCALE_C,
            (dataset.horizon_voltage_v - _VOLT_CENTER_V) / _VOLT_SCALE_V,
            np.log(share / (1.0 - share))[:, None],
            np.log(np.maximum(dataset.loss, 1e-9) / _LOSS_SCALE)[:, None],
        ],
        axis=1,
    )
    weights = np.full(OUTPUT_SIZE, _HEAD_WEIGHT)
    weights[_SLICES["fractions"]] = 1.0
    weights[_SLICES["cc_share"]] = 1.0
    weights[_SLICES["loss"]] = 1.0
    return y, weights


def cc_minutes(fractions: FloatArray, states: dict[str, FloatArray]) -> FloatArray:
    """Minutes the stages take at their planned currents (equal SoC windows, no CV, no derating).

    C-rates are on nominal capacity; a SoC window holds window x SoH of it (SoH as capacity fade).
    """
    window = ((states["target_soc"] - states["soc"]) * states["soh"])[:, None] / fractions.shape[1]
    rate = np.maximum(fractions, 1e-6) * states["max_c_rate"][:, None]
    return np.asarray(np.sum(window * 60.0 / rate, axis=1), dtype=np.float64)


@dataclass(frozen=True)
class Decoded:
    """One decoded model answer (arrays per stage / per horizon)."""

    fractions: FloatArray
    stage_end_minutes: FloatArray
    stage_end_temp_c: FloatArray
    horizon_temp_c: FloatArray
    horizon_voltage_v: FloatArray
    cc_share: float
    loss: float  # predicted capacity lost by this charge (fraction of nominal)
    expert: int


def decode(raw: FloatArray, gate: FloatArray, features: FloatArray) -> Decoded:
    """Physical values from one row of model output (inverse of `encode_targets`)."""
    soc, target, temp_c, max_c = features[0], features[1], features[3], features[6]
    ideal = float(ideal_minutes_of(np.asarray(soc), np.asarray(target), np.asarray(max_c)))
    budget_ratio = math.exp(features[7])
    fractions = np.clip(
        np.exp(np.clip(raw[_SLICES["fractions"]], -10.0, 10.0)) / budget_ratio, MIN_FRACTION, 1.0
    )
    minutes = np.maximum.accumulate(np.exp(np.clip(raw[_SLICES["stage_minutes"]], -10.0, 10.0)) * ideal)
    return Decoded(
        fractions=fractions,
        stage_end_minutes=minutes,
        stage_end_temp_c=temp_c + _TEMP_SCALE_C * raw[_SLICES["stage_temp"]],
        horizon_temp_c=temp_c + _TEMP_SCALE_C * raw[_SLICES["horizon_temp"]],
        horizon_voltage_v=_VOLT_CENTER_V + _VOLT_SCALE_V * raw[_SLICES["horizon_voltage"]],
        cc_share=float(1.0 / (1.0 + np.exp(-raw[_SLICES["cc_share"]][0]))),
        loss=float(_LOSS_SCALE * np.exp(np.clip(raw[_SLICES["loss"]][0], -20.0, 20.0))),
        expert=int(np.argmax(gate)),
    )


class ModelError(ChargeAgentError):
    """The model file is missing, corrupt, or gave a non-finite answer."""


class CurveModel:
    """One onnxruntime session over a shipped model file (one thread, sequential execution)."""

    def __init__(self, path: Path = DEFAULT_MODEL) -> None:
        import onnxruntime as ort  # noqa: PLC0415 - imported on first use: the agent starts faster

        try:
            data = path.read_bytes()
            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            self._session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own types; map them at the boundary
            raise ModelError(f"cannot load charge-curve model {path}: {exc}") from exc
        shapes = {o.name: o.shape for o in self._session.get_outputs()}
        if shapes.get("outputs", [None, None])[-1] != OUTPUT_SIZE or "gate_logits" not in shapes:
            raise ModelError(f"{path} is not a charge-curve model of this version (outputs {shapes})")
        self.path = path
        self.sha256 = hashlib.sha256(data).hexdigest()
        self.metadata = dict(self._session.get_modelmeta().custom_metadata_map)
        self._mean, self._scale = normalisation()

    def infer(self, features: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Raw outputs and gate logits for a (B, len(FEATURES)) matrix of raw features."""
        x = ((features - self._mean) / self._scale).astype(np.float32)
        try:
            outputs, gate = self._session.run(["outputs", "gate_logits"], {"features": x})
        except Exception as exc:
            raise ModelError(f"charge-curve model failed: {exc}") from exc
        out = np.asarray(outputs, dtype=np.float64)
        if not np.all(np.isfinite(out)):
            raise ModelError("charge-curve model returned a non-finite value")
        return out, np.asarray(gate, dtype=np.float64)


@cache
def shared_model(path: Path = DEFAULT_MODEL) -> CurveModel:
    """One session per model file per process (loading costs ~ms; stations in one process share it)."""
    return CurveModel(path)
