"""Embedded OCPP 2.0.1 CSMS for tests, the demo and `chargeagent csms`: answers stations, records all.

One `EmbeddedCsms` serves many stations over `websockets` (subprotocol `ocpp2.0.1`, station id =
last URL path segment; a client without the subprotocol is closed right after the handshake, as
OCPP-J part 4 §3.3 asks, and an unusable identity gets HTTP 404). Each connection is an
`ocpp.v201.ChargePoint` subclass (`simulators.csms_connection.StationSession`): the library routes
inbound CALLs to our `@on` handlers and validates them against the OCPP JSON schemas. We replace two
pieces of its plumbing, deliberately:

* frame parsing (`parse_frame` in `simulators.csms_frames`, sans-I/O): the library only logs frames
  it cannot unpack, while OCPP-J requires a CALLERROR (messageId "-1" when it is unreadable);
* outbound CALLs (`EmbeddedCsms.call`): we send and return the raw camelCase JSON (no lossy
  snake/camel round trip) and match responses with one future per message id, timed on the event
  loop, instead of the library's shared queue whose remaining-timeout arithmetic reads wall time.

Every valid CALL a station sends is recorded as a `Received` after its response went out, so a
test that awaits `wait_for(...)` knows the station already has its answer.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import itertools
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from types import TracebackType
from typing import Any

import structlog
from ocpp.messages import Call
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.frames import CloseCode
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from chargeagent.clock import Clock, LoopClock
from chargeagent.errors import ConfigError, ProtocolError
from simulators.csms_calls import CsmsCalls
from simulators.csms_connection import CsmsCallError, StationSession
from simulators.csms_frames import (
    OCPP_VERSION,
    SUBPROTOCOL,
    FrameError,
    Received,
    format_received,
    parse_frame,
    station_id_from_path,
)
from simulators.csms_v16 import SUBPROTOCOL as V16_SUBPROTOCOL
from simulators.csms_v16 import StationSession16

# Frame parsing and the journal record live in `simulators.csms_frames`, the per-connection handler
# in `simulators.csms_connection`, the CALL helpers in `simulators.csms_calls`; the public names stay
# importable from here.
__all__ = [
    "BOOT_STATUSES",
    "OCPP_VERSION",
    "SUBPROTOCOL",
    "CsmsCallError",
    "EmbeddedCsms",
    "FrameError",
    "Received",
    "format_received",
    "parse_frame",
    "run_csms",
    "station_id_from_path",
]

log = structlog.get_logger(__name__)

BOOT_STATUSES = frozenset({"Accepted", "Pending", "Rejected"})  # RegistrationStatusEnumType


SUPPORTED_VERSIONS = (SUBPROTOCOL, V16_SUBPROTOCOL)  # what the embedded CSMS can speak


@dataclass
class _Waiter:
    station_id: str
    action: str
    predicate: Callable[[dict[str, Any]], bool] | None
    future: asyncio.Future[Received] = field(repr=False)


class EmbeddedCsms(CsmsCalls):
    """A small CSMS: scripted answers to stations, CSMS-initiated CALLs, a journal of all it got."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        path: str = "/ocpp",
        heartbeat_interval_s: int = 300,
        boot_statuses: Sequence[str] = ("Accepted",),
        boot_retry_interval_s: int = 10,
        response_timeout_s: float = 30.0,
        accept_id_token: Callable[[str], bool] | None = None,
        clock: Clock | None = None,
        on_received: Callable[[Received], None] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        basic_auth: Mapping[str, str] | None = None,
        versions: Sequence[str] = (SUBPROTOCOL,),
        compression: bool = False,
    ) -> None:
        """`boot_statuses` scripts the n-th BootNotification per station; the last one repeats.

        `compression`: accept permessage-deflate (RFC 7692) when a station offers it. Off by default: the
        embedded CSMS serves stations on loopback or a LAN, where compressing every frame only costs CPU
        and ~70 KiB of zlib state per connection (bench/bench_ocpp_fleet.py), and uncompressed frames
        are what a packet capture of a test shows. Stations offer it by default
        (`ocpp.websocket_compression`): a real CSMS over a cellular link may well accept.

        `versions`: the OCPP subprotocols served, in the CSMS's order of preference (`ocpp2.0.1`,
        `ocpp1.6`); of those a station offers, the first here wins.

        Security (OCPP 2.0.1 part 2 A00): `ssl_context` serves wss:// (profile 2; require client certificates
        in the context for profile 3); `basic_auth` maps station id → password and refuses other
        connections with HTTP 401 (profiles 1 and 2).
        """
        if not versions or any(v not in SUPPORTED_VERSIONS for v in versions):
            raise ConfigError(f"versions must be non-empty, from {list(SUPPORTED_VERSIONS)}")
        self.versions = tuple(versions)
        self.compression = compression
        unknown = [s for s in boot_statuses if s not in BOOT_STATUSES]
        if not boot_statuses or unknown:
            raise ConfigError(f"boot_statuses must be non-empty, from {sorted(BOOT_STATUSES)}")
        self._host, self._port, self._path = host, port, "/" + path.strip("/")
        self.heartbeat_interval_s = heartbeat_interval_s
        self.boot_statuses = tuple(boot_statuses)
        self.boot_retry_interval_s = boot_retry_interval_s
        self.response_timeout_s = response_timeout_s
        self.accept_id_token = accept_id_token or (lambda _token: True)
        self.clock: Clock = clock or LoopClock()
        self._on_received = on_received
        self.internal_errors: list[Exception] = []  # our own bugs, caught so serving goes on
        self._server: Server | None = None
        self._sessions: dict[str, StationSession] = {}
        self._journal: list[Received] = []
        self._waiters: list[_Waiter] = []
        self._connect_waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._boots: dict[str, int] = {}
        self._remote_start_ids = itertools.count(1)
        self._ssl = ssl_context
        self.basic_auth = dict(basic_auth) if basic_auth is not None else None  # may be changed live

    def _select_subprotocol(self, _: ServerConnection, offered: Sequence[str]) -> Subprotocol | None:
        return next((Subprotocol(v) for v in self.versions if v in offered), None)

    # -- lifecycle --

    async def start(self) -> None:
        if self._server is not None:
            return
        self._server = await serve(
            self._serve_connection,
            self._host,
            self._port,
            subprotocols=[Subprotocol(v) for v in self.versions],
            select_subprotocol=self._select_subprotocol,
            process_request=self._check_path,
            # Keep-alive is the station's job (OCPPCommCtrlr.WebSocketPingInterval); server pings
            # would also time out spuriously when a virtual-time loop jumps ahead.
            ping_interval=None,
            ssl=self._ssl,
            compression="deflate" if self.compression else None,
        )
        self._port = self._server.sockets[0].getsockname()[1]
        log.info("csms_started", url=self.url)

    async def stop(self) -> None:
        """Close every station connection and the listening socket."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()  # 1001 going away to every station, then handlers finish
        await server.wait_closed()
        futures: list[asyncio.Future[Any]] = [w.future for w in self._waiters]
        futures += [f for fs in self._connect_waiters.values() for f in fs]
        for future in futures:
            if not future.done():
                future.set_exception(ProtocolError("CSMS stopped"))
        log.info("csms_stopped")

    async def __aenter__(self) -> EmbeddedCsms:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        """Endpoint to give stations; a station connects to `url + "/" + station_id`."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        scheme = "wss" if self._ssl is not None else "ws"
        return f"{scheme}://{host}:{self._port}{self._path}"

    @property
    def connected_stations(self) -> frozenset[str]:
        return frozenset(self._sessions)

    async def wait_connected(self, station_id: str, timeout_s: float = 10.0) -> None:
        """Return once `station_id` has an open connection (at once if it already has)."""
        if station_id in self._sessions:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._connect_waiters.setdefault(station_id, []).append(future)
        try:
            async with asyncio.timeout(timeout_s):
                await future
        except TimeoutError:
            raise TimeoutError(f"{station_id} did not connect within {timeout_s} s") from None
        finally:
            self._connect_waiters[station_id].remove(future)

    def _check_path(self, connection: ServerConnection, request: Request) -> Response | None:
        # OCPP-J part 4 §3.3: a station identity we cannot use gets HTTP 404.
        if station_id_from_path(request.path) is None:
            log.warning("csms_rejected_connection", reason="bad station identity", path=request.path[:120])
            return connection.respond(HTTPStatus.NOT_FOUND, "URL must end in /<station id>\n")
        if self.basic_auth is not None and not self._authorized(request):
            log.warning("csms_rejected_connection", reason="basic auth failed", path=request.path[:120])
            response = connection.respond(HTTPStatus.UNAUTHORIZED, "Basic authentication required\n")
            response.headers["WWW-Authenticate"] = 'Basic realm="ocpp"'
            return response
        return None

    def _authorized(self, request: Request) -> bool:
        """RFC 7617 Basic auth; OCPP 2.0.1 A00.FR.2xx: the user name is the station identity."""
        station_id = station_id_from_path(request.path)
        header = request.headers.get("Authorization", "")
        if station_id is None or not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        expected = (self.basic_auth or {}).get(station_id)
        return user == station_id and expected is not None and hmac.compare_digest(password, expected)

    async def _serve_connection(self, connection: ServerConnection) -> None:
        station_id = station_id_from_path(connection.request.path if connection.request else "")
        if station_id is None:  # _check_path already refused it
            return
        if connection.subprotocol not in self.versions:
            # OCPP-J part 4 §3.3: complete the handshake without a subprotocol, then close at once.
            log.warning("csms_rejected_connection", reason="no supported subprotocol", station_id=station_id)
            await connection.close(
                CloseCode.PROTOCOL_ERROR, f"subprotocol required: {', '.join(self.versions)}"
            )
            return
        session_type = StationSession16 if connection.subprotocol == V16_SUBPROTOCOL else StationSession
        session = session_type(station_id, connection, self)
        previous = self._sessions.get(station_id)
        self._sessions[station_id] = session
        if previous is not None:  # the newest connection of an identity wins
            log.warning("csms_connection_replaced", station_id=station_id)
            await previous._connection.close(reason="replaced by a new connection")
        log.info("station_connected", station_id=station_id)
        for future in self._connect_waiters.get(station_id, []):
            if not future.done():
                future.set_result(None)
        try:
            await session.serve()
        finally:
            if self._sessions.get(station_id) is session:
                del self._sessions[station_id]
            log.info("station_disconnected", station_id=station_id, code=connection.close_code)

    # -- what stations sent --

    def _record(self, station_id: str, msg: Call) -> None:
        item = Received(station_id, msg.action, msg.payload, self.clock.now(), msg.unique_id)
        self._journal.append(item)
        for waiter in list(self._waiters):
            if waiter.future.done() or (waiter.station_id, waiter.action) != (station_id, msg.action):
                continue
            try:
                matched = waiter.predicate is None or waiter.predicate(item.payload)
            except Exception as exc:  # the caller's predicate failed: tell the caller
                waiter.future.set_exception(exc)
                continue
            if matched:
                waiter.future.set_result(item)
        if self._on_received is not None:
            self._on_received(item)

    def received(self, station_id: str | None = None, action: str | None = None) -> list[Received]:
        """Everything received, in arrival order, optionally filtered."""
        return [
            r
            for r in self._journal
            if (station_id is None or r.station_id == station_id) and (action is None or r.action == action)
        ]

    async def wait_for(
        self,
        station_id: str,
        action: str,
        predicate: Callable[[dict[str, Any]], bool] | None = None,
        timeout_s: float = 10.0,
        *,
        since: int = 0,
    ) -> Received:
        """The first matching message at journal position >= `since`, waiting if none yet.

        Past messages count, so there is no race with a message that arrived just before the
        call; pass `since=len(csms.received())` to wait for a new one. Raises TimeoutError.
        """
        for item in self._journal[since:]:
            if (item.station_id, item.action) == (station_id, action) and (
                predicate is None or predicate(item.payload)
            ):
                return item
        waiter = _Waiter(station_id, action, predicate, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(timeout_s):
                return await waiter.future
        except TimeoutError:
            seen = [r.action for r in self.received(station_id)]
            raise TimeoutError(
                f"no matching {action} from {station_id} within {timeout_s} s; got {seen}"
            ) from None
        finally:
            self._waiters.remove(waiter)

    def transactions(self, station_id: str) -> dict[str, list[dict[str, Any]]]:
        """TransactionEvent payloads grouped by transactionId, each list in arrival order."""
        grouped: dict[str, list[dict[str, Any]]] = {}
        for item in self.received(station_id, "TransactionEvent"):
            grouped.setdefault(item.payload["transactionInfo"]["transactionId"], []).append(item.payload)
        return grouped

    # -- answer policy --

    def _next_boot_answer(self, station_id: str) -> tuple[str, int]:
        count = self._boots.get(station_id, 0)
        self._boots[station_id] = count + 1
        status = self.boot_statuses[min(count, len(self.boot_statuses) - 1)]
        # B01/B02: `interval` is the heartbeat interval once Accepted, else the retry delay.
        interval_s = self.heartbeat_interval_s if status == "Accepted" else self.boot_retry_interval_s
        return status, interval_s

    def _id_token_info(self, id_token: Mapping[str, Any]) -> dict[str, str]:
        accepted = self.accept_id_token(str(id_token.get("id_token", "")))
        return {"status": "Accepted" if accepted else "Invalid"}

    # -- CSMS-initiated CALLs (never called from inside an inbound handler; typed helpers: CsmsCalls) --

    async def call(self, station_id: str, action: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Send any CALL (camelCase payload, schema-checked both ways); return the raw response.

        Raises ProtocolError when the station is not connected, times out, disconnects or the
        request/response is not schema-valid, and CsmsCallError when it answers with CALLERROR.
        """
        session = self._sessions.get(station_id)
        if session is None:
            raise ProtocolError(f"station {station_id!r} is not connected")
        return await session.call_raw(action, dict(payload), self.response_timeout_s)


async def run_csms(
    host: str = "127.0.0.1",
    port: int = 9000,
    *,
    path: str = "/ocpp",
    heartbeat_interval_s: int = 300,
    echo: Callable[[str], None] = print,
) -> None:
    """Serve until cancelled, echoing one line per received message."""
    csms = EmbeddedCsms(
        host=host,
        port=port,
        path=path,
        heartbeat_interval_s=heartbeat_interval_s,
        on_received=lambda item: echo(format_received(item)),
    )
    async with csms:
        echo(f"CSMS listening on {csms.url}/<station id> (subprotocol {SUBPROTOCOL})")
        await asyncio.Event().wait()  # until the caller cancels us
