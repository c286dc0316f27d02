"""`chargeagent plan`, `train` and `evaluate-policy`: the charge-curve model from the command line."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from chargeagent.errors import ChargeAgentError
from policy.curve import DEFAULT_MODEL

console = Console()


def plan(
    soc: Annotated[float, typer.Option(help="Start SoC, 0-1.")],
    target_soc: Annotated[float, typer.Option(help="Target SoC, 0-1.")],
    soh: Annotated[float, typer.Option(help="State of health, 0-1.")],
    cell_temp_c: Annotated[float, typer.Option(help="Cell temperature, °C.")],
    ambient_c: Annotated[float, typer.Option(help="Ambient temperature, °C.")],
    capacity_ah: Annotated[
        float | None, typer.Option(help="Nominal capacity: adds amps to the output.")
    ] = None,
    max_c_rate: Annotated[float, typer.Option(help="The BMS's max charge C-rate.")] = 3.0,
    chemistry: Annotated[str, typer.Option(help="nmc | lfp")] = "nmc",
    preference: Annotated[str, typer.Option(help="fast | balanced | gentle")] = "balanced",
    budget_min: Annotated[
        float | None, typer.Option(help="Time budget in minutes (overrides preference).")
    ] = None,
    model: Annotated[Path, typer.Option(help="ONNX model file.")] = DEFAULT_MODEL,
    json_out: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
) -> None:
    """Plan a charge curve for one battery situation (model inside the safety envelope, or CC-CV)."""
    from policy.plan import CurvePolicy, PlanRequest  # noqa: PLC0415 - onnxruntime loads only when asked

    if preference not in ("fast", "balanced", "gentle"):
        typer.echo(
            f"chargeagent: --preference must be fast, balanced or gentle (got {preference!r})", err=True
        )
        raise typer.Exit(2)
    request = PlanRequest(
        soc=soc,
        target_soc=target_soc,
        soh=soh,
        cell_temp_c=cell_temp_c,
        ambient_c=ambient_c,
        chemistry=chemistry,
        max_c_rate=max_c_rate,
        preference=preference,
        budget_minutes=budget_min,
    )
    result = CurvePolicy(model).plan(request)
    doc = result.to_json()
    if capacity_ah is not None and math.isfinite(capacity_ah) and capacity_ah > 0:
        for seg in doc["segments"]:
            seg["current_a"] = round(seg["c_rate"] * capacity_ah, 1)
    if json_out:
        typer.echo(json.dumps(doc))
        return
    table = Table(title=f"charge plan ({result.source})")
    for col in ("SoC from", "SoC to", "C-rate", "end °C"):
        table.add_column(col, justify="right")
    temps = list(result.predicted_temp_c) or [math.nan] * len(result.segments)
    for seg, temp in zip(result.segments, temps, strict=True):
        table.add_row(f"{seg.soc_start:.0%}", f"{seg.soc_end:.0%}", f"{seg.c_rate:.2f}", f"{temp:.1f}")
    console.print(table)
    minutes = "n/a" if result.expected_minutes is None else f"{result.expected_minutes:.1f}"
    console.print(f"expected minutes: {minutes}; {result.explanation}")


def train(
    out: Annotated[Path, typer.Option(help="Output directory for the .onnx files and MODEL_CARD.md.")] = Path(
        "policy/models"
    ),
    states: Annotated[int, typer.Option(help="Teacher-labelled states.")] = 4800,
    seed: Annotated[int, typer.Option(help="Seed: same seed, same model.")] = 7,
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 600,
    workers: Annotated[int, typer.Option(help="Teacher processes.")] = 2,
    population: Annotated[int, typer.Option(help="Teacher candidates per iteration.")] = 48,
    iterations: Annotated[int, typer.Option(help="Teacher CEM iterations.")] = 5,
) -> None:
    """Label states with the teacher, train the student, export ONNX fp32 + int8 and the model card."""
    from policy.model_build import build  # noqa: PLC0415 - needs the [train] extra
    from policy.train import TrainConfig  # noqa: PLC0415

    if states < 8 or epochs < 1 or workers < 1 or population < 2 or iterations < 1:
        typer.echo("chargeagent: train needs --states >= 8 and positive epochs/workers/population", err=True)
        raise typer.Exit(2)
    try:
        metrics = build(
            out,
            n_states=states,
            seed=seed,
            config=TrainConfig(epochs=epochs, seed=seed),
            workers=workers,
            population=population,
            iterations=iterations,
        )
    except ChargeAgentError as exc:
        typer.echo(f"chargeagent: {exc}", err=True)
        raise typer.Exit(2) from exc
    table = Table(title=f"held-out metrics ({out / 'MODEL_CARD.md'})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in vars(metrics).items():
        table.add_row(key, f"{value:.4g}")
    console.print(table)


def evaluate_policy(
    out: Annotated[Path, typer.Option(help="Where to write policy_report.html.")] = Path("out"),
    model: Annotated[Path, typer.Option(help="ONNX model file.")] = DEFAULT_MODEL,
    teacher: Annotated[bool, typer.Option(help="Also run the teacher on every scenario (minutes).")] = False,
) -> None:
    """Policy vs CC-CV at 0.5/1/2/3C and equal charge time over SoH x temperature x start SoC."""
    from policy.evaluate import by_rate, by_temp, evaluate, summary, write_report  # noqa: PLC0415
    from policy.plan import CurvePolicy  # noqa: PLC0415

    policy = CurvePolicy(model)
    rows = evaluate(policy, with_teacher=teacher)
    table = Table(title="capacity-loss reduction vs CC-CV at equal charge time")
    table.add_column("group")
    table.add_column("mean reduction", justify="right")
    for rate, value in by_rate(rows).items():
        table.add_row(f"CC-CV {rate:g}C", f"{value:.1%}")
    for temp, value in by_temp(rows).items():
        table.add_row(f"{temp:g} °C", f"{value:.1%}")
    s = summary(rows)
    table.add_row("all", f"{s['mean_loss_reduction']:.1%}")
    if teacher:
        table.add_row("teacher, all", f"{s['teacher_mean_loss_reduction']:.1%}")
    console.print(table)
    console.print(
        f"mean time ratio {s['mean_time_ratio']:.3f} (max {s['max_time_ratio']:.3f}); "
        f"fallback share {s['fallback_share']:.1%}"
    )
    path = write_report(out / "policy_report.html", rows, policy)
    console.print(f"report: {path}")


def register(app: typer.Typer) -> None:
    app.command(name="plan")(plan)
    app.command(name="train")(train)
    app.command(name="evaluate-policy")(evaluate_policy)
