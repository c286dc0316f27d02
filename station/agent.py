"""The station agent: wires the CSMS connection, the OCPP core, the BMS link and the safety envelope.

One asyncio TaskGroup owns every task (connection, boot/heartbeat, outbox, EVSE controller). The EVSE
controller runs one charging session (`station.charging.ChargingSession`) per accepted remote start: BMS
handshake, then per telemetry sample the curve controller proposes a current (learned curve or CC-CV),
the envelope decides (CSMS limit, BMS limits, temperature), the charger commands it and the meter
integrates energy; the transaction ends with the reason the session ended.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog
from websockets.asyncio.client import ClientConnection

from bms_link.base import BmsLink
from bms_link.models import StopReason
from chargeagent.clock import Clock, ocpp_timestamp
from chargeagent.config import Settings
from chargeagent.errors import ProtocolError
from chargeagent.lean import LeanEvent, LeanQueue
from policy.envelope import EnvelopeLimits
from policy.health import Alert
from station.audit import AuditLog
from station.authorization import Authorizer
from station.charging import EVSE_ID, ChargingSession, SessionResult, StepRecord, curve_policy
from station.connection import connect_forever, connect_options
from station.device_runtime import DeviceRuntime
from station.device_store import FILE_NAME as DEVICE_STORE_FILE
from station.grid_link import GridLink
from station.health_recorder import StationHealth, notify_event
from station.live import LiveState, local_api
from station.ocpp_v16 import OcppChargePoint16
from station.ocpp_v201 import OcppChargePoint
from station.outbox import Outbox
from station.protocol.availability import apply_availability
from station.protocol.device_types import Change
from station.protocol.station import Outbound, PendingStart, StationCore, StationInfo
from station.protocol.v16 import SUBPROTOCOL as V16_SUBPROTOCOL
from station.protocol.v16 import MemoryTransactions
from station.site_link import EvseDemand, SiteLink
from station.v16_store import SqliteTransactions

log = structlog.get_logger(__name__)

RESET_SESSION_END_TIMEOUT_S = 30.0  # an Immediate reset waits this long for the charging session to stop
RESET_DRAIN_TIMEOUT_S = 5.0  # ...and this long for queued messages to go out before the connection drops


class _ResetDue(Exception):
    """Raised in the agent's task group when an OCPP Reset is due: its tasks stop and `run` starts over."""


def default_outbox_path(settings: Settings) -> Path:
    """Where a station keeps its durable transaction queue: `<data_dir>/<station id>/outbox.sqlite3`."""
    return settings.station.data_dir / settings.station.id / "outbox.sqlite3"


class StationAgent:
    """A charge point: connect to the CSMS, accept remote starts, charge through the BMS link safely."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock,
        bms_factory: Callable[[], BmsLink],
        on_step: Callable[[StepRecord], None] | None = None,
        on_session_end: Callable[[SessionResult], None] | None = None,
        outbox_path: Path | None = None,
    ) -> None:
        """`outbox_path=None` keeps transaction messages in memory only (use `default_outbox_path`)."""
        self.settings = settings
        self.clock = clock
        self.station_id = settings.station.id
        st = settings.station
        self.core = StationCore(
            self.station_id,
            StationInfo(st.vendor, st.model, st.serial_number, st.firmware_version),
            heartbeat_interval_s=settings.ocpp.heartbeat_interval_s,
            meter_interval_s=settings.ocpp.meter_interval_s,
            charger_max_current_a=st.charger_max_current_a,
            authorize_remote_start=settings.ocpp.authorize_remote_start,
        )
        self.outbox = Outbox(
            clock,
            path=outbox_path,
            message_attempts=settings.ocpp.message_attempts,
            attempt_interval_s=settings.ocpp.message_attempt_interval_s,
            max_messages=settings.ocpp.outbox_max_messages,
        )
        self.limits = EnvelopeLimits(
            charger_max_current_a=st.charger_max_current_a,
            charger_max_voltage_v=st.charger_max_voltage_v,
            ramp_up_a_per_s=st.ramp_up_a_per_s,
            charger_max_power_w=None if st.charger_max_power_kw is None else st.charger_max_power_kw * 1000.0,
        )
        self.policy = curve_policy(settings, self.limits)
        # The device model lives next to the outbox (<data_dir>/<station id>/); in memory when the outbox is.
        self.devices = DeviceRuntime(
            settings,
            self.core,
            self.outbox,
            store_path=outbox_path.parent / DEVICE_STORE_FILE if outbox_path is not None else None,
            on_security_event=self.security_event,
        )
        self.audit = AuditLog(outbox_path.parent if outbox_path is not None else None)
        self.authorizer = Authorizer(
            self.core, clock, outbox_path.parent if outbox_path is not None else None
        )
        # Per-battery health history, also next to the outbox; without a data dir nothing is kept.
        self.health = StationHealth(settings.health, outbox_path.parent if outbox_path is not None else None)
        self.grid = GridLink(self.core, settings) if settings.grid.vtn_url else None  # OpenADR VEN
        self.site_demand = EvseDemand()  # what the charging session needs now (site load management)
        self.site = (  # one cap shared by the site's stations: its failsafe profile is installed now
            SiteLink(self.core.profiles, settings.site, self.station_id, clock, lambda: self.site_demand)
            if settings.site.mqtt_url
            else None
        )
        self.live = LiveState()  # the last step, the plan, counters: for the local API and metrics
        # OCPP 1.6: the CSMS's integer transaction ids, persisted next to the outbox (used if 1.6 is chosen).
        self._v16_transactions: SqliteTransactions | MemoryTransactions = (
            SqliteTransactions(outbox_path.parent) if outbox_path is not None else MemoryTransactions()
        )
        self.api = local_api(self, settings.api)  # None unless [api] enabled
        self._event_id = int(clock.now().timestamp()) % 2**30  # NotifyEvent eventIds, unique across restarts
        # ConfigError now, not later; a BasicAuthPassword set by the CSMS replaces the configured one.
        self._connect = self.devices.connect_options(connect_options(self.station_id, settings.ocpp))
        self.bms_factory = bms_factory
        self.on_step = on_step
        self._on_session_end = on_session_end
        self._starts: LeanQueue[tuple[PendingStart, dict[str, Any] | None]] = LeanQueue()
        self.stop_reason: StopReason | None = None  # set by a remote stop or shutdown; read each step
        self._idle = LeanEvent()  # no charging session running
        self._idle.set()
        self._cp: OcppChargePoint | None = None
        self.energy_wh = self.outbox.energy_wh  # the station meter's register: never decreases
        self.booted = LeanEvent()
        # Security events wait here until the CSMS has accepted us (A04: they are sent once connected).
        self._security_events: list[tuple[str, str]] = [("StartupOfTheDevice", "chargeagent started")]
        self._boot_reason = "PowerUp"
        self._reset_due = LeanEvent()
        self._reset_type = ""
        apply_availability(self.core, clock.now())  # a stored Inoperative; the boot reports every status
        self.log = log.bind(station_id=self.station_id)

    # --- StationHooks (called from OCPP handlers; must not block) ------------------------------
    def remote_start_accepted(self, pending: PendingStart, charging_profile: dict[str, Any] | None) -> None:
        self._starts.put_nowait((pending, charging_profile))

    def remote_stop_accepted(self, transaction_id: str) -> None:
        self.stop_reason = StopReason.REMOTE

    def enqueue(self, messages: list[Outbound]) -> None:
        self.outbox.put(messages)

    def variables_changed(self, changes: list[Change]) -> None:
        self.devices.changed(changes)

    def availability_changed(self, messages: list[Outbound]) -> None:
        self.devices.availability_changed()
        self.enqueue(messages)

    def reset_requested(self, reset_type: str) -> None:
        """B11/B12: no new transactions from now; Immediate also stops the running one (ImmediateReset)."""
        self.core.reset_scheduled = True
        self._reset_type = reset_type
        if reset_type == "Immediate" and not self._idle.is_set():
            self.stop_reason = StopReason.IMMEDIATE_RESET
        self._reset_due.set()

    def security_event(self, event_type: str, tech_info: str) -> None:
        """Record a security event; it goes out as SecurityEventNotification once the CSMS accepted us."""
        self.log.warning("security_event", type=event_type, tech_info=tech_info)
        self._security_events.append((event_type, tech_info))
        if self.outbox.online:
            self._flush_security_events()

    def health_alerts(self, alerts: list[Alert]) -> None:
        """Battery-health alerts go to the CSMS as one NotifyEvent (dropped while offline, like status)."""
        self.enqueue([notify_event(alerts, self.clock.now(), self._event_id)])
        self._event_id += len(alerts)

    def _flush_security_events(self) -> None:
        events, self._security_events = self._security_events, []
        now = ocpp_timestamp(self.clock.now())
        self.enqueue(
            [
                Outbound("SecurityEventNotification", {"type": t, "timestamp": now, "techInfo": info})
                for t, info in events
            ]
        )

    def clear_auth_cache(self) -> bool:
        return self.authorizer.clear()

    # --- idToken presented at the station (RFID reader, local app) -------------------------------
    def present_id_token(self, id_token: dict[str, str], evse_id: int = EVSE_ID) -> None:
        """C01/E07: the token of the running transaction stops it; otherwise it asks to start one."""
        token = self.authorizer.pseudonym(id_token)  # never the token itself in a log line
        tx = self.core.transaction(evse_id)
        if tx is not None:
            if tx.id_token is not None and self.authorizer.pseudonym(tx.id_token) == token:
                self.log.info("local_stop", evse_id=evse_id, token=token)
                self.stop_reason = StopReason.LOCAL
            else:
                self.log.info("id_token_ignored", reason="another transaction runs", token=token)
            return
        response, pending = self.core.on_request_start(
            id_token=id_token, remote_start_id=None, evse_id=evse_id
        )
        self.log.info("local_start", evse_id=evse_id, status=response["status"], token=token)
        if pending is not None:
            self._starts.put_nowait((pending, None))

    # --- cable (from the plug sensor / simulator) ----------------------------------------------
    def plug_in(self) -> None:
        self.enqueue(self.core.plug_in(EVSE_ID, self.clock.now()))
        self.log.info("cable_plugged_in", evse_id=EVSE_ID)

    def unplug(self) -> None:
        self.enqueue(self.core.unplug(EVSE_ID, self.clock.now(), self.core.evses[EVSE_ID].last_sample))
        self.log.info("cable_unplugged", evse_id=EVSE_ID)

    # --- lifetime ------------------------------------------------------------------------------
    async def run(self) -> None:
        """Run until cancelled (SIGTERM/SIGINT handling is the CLI's job)."""
        structlog.contextvars.bind_contextvars(station_id=self.station_id)
        self._end_interrupted_transactions()
        try:
            while True:
                try:
                    async with asyncio.TaskGroup() as tg:
                        tg.create_task(
                            connect_forever(
                                self.station_id,
                                self.settings.ocpp,
                                self.clock,
                                self._session,
                                options=self._connect,
                                on_security_event=self.security_event,
                                backoff=self.devices.current_backoff,
                            ),
                            name=f"{self.station_id}:connection",
                        )
                        tg.create_task(self._evse_controller(), name=f"{self.station_id}:evse{EVSE_ID}")
                        tg.create_task(self._reset_when_due(), name=f"{self.station_id}:reset")
                        if self.grid is not None:
                            tg.create_task(self.grid.run(), name=f"{self.station_id}:openadr")
                        if self.site is not None:
                            tg.create_task(self.site.run(), name=f"{self.station_id}:site")
                        if self.api is not None:
                            tg.create_task(self.api.run(), name=f"{self.station_id}:api")
                except* _ResetDue:
                    self._restart()
        finally:
            self.outbox.close()
            self.devices.close()
            self.authorizer.close()
            self.audit.close()
            self.health.close()
            if isinstance(self._v16_transactions, SqliteTransactions):
                self._v16_transactions.close()

    def _end_interrupted_transactions(self) -> None:
        for last_event in self.outbox.open_transactions():
            ended = self.core.end_interrupted_transaction(last_event, self.clock.now())
            self.log.warning(
                "transaction_interrupted_by_restart",
                transaction_id=ended.payload["transactionInfo"]["transactionId"],
                seq_no=ended.payload["seqNo"],
            )
            self.outbox.put([ended])

    async def _reset_when_due(self) -> None:
        """Wait for a Reset, then for the station to be idle and the outbox to drain (both bounded), then
        raise `_ResetDue` so `run` tears the connection and controller down and starts them again."""
        await self._reset_due.wait()
        try:
            async with asyncio.timeout(
                RESET_SESSION_END_TIMEOUT_S if self._reset_type == "Immediate" else None
            ):
                await self._idle.wait()
        except TimeoutError:
            self.log.error("reset_session_did_not_stop", timeout_s=RESET_SESSION_END_TIMEOUT_S)
        await self._drain(RESET_DRAIN_TIMEOUT_S)
        raise _ResetDue

    def _restart(self) -> None:
        """After a Reset: the state a reboot keeps (outbox, device model, profiles, operational status) stays;
        the protocol session starts over with BootNotification(RemoteReset), RebootRequired values apply."""
        now = self.clock.now()
        for evse_id in self.core.evses:  # a session that did not stop in time: end its transaction now
            self.enqueue(self.core.end_transaction(evse_id, now, StopReason.IMMEDIATE_RESET, None))
        while not self._starts.empty():
            pending, _ = self._starts.get_nowait()
            self.core.abandon_start(pending)
        self._idle.set()
        self.core.rebooted()
        self.booted.clear()
        self._reset_due.clear()
        self._boot_reason = "RemoteReset"
        self._connect = self.devices.connect_options(connect_options(self.station_id, self.settings.ocpp))
        self._security_events.append(("ResetOrReboot", f"{self._reset_type} reset requested by the CSMS"))
        self.log.warning("station_reset", type=self._reset_type)

    async def _drain(self, timeout_s: float) -> None:
        """Let queued messages go out while connected, at most `timeout_s` (they stay queued otherwise)."""
        try:
            async with asyncio.timeout(timeout_s):
                while len(self.outbox) and self.outbox.online:
                    await self.clock.sleep(0.05)
        except TimeoutError:
            self.log.warning("outbox_not_drained", queued=len(self.outbox))

    async def shutdown(self, timeout_s: float = 10.0) -> None:
        """Orderly stop (SIGTERM): end a running session (0 A, CST), queue its Ended, let the outbox drain.

        Bounded by `timeout_s`; the caller cancels `run()` afterwards. Transaction messages still queued
        then stay in the durable outbox and go out after the next start.
        """
        self.log.info("shutdown_requested", session_running=not self._idle.is_set())
        self.stop_reason = StopReason.LOCAL
        try:
            async with asyncio.timeout(timeout_s):
                await self._idle.wait()
                while len(self.outbox) and self.outbox.online:
                    await self.clock.sleep(0.05)
        except TimeoutError:
            self.log.warning("shutdown_timeout", queued=len(self.outbox))

    async def _session(self, ws: ClientConnection) -> None:
        ocpp = self.settings.ocpp
        cp: OcppChargePoint | OcppChargePoint16
        if ws.subprotocol == V16_SUBPROTOCOL:  # the CSMS chose 1.6: the same core, translated on the wire
            cp = OcppChargePoint16(
                self.station_id, ws, self.core, self, ocpp.response_timeout_s, self.clock.now,
                transactions=self._v16_transactions, device_model=self.devices.model,
                compiled_validation=ocpp.compiled_validation,
            )  # fmt: skip
        else:
            cp = OcppChargePoint(
                self.station_id, ws, self.core, self, ocpp.response_timeout_s, self.clock.now,
                device_model=self.devices.model, compiled_validation=ocpp.compiled_validation,
            )  # fmt: skip
        async with asyncio.TaskGroup() as tg:
            tg.create_task(cp.start(), name=f"{self.station_id}:ocpp-reader")
            if not self.core.accepted:  # B01: boot once per (re)boot, not per reconnect
                await self._boot(cp)
            self._cp = cp
            self.outbox.online = True
            self.booted.set()
            self._flush_security_events()
            try:
                now, now_s = self.clock.now(), self.clock.monotonic()
                for message in self.core.reconnect_status_notifications(now, now_s):  # B04: OfflineThreshold
                    await cp.send(message)
                tg.create_task(self._heartbeat(cp), name=f"{self.station_id}:heartbeat")
                await self.outbox.deliver(functools.partial(self.authorizer.send_queued, cp.send))
            finally:
                self.outbox.online = False
                self._cp = None
                self.core.went_offline(self.clock.monotonic())
                self.live.disconnects += 1

    async def _boot(self, cp: OcppChargePoint) -> None:
        """B01-B03: BootNotification until Accepted, waiting the interval the CSMS gives."""
        while True:
            response = await cp.send(self.core.boot_request(self._boot_reason))
            wait_s = self.core.on_boot_response(response["status"], float(response["interval"]))
            self.log.info("boot_response", status=response["status"], interval_s=response["interval"])
            if self.core.accepted:
                self.devices.boot_accepted()
                return
            await self.clock.sleep(wait_s)

    async def _heartbeat(self, cp: OcppChargePoint) -> None:
        changed = self.devices.heartbeat_changed
        while True:
            changed.clear()
            try:  # a new HeartbeatInterval (SetVariables) restarts the wait at once
                async with asyncio.timeout(self.core.heartbeat_interval_s):
                    await changed.wait()
                continue
            except TimeoutError:
                pass
            try:
                await cp.send(self.core.heartbeat_request())
            except ProtocolError as exc:
                self.log.warning("heartbeat_failed", error=str(exc))

    # --- charging ------------------------------------------------------------------------------
    async def _evse_controller(self) -> None:
        while True:
            pending, profile = await self._starts.get()
            remote = pending.remote_start_id is not None
            authorized = (remote and not self.core.authorize_remote_start) or await self._authorize(pending)
            if not authorized:
                self.core.abandon_start(pending)
                continue
            self.stop_reason = None
            self._idle.clear()
            self.enqueue(
                self.core.start_transaction(
                    pending, charging_profile=profile, now=self.clock.now(), now_s=self.clock.monotonic()
                )
            )
            tx = self.core.transaction(EVSE_ID)
            tx_id = tx.transaction_id if tx else None
            with structlog.contextvars.bound_contextvars(evse_id=EVSE_ID, transaction_id=tx_id):
                result = await self._charge_session(tx_id)
            self._idle.set()
            if self._on_session_end is not None:
                self._on_session_end(result)

    async def _authorize(self, pending: PendingStart) -> bool:
        cp = self._cp
        return await self.authorizer.authorize(pending.id_token, cp.send if cp is not None else None)

    async def _charge_session(self, tx_id: str | None) -> SessionResult:
        self.live.session_started()
        result = await ChargingSession(self, tx_id).run()
        self.live.session_ended(result.reason)
        return result
