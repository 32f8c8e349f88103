"""The three token types a control plane issues and checks, each = its signing keys + its revocation list.

    ZoneTokens       global only: zones prove their name on KDS (`zone-token-signing-key-N`, internal kind)
    UserTokens       each control plane for its own HTTP API (`user-token-signing-key-N`, internal kind)
    DataplaneTokens  per mesh: proxies prove their identity to their zone (mesh Secrets
                     `dataplane-token-signing-key-<mesh>-N` and `dataplane-token-revocations-<mesh>`, created by the
                     global and synced to zones with every Secret, so a zone verifies and issues them too)

The internal kinds (`ZoneTokenSigningKey`, `UserTokenSigningKey`, `TokenRevocations`) are deliberately not
in `meshgate.resources.registry`: everything that enumerates kinds derives from it, so they are never synced
nor served by the REST API. Checks are synchronous over cached keys and lists (`refresh` first, at most once
a second), so a hot path such as a KDS call pays no store read.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Final, TypeVar

import anyio
import anyio.abc
import structlog

from meshgate.auth import dataplane_token, user_token, zone_token
from meshgate.auth.dataplane_token import DataplaneClaims
from meshgate.auth.jwt import TokenError
from meshgate.auth.user_token import UserClaims
from meshgate.resources import kinds
from meshgate.resources.model import ResourceKey
from meshgate.store.protocol import ResourceStore, StoreError
from meshgate.tokens.keys import KeyFamily, SigningKeys
from meshgate.tokens.revocations import Revocations

__all__ = [
    "REVOCATIONS_KIND",
    "TOKEN_TYPES",
    "USER_KEY_KIND",
    "ZONE_KEY_KIND",
    "DataplaneTokens",
    "TokenType",
    "UserTokens",
    "ZoneTokens",
]

log = structlog.get_logger(__name__)

ZONE_KEY_KIND: Final = "ZoneTokenSigningKey"
USER_KEY_KIND: Final = "UserTokenSigningKey"
REVOCATIONS_KIND: Final = "TokenRevocations"
TOKEN_TYPES: Final = ("zone", "user", "dataplane")
_RETRY_AGE: Final = 0.2
_T = TypeVar("_T")


class TokenType:
    """One token type's keys and revocations (for data plane tokens: one mesh's)."""

    def __init__(self, keys: SigningKeys, revocations: Revocations) -> None:
        self.keys = keys
        self.revocations = revocations

    async def refresh(self, *, force: bool = False) -> None:
        await self.keys.refresh(force=force)
        await self.revocations.refresh(force=force)

    async def verified(self, check: Callable[[], _T]) -> _T:
        """`check()` over fresh caches; a key it does not know (just created or rotated, perhaps on another
        replica) earns one re-read, at most every `_RETRY_AGE` seconds so bad tokens cannot drive store reads."""
        await self.refresh()
        try:
            return check()
        except TokenError as exc:
            if exc.code != "bad_signature":
                raise
        await self.keys.refresh(max_age=_RETRY_AGE)
        return check()

    async def run_refresh(
        self,
        interval: float = 1.0,
        *,
        on_change: Callable[[], object] | None = None,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Keeps the cached keys and list fresh for synchronous checks (a KDS call), until cancelled; calls
        `on_change` when a refresh finds a revocation or a key change made elsewhere (another replica)."""
        task_status.started()
        while True:
            before = (self.revocations.ids, self.keys.describe())
            try:
                await self.refresh(force=True)
            except StoreError as exc:
                log.warning("tokens.refresh_failed", keys=self.keys.family.prefix, error=str(exc))
            if on_change is not None and (self.revocations.ids, self.keys.describe()) != before:
                on_change()
            await anyio.sleep(interval)

    def check_revoked(self, jti: str, name: str) -> None:
        if self.revocations.is_revoked(jti):
            raise TokenError("revoked", f"{name} {jti} is revoked")


class ZoneTokens(TokenType):
    def __init__(self, store: ResourceStore, clock: Callable[[], float] = time.time) -> None:
        super().__init__(
            SigningKeys(store, KeyFamily(ZONE_KEY_KIND, "zone-token-signing-key"), clock=clock),
            Revocations(store, ResourceKey(REVOCATIONS_KIND, "", "zone-token-revocations")),
        )
        self._clock = clock

    async def issue(self, zone: str, scope: Sequence[str], valid_for: float) -> str:
        kid, key = await self.keys.signer()
        return zone_token.issue(key, zone, scope, valid_for, self._clock(), kid=kid)

    def verify_cached(self, token: str, scope: str = "cp") -> zone_token.Claims:
        """Synchronous check over the cached keys and list (`await refresh()` first on a cold path)."""
        claims = zone_token.verify(self.keys, token, self._clock(), scope=scope)
        self.check_revoked(claims.jti, "zone token")
        return claims

    async def verify(self, token: str, scope: str = "cp") -> zone_token.Claims:
        return await self.verified(lambda: self.verify_cached(token, scope))


class UserTokens(TokenType):
    def __init__(self, store: ResourceStore, clock: Callable[[], float] = time.time) -> None:
        super().__init__(
            SigningKeys(store, KeyFamily(USER_KEY_KIND, "user-token-signing-key"), clock=clock),
            Revocations(store, ResourceKey(REVOCATIONS_KIND, "", "user-token-revocations")),
        )
        self._clock = clock

    async def issue(self, name: str, groups: Sequence[str], valid_for: float) -> str:
        kid, key = await self.keys.signer()
        return user_token.issue_user_token(key, kid, name, groups, valid_for, self._clock())

    async def verify(self, token: str) -> UserClaims:
        def check() -> UserClaims:
            claims = user_token.verify_user_token(self.keys, token, self._clock())
            self.check_revoked(claims.jti, "user token")
            return claims

        return await self.verified(check)


def dataplane_key_family(mesh: str) -> KeyFamily:
    return KeyFamily(kinds.SECRET, f"dataplane-token-signing-key-{mesh}", mesh)


def dataplane_revocations_key(mesh: str) -> ResourceKey:
    return ResourceKey(kinds.SECRET, mesh, f"dataplane-token-revocations-{mesh}")


class DataplaneTokens:
    """Per mesh. `create_keys`: the global creates a mesh's first key; a zone only reads the synced ones."""

    def __init__(self, store: ResourceStore, *, create_keys: bool, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._create = create_keys
        self._clock = clock
        self._meshes: dict[str, TokenType] = {}

    def mesh(self, mesh: str) -> TokenType:
        found = self._meshes.get(mesh)
        if found is None:
            found = self._meshes[mesh] = TokenType(
                SigningKeys(self._store, dataplane_key_family(mesh), create=self._create, clock=self._clock),
                Revocations(self._store, dataplane_revocations_key(mesh)),
            )
        return found

    def forget(self, mesh: str) -> None:
        self._meshes.pop(mesh, None)

    async def issue(
        self,
        mesh: str,
        *,
        name: str = "",
        tags: Mapping[str, Sequence[str]] | None = None,
        proxy_type: str = "",
        valid_for: float,
    ) -> str:
        """SigningKeyMissing on a zone whose global has not created the mesh's key yet."""
        kid, key = await self.mesh(mesh).keys.signer()
        return dataplane_token.issue_dataplane_token(
            key, kid, mesh=mesh, name=name, tags=tags, proxy_type=proxy_type, valid_for=valid_for, now=self._clock()
        )

    async def verify(
        self, token: str, *, mesh: str, name: str, tags: Mapping[str, Sequence[str]], proxy_type: str
    ) -> DataplaneClaims:
        """The claims, if the token is signed by `mesh`'s keys, unexpired, unrevoked and vouches for this proxy."""
        family = self.mesh(mesh)

        def check() -> DataplaneClaims:
            claims = dataplane_token.verify_dataplane_token(family.keys, token, self._clock())
            family.check_revoked(claims.jti, "dataplane token")
            dataplane_token.check_identity(claims, mesh=mesh, name=name, tags=tags, proxy_type=proxy_type)
            return claims

        return await family.verified(check)
