"""The authorization cache (C10-C12) as plain function calls: updates, expiry, eviction, decisions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from station.protocol.auth_cache import AuthCache, AuthSettings, authorize_locally

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
ALICE = {"idToken": "04A1B2C3", "type": "ISO14443"}
BOB = {"idToken": "04FFEE00", "type": "ISO14443"}
DAY = 86_400.0


def cache(**kw) -> AuthCache:
    return AuthCache(b"salt" * 8, **kw)


def test_tokens_are_recognised_by_a_keyed_hash_never_stored_raw() -> None:
    c = cache()
    key, entry = c.update(ALICE, {"status": "Accepted"}, T0, DAY)
    assert entry is not None and entry.status == "Accepted"
    assert ALICE["idToken"] not in key and len(key) == 64
    assert AuthCache(b"other-salt").key(ALICE) != key  # another station cannot link the pseudonyms
    assert c.key({"idToken": "04A1B2C3", "type": "Central"}) != key  # type is part of the identity
    assert c.lookup(ALICE, T0) == "Accepted" and c.lookup(BOB, T0) is None


def test_entries_expire_at_cache_expiry_or_lifetime_whichever_is_first() -> None:
    c = cache()
    expiry = (T0 + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    c.update(ALICE, {"status": "Accepted", "cacheExpiryDateTime": expiry}, T0, DAY)
    c.update(BOB, {"status": "Accepted"}, T0, 600.0)  # AuthCacheCtrlr.LifeTime = 10 min
    assert c.lookup(ALICE, T0 + timedelta(minutes=59)) == "Accepted"
    assert c.lookup(ALICE, T0 + timedelta(hours=1)) is None and c.key(ALICE) not in c.entries
    assert c.lookup(BOB, T0 + timedelta(seconds=600)) is None
    past = (T0 - timedelta(seconds=1)).isoformat()
    assert c.update(ALICE, {"status": "Accepted", "cacheExpiryDateTime": past}, T0, DAY)[1] is None


def test_a_full_cache_drops_invalid_entries_first_then_the_least_recently_used() -> None:
    c = cache(max_entries=2)
    c.update(ALICE, {"status": "Accepted"}, T0, DAY)
    c.update(BOB, {"status": "Blocked"}, T0 + timedelta(seconds=1), DAY)
    carol = {"idToken": "CAROL", "type": "Central"}
    c.update(carol, {"status": "Accepted"}, T0 + timedelta(seconds=2), DAY)
    assert c.evict() == [c.key(BOB)]  # Blocked goes first, although Alice is older
    dave = {"idToken": "DAVE", "type": "Central"}
    c.lookup(ALICE, T0 + timedelta(seconds=3))  # Alice used again: Carol is now the least recently used
    c.update(dave, {"status": "Accepted"}, T0 + timedelta(seconds=4), DAY)
    assert c.evict() == [c.key(carol)]
    assert set(c.entries) == {c.key(ALICE), c.key(dave)}


def test_decisions_online_and_offline() -> None:
    c = cache()
    c.update(ALICE, {"status": "Accepted"}, T0, DAY)
    c.update(BOB, {"status": "Blocked"}, T0, DAY)
    default = AuthSettings()
    assert authorize_locally(c, default, ALICE, T0, online=True) is None  # ask the CSMS
    assert authorize_locally(c, AuthSettings(local_pre_authorize=True), ALICE, T0, online=True) is True
    assert authorize_locally(c, default, ALICE, T0, online=False) is True  # LocalAuthorizeOffline
    assert authorize_locally(c, default, BOB, T0, online=False) is False
    assert authorize_locally(c, default, {"idToken": "X", "type": "Central"}, T0, online=False) is False
    assert authorize_locally(c, AuthSettings(local_authorize_offline=False), ALICE, T0, online=False) is False
    assert authorize_locally(c, AuthSettings(cache_enabled=False), ALICE, T0, online=False) is False
    c.clear()
    assert authorize_locally(c, default, ALICE, T0, online=False) is False
