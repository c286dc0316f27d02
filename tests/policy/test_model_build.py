"""Training end to end on a tiny dataset: ONNX fp32 + int8 files, model card, same seed -> same model."""

from pathlib import Path

import numpy as np
import onnx
import pytest

from policy.curve import CurveModel, feature_matrix
from policy.model_build import FP32_NAME, INT8_NAME, build
from policy.teacher import generate_dataset
from policy.train import TrainConfig


@pytest.fixture(scope="module")
def dataset():  # type: ignore[no-untyped-def]
    return generate_dataset(24, seed=5, workers=1, population=8, iterations=2, chunk=12)


def test_build_is_reproducible_and_quantized(tmp_path: Path, dataset) -> None:  # type: ignore[no-untyped-def]
    cfg = TrainConfig(epochs=5, seed=5)
    first = build(tmp_path / "a", dataset=dataset, config=cfg)
    build(tmp_path / "b", dataset=dataset, config=cfg)
    for name in (FP32_NAME, INT8_NAME):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    int8 = onnx.load(tmp_path / "a" / INT8_NAME)
    ops = {n.op_type for n in int8.graph.node}
    assert {"MatMulInteger", "DynamicQuantizeLinear", "DequantizeLinear", "TopK"} <= ops
    assert (tmp_path / "a" / INT8_NAME).stat().st_size < (tmp_path / "a" / FP32_NAME).stat().st_size / 2
    card = (tmp_path / "a" / "MODEL_CARD.md").read_text()
    assert CurveModel(tmp_path / "a" / INT8_NAME).sha256 in card
    assert 0 <= first.int8_vs_fp32_fraction_mae < 0.2


def test_int8_model_tracks_fp32(tmp_path: Path, dataset) -> None:  # type: ignore[no-untyped-def]
    build(tmp_path, dataset=dataset, config=TrainConfig(epochs=5, seed=6))
    x = feature_matrix(dataset)
    a, gate_a = CurveModel(tmp_path / FP32_NAME).infer(x)
    b, _ = CurveModel(tmp_path / INT8_NAME).infer(x)
    same_routing = np.argmax(gate_a, axis=1)
    assert np.isfinite(b).all()
    assert np.median(np.abs(a - b)) < 0.1  # int8 weights, same answers to within quantization noise
    assert same_routing.shape == (24,)
