"""`chargeagent plan`, `train` and `evaluate-policy` as users run them (subprocesses)."""

from __future__ import annotations

import itertools
import json
import subprocess
from pathlib import Path

from test_cli import run_cli  # same directory (pytest prepend import mode)

SITUATION = {"soc": "0.1", "target-soc": "0.8", "soh": "0.9", "cell-temp-c": "25", "ambient-c": "25"}


def run_plan(*flags: str, **options: str) -> subprocess.CompletedProcess[str]:
    """`chargeagent plan` for SITUATION with `options` (underscores as dashes) overriding it."""
    merged = {**SITUATION, **{k.replace("_", "-"): v for k, v in options.items()}}
    return run_cli("plan", *itertools.chain.from_iterable((f"--{k}", v) for k, v in merged.items()), *flags)


def test_plan_json_contract() -> None:
    result = run_plan("--json", capacity_ah="150", max_c_rate="3")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["source"] == "model"
    assert len(doc["model_sha256"]) == 64
    segs = doc["segments"]
    assert segs[0]["soc_start"] == 0.1 and segs[-1]["soc_end"] == 0.8
    assert all(a["soc_end"] == b["soc_start"] for a, b in itertools.pairwise(segs))
    assert all(0 < s["c_rate"] <= 3 and s["current_a"] == round(s["c_rate"] * 150, 1) for s in segs)
    assert len(doc["predicted_temp_c"]) == len(segs)
    assert doc["expected_minutes"] > 0
    assert isinstance(doc["binding_constraints"], list)


def test_plan_bad_input_falls_back_and_bad_option_exits_2() -> None:
    result = run_plan("--json", cell_temp_c="nan")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["source"] == "fallback" and "nan_input:cell_temp_c" in doc["binding_constraints"]
    assert all(s["c_rate"] == 0 for s in doc["segments"])
    bad = run_plan(preference="ludicrous")
    assert bad.returncode == 2 and "--preference" in bad.stderr


def test_train_writes_models_and_card(tmp_path: Path) -> None:
    options = {"out": str(tmp_path), "states": "8", "epochs": "2", "workers": "1", "population": "4"}
    options |= {"iterations": "1", "seed": "3"}
    result = run_cli("train", *itertools.chain.from_iterable((f"--{k}", v) for k, v in options.items()))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "charge_curve.int8.onnx").stat().st_size > 1000
    assert "sha256" in (tmp_path / "MODEL_CARD.md").read_text()
    plan = run_plan(
        "--json", soc="0.2", target_soc="0.9", soh="1", model=str(tmp_path / "charge_curve.int8.onnx")
    )
    assert plan.returncode == 0 and json.loads(plan.stdout)["source"] == "model"


def test_evaluate_policy_prints_table_and_writes_report(tmp_path: Path) -> None:
    result = run_cli("evaluate-policy", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "CC-CV 1C" in result.stdout and "all" in result.stdout
    html = (tmp_path / "policy_report.html").read_text()
    assert "<svg" in html and "Every scenario" in html
    assert html.count("<tr>") > 190  # 192 scenario x rate rows plus the summary tables
