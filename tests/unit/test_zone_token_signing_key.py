"""The global's zone token signing key (global_cp/tokens.py): created once in the store, then only read."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from google.protobuf.wrappers_pb2 import BytesValue

from global_cp.tokens import SIGNING_KEY_KIND, SIGNING_KEY_NAME, SigningKey
from meshgate.auth import issue, public_key, verify
from meshgate.resources import registry
from meshgate.resources.model import ResourceKey
from meshgate.store.factory import open_store

KEY = ResourceKey(SIGNING_KEY_KIND, "", SIGNING_KEY_NAME)


def test_the_key_is_an_internal_kind_never_synced_nor_served() -> None:
    assert SIGNING_KEY_KIND not in {d.name for d in registry.KINDS}
    assert SIGNING_KEY_NAME == "zone-token-signing-key-1"


async def test_created_on_first_need_and_kept_across_restarts(tmp_path: Path) -> None:
    store = await open_store("sqlite", data_dir=tmp_path)
    try:
        pem = await SigningKey(store).pem()
        stored = await store.get(KEY)
        assert isinstance(stored.spec, BytesValue)
        assert stored.spec.value == pem
        assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
        assert public_key(pem).key_size == 2048
    finally:
        await store.close()
    reopened = await open_store("sqlite", data_dir=tmp_path)
    try:
        # A token signed before the restart still verifies after it: the key was read, not replaced.
        token = issue(pem, "west", ["cp"], 60, 1000.0)
        again = await SigningKey(reopened).pem()
        assert again == pem
        assert verify(public_key(again), token, 1000.0).zone == "west"
    finally:
        await reopened.close()


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
async def test_replicas_racing_to_create_agree_on_one_key(backend: str, tmp_path: Path) -> None:
    """Several replicas (one SigningKey each) on one store: whoever loses the create reads the winner's key."""
    store = await open_store(backend, data_dir=tmp_path)
    try:
        replicas = [SigningKey(store) for _ in range(4)]
        pems: list[bytes] = []

        async def first_need(replica: SigningKey) -> None:
            pems.append(await replica.pem())

        async with anyio.create_task_group() as tg:
            for replica in replicas:
                tg.start_soon(first_need, replica)
        assert len(set(pems)) == 1
        stored = await store.get(KEY)
        assert isinstance(stored.spec, BytesValue)
        assert stored.spec.value == pems[0]
    finally:
        await store.close()
