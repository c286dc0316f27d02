"""Parquet copies of the fleet outputs (the `[fleet]` extra: pyarrow), for pandas / DuckDB / Spark users.

Same rows and column names as the CSVs (`simulators.fleet_output`), typed: times as UTC timestamps,
numbers as float64 / int, `reached_target` as bool. Written beside the CSVs when pyarrow is installed;
without it the CSVs alone are written and the CLI says how to get Parquet.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from policy.physics import FloatArray


def available() -> bool:
    return importlib.util.find_spec("pyarrow") is not None


def write_sessions(path: Path, columns: dict[str, Any]) -> Path:
    """`columns`: name → values; `connection_time` / `disconnect_time` in epoch seconds."""
    import pyarrow as pa  # noqa: PLC0415  # optional: the [fleet] extra
    import pyarrow.parquet as pq  # noqa: PLC0415

    arrays = {}
    for name, values in columns.items():
        if name.endswith("_time"):
            whole_s = np.rint(np.asarray(values, dtype=np.float64)).astype(np.int64)  # as the CSV rounds them
            arrays[name] = pa.array(whole_s.astype("datetime64[s]"), type=pa.timestamp("s", tz="UTC"))
        else:
            arrays[name] = pa.array(values)
    pq.write_table(pa.table(arrays), path)
    return path


def write_load(path: Path, start_s: float, step_s: float, load_kw: FloatArray) -> Path:
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415

    starts = np.rint(start_s + step_s * np.arange(load_kw.size)).astype(np.int64).astype("datetime64[s]")
    table = pa.table(
        {
            "interval_start": pa.array(starts, type=pa.timestamp("s", tz="UTC")),
            "load_kw": pa.array(np.round(load_kw, 3)),
        }
    )
    pq.write_table(table, path)
    return path
