"""Connector status table: every allowed transition, and invalid ones raise InvalidTransition."""

import pytest

from chargeagent.errors import InvalidTransition
from station.protocol.connector import TRANSITIONS, Connector, ConnectorEvent, ConnectorStatus


@pytest.mark.parametrize(("start", "event", "end"), [(s, e, n) for (s, e), n in TRANSITIONS.items()])
def test_every_table_transition_lands_in_its_target_state(start, event, end):
    connector = Connector(evse_id=1)
    connector.status = start
    assert connector.fire(event) is end


def test_unplug_from_available_is_an_invalid_transition():
    connector = Connector(evse_id=1)
    with pytest.raises(InvalidTransition, match="unplug"):
        connector.fire(ConnectorEvent.UNPLUG)
    assert connector.status is ConnectorStatus.AVAILABLE


def test_plug_tracks_the_cable_and_occupies_the_connector():
    connector = Connector(evse_id=1)
    connector.fire(ConnectorEvent.PLUG_IN)
    assert connector.cable_plugged
    assert connector.status is ConnectorStatus.OCCUPIED
    connector.fire(ConnectorEvent.UNPLUG)
    assert not connector.cable_plugged
    assert connector.status is ConnectorStatus.AVAILABLE


def test_fault_is_reachable_from_every_state():
    for status in ConnectorStatus:
        connector = Connector(evse_id=1)
        connector.status = status
        assert connector.fire(ConnectorEvent.FAULT) is ConnectorStatus.FAULTED
