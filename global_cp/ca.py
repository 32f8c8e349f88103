"""The global's builtin CAs: every Mesh with a `builtin` mTLS backend gets its CA Secrets (Kuma 2.7 `EnsureCAs`).

For each builtin backend of each Mesh, the global makes sure two mesh Secrets exist, named as Kuma names them:
`<mesh>.ca-builtin-cert-<backend>` (PEM certificate) and `<mesh>.ca-builtin-key-<backend>` (PEM key). They sync
to zones like any Secret, and each zone signs its proxies' leaf certificates with them (meshgate/mtls).

A CA is never replaced: an existing Secret is never written, since a new CA would break every certificate the
old one signed. The key is written first, so two writers racing (global replicas on a shared store) agree on
the key, whichever wins; the certificate is then made for the stored key. A certificate whose key Secret is
gone cannot be repaired without replacing the CA, so it is logged and left alone.

Level-triggered: any Mesh or Secret change (a Secret deleted by hand included) re-checks every Mesh.
"""

from __future__ import annotations

import anyio
import anyio.abc
import structlog
from google.protobuf import wrappers_pb2

from meshgate.api.system.v1alpha1 import secret_pb2
from meshgate.mtls import MtlsError, builtin_ca_secret_names, generate_ca
from meshgate.resources import kinds
from meshgate.resources.model import Meta, Resource, ResourceKey
from meshgate.store.protocol import AlreadyExistsError, NotFoundError, ResourceStore, iter_all
from meshgate.store.watch import WatchLog, reconcile_forever

__all__ = ["CaProvisioner"]

log = structlog.get_logger(__name__)

_WATCHED_KINDS = frozenset({kinds.MESH, kinds.SECRET})


def _secret(mesh: str, name: str, data: bytes) -> Resource:
    return Resource(
        kinds.SECRET, Meta(name=name, mesh=mesh), secret_pb2.Secret(data=wrappers_pb2.BytesValue(value=data))
    )


def _data(secret: Resource) -> bytes:
    spec = secret.spec
    assert isinstance(spec, secret_pb2.Secret)
    return bytes(spec.data.value)


class CaProvisioner:
    def __init__(self, store: ResourceStore) -> None:
        self._store = store

    async def _get(self, mesh: str, name: str) -> Resource | None:
        try:
            return await self._store.get(ResourceKey(kinds.SECRET, mesh, name))
        except NotFoundError:
            return None

    async def _create(self, mesh: str, name: str, data: bytes) -> Resource:
        """Creates the Secret, or returns the one another writer created first."""
        try:
            return await self._store.create(_secret(mesh, name, data))
        except AlreadyExistsError:
            found = await self._get(mesh, name)
            if found is None:
                raise
            return found

    async def ensure(self, mesh: str, backend: str) -> None:
        """The CA Secrets of one builtin backend, created when missing; existing ones are never touched."""
        cert_name, key_name = builtin_ca_secret_names(mesh, backend)
        cert = await self._get(mesh, cert_name)
        key = await self._get(mesh, key_name)
        if cert is not None and key is not None:
            return
        if key is None:
            if cert is not None:
                log.error("ca.key_missing", mesh=mesh, backend=backend, secret=key_name)
                return
            ca = generate_ca(mesh)
            key = await self._create(mesh, key_name, ca.key_pem)
        try:
            ca = generate_ca(mesh, key_pem=_data(key))
        except MtlsError as exc:
            log.error("ca.key_unusable", mesh=mesh, backend=backend, secret=key_name, error=str(exc))
            return
        await self._create(mesh, cert_name, ca.cert_pem)
        log.info("ca.created", mesh=mesh, backend=backend, secret=cert_name)

    async def reconcile(self) -> None:
        """Every builtin backend of every Mesh (Kuma ensures all of them, not only the enabled one)."""
        async for mesh in iter_all(self._store, kinds.MESH):
            spec = mesh.spec
            for backend in spec.mtls.backends:  # type: ignore[attr-defined]
                if backend.type == "builtin" and backend.name:
                    await self.ensure(mesh.meta.name, backend.name)

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Reconciles at once and after every Mesh or Secret change until cancelled (meshgate.store.watch)."""
        await reconcile_forever(
            self._store,
            _WATCHED_KINDS,
            lambda _: self.reconcile(),
            log=WatchLog(log, "ca.reconcile_failed"),
            task_status=task_status,
        )
