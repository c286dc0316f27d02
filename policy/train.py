"""Distil the teacher into a small network, export it to ONNX and quantize it to int8 ([train] extra).

Network (`MoeCurveNet`): features -> shared trunk (ReLU) -> gated mixture of small experts with top-2
routing (only the 2 chosen experts' weights are gathered and multiplied, per sample) added to the trunk
(residual) -> one linear layer that feeds every head at once: the K stage fractions, the minutes and
mean cell temperature at each stage end, and the hottest-cell temperature and highest-cell voltage at
the HORIZONS_MIN ahead. The heads are trained on normalised targets (`policy.curve.encode_targets`).

The ONNX graph is written here from the trained weights with `onnx.helper` rather than by
`torch.onnx.export`: the top-k + Gather routing must stay a Gather on an initializer so onnxruntime's
dynamic quantizer turns the expert weights into int8 (torch's exporters emit it differently between
versions). `onnxruntime.quantization.quantize_dynamic` then quantizes MatMul and Gather weights to int8.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from policy.curve import FEATURES, OUTPUT_SIZE, encode_targets, feature_matrix, normalisation
from policy.teacher import Dataset

N_EXPERTS = 4
TOP_K = 2
OPSET = 17


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 600
    batch_size: int = 128
    learning_rate: float = 3e-3
    weight_decay: float = 1e-5
    seed: int = 0
    hidden: int = 32
    expert_hidden: int = 32
    balance_weight: float = 0.01  # auxiliary load-balancing loss (Switch Transformer style)


def _torch() -> Any:
    try:
        import torch  # noqa: PLC0415 - optional [train] dependency
    except ImportError as exc:  # pragma: no cover - depends on the environment
        from chargeagent.errors import ConfigError  # noqa: PLC0415

        raise ConfigError("training needs the [train] extra: pip install 'chargeagent[train]'") from exc
    return torch


def build_net(torch: Any, hidden: int, expert_hidden: int) -> Any:
    nn = torch.nn

    class MoeCurveNet(nn.Module):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.trunk = nn.Linear(len(FEATURES), hidden)
            self.gate = nn.Linear(hidden, N_EXPERTS)
            self.w1 = nn.Parameter(torch.randn(N_EXPERTS, hidden, expert_hidden) / math.sqrt(hidden))
            self.b1 = nn.Parameter(torch.zeros(N_EXPERTS, expert_hidden))
            self.w2 = nn.Parameter(torch.randn(N_EXPERTS, expert_hidden, hidden) / math.sqrt(expert_hidden))
            self.b2 = nn.Parameter(torch.zeros(N_EXPERTS, hidden))
            self.head = nn.Linear(hidden, OUTPUT_SIZE)

        def forward(self, x: Any) -> tuple[Any, Any]:
            h = torch.relu(self.trunk(x))
            logits = self.gate(h)
            top_v, top_i = torch.topk(logits, TOP_K, dim=1)
            weights = torch.softmax(top_v, dim=1)
            # Per sample, only the chosen experts' weights: (B, k, in, out).
            h1 = torch.relu(torch.einsum("bi,bkio->bko", h, self.w1[top_i]) + self.b1[top_i])
            h2 = torch.einsum("bko,bkoj->bkj", h1, self.w2[top_i]) + self.b2[top_i]
            mixed = h + (weights.unsqueeze(-1) * h2).sum(dim=1)
            return self.head(mixed), logits

    return MoeCurveNet()


def train(dataset: Dataset, config: TrainConfig) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Fit the network; returns its weights as NumPy arrays and training metrics."""
    torch = _torch()
    torch.manual_seed(config.seed)
    torch.set_num_threads(1)  # reproducible sums; the net is tiny
    torch.use_deterministic_algorithms(True)
    mean, scale = normalisation()
    x_all = (feature_matrix(dataset) - mean) / scale
    y_all, weights = encode_targets(dataset)
    x = torch.tensor(x_all, dtype=torch.float32)
    y = torch.tensor(y_all, dtype=torch.float32)
    w = torch.tensor(weights, dtype=torch.float32)
    net = build_net(torch, config.hidden, config.expert_hidden)
    opt = torch.optim.AdamW(net.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.epochs)
    gen = torch.Generator().manual_seed(config.seed)
    n = x.shape[0]
    for _ in range(config.epochs):
        for idx in torch.randperm(n, generator=gen).split(config.batch_size):
            out, logits = net(x[idx])
            loss = ((out - y[idx]) ** 2 * w).mean()
            # Load balancing: mean router probability per expert should be uniform (1/E).
            probs = torch.softmax(logits, dim=1).mean(dim=0)
            loss = loss + config.balance_weight * N_EXPERTS * (probs**2).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    with torch.no_grad():
        out, logits = net(x)
        mse = float((((out - y) ** 2) * w).mean())
        usage = torch.bincount(torch.topk(logits, TOP_K, dim=1).indices.flatten(), minlength=N_EXPERTS)
    state = {k: v.detach().numpy().astype(np.float32) for k, v in net.state_dict().items()}
    metrics = {"train_weighted_mse": mse}
    metrics.update({f"expert_{i}_share": float(u) / (n * TOP_K) for i, u in enumerate(usage.tolist())})
    return state, metrics


def to_onnx(state: dict[str, np.ndarray], metadata: dict[str, str]) -> bytes:
    """The fp32 ONNX model for `state` (graph written by hand; see the module docstring)."""
    import onnx  # noqa: PLC0415
    from onnx import TensorProto, helper, numpy_helper  # noqa: PLC0415

    def init(name: str, array: np.ndarray) -> Any:
        return numpy_helper.from_array(np.ascontiguousarray(array, dtype=np.float32), name)

    inits = [
        init("trunk_w", state["trunk.weight"].T),
        init("trunk_b", state["trunk.bias"]),
        init("gate_w", state["gate.weight"].T),
        init("gate_b", state["gate.bias"]),
        init("w1", state["w1"]),
        init("b1", state["b1"][:, None, :]),
        init("w2", state["w2"]),
        init("b2", state["b2"][:, None, :]),
        init("head_w", state["head.weight"].T),
        init("head_b", state["head.bias"]),
        numpy_helper.from_array(np.array([TOP_K], dtype=np.int64), "k"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
        numpy_helper.from_array(np.array([2], dtype=np.int64), "axis2"),
        numpy_helper.from_array(np.array([-1, state["trunk.bias"].size], dtype=np.int64), "flat"),
    ]
    mk = helper.make_node
    nodes = [
        mk("MatMul", ["features", "trunk_w"], ["t0"]),
        mk("Add", ["t0", "trunk_b"], ["t1"]),
        mk("Relu", ["t1"], ["h"]),
        mk("MatMul", ["h", "gate_w"], ["g0"]),
        mk("Add", ["g0", "gate_b"], ["gate_logits"]),
        mk("TopK", ["gate_logits", "k"], ["top_v", "top_i"], axis=1),
        mk("Softmax", ["top_v"], ["mix"], axis=1),
        # Gather only the chosen experts: (B, k, in, out); the per-sample product runs on them alone.
        mk("Gather", ["w1", "top_i"], ["w1_sel"], axis=0),
        mk("Gather", ["b1", "top_i"], ["b1_sel"], axis=0),
        mk("Gather", ["w2", "top_i"], ["w2_sel"], axis=0),
        mk("Gather", ["b2", "top_i"], ["b2_sel"], axis=0),
        mk("Unsqueeze", ["h", "axis1"], ["h_b1"]),
        mk("Unsqueeze", ["h_b1", "axis2"], ["h_b"]),  # (B, 1, 1, in)
        mk("MatMul", ["h_b", "w1_sel"], ["e0"]),  # (B, k, 1, out)
        mk("Add", ["e0", "b1_sel"], ["e1"]),
        mk("Relu", ["e1"], ["e2"]),
        mk("MatMul", ["e2", "w2_sel"], ["e3"]),
        mk("Add", ["e3", "b2_sel"], ["e4"]),  # (B, k, 1, hidden)
        mk("Unsqueeze", ["mix", "axis2"], ["mix_b1"]),
        mk("Unsqueeze", ["mix_b1", "axis2"], ["mix_b"]),  # (B, k, 1, 1)
        mk("Mul", ["e4", "mix_b"], ["e5"]),
        mk("ReduceSum", ["e5", "axis1"], ["e6"], keepdims=0),  # (B, 1, hidden)
        mk("Reshape", ["e6", "flat"], ["moe"]),
        mk("Add", ["h", "moe"], ["mixed"]),
        mk("MatMul", ["mixed", "head_w"], ["o0"]),
        mk("Add", ["o0", "head_b"], ["outputs"]),
    ]
    graph = helper.make_graph(
        nodes,
        "chargeagent_curve",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", len(FEATURES)])],
        [
            helper.make_tensor_value_info("outputs", TensorProto.FLOAT, ["batch", OUTPUT_SIZE]),
            helper.make_tensor_value_info("gate_logits", TensorProto.FLOAT, ["batch", N_EXPERTS]),
        ],
        inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="chargeagent"
    )
    model.ir_version = 8
    helper.set_model_props(model, metadata)
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def quantize_int8(fp32_path: Path, int8_path: Path) -> None:
    """onnxruntime dynamic quantization: int8 weights for MatMul and Gather (experts), fp32 activations."""
    from onnxruntime.quantization import QuantType, quantize_dynamic  # noqa: PLC0415

    quantize_dynamic(
        fp32_path, int8_path, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gather"]
    )


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def metadata_for(config: TrainConfig, n_samples: int, extra: dict[str, Any]) -> dict[str, str]:
    return {
        "chargeagent_model": "charge_curve",
        "train_config": json.dumps(config.__dict__, sort_keys=True),
        "n_samples": str(n_samples),
        **{k: json.dumps(v, sort_keys=True) for k, v in extra.items()},
    }
