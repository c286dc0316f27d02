"""Authorizing idTokens in a running agent: the CSMS when it can answer, the cache when it may (C01, C10-C12).

Wraps the sans-I/O `station.protocol.auth_cache` with its store (`station.auth_store`) and the agent's
connection: every IdTokenInfo the CSMS sends (Authorize, TransactionEvent responses) is remembered;
offline (or with LocalPreAuthorize) the cache decides. Log lines carry a pseudonym of the token (the first
12 hex digits of its keyed hash), never the token.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog

from chargeagent.clock import Clock
from chargeagent.errors import ProtocolError
from station.auth_store import FILE_NAME, PersistentAuthCache
from station.protocol.auth_cache import authorize_locally
from station.protocol.device_variables import AUTH_CACHE_ENTRIES
from station.protocol.station import Outbound, StationCore

Send = Callable[[Outbound], Awaitable[dict[str, Any]]]
log = structlog.get_logger(__name__)


class Authorizer:
    """One station's authorization: `authorize` before a start, `send_queued` for outbox deliveries."""

    def __init__(self, core: StationCore, clock: Clock, data_dir: Path | None) -> None:
        """`data_dir=None` keeps the cache in memory only (simulations)."""
        self.core = core
        self.clock = clock
        self.store = PersistentAuthCache(
            data_dir / FILE_NAME if data_dir is not None else None, max_entries=AUTH_CACHE_ENTRIES
        )

    def pseudonym(self, id_token: dict[str, Any]) -> str:
        return self.store.cache.key(id_token)[:12]

    def clear(self) -> bool:
        """C11 ClearCache: True (Accepted) when the cache is enabled and now empty."""
        if not self.core.auth.cache_enabled:
            return False
        self.store.clear()
        log.info("auth_cache_cleared")
        return True

    async def authorize(self, id_token: dict[str, Any], send: Send | None) -> bool:
        """C01/C12: ask the CSMS (`send`, None = offline) unless the cache may answer; offline, it decides."""
        local = self._local(id_token, online=send is not None)
        if local is None and send is not None:
            try:
                response = await send(Outbound("Authorize", {"idToken": id_token}))
            except ProtocolError as exc:  # lost on the way: as if offline
                log.warning("authorize_failed", error=str(exc))
                local = self._local(id_token, online=False)
            else:
                info = response.get("idTokenInfo", {})
                self.remember(id_token, info)
                log.info("authorize_response", status=info.get("status"), token=self.pseudonym(id_token))
                return bool(info.get("status") == "Accepted")
        log.info(
            "authorized_locally",
            accepted=bool(local),
            online=send is not None,
            token=self.pseudonym(id_token),
        )
        return bool(local)

    def _local(self, id_token: dict[str, Any], *, online: bool) -> bool | None:
        decision = authorize_locally(
            self.store.cache, self.core.auth, id_token, self.clock.now(), online=online
        )
        self.store.touch(id_token)
        return decision

    def remember(self, id_token: dict[str, Any], info: dict[str, Any]) -> None:
        """C10: every IdTokenInfo from the CSMS updates the cache (when it is enabled)."""
        if self.core.auth.cache_enabled:
            self.store.update(id_token, info, self.clock.now(), self.core.auth.lifetime_s)

    async def send_queued(self, send: Send, message: Outbound) -> dict[str, Any]:
        """Send one outbox message; a TransactionEvent response's idTokenInfo updates the cache (C10)."""
        response = await send(message)
        if "idTokenInfo" in response and "idToken" in message.payload:
            self.remember(message.payload["idToken"], response["idTokenInfo"])
        return response

    def close(self) -> None:
        self.store.close()
