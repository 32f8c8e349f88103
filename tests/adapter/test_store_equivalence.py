"""SqliteStore and RedisStore each agree with MemoryStore on every observable result of random operations.

MemoryStore is the reference model. Both stores get the same operations; after each one the outcome
(the error type, or the returned resource without its version and times) and the full contents of
every kind must be equal. Versions are opaque, so each store's own versions are used to build "current"
and "stale" versions for conditional writes.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import anyio
import pytest
from google.protobuf import struct_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from meshgate.resources.model import Resource, ResourceKey
from meshgate.store import MemoryStore, Page, RedisStore, ResourceStore, SqliteStore, StoreError
from tests.store_support import resource, struct
from tests.support.redis_server import RedisServer, redis_server

KEYS: dict[str, list[ResourceKey]] = {
    "Mesh": [ResourceKey("Mesh", "", m) for m in ("m1", "m2")],
    "MeshGateway": [ResourceKey("MeshGateway", m, n) for m in ("m1", "m2") for n in ("a", "b")],
    "Dataplane": [ResourceKey("Dataplane", "m1", "a"), ResourceKey("Dataplane", "m3", "a")],
}
KINDS = sorted(KEYS)
VersionChoice = Literal["current", "stale", "none"]


@dataclass(frozen=True)
class Content:
    spec: int
    labels: tuple[tuple[str, str], ...]

    def resource(self, key: ResourceKey, version: str = "") -> Resource:
        return resource(key.kind, key.mesh, key.name, struct(v=self.spec), dict(self.labels), version)


@dataclass(frozen=True)
class Create:
    key: ResourceKey
    content: Content


@dataclass(frozen=True)
class Update:
    key: ResourceKey
    content: Content
    version: VersionChoice


@dataclass(frozen=True)
class Delete:
    key: ResourceKey
    version: VersionChoice


@dataclass(frozen=True)
class ApplySync:
    kind: str
    upserts: tuple[tuple[ResourceKey, Content], ...]
    removals: tuple[ResourceKey, ...]


@dataclass(frozen=True)
class List:
    kind: str
    mesh: str | None
    offset: int
    size: int | None


Operation = Create | Update | Delete | ApplySync | List

keys = st.sampled_from([k for ks in KEYS.values() for k in ks])
contents = st.builds(
    Content,
    st.integers(0, 3),
    st.dictionaries(st.sampled_from(["a", "b"]), st.sampled_from(["1", "2"]), max_size=2).map(
        lambda d: tuple(sorted(d.items()))
    ),
)
versions: st.SearchStrategy[VersionChoice] = st.sampled_from(["current", "stale", "none"])


def apply_syncs(kind: str) -> st.SearchStrategy[ApplySync]:
    own = st.sampled_from(KEYS[kind])
    return st.builds(
        ApplySync,
        st.just(kind),
        st.lists(st.tuples(own, contents), max_size=3).map(tuple),
        st.lists(own, max_size=2).map(tuple),
    )


operations: st.SearchStrategy[Operation] = st.one_of(
    st.builds(Create, keys, contents),
    st.builds(Update, keys, contents, versions),
    st.builds(Delete, keys, versions),
    st.sampled_from(KINDS).flatmap(apply_syncs),
    st.builds(
        List,
        st.sampled_from(KINDS),
        st.sampled_from([None, "", "m1", "m2"]),
        st.integers(0, 4),
        st.none() | st.integers(1, 3),
    ),
)

# What a caller can observe: an error type, or resources without the store-assigned version and times.
Observed = tuple[object, ...]


def observe(r: Resource) -> Observed:
    assert isinstance(r.spec, struct_pb2.Struct)
    return (r.key, tuple(sorted(r.meta.labels.items())), r.spec.SerializeToString(deterministic=True))


def observe_page(page: Page) -> Observed:
    return (tuple(observe(r) for r in page.items), page.total, page.next_offset)


class Driver:
    """Runs operations on one store, choosing versions from that store's own history."""

    def __init__(self, store: ResourceStore) -> None:
        self.store = store
        # Every version each key has had, oldest first; versions of earlier incarnations stay stale.
        self.history: dict[ResourceKey, list[str]] = {}

    async def version_for(self, key: ResourceKey, choice: VersionChoice) -> str | None:
        if choice == "none":
            return None
        try:
            current = (await self.store.get(key)).meta.version
        except StoreError:
            current = None
        if choice == "current":
            return current or "0"
        return next((v for v in reversed(self.history.get(key, [])) if v != current), "0")

    async def run(self, op: Operation) -> Observed:
        try:
            return ("ok", await self._run(op))
        except (StoreError, ValueError) as exc:
            return ("error", type(exc).__name__)
        finally:
            await self._record()

    async def _run(self, op: Operation) -> object:
        match op:
            case Create(key, content):
                return observe(await self.store.create(content.resource(key)))
            case Update(key, content, choice):
                version = await self.version_for(key, choice)
                return observe(await self.store.update(content.resource(key, version or "")))
            case Delete(key, choice):
                await self.store.delete(key, version=await self.version_for(key, choice))
                return None
            case ApplySync(kind, upserts, removals):
                await self.store.apply_sync(kind, [c.resource(k) for k, c in upserts], removals)
                return None
            case List(kind, mesh, offset, size):
                return observe_page(await self.store.list(kind, mesh, offset=offset, size=size))

    async def snapshot(self) -> Observed:
        return tuple([observe_page(await self.store.list(kind)) for kind in KINDS])

    async def _record(self) -> None:
        for kind in KINDS:
            for r in (await self.store.list(kind)).items:
                seen = self.history.setdefault(r.key, [])
                if not seen or seen[-1] != r.meta.version:
                    seen.append(r.meta.version)
                assert r.meta.creation_time is not None
                assert r.meta.modification_time is not None
                assert r.meta.creation_time <= r.meta.modification_time


async def run_both(ops: Sequence[Operation], open_store: Callable[[], Awaitable[ResourceStore]]) -> None:
    memory = Driver(MemoryStore())
    other = Driver(await open_store())
    try:
        for i, op in enumerate(ops):
            expected = await memory.run(op)
            actual = await other.run(op)
            assert actual == expected, f"operation {i}: {op}"
            assert await other.snapshot() == await memory.snapshot(), f"after operation {i}: {op}"
    finally:
        await other.store.close()
        await memory.store.close()


@settings(max_examples=100, deadline=None)
@given(ops=st.lists(operations, min_size=1, max_size=25))
def test_sqlite_behaves_like_memory(ops: list[Operation], tmp_path_factory: pytest.TempPathFactory) -> None:
    path = tmp_path_factory.mktemp("equivalence") / "equivalence.db"
    anyio.run(run_both, ops, lambda: SqliteStore.open(path))


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with redis_server(tmp_path_factory.mktemp("redis")) as server:
        yield server


@settings(max_examples=100, deadline=None)
@given(ops=st.lists(operations, min_size=1, max_size=25))
def test_redis_behaves_like_memory(ops: list[Operation], redis: RedisServer) -> None:
    # Each example gets its own key prefix on the module's server, so examples never see each other.
    prefix = f"equivalence-{secrets.token_hex(4)}:"

    async def open_redis() -> ResourceStore:
        return RedisStore(redis.url, prefix=prefix)

    anyio.run(run_both, ops, open_redis)
