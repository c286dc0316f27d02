"""The local authorization cache (OCPP 2.0.1 part 2, C10-C12, AuthCacheCtrlr), without I/O.

Every IdTokenInfo the CSMS sends (Authorize and TransactionEvent responses) updates the cache (C10). The
cache answers when the CSMS cannot: offline with AuthCtrlr.LocalAuthorizeOffline (C12), or at once with
AuthCtrlr.LocalPreAuthorize (C12: an Accepted cached token starts without waiting for Authorize). An entry
expires at the IdTokenInfo's cacheExpiryDateTime or AuthCacheCtrlr.LifeTime after it was last updated,
whichever is first. When full, entries that are not Accepted go first, then the least recently used (C10).
ClearCache empties it (C11).

Tokens are kept only as keyed hashes (HMAC-SHA256 with a per-station random salt) of type + value: the
cache can recognise a token it has seen, but never reveals one (idTokens are personal data).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from station.protocol.charging_profile import parse_time

ACCEPTED = "Accepted"


@dataclass(frozen=True, slots=True)
class CacheEntry:
    status: str  # AuthorizationStatusEnumType
    expires: datetime
    used: datetime  # last update or successful lookup (for least-recently-used eviction)


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """AuthCtrlr / AuthCacheCtrlr values (device model; the agent updates them on a SetVariables)."""

    cache_enabled: bool = True  # AuthCacheCtrlr.Enabled
    lifetime_s: float = 86_400.0  # AuthCacheCtrlr.LifeTime
    local_authorize_offline: bool = True  # AuthCtrlr.LocalAuthorizeOffline
    local_pre_authorize: bool = False  # AuthCtrlr.LocalPreAuthorize


class AuthCache:
    """Token hash -> `CacheEntry`; callers persist `entries` (see station.auth_store)."""

    def __init__(self, salt: bytes, *, max_entries: int = 1000) -> None:
        self._salt = salt
        self.max_entries = max_entries  # AuthCacheCtrlr.Storage, in entries
        self.entries: dict[str, CacheEntry] = {}

    def key(self, id_token: dict[str, Any]) -> str:
        """The token's cache key: a keyed hash, never the token itself."""
        text = f"{id_token.get('type', '')}:{id_token.get('idToken', '')}".encode()
        return hmac.new(self._salt, text, hashlib.sha256).hexdigest()

    def update(
        self, id_token: dict[str, Any], info: dict[str, Any], now: datetime, lifetime_s: float
    ) -> tuple[str, CacheEntry | None]:
        """C10: remember what the CSMS said about `id_token`; (key, entry or None when nothing is kept)."""
        key = self.key(id_token)
        expires = now + timedelta(seconds=lifetime_s)
        if "cacheExpiryDateTime" in info:
            expires = min(expires, parse_time(str(info["cacheExpiryDateTime"])))
        if expires <= now:
            self.entries.pop(key, None)
            return key, None
        entry = CacheEntry(str(info.get("status", "Unknown")), expires, now)
        self.entries[key] = entry
        return key, entry

    def evictions(self) -> list[str]:
        """Keys to drop so the cache fits `max_entries`: not-Accepted first, then least recently used."""
        excess = len(self.entries) - self.max_entries
        if excess <= 0:
            return []
        order = sorted(self.entries, key=lambda k: (self.entries[k].status == ACCEPTED, self.entries[k].used))
        return order[:excess]

    def evict(self) -> list[str]:
        dropped = self.evictions()
        for key in dropped:
            del self.entries[key]
        return dropped

    def lookup(self, id_token: dict[str, Any], now: datetime) -> str | None:
        """The cached status if the entry is still valid (expired entries are dropped), else None."""
        key = self.key(id_token)
        entry = self.entries.get(key)
        if entry is None:
            return None
        if now >= entry.expires:
            del self.entries[key]
            return None
        self.entries[key] = CacheEntry(entry.status, entry.expires, now)
        return entry.status

    def clear(self) -> None:
        self.entries.clear()


def authorize_locally(
    cache: AuthCache, settings: AuthSettings, id_token: dict[str, Any], now: datetime, *, online: bool
) -> bool | None:
    """The cache's decision, or None when the CSMS must be asked (C12).

    Online: an Accepted cached token is authorized at once only with LocalPreAuthorize; anything else asks
    the CSMS. Offline: authorized only if the cache is enabled, LocalAuthorizeOffline is set and the cached
    status is Accepted; otherwise not authorized.
    """
    status = cache.lookup(id_token, now) if settings.cache_enabled else None
    if online:
        return True if status == ACCEPTED and settings.local_pre_authorize else None
    return status == ACCEPTED and settings.local_authorize_offline
