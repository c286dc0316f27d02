"""DeviceStore: values survive closing and reopening the SQLite file; one row per variable."""

import sqlite3

from station.device_store import DeviceStore
from station.protocol.device_types import Change, ComponentRef, VariableRef

COMM = ComponentRef("OCPPCommCtrlr")


def change(name: str, value: str, instance: str | None = None, component: ComponentRef = COMM) -> Change:
    return Change(component, VariableRef(name, instance), value, persistent=True)


def test_saved_values_are_loaded_after_reopening(tmp_path):
    path = tmp_path / "CS1" / "device_model.sqlite3"
    store = DeviceStore(path)
    store.save(change("HeartbeatInterval", "30"))
    store.save(change("MessageAttempts", "5", "TransactionEvent"))
    store.save(change("AvailabilityState", "Available", component=ComponentRef("EVSE", evse_id=1)))
    store.close()

    reopened = DeviceStore(path)
    assert reopened.load() == [
        (COMM, VariableRef("HeartbeatInterval"), "30"),
        (COMM, VariableRef("MessageAttempts", "TransactionEvent"), "5"),
        (ComponentRef("EVSE", evse_id=1), VariableRef("AvailabilityState"), "Available"),
    ]
    reopened.close()


def test_a_variable_is_one_row_whatever_the_spelling_and_the_last_value_wins(tmp_path):
    path = tmp_path / "device_model.sqlite3"
    store = DeviceStore(path)
    store.save(change("HeartbeatInterval", "30"))
    store.save(Change(ComponentRef("ocppcommctrlr"), VariableRef("heartbeatinterval"), "40", persistent=True))
    assert [value for *_, value in store.load()] == ["40"]
    store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
