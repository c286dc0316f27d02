"""openleadr's own VTN on a free loopback port, recording what VENs send it (test helper)."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from openleadr import OpenADRServer

from tests.conftest import _free_port

VEN_ID = "ven-under-test"


def vtn_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/OpenADR2/Simple/2.0b"


class Vtn:
    """Accepts every registration as `VEN_ID`, requests every report it is offered at `report_every`."""

    def __init__(self, report_every: timedelta = timedelta(seconds=1), port: int | None = None) -> None:
        logging.getLogger("openleadr").setLevel(logging.WARNING)
        self.port = port or _free_port()
        self.url = vtn_url(self.port)
        self.report_every = report_every
        self.server = OpenADRServer(
            vtn_id="TESTVTN",
            http_host="127.0.0.1",
            http_port=self.port,
            requested_poll_freq=timedelta(seconds=1),
            show_server_cert_domain=False,
        )
        self.server.add_handler("on_create_party_registration", self._register)
        self.server.add_handler("on_register_report", self._register_report)
        self.registrations: list[dict[str, Any]] = []
        self.offered: list[tuple[str, str, str]] = []  # (report specifier id, r_id, reading type)
        self.values: dict[str, list[list[tuple[datetime, float]]]] = defaultdict(list)  # by r_id, per report
        self.opts: dict[str, str] = {}  # event id -> optIn/optOut
        self.updated = asyncio.Event()

    async def __aenter__(self) -> Vtn:
        await self.server.run()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.server.stop()

    async def _register(self, info: dict[str, Any]) -> tuple[str, str]:
        self.registrations.append(info)
        return VEN_ID, "reg-1"

    async def _register_report(self, report: dict[str, Any]) -> list[tuple[str, Any, timedelta]]:
        """openleadr's 'full' handler form: the whole report, answered with (r_id, callback, interval)."""
        requests = []
        for description in report["report_descriptions"]:
            r_id = description["r_id"]
            self.offered.append((report["report_specifier_id"], r_id, description["reading_type"]))
            every = max(self.report_every, description["sampling_rate"]["min_period"])
            requests.append((r_id, partial(self._report, r_id=r_id), every))
        return requests

    async def _report(self, data: list[tuple[datetime, float]], r_id: str) -> None:
        self.values[r_id].append(list(data))  # one entry per report received
        self.updated.set()

    def add_event(self, signal_name: str, signal_type: str, intervals: list[dict[str, Any]]) -> str:
        def on_opt(ven_id: str, event_id: str, opt_type: str) -> None:
            self.opts[event_id] = opt_type

        event_id = self.server.add_event(
            ven_id=VEN_ID,
            signal_name=signal_name,
            signal_type=signal_type,
            intervals=intervals,
            callback=on_opt,
        )
        return str(event_id)

    async def wait_for(self, predicate: Any, timeout_s: float = 20.0) -> None:
        async with asyncio.timeout(timeout_s):
            while not predicate():
                await asyncio.sleep(0.1)
