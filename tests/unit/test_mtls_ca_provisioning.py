"""global_cp/ca.py: the global makes each builtin mTLS backend's CA Secrets, once, and never replaces them."""

from __future__ import annotations

from typing import Any

import anyio
from google.protobuf import wrappers_pb2

from global_cp.ca import CaProvisioner
from meshgate.api.system.v1alpha1 import secret_pb2
from meshgate.mtls import load_ca
from meshgate.resources import codec
from meshgate.resources.model import Meta, Resource, ResourceKey
from meshgate.store import MemoryStore
from meshgate.store.protocol import NotFoundError
from meshgate.testing.factory import mtls_mesh, resource
from tests.support.wait import eventually


def mesh(name: str, *, enabled: str = "ca-1", backend_type: str = "builtin") -> Resource:
    return resource(mtls_mesh(name, enabled=enabled, backend_type=backend_type), check=False)


async def secret(store: MemoryStore, mesh: str, name: str) -> bytes | None:
    try:
        found = await store.get(ResourceKey("Secret", mesh, name))
    except NotFoundError:
        return None
    spec = found.spec
    assert isinstance(spec, secret_pb2.Secret)
    return bytes(spec.data.value)


async def test_a_builtin_backend_gets_a_ca_under_kumas_secret_names() -> None:
    store = MemoryStore()
    await store.create(mesh("a"))
    await CaProvisioner(store).reconcile()
    cert = await secret(store, "a", "a.ca-builtin-cert-ca-1")
    key = await secret(store, "a", "a.ca-builtin-key-ca-1")
    assert cert is not None
    assert key is not None
    assert load_ca(cert, key).certificate.subject.rfc4514_string() == "CN=a,O=meshgate"


async def test_existing_ca_secrets_are_never_replaced() -> None:
    store = MemoryStore()
    await store.create(mesh("a"))
    provisioner = CaProvisioner(store)
    await provisioner.reconcile()
    before = (await secret(store, "a", "a.ca-builtin-cert-ca-1"), await secret(store, "a", "a.ca-builtin-key-ca-1"))
    await provisioner.reconcile()
    after = (await secret(store, "a", "a.ca-builtin-cert-ca-1"), await secret(store, "a", "a.ca-builtin-key-ca-1"))
    assert after == before


async def test_a_lost_certificate_is_remade_for_the_surviving_key() -> None:
    store = MemoryStore()
    await store.create(mesh("a"))
    provisioner = CaProvisioner(store)
    await provisioner.reconcile()
    key = await secret(store, "a", "a.ca-builtin-key-ca-1")
    await store.delete(ResourceKey("Secret", "a", "a.ca-builtin-cert-ca-1"))
    await provisioner.reconcile()
    cert = await secret(store, "a", "a.ca-builtin-cert-ca-1")
    assert cert is not None
    assert key is not None
    load_ca(cert, key)  # the new certificate belongs to the old key
    assert await secret(store, "a", "a.ca-builtin-key-ca-1") == key


async def test_a_certificate_without_its_key_is_left_alone() -> None:
    store = MemoryStore()
    await store.create(mesh("a"))
    spec = secret_pb2.Secret(data=wrappers_pb2.BytesValue(value=b"user-made"))
    await store.create(Resource("Secret", Meta(name="a.ca-builtin-cert-ca-1", mesh="a"), spec))
    await CaProvisioner(store).reconcile()
    assert await secret(store, "a", "a.ca-builtin-cert-ca-1") == b"user-made"
    assert await secret(store, "a", "a.ca-builtin-key-ca-1") is None


async def test_provided_backends_get_nothing() -> None:
    store = MemoryStore()
    await store.create(mesh("p", backend_type="provided"))
    await CaProvisioner(store).reconcile()
    assert [s async for s in _secrets(store)] == []


async def _secrets(store: MemoryStore) -> Any:
    for r in (await store.list("Secret")).items:
        yield r


async def test_the_task_follows_meshes_created_later() -> None:
    store = MemoryStore()
    async with anyio.create_task_group() as tg:
        await tg.start(CaProvisioner(store).run)
        await store.create(mesh("late"))

        async def made() -> bool:
            return await secret(store, "late", "late.ca-builtin-key-ca-1") is not None and (
                await secret(store, "late", "late.ca-builtin-cert-ca-1") is not None
            )

        await eventually(made, what="CA secrets of a Mesh created after start")
        tg.cancel_scope.cancel()


def test_mesh_validation_accepts_a_builtin_backend_and_names_a_missing_one() -> None:
    assert codec.validate(mesh("a")) == []
    violations = codec.validate(mesh("a", enabled="nope"))
    assert [(str(v.field), v.message) for v in violations] == [
        ("mtls.enabledBackend", "has to be set to one of the backends in the mesh")
    ]
