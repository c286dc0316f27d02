"""Task helpers: a cancellation checkpoint for long-running loops.

Python 3.11's `asyncio.wait_for` (inside the `ocpp` library's `call()`) can swallow a cancellation when
the awaited response arrives in the same loop iteration (CPython gh-86296, fixed in 3.12). A loop that keeps
going after that would keep its TaskGroup waiting forever, so every `while True` loop around an OCPP call
passes through `checkpoint()`.
"""

from __future__ import annotations

import asyncio


def checkpoint() -> None:
    """Raise CancelledError if the current task was asked to cancel, even if an await swallowed it."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
