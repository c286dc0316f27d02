"""Benchmark: cost of the durable outbox (persist-before-send) against baselines measured in the same run.

Rows: an in-memory Outbox (no durability), a bare sqlite3 INSERT+COMMIT with the same pragmas (the floor
cost of an fsynced write on this disk), and the durable Outbox.put() of a realistic TransactionEvent.
Run: .venv/bin/python bench/bench_outbox.py [--messages N]. Ratios, not absolute times: disks are noisy.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from chargeagent.clock import LoopClock
from station.outbox import Outbox
from station.protocol.station import StationCore, StationInfo
from station.protocol.transaction import MeterSample

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _events(n: int) -> list:  # type: ignore[type-arg]
    core = StationCore("B1", StationInfo("v", "m", "s", "f"), meter_interval_s=0.0)
    _, pending = core.on_request_start(
        id_token={"idToken": "T", "type": "Central"}, remote_start_id=1, evse_id=1
    )
    assert pending is not None
    out = core.start_transaction(pending, charging_profile=None, now=T0, now_s=0.0)
    for i in range(1, n):
        core.record_sample(1, MeterSample(i * 10.0, 50_000.0, 125.0, 400.0, 0.5, 30.0))
        out += core.meter_update(1, T0, float(i))
    return out[:n]


def _time_per_op(fn: Callable[[], None], n: int) -> list[float]:
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=300)
    n = parser.parse_args().messages
    events = _events(n)
    rows: list[tuple[str, list[float]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        memory = Outbox(LoopClock(T0))
        it = iter(events)
        rows.append(("in-memory Outbox.put (baseline)", _time_per_op(lambda: memory.put([next(it)]), n)))

        db = sqlite3.connect(Path(tmp) / "raw.sqlite3", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, payload TEXT)")
        it = iter(events)

        def raw_insert() -> None:
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO t (payload) VALUES (?)", (json.dumps(next(it).payload),))
            db.execute("COMMIT")

        rows.append(("raw sqlite3 INSERT+COMMIT, WAL, synchronous=FULL", _time_per_op(raw_insert, n)))
        db.close()

        durable = Outbox(LoopClock(T0), path=Path(tmp) / "outbox.sqlite3", max_messages=10 * n)
        it = iter(events)
        rows.append(
            ("durable Outbox.put (WAL, FULL, fsync)", _time_per_op(lambda: durable.put([next(it)]), n))
        )
        durable.close()

    base = statistics.median(rows[0][1])
    print(f"{n} TransactionEvents each; median and p99 per put\n")
    print(f"{'path':<52}{'median µs':>12}{'p99 µs':>12}{'x baseline':>12}")
    for name, samples in rows:
        med = statistics.median(samples)
        p99 = sorted(samples)[int(0.99 * (len(samples) - 1))]
        print(f"{name:<52}{med * 1e6:>12.1f}{p99 * 1e6:>12.1f}{med / base:>12.1f}")


if __name__ == "__main__":
    main()
