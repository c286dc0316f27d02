"""Security profiles 1-3 against the embedded CSMS over real loopback TLS (certificates made by openssl)."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest
import structlog
from pki import make_pki  # tests/pki.py

from chargeagent.clock import LoopClock
from chargeagent.config import load_settings
from chargeagent.errors import ConfigError
from simulators.csms import EmbeddedCsms
from station.agent import StationAgent
from station.connection import backoff_s

PASSWORD = "correct-horse-battery-staple"  # 28 chars: within OCPP's 16-40


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CSMS root CA, a server certificate for 127.0.0.1, a station certificate, and an unrelated CA."""
    return make_pki(tmp_path_factory.mktemp("pki"), {"station": "SEC-3"})


def server_context(pki: Path, *, client_certs: bool) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki / "server.crt", pki / "server.key")
    if client_certs:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(pki / "ca.crt")
    return context


async def boots(csms: EmbeddedCsms, station_id: str, ocpp: dict[str, object], wait_s: float = 5.0) -> bool:
    """Run a station against `csms`; True if its BootNotification arrived within `wait_s`."""
    settings = load_settings(
        overrides={"station": {"id": station_id}, "ocpp": {"csms_url": csms.url, **ocpp}}
    )
    agent = StationAgent(settings, clock=LoopClock(), bms_factory=lambda: pytest.fail("no session expected"))
    since = len(csms.received())
    task = asyncio.create_task(agent.run())
    try:
        await csms.wait_for(station_id, "BootNotification", timeout_s=wait_s, since=since)
        return True
    except TimeoutError:
        return False
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_profile_1_basic_auth_accepts_the_right_password_and_never_logs_it(monkeypatch):
    monkeypatch.setenv("SEC_PW", PASSWORD)
    async with EmbeddedCsms(basic_auth={"SEC-1": PASSWORD}) as csms:
        with structlog.testing.capture_logs() as logs:
            assert await boots(csms, "SEC-1", {"security_profile": 1, "password_env": "SEC_PW"})
    assert PASSWORD not in repr(logs)


async def test_profile_1_wrong_password_is_refused_and_the_station_keeps_retrying(monkeypatch):
    monkeypatch.setenv("SEC_PW", "wrong-password-but-long-enough")
    async with EmbeddedCsms(basic_auth={"SEC-1": PASSWORD}) as csms:
        with structlog.testing.capture_logs() as logs:
            assert not await boots(
                csms,
                "SEC-1",
                {
                    "security_profile": 1,
                    "password_env": "SEC_PW",
                    "reconnect_min_s": 0.2,
                    "reconnect_random_s": 0.0,
                },
                2.0,
            )
    failures = [entry for entry in logs if entry["event"] == "csms_connection_failed"]
    assert len(failures) >= 2
    assert "401" in failures[0]["error"]


async def test_profile_2_tls_verifies_the_csms_against_the_configured_root(monkeypatch, pki):
    monkeypatch.setenv("SEC_PW", PASSWORD)
    ocpp = {
        "security_profile": 2,
        "password_env": "SEC_PW",
        "reconnect_min_s": 0.2,
        "reconnect_random_s": 0.0,
    }
    async with EmbeddedCsms(
        ssl_context=server_context(pki, client_certs=False), basic_auth={"SEC-2": PASSWORD}
    ) as csms:
        assert csms.url.startswith("wss://")
        assert await boots(csms, "SEC-2", {**ocpp, "ca_file": str(pki / "ca.crt")})
        with structlog.testing.capture_logs() as logs:
            assert not await boots(csms, "SEC-2", {**ocpp, "ca_file": str(pki / "other-ca.crt")}, 1.0)
    assert any("CERTIFICATE_VERIFY_FAILED" in entry.get("error", "") for entry in logs)
    assert any(e["event"] == "security_event" and e["type"] == "InvalidCsmsCertificate" for e in logs)


async def test_profile_3_mutual_tls_needs_the_station_certificate(pki):
    base = {"ca_file": str(pki / "ca.crt"), "reconnect_min_s": 0.2, "reconnect_random_s": 0.0}
    async with EmbeddedCsms(ssl_context=server_context(pki, client_certs=True)) as csms:
        with_cert = {**base, "security_profile": 3, "cert_file": str(pki / "station.crt"),
                     "key_file": str(pki / "station.key")}  # fmt: skip
        assert await boots(csms, "SEC-3", with_cert)
        without_cert = {**base, "security_profile": 0}  # plain TLS, no client certificate
        assert not await boots(csms, "SEC-3B", without_cert, 1.0)


@pytest.mark.parametrize(
    ("ocpp", "message"),
    [
        (
            {"security_profile": 2, "password_env": "X"},
            "ocpp.csms_url: security profile 2 needs a wss:// URL",
        ),
        ({"security_profile": 1}, "ocpp.password_env:"),
        ({"security_profile": 3, "csms_url": "wss://h/ocpp"}, "ocpp.cert_file/key_file:"),
    ],
)
def test_inconsistent_security_settings_fail_at_start_naming_the_key(ocpp, message):
    with pytest.raises(ConfigError, match=message.replace("/", "/")):
        load_settings(overrides={"ocpp": ocpp})


def test_a_short_password_is_refused_before_connecting(monkeypatch):
    monkeypatch.setenv("SEC_PW", "short")
    settings = load_settings(overrides={"ocpp": {"security_profile": 1, "password_env": "SEC_PW"}})
    with pytest.raises(ConfigError, match="16-40 characters"):
        StationAgent(settings, clock=LoopClock(), bms_factory=lambda: pytest.fail("unused"))


def test_reconnect_backoff_doubles_up_to_the_maximum_plus_jitter():
    import random

    settings = load_settings(overrides={"ocpp": {"reconnect_min_s": 2, "reconnect_max_s": 30,
                                                 "reconnect_random_s": 1}})  # fmt: skip
    rng = random.Random(7)
    delays = [backoff_s(attempt, settings.ocpp, rng) for attempt in range(6)]
    for attempt, delay in enumerate(delays):
        base = min(2 * 2**attempt, 30)
        assert base <= delay <= base + 1


async def test_failed_authentication_is_reported_as_a_security_event_once_the_csms_accepts_us(monkeypatch):
    monkeypatch.setenv("SEC_PW", PASSWORD)
    async with EmbeddedCsms(basic_auth={"SEC-4": "an-older-password-16+"}) as csms:
        settings = load_settings(
            overrides={
                "station": {"id": "SEC-4"},
                "ocpp": {"csms_url": csms.url, "security_profile": 1, "password_env": "SEC_PW",
                         "reconnect_min_s": 0.2, "reconnect_random_s": 0.0},
            }
        )  # fmt: skip
        agent = StationAgent(settings, clock=LoopClock(), bms_factory=lambda: pytest.fail("unused"))
        task = asyncio.create_task(agent.run())
        try:
            await asyncio.sleep(0.5)  # refused with 401 at least once
            assert not csms.received("SEC-4")
            csms.basic_auth = {"SEC-4": PASSWORD}  # the operator fixes the password on the CSMS
            await csms.wait_for(
                "SEC-4",
                "SecurityEventNotification",
                lambda p: p["type"] == "FailedToAuthenticateAtCsms",
                timeout_s=10,
            )
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        types = [r.payload["type"] for r in csms.received("SEC-4", "SecurityEventNotification")]
    assert types[0] == "StartupOfTheDevice"
    assert "FailedToAuthenticateAtCsms" in types


async def test_a_csms_that_stops_answering_pings_is_dropped_and_reconnected():
    connections = []

    async with EmbeddedCsms() as csms:
        settings = load_settings(
            overrides={
                "station": {"id": "PING-1"},
                "ocpp": {"csms_url": csms.url, "websocket_ping_interval_s": 0.3,
                         "reconnect_min_s": 0.1, "reconnect_random_s": 0.0},
            }
        )  # fmt: skip
        agent = StationAgent(settings, clock=LoopClock(), bms_factory=lambda: pytest.fail("unused"))
        with structlog.testing.capture_logs() as logs:
            task = asyncio.create_task(agent.run())
            try:
                await csms.wait_connected("PING-1")
                await csms.wait_for("PING-1", "StatusNotification", timeout_s=5)
                connections.append(csms._sessions["PING-1"])
                connections[0]._connection.transport.pause_reading()  # hung CSMS: TCP up, nothing read
                for _ in range(80):
                    await asyncio.sleep(0.1)
                    session = csms._sessions.get("PING-1")
                    if session is not None and session is not connections[0]:
                        break
                connections.append(csms._sessions.get("PING-1"))
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                connections[0]._connection.transport.resume_reading()
    assert connections[1] is not None
    assert connections[1] is not connections[0]  # the station gave up on the silent link and reconnected
    assert any(e["event"] == "csms_connection_lost" for e in logs)


@pytest.mark.parametrize(
    ("csms_accepts", "station_offers", "negotiated"),
    [(True, True, True), (False, True, False), (True, False, False)],
)
async def test_permessage_deflate_is_used_only_when_both_ends_want_it(
    csms_accepts: bool, station_offers: bool, negotiated: bool
) -> None:
    """`ocpp.websocket_compression` (station) and `EmbeddedCsms(compression=...)`: RFC 7692 is negotiated
    in the handshake; a TransactionEvent-sized exchange works either way."""
    sid = f"DEFLATE-{int(csms_accepts)}{int(station_offers)}"
    async with EmbeddedCsms(compression=csms_accepts) as csms:
        ocpp = {"csms_url": csms.url, "websocket_compression": station_offers}
        settings = load_settings(overrides={"station": {"id": sid}, "ocpp": ocpp})
        agent = StationAgent(settings, clock=LoopClock(), bms_factory=lambda: pytest.fail("unused"))
        task = asyncio.create_task(agent.run())
        try:
            await csms.wait_for(sid, "StatusNotification", timeout_s=10)
            connection = csms._sessions[sid]._connection
            extensions = connection.request.headers.get("Sec-WebSocket-Extensions", "")
            answered = connection.response.headers.get("Sec-WebSocket-Extensions", "")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert ("permessage-deflate" in extensions) is station_offers
        assert ("permessage-deflate" in answered) is negotiated
