"""Revoked token ids, one list per token type (and per mesh for data plane tokens), in Kuma's format.

The list is one resource whose bytes are the revoked `jti`s separated by commas ("id1,id2"), as Kuma keeps
`user-token-revocations`, `zone-token-revocations` and the mesh Secret `dataplane-token-revocations-<mesh>`.
A data plane list is a Secret, so it reaches zones with every other Secret and each zone refuses the token
too. Checks are synchronous against an in-memory copy that `refresh` re-reads at most every `ttl` seconds,
and at once after this process writes.
"""

from __future__ import annotations

import re
import time
from typing import Final

import anyio
import structlog

from meshgate.resources.model import Meta, Resource, ResourceKey
from meshgate.store.protocol import AlreadyExistsError, ConflictError, NotFoundError, ResourceStore
from meshgate.tokens.keys import DEFAULT_TTL, key_bytes, key_spec

__all__ = ["MAX_REVOCATIONS", "Revocations", "valid_token_id"]

log = structlog.get_logger(__name__)

# A list is one resource read on every refresh: keep it well inside one store value. Rotating the signing key
# is the answer to a larger compromise.
MAX_REVOCATIONS: Final = 10_000
_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def valid_token_id(text: str) -> bool:
    """A `jti` as meshgate and Kuma issue them (UUIDs), or anything as plain: no commas, bounded."""
    return bool(_ID.fullmatch(text))


class Revocations:
    def __init__(self, store: ResourceStore, key: ResourceKey, *, ttl: float = DEFAULT_TTL) -> None:
        self._store = store
        self.key = key
        self._ttl = ttl
        self._ids: frozenset[str] = frozenset()
        self._read_at = float("-inf")
        self._lock = anyio.Lock()

    def is_revoked(self, jti: str) -> bool:
        return jti in self._ids

    @property
    def ids(self) -> frozenset[str]:
        return self._ids

    async def refresh(self, *, force: bool = False, max_age: float | None = None) -> None:
        """Re-reads the store when the copy is older than `ttl` (or `max_age`), or always with `force`."""
        async with self._lock:
            await self._refresh_locked(force, max_age)

    async def _refresh_locked(self, force: bool, max_age: float | None = None) -> None:
        if not force and time.monotonic() - self._read_at < (self._ttl if max_age is None else max_age):
            return
        try:
            self._ids = _parse(key_bytes(await self._store.get(self.key)))
        except NotFoundError:
            self._ids = frozenset()
        self._read_at = time.monotonic()

    async def revoke(self, jti: str) -> bool:
        """Adds `jti` to the list; False when it was already there. ValueError for an id that is not one."""
        if not valid_token_id(jti):
            raise ValueError("must be a token id (jti): 1-128 letters, digits, '.', '_', ':' or '-'")
        async with self._lock:
            for _ in range(5):  # optimistic concurrency: re-read on conflict, a few times at most
                try:
                    current: Resource | None = await self._store.get(self.key)
                except NotFoundError:
                    current = None
                ids = _parse(key_bytes(current)) if current is not None else frozenset()
                if jti in ids:
                    self._ids, self._read_at = ids, time.monotonic()
                    return False
                if len(ids) >= MAX_REVOCATIONS:
                    raise ValueError(
                        f"the revocation list already holds {MAX_REVOCATIONS} ids: rotate the signing key instead"
                    )
                data = ",".join(sorted(ids | {jti})).encode()
                try:
                    if current is None:
                        meta = Meta(name=self.key.name, mesh=self.key.mesh)
                        await self._store.create(Resource(self.key.kind, meta, key_spec(self.key.kind, data)))
                    else:
                        await self._store.update(Resource(self.key.kind, current.meta, key_spec(self.key.kind, data)))
                except (AlreadyExistsError, ConflictError):
                    continue
                self._ids, self._read_at = ids | {jti}, time.monotonic()
                log.info("tokens.revoked", list=str(self.key), jti=jti)
                return True
        raise RuntimeError(f"could not update {self.key}: too many concurrent writers")


def _parse(data: bytes) -> frozenset[str]:
    text = data.decode("utf-8", errors="replace").strip()
    return frozenset(i.strip() for i in text.split(",") if i.strip())
