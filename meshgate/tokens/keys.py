"""Signing keys in the store, numbered and rotated with a grace period, as Kuma names them.

A family of keys is every resource of one kind whose name is `<prefix>-<serial>`: `zone-token-signing-key-1`,
`user-token-signing-key-2`, or for data plane tokens the mesh Secret `dataplane-token-signing-key-<mesh>-1`.
The highest serial signs; its serial is the token's `kid`. Rotation creates the next serial and marks every
older key with the label `meshgate.io/retire-at` (UNIX seconds): until then tokens it signed still verify,
afterwards they are refused, and `sweep` deletes it. Keys are never replaced in place: a replica that loses
the race to create a serial reads the winner's.

Verification is synchronous against an in-memory copy (`public_key`, a `KeySet`) that `refresh` re-reads
at most every `ttl` seconds, and at once after this process writes; so a rotation on another replica of a
shared store is seen within `ttl`.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import anyio
import structlog
from cryptography.hazmat.primitives.asymmetric import rsa
from google.protobuf import wrappers_pb2
from google.protobuf.message import Message

from meshgate.api.system.v1alpha1 import secret_pb2
from meshgate.auth.jwt import generate_key_pem, load_private_key
from meshgate.resources import kinds
from meshgate.resources.model import Meta, Resource, ResourceKey
from meshgate.store.protocol import AlreadyExistsError, ConflictError, NotFoundError, ResourceStore, iter_all

__all__ = ["LABEL_RETIRE_AT", "KeyFamily", "KeyInfo", "SigningKeyMissing", "SigningKeys", "key_bytes", "key_spec"]

log = structlog.get_logger(__name__)

LABEL_RETIRE_AT: Final = "meshgate.io/retire-at"
DEFAULT_TTL: Final = 1.0


class SigningKeyMissing(Exception):
    """No signing key exists and this process may not create one (a zone waiting for the global's)."""


def key_spec(kind: str, data: bytes) -> Message:
    """The spec that holds key (or list) bytes: Kuma's Secret for the Secret kind, BytesValue for internal kinds."""
    spec: Message = (
        secret_pb2.Secret(data=wrappers_pb2.BytesValue(value=data))
        if kind == kinds.SECRET
        else wrappers_pb2.BytesValue(value=data)
    )
    return spec


def key_bytes(resource: Resource) -> bytes:
    spec = resource.spec
    if isinstance(spec, secret_pb2.Secret):
        return bytes(spec.data.value)
    assert isinstance(spec, wrappers_pb2.BytesValue), type(spec)
    return bytes(spec.value)


@dataclass(frozen=True, slots=True)
class KeyFamily:
    """Where one token type's keys live: resources of `kind` named `<prefix>-<serial>` in `mesh`."""

    kind: str
    prefix: str
    mesh: str = ""

    def name(self, serial: int) -> str:
        return f"{self.prefix}-{serial}"

    def serial(self, name: str) -> int | None:
        match = re.fullmatch(re.escape(self.prefix) + r"-([0-9]{1,9})", name)
        return int(match.group(1)) if match else None


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What may be shown about a key: never its material."""

    kid: str
    name: str
    retire_at: int | None

    def as_json(self) -> dict[str, object]:
        return {"keyId": self.kid, "name": self.name, "retireAt": self.retire_at}


@dataclass(frozen=True, slots=True)
class _Key:
    info: KeyInfo
    private: rsa.RSAPrivateKey


class SigningKeys:
    """One family's keys: the signer, the verifying KeySet, rotation and sweeping."""

    def __init__(
        self,
        store: ResourceStore,
        family: KeyFamily,
        *,
        create: bool = True,
        ttl: float = DEFAULT_TTL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self.family = family
        self._create = create
        self._ttl = ttl
        self._clock = clock
        self._keys: dict[int, _Key] = {}
        self._read_at = float("-inf")
        # One reader or writer at a time per process: concurrent first requests wait instead of racing.
        self._lock = anyio.Lock()

    # -- reading ---------------------------------------------------------------------------------------------

    async def refresh(self, *, force: bool = False, max_age: float | None = None) -> None:
        """Re-reads the store when the copy is older than `ttl` (or `max_age`), or always with `force`."""
        async with self._lock:
            await self._refresh_locked(force, max_age)

    async def _refresh_locked(self, force: bool, max_age: float | None = None) -> None:
        if not force and time.monotonic() - self._read_at < (self._ttl if max_age is None else max_age):
            return
        keys: dict[int, _Key] = {}
        async for r in iter_all(self._store, self.family.kind, self.family.mesh or None):
            serial = self.family.serial(r.meta.name)
            if serial is None:
                continue
            previous = self._keys.get(serial)
            retire_at = _retire_at(r)
            if previous is not None and previous.info.name == r.meta.name:
                # Parsing an RSA key costs milliseconds: reuse the one we have, with the label read afresh.
                keys[serial] = _Key(KeyInfo(str(serial), r.meta.name, retire_at), previous.private)
                continue
            try:
                private = load_private_key(key_bytes(r))
            except ValueError as exc:
                log.error("tokens.key_unusable", kind=self.family.kind, name=r.meta.name, error=str(exc))
                continue
            keys[serial] = _Key(KeyInfo(str(serial), r.meta.name, retire_at), private)
        self._keys = keys
        self._read_at = time.monotonic()

    def public_key(self, kid: str) -> rsa.RSAPublicKey | None:
        """KeySet: the key with serial `kid`, unless it is unknown or past its retirement."""
        if not kid.isdigit() or len(kid) > 9:
            return None
        key = self._keys.get(int(kid))
        if key is None or (key.info.retire_at is not None and self._clock() >= key.info.retire_at):
            return None
        return key.private.public_key()

    def describe(self) -> list[KeyInfo]:
        return [k.info for _, k in sorted(self._keys.items())]

    async def signer(self) -> tuple[str, rsa.RSAPrivateKey]:
        """(kid, key) of the newest key, created first when there is none and this process may create it."""
        async with self._lock:
            await self._refresh_locked(False)
            if not self._keys:
                if not self._create:
                    raise SigningKeyMissing(
                        f"no {self.family.prefix}-* signing key exists yet"
                        + (f" in mesh {self.family.mesh!r}" if self.family.mesh else "")
                        + ": the global control plane creates it"
                    )
                await self._create_locked(1)
            serial = max(self._keys)
            return str(serial), self._keys[serial].private

    # -- writing ---------------------------------------------------------------------------------------------

    async def _create_locked(self, serial: int) -> None:
        # RSA key generation takes tens of milliseconds: off the event loop.
        pem = await anyio.to_thread.run_sync(generate_key_pem)
        name = self.family.name(serial)
        resource = Resource(self.family.kind, Meta(name=name, mesh=self.family.mesh), key_spec(self.family.kind, pem))
        try:
            await self._store.create(resource)
            log.info("tokens.signing_key.created", kind=self.family.kind, mesh=self.family.mesh, name=name)
        except AlreadyExistsError:
            # Another replica on the shared store created it first: its key is the one.
            log.info("tokens.signing_key.lost_race", kind=self.family.kind, name=name)
        await self._refresh_locked(True)

    async def rotate(self, grace_seconds: float) -> str:
        """Creates the next key (which signs from now on) and retires every older one after `grace_seconds`."""
        async with self._lock:
            await self._refresh_locked(True)
            newest = max(self._keys, default=0)
            await self._create_locked(newest + 1)
            retire_at = int(self._clock() + grace_seconds)
            for serial, key in list(self._keys.items()):
                if serial > newest or (key.info.retire_at is not None and key.info.retire_at <= retire_at):
                    continue
                await self._label(key.info.name, retire_at)
            await self._refresh_locked(True)
            log.info(
                "tokens.signing_key.rotated",
                kind=self.family.kind,
                mesh=self.family.mesh,
                kid=str(newest + 1),
                retire_at=retire_at,
            )
            return str(newest + 1)

    async def _label(self, name: str, retire_at: int) -> None:
        key = ResourceKey(self.family.kind, self.family.mesh, name)
        for _ in range(5):  # optimistic concurrency: re-read on conflict, a few times at most
            try:
                current = await self._store.get(key)
            except NotFoundError:
                return
            labels = {**current.meta.labels, LABEL_RETIRE_AT: str(retire_at)}
            try:
                await self._store.update(current.with_meta(labels=labels))
                return
            except ConflictError:
                continue  # another writer got in first
        raise RuntimeError(f"could not mark {name} for retirement: too many concurrent writers")

    async def sweep(self) -> list[str]:
        """Deletes every key past its retirement; the names deleted."""
        async with self._lock:
            await self._refresh_locked(True)
            now = self._clock()
            gone = [
                k.info.name for k in self._keys.values() if k.info.retire_at is not None and now >= k.info.retire_at
            ]
            for name in gone:
                with contextlib.suppress(NotFoundError):
                    await self._store.delete(ResourceKey(self.family.kind, self.family.mesh, name))
                log.info("tokens.signing_key.deleted", kind=self.family.kind, mesh=self.family.mesh, name=name)
            if gone:
                await self._refresh_locked(True)
            return gone


def _retire_at(r: Resource) -> int | None:
    text = r.meta.labels.get(LABEL_RETIRE_AT)
    if text is None or not text.isdigit() or len(text) > 12:
        return None
    return int(text)
