"""The MQTT BMS link over TLS with username/password against a real mosquitto TLS listener (issue #5).

The broker has only a TLS listener that refuses anonymous clients, so there is no plaintext path to fall
back to: a charge works with the right CA and password; a server certificate from another CA or a wrong
password is refused with a clear log line, retried, and never reaches the BMS (no session, 0 A).
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from conftest import MOSQUITTO, Mosquitto  # tests/conftest.py
from pki import make_pki  # tests/pki.py
from structlog.testing import capture_logs
from test_mqtt import PERIOD_S, command, drive, spec  # same directory

from bms_link.models import StopReason
from bms_link.mqtt import MqttBmsLink, MqttEndpoint
from chargeagent.clock import LoopClock
from chargeagent.errors import BmsLinkError
from simulators.bms_mqtt import BmsMqttNode
from simulators.pack import SimulatedBms

USER, PASSWORD = "charger", "tls-test-password-123"
pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[Mosquitto, Path]]:
    """mosquitto with one TLS listener (server cert for 127.0.0.1 by ca.crt) and a password file."""
    passwd = shutil.which("mosquitto_passwd")
    if MOSQUITTO is None or passwd is None:
        pytest.fail("mosquitto is not installed: run scripts/mosquitto.sh (scripts/test.sh does)")
    pki = make_pki(tmp_path)
    subprocess.run([passwd, "-b", "-c", str(tmp_path / "passwd"), USER, PASSWORD], check=True)
    broker = Mosquitto(MOSQUITTO, tmp_path)
    broker.write_config(
        f"listener {broker.port} 127.0.0.1\n"
        f"cafile {pki / 'ca.crt'}\ncertfile {pki / 'server.crt'}\nkeyfile {pki / 'server.key'}\n"
        f"allow_anonymous false\npassword_file {tmp_path / 'passwd'}\npersistence false\n"
        f"user {getpass.getuser()}\n"  # as root mosquitto would switch to 'mosquitto' and not read tmp files
    )
    try:
        broker.start()
        yield broker, pki
    finally:
        broker.stop()


def endpoint(broker: Mosquitto, monkeypatch: pytest.MonkeyPatch, ca: Path, password: str) -> MqttEndpoint:
    monkeypatch.setenv("TLS_TEST_MQTT_PASSWORD", password)
    return MqttEndpoint.from_url(
        f"mqtts://127.0.0.1:{broker.port}", username=USER, password_env="TLS_TEST_MQTT_PASSWORD", ca_file=ca
    )


@contextlib.asynccontextmanager
async def bms_node(ep: MqttEndpoint, station_id: str, soc: float) -> AsyncIterator[BmsMqttNode]:
    node = BmsMqttNode(SimulatedBms(spec(soc)), endpoint=ep, station_id=station_id, clock=LoopClock(),
                       period_s=PERIOD_S)  # fmt: skip
    task = asyncio.create_task(node.run())
    try:
        yield node
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_charge_runs_over_tls_with_username_and_password(tls_broker, monkeypatch) -> None:
    broker, pki = tls_broker
    ep = endpoint(broker, monkeypatch, pki / "ca.crt", PASSWORD)
    async with bms_node(ep, "TLS-1", soc=0.7995):
        link = MqttBmsLink(ep, station_id="TLS-1", clock=LoopClock())
        try:
            info = await link.start_session()
            seen = await drive(link, 2.0)
        finally:
            await link.close()
    assert info.soc == pytest.approx(0.7995, abs=0.01)
    assert seen and link.end_reason is StopReason.SOC_TARGET_REACHED


@pytest.mark.parametrize("case", ["untrusted_server_certificate", "wrong_password"])
async def test_untrusted_broker_or_wrong_password_is_refused_and_logged(
    tls_broker, monkeypatch, case
) -> None:
    broker, pki = tls_broker
    good = endpoint(broker, monkeypatch, pki / "ca.crt", PASSWORD)
    bad_ca = case == "untrusted_server_certificate"
    monkeypatch.setenv("TLS_TEST_BAD_PASSWORD", "not-the-password")
    bad = MqttEndpoint.from_url(
        f"mqtts://127.0.0.1:{broker.port}",
        username=USER,
        password_env="TLS_TEST_MQTT_PASSWORD" if bad_ca else "TLS_TEST_BAD_PASSWORD",
        ca_file=pki / ("other-ca.crt" if bad_ca else "ca.crt"),
    )
    with capture_logs() as logs:
        async with bms_node(good, "TLS-2", soc=0.5):
            link = MqttBmsLink(bad, station_id="TLS-2", clock=LoopClock(), info_timeout_s=1.5)
            try:
                with pytest.raises(BmsLinkError):
                    await link.start_session()
                await link.command(command(50.0))  # refused: no session, nothing goes out
                assert link.output_current_a == 0.0
            finally:
                await link.close()
    failures = [e for e in logs if e["event"] == "mqtt_connect_failed"]
    assert len(failures) >= 2  # retried with back-off, never connected
    reason = " ".join(str(e["error"]) for e in failures).lower()
    assert ("certificate" in reason) if bad_ca else ("not authorized" in reason or "bad user" in reason)
    assert PASSWORD not in repr(logs) and "not-the-password" not in repr(logs)
