"""The ResourceStore contract (meshgate/store/protocol.py), run against every backend."""

from __future__ import annotations

import pathlib
import secrets
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator

import anyio
import pytest
from google.protobuf import duration_pb2, wrappers_pb2

from meshgate.resources.model import Resource, ResourceKey
from meshgate.store import (
    AlreadyExistsError,
    ConflictError,
    NotFoundError,
    RedisStore,
    ResourceStore,
    StoreError,
)
from meshgate.store.sqlite import SqliteStore
from tests.store_support import BACKENDS, EVENT_TIMEOUT, mesh, next_batch, open_backend, resource, struct
from tests.support.hosted import Hosted
from tests.support.redis_server import RedisServer, redis_server

GW = "MeshGateway"
MESH = "Mesh"
DP = "Dataplane"


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One server for the module; each test has its own key prefix on it."""
    with redis_server(tmp_path_factory.mktemp("redis")) as server:
        yield server


# "redis" needs a server, so it is added here rather than in BACKENDS (which the REST tests share).
@pytest.fixture(params=[*BACKENDS, "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> AsyncIterator[ResourceStore]:
    if request.param == "redis":
        # The redis store's events come through its pub/sub listener, which runs for the whole test.
        server: RedisServer = request.getfixturevalue("redis")
        shared = RedisStore(server.url, prefix=f"contract-{secrets.token_hex(4)}:")
        listener = await Hosted.start(shared.follow)
        try:
            yield shared
        finally:
            await listener.stop()
            await shared.close()
        return
    s = await open_backend(request.param, tmp_path)
    try:
        yield s
    finally:
        await s.close()


def gw(mesh_name: str, name: str, **fields: str | float | bool) -> Resource:
    return resource(GW, mesh_name, name, struct(**fields) if fields else None)


async def keys(store: ResourceStore, kind: str, mesh_name: str | None = None) -> list[ResourceKey]:
    return [r.key for r in (await store.list(kind, mesh_name)).items]


# get / create


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_store_only_this_process_writes_has_no_feed_to_follow(backend: str, tmp_path: pathlib.Path) -> None:
    store = await open_backend(backend, tmp_path)
    try:
        assert not store.shared
        with anyio.fail_after(EVENT_TIMEOUT):
            async with anyio.create_task_group() as tg:
                await tg.start(store.follow)
        # The feed reported started and returned; the store's own writes still publish their events.
        async with store.changes.subscribe() as sub:
            created = await store.create(mesh("m"))
            assert await next_batch(sub) == {"Mesh": frozenset({created.key})}
    finally:
        await store.close()


async def test_get_missing_raises_not_found(store: ResourceStore) -> None:
    key = ResourceKey(GW, "default", "nope")
    with pytest.raises(NotFoundError) as info:
        await store.get(key)
    assert info.value.key == key


async def test_create_assigns_version_and_times(store: ResourceStore) -> None:
    created = await store.create(gw("default", "edge", port=8080, tls=True))
    assert created.meta.version
    assert created.meta.creation_time is not None
    assert created.meta.creation_time == created.meta.modification_time

    got = await store.get(ResourceKey(GW, "default", "edge"))
    assert got.key == created.key
    assert got.meta.version == created.meta.version
    assert got.meta.creation_time == created.meta.creation_time
    assert got.spec == struct(port=8080, tls=True)


async def test_create_keeps_labels_and_spec_type(store: ResourceStore) -> None:
    specs = [struct(a="b"), duration_pb2.Duration(seconds=3, nanos=5), wrappers_pb2.StringValue(value="x")]
    for i, spec in enumerate(specs):
        await store.create(resource(GW, "default", f"r{i}", spec, {"kuma.io/origin": "zone", "team": "é"}))
    got = (await store.list(GW)).items
    assert [type(r.spec) for r in got] == [type(s) for s in specs]
    assert [r.spec for r in got] == specs
    assert all(dict(r.meta.labels) == {"kuma.io/origin": "zone", "team": "é"} for r in got)


async def test_create_existing_raises_and_changes_nothing(store: ResourceStore) -> None:
    first = await store.create(gw("default", "edge", v=1))
    with pytest.raises(AlreadyExistsError) as info:
        await store.create(gw("default", "edge", v=2))
    assert info.value.key == first.key
    got = await store.get(first.key)
    assert got.meta.version == first.meta.version
    assert got.spec == struct(v=1)


async def test_same_name_in_other_mesh_or_kind_is_another_resource(store: ResourceStore) -> None:
    await store.create(gw("default", "edge"))
    await store.create(gw("other", "edge"))
    await store.create(resource(DP, "default", "edge"))
    assert len({(await store.get(k)).meta.version for k in [*await keys(store, GW), *await keys(store, DP)]}) == 3


# update


async def test_update_with_current_version(store: ResourceStore) -> None:
    created = await store.create(resource(GW, "default", "edge", struct(v=1), {"a": "1"}))
    updated = await store.update(resource(GW, "default", "edge", struct(v=2), {"b": "2"}, version=created.meta.version))
    assert updated.meta.version != created.meta.version
    assert updated.meta.creation_time == created.meta.creation_time
    assert created.meta.modification_time is not None
    assert updated.meta.modification_time is not None
    assert updated.meta.modification_time >= created.meta.modification_time

    got = await store.get(created.key)
    assert got.spec == struct(v=2)
    assert dict(got.meta.labels) == {"b": "2"}
    assert got.meta.version == updated.meta.version
    assert got.meta.creation_time == created.meta.creation_time
    assert got.meta.modification_time == updated.meta.modification_time


async def test_update_with_stale_version_conflicts_and_changes_nothing(store: ResourceStore) -> None:
    v1 = await store.create(gw("default", "edge", v=1))
    v2 = await store.update(resource(GW, "default", "edge", struct(v=2), version=v1.meta.version))
    with pytest.raises(ConflictError) as info:
        await store.update(resource(GW, "default", "edge", struct(v=3), version=v1.meta.version))
    assert (info.value.expected, info.value.actual) == (v1.meta.version, v2.meta.version)
    got = await store.get(v1.key)
    assert got.spec == struct(v=2)
    assert got.meta.version == v2.meta.version


async def test_update_without_version_conflicts(store: ResourceStore) -> None:
    await store.create(gw("default", "edge"))
    with pytest.raises(ConflictError):
        await store.update(gw("default", "edge", v=9))


async def test_update_missing_raises_not_found(store: ResourceStore) -> None:
    with pytest.raises(NotFoundError):
        await store.update(resource(GW, "default", "ghost", version="1"))


# delete


async def test_delete_without_version(store: ResourceStore) -> None:
    created = await store.create(gw("default", "edge"))
    await store.delete(created.key)
    with pytest.raises(NotFoundError):
        await store.get(created.key)


async def test_delete_with_current_version(store: ResourceStore) -> None:
    created = await store.create(gw("default", "edge"))
    await store.delete(created.key, version=created.meta.version)
    assert await keys(store, GW) == []


async def test_delete_with_stale_version_conflicts_and_keeps_it(store: ResourceStore) -> None:
    v1 = await store.create(gw("default", "edge", v=1))
    v2 = await store.update(resource(GW, "default", "edge", struct(v=2), version=v1.meta.version))
    with pytest.raises(ConflictError):
        await store.delete(v1.key, version=v1.meta.version)
    assert (await store.get(v1.key)).meta.version == v2.meta.version


async def test_delete_missing_raises_not_found(store: ResourceStore) -> None:
    with pytest.raises(NotFoundError):
        await store.delete(ResourceKey(GW, "default", "ghost"))


async def test_versions_are_never_reused(store: ResourceStore) -> None:
    seen: set[str] = set()
    for _ in range(3):
        created = await store.create(gw("default", "edge"))
        updated = await store.update(created)
        await store.delete(created.key)
        seen |= {created.meta.version, updated.meta.version}
    assert len(seen) == 6


# list


async def test_list_orders_by_mesh_then_name_and_filters(store: ResourceStore) -> None:
    for mesh_name, name in [("m2", "a"), ("m1", "c"), ("m1", "a"), ("m10", "a"), ("m1", "b")]:
        await store.create(gw(mesh_name, name))
    await store.create(resource(DP, "m1", "zz"))

    page = await store.list(GW)
    assert [(r.meta.mesh, r.meta.name) for r in page.items] == [
        ("m1", "a"),
        ("m1", "b"),
        ("m1", "c"),
        ("m10", "a"),
        ("m2", "a"),
    ]
    assert (page.total, page.next_offset) == (5, None)
    assert [r.meta.name for r in (await store.list(GW, "m1")).items] == ["a", "b", "c"]
    assert (await store.list(GW, "nope")).total == 0
    assert await keys(store, DP) == [ResourceKey(DP, "m1", "zz")]
    assert await keys(store, "Unknown") == []


async def test_list_pages_by_offset(store: ResourceStore) -> None:
    await store.apply_sync(GW, [gw("default", f"gw-{i:02d}") for i in range(7)], [])
    pages = []
    offset: int | None = 0
    while offset is not None:
        page = await store.list(GW, "default", offset=offset, size=3)
        assert page.total == 7
        pages.append([r.meta.name for r in page.items])
        offset = page.next_offset
    assert pages == [["gw-00", "gw-01", "gw-02"], ["gw-03", "gw-04", "gw-05"], ["gw-06"]]

    exact = await store.list(GW, offset=4, size=3)
    assert ([r.meta.name for r in exact.items], exact.next_offset) == (["gw-04", "gw-05", "gw-06"], None)
    past = await store.list(GW, offset=20, size=3)
    assert (past.items, past.total, past.next_offset) == ([], 7, None)
    tail = await store.list(GW, offset=5)
    assert ([r.meta.name for r in tail.items], tail.next_offset) == (["gw-05", "gw-06"], None)


@pytest.mark.parametrize(("offset", "size"), [(-1, None), (0, 0), (0, -5)])
async def test_list_rejects_paging_that_cannot_make_progress(
    store: ResourceStore, offset: int, size: int | None
) -> None:
    with pytest.raises(ValueError, match="must be"):
        await store.list(GW, offset=offset, size=size)


# the Mesh cascade


async def test_deleting_a_mesh_deletes_its_resources(store: ResourceStore) -> None:
    await store.create(mesh("a"))
    await store.create(mesh("b"))
    for mesh_name in ("a", "b"):
        await store.create(gw(mesh_name, "edge"))
        await store.create(resource(DP, mesh_name, "dp-1"))
    await store.create(resource("Zone", "", "a"))  # not mesh-scoped, merely named like the mesh

    async with store.changes.subscribe() as sub:
        await store.delete(ResourceKey("Mesh", "", "a"))
        batch = await next_batch(sub)

    assert await keys(store, "Mesh") == [ResourceKey("Mesh", "", "b")]
    assert await keys(store, GW) == [ResourceKey(GW, "b", "edge")]
    assert await keys(store, DP) == [ResourceKey(DP, "b", "dp-1")]
    assert await keys(store, "Zone") == [ResourceKey("Zone", "", "a")]
    assert batch == {
        "Mesh": frozenset({ResourceKey("Mesh", "", "a")}),
        GW: frozenset({ResourceKey(GW, "a", "edge")}),
        DP: frozenset({ResourceKey(DP, "a", "dp-1")}),
    }


async def test_deleting_a_resource_named_like_a_mesh_does_not_cascade(store: ResourceStore) -> None:
    await store.create(gw("", "a"))
    await store.create(gw("a", "edge"))
    await store.delete(ResourceKey(GW, "", "a"))
    assert await keys(store, GW) == [ResourceKey(GW, "a", "edge")]


async def test_mesh_delete_with_stale_version_keeps_everything(store: ResourceStore) -> None:
    m = await store.create(mesh("a"))
    await store.update(m)
    await store.create(gw("a", "edge"))
    with pytest.raises(ConflictError):
        await store.delete(m.key, version=m.meta.version)
    assert await keys(store, GW) == [ResourceKey(GW, "a", "edge")]


# apply_sync


async def test_apply_sync_upserts_and_removes(store: ResourceStore) -> None:
    kept = await store.create(resource(GW, "default", "kept", struct(v=1), {"old": "x"}))
    await store.create(gw("default", "removed"))
    await store.create(resource(DP, "default", "removed"))  # same name, other kind: untouched

    await store.apply_sync(
        GW,
        [resource(GW, "default", "kept", struct(v=2), {"new": "y"}), gw("default", "new")],
        [ResourceKey(GW, "default", "removed"), ResourceKey(GW, "default", "never-existed")],
    )

    assert await keys(store, GW) == [ResourceKey(GW, "default", "kept"), ResourceKey(GW, "default", "new")]
    got = await store.get(kept.key)
    assert got.spec == struct(v=2)
    assert dict(got.meta.labels) == {"new": "y"}
    assert got.meta.version not in ("", kept.meta.version)
    assert got.meta.creation_time == kept.meta.creation_time
    assert await keys(store, DP) == [ResourceKey(DP, "default", "removed")]


async def test_apply_sync_ignores_the_callers_version(store: ResourceStore) -> None:
    await store.create(gw("default", "edge"))
    await store.apply_sync(GW, [resource(GW, "default", "edge", struct(v=2), version="stale")], [])
    assert (await store.get(ResourceKey(GW, "default", "edge"))).spec == struct(v=2)


async def test_apply_sync_removing_a_mesh_cascades(store: ResourceStore) -> None:
    await store.create(mesh("a"))
    await store.create(gw("a", "edge"))
    async with store.changes.subscribe() as sub:
        await store.apply_sync("Mesh", [], [ResourceKey("Mesh", "", "a")])
        batch = await next_batch(sub)
    assert await keys(store, GW) == []
    assert batch == {
        "Mesh": frozenset({ResourceKey("Mesh", "", "a")}),
        GW: frozenset({ResourceKey(GW, "a", "edge")}),
    }


async def test_apply_sync_with_another_kind_changes_nothing(store: ResourceStore) -> None:
    await store.create(gw("default", "edge"))
    async with store.changes.subscribe() as sub:
        with pytest.raises(ValueError, match="other kinds"):
            await store.apply_sync(GW, [gw("default", "new")], [ResourceKey(DP, "default", "edge")])
        await store.create(resource("Marker", "", "m"))
        assert await next_batch(sub) == {"Marker": frozenset({ResourceKey("Marker", "", "m")})}
    assert await keys(store, GW) == [ResourceKey(GW, "default", "edge")]


async def test_apply_sync_with_nothing_publishes_nothing(store: ResourceStore) -> None:
    async with store.changes.subscribe() as sub:
        await store.apply_sync(GW, [], [ResourceKey(GW, "default", "ghost")])
        await store.create(resource("Marker", "", "m"))
        assert await next_batch(sub) == {"Marker": frozenset({ResourceKey("Marker", "", "m")})}


# write_batch


async def test_write_batch_creates_and_updates_in_one_event_batch(store: ResourceStore) -> None:
    old = await store.create(resource(GW, "default", "old", struct(v=1)))
    async with store.changes.subscribe() as sub:
        await store.write_batch(
            [
                mesh("fresh"),
                resource(GW, "fresh", "edge", struct(v=1)),  # in a mesh created by the same batch
                resource(GW, "default", "old", struct(v=2), {"new": "y"}, version=old.meta.version),
            ]
        )
        assert await next_batch(sub) == {
            "Mesh": frozenset({ResourceKey("Mesh", "", "fresh")}),
            GW: frozenset({ResourceKey(GW, "fresh", "edge"), old.key}),
        }
    updated = await store.get(old.key)
    assert (updated.spec, dict(updated.meta.labels)) == (struct(v=2), {"new": "y"})
    assert updated.meta.creation_time == old.meta.creation_time
    created = await store.get(ResourceKey(GW, "fresh", "edge"))
    versions = {old.meta.version, updated.meta.version, created.meta.version}
    assert len(versions) == 3
    assert created.meta.creation_time is not None


@pytest.mark.parametrize(
    "failing",
    [
        pytest.param(lambda stored: resource(GW, "default", "kept", version="0"), id="conflict"),
        pytest.param(lambda stored: resource(GW, "default", "kept"), id="exists"),
        pytest.param(lambda stored: resource(GW, "default", "ghost", version=stored.meta.version), id="missing"),
    ],
)
async def test_write_batch_is_all_or_nothing(store: ResourceStore, failing: Callable[[Resource], Resource]) -> None:
    """One failing item, last of many, leaves every other item unwritten and publishes nothing."""
    kept = await store.create(resource(GW, "default", "kept", struct(v=1)))
    good = [resource(GW, "default", f"new-{i}") for i in range(50)]
    async with store.changes.subscribe() as sub:
        with pytest.raises((ConflictError, AlreadyExistsError, NotFoundError)) as info:
            await store.write_batch([*good, failing(kept)])
        assert isinstance(info.value, ConflictError | AlreadyExistsError | NotFoundError)
        assert info.value.key.name in ("kept", "ghost")
        await store.create(resource("Marker", "", "m"))
        assert await next_batch(sub) == {"Marker": frozenset({ResourceKey("Marker", "", "m")})}
    assert await keys(store, GW) == [kept.key]
    assert (await store.get(kept.key)).meta.version == kept.meta.version


async def test_write_batch_refuses_a_key_twice_before_any_change(store: ResourceStore) -> None:
    with pytest.raises(ValueError, match="more than once"):
        await store.write_batch([gw("default", "a"), gw("default", "b"), gw("default", "a")])
    assert await keys(store, GW) == []


async def test_write_batch_of_many_is_one_batch_that_collapses_past_max_keys(store: ResourceStore) -> None:
    many = 1100  # more than ChangeHub's default max_keys_per_kind (1024)
    async with store.changes.subscribe() as sub:
        await store.write_batch([gw("default", f"gw-{i:04d}") for i in range(many)])
        await store.write_batch([resource(DP, "default", "dp")])
        await store.write_batch([])  # nothing: no event
        assert await next_batch(sub) == {GW: None, DP: frozenset({ResourceKey(DP, "default", "dp")})}
    assert (await store.list(GW, size=1)).total == many


async def test_sqlite_write_batch_failing_inside_sqlite_rolls_back(tmp_path: pathlib.Path) -> None:
    """An error SQLite itself raises halfway through the batch's inserts (a trigger, injected here) rolls
    back the rows written before it."""
    store = await SqliteStore.open(tmp_path / "db.sqlite")
    try:
        conn = sqlite3.connect(tmp_path / "db.sqlite", isolation_level=None)
        conn.execute(
            "CREATE TRIGGER poison BEFORE INSERT ON resources WHEN NEW.name = 'poison'"
            " BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
        )
        conn.close()
        batch = [gw("default", f"a-{i}") for i in range(20)] + [gw("default", "poison"), gw("default", "z")]
        async with store.changes.subscribe() as sub:
            with pytest.raises(StoreError, match="injected failure"):
                await store.write_batch(batch)
            await store.create(resource("Marker", "", "m"))
            assert await next_batch(sub) == {"Marker": frozenset({ResourceKey("Marker", "", "m")})}
        assert await keys(store, GW) == []
        await store.write_batch(batch[:20])  # the store still works, and versions continue
        assert len(await keys(store, GW)) == 20
    finally:
        await store.close()


async def test_apply_sync_of_a_full_sync_batch_writes_and_reports_every_resource(store: ResourceStore) -> None:
    """A KDS full sync is one apply_sync of thousands (issue 16): one batch, yet every resource is stored with
    a version of its own and every key reaches watchers; an existing one keeps its creation time."""
    old = [await store.create(gw("default", f"r{i:03d}", v=0)) for i in range(0, 300, 30)]
    async with store.changes.subscribe() as sub:
        await store.apply_sync(GW, [gw("default", f"r{i:03d}", v=i) for i in range(300)], [])
        batch = await next_batch(sub)
    assert batch == {GW: frozenset(ResourceKey(GW, "default", f"r{i:03d}") for i in range(300))}
    page = await store.list(GW)
    assert page.total == 300
    assert [r.spec for r in page.items] == [struct(v=i) for i in range(300)]
    assert len({r.meta.version for r in page.items}) == 300
    for before in old:
        after = await store.get(before.key)
        assert after.meta.creation_time == before.meta.creation_time
        assert after.meta.version != before.meta.version


async def test_apply_sync_past_max_keys_publishes_the_kind_with_the_other_changes(store: ResourceStore) -> None:
    """Past ChangeHub's max_keys_per_kind a subscriber collapses the kind anyway, so a full sync publishes the
    kind (None) instead of an event per key; its removals of another kind's keys still arrive (a Mesh
    cascade), all in one batch."""
    await store.create(mesh("other"))
    await store.create(gw("other", "gone"))
    many = 1100  # more than ChangeHub's default max_keys_per_kind (1024)
    async with store.changes.subscribe() as sub:
        await store.apply_sync(GW, [gw("default", f"r{i:04d}") for i in range(many)], [])
        await store.apply_sync(MESH, [], [ResourceKey(MESH, "", "other")])
        assert await next_batch(sub) == {
            GW: None,
            MESH: frozenset({ResourceKey(MESH, "", "other")}),
        }
    assert (await store.list(GW, size=1)).total == many


async def test_apply_sync_with_one_key_twice_keeps_the_later(store: ResourceStore) -> None:
    """A batch is applied in order, as single writes would be: the same key twice stores the later one."""
    await store.apply_sync(GW, [gw("default", "twice", v=1), gw("default", "twice", v=2)], [])
    assert (await store.get(ResourceKey(GW, "default", "twice"))).spec == struct(v=2)
    await store.apply_sync(GW, [gw("default", "twice", v=3), gw("default", "twice", v=4)], [])
    assert (await store.get(ResourceKey(GW, "default", "twice"))).spec == struct(v=4)


# change events


async def test_each_write_publishes_its_key(store: ResourceStore) -> None:
    key = ResourceKey(GW, "default", "edge")
    async with store.changes.subscribe() as sub:
        created = await store.create(gw("default", "edge"))
        assert await next_batch(sub) == {GW: frozenset({key})}
        await store.update(created)
        assert await next_batch(sub) == {GW: frozenset({key})}
        await store.delete(key)
        assert await next_batch(sub) == {GW: frozenset({key})}


async def test_events_coalesce_into_one_batch(store: ResourceStore) -> None:
    async with store.changes.subscribe() as sub:
        await store.create(gw("default", "a"))
        await store.create(gw("default", "b"))
        await store.create(resource(DP, "default", "a"))
        assert await next_batch(sub) == {
            GW: frozenset({ResourceKey(GW, "default", "a"), ResourceKey(GW, "default", "b")}),
            DP: frozenset({ResourceKey(DP, "default", "a")}),
        }


async def test_failed_writes_publish_nothing(store: ResourceStore) -> None:
    created = await store.create(gw("default", "edge"))
    ghost = ResourceKey(GW, "default", "ghost")
    async with store.changes.subscribe() as sub:
        with pytest.raises(AlreadyExistsError):
            await store.create(gw("default", "edge"))
        with pytest.raises(ConflictError):
            await store.update(created.with_meta(version="0"))
        with pytest.raises(NotFoundError):
            await store.update(resource(GW, "default", "ghost", version="1"))
        with pytest.raises(ConflictError):
            await store.delete(created.key, version="0")
        with pytest.raises(NotFoundError):
            await store.delete(ghost)
        # A successful write afterwards is the only thing the subscriber sees.
        await store.create(resource("Marker", "", "m"))
        assert await next_batch(sub) == {"Marker": frozenset({ResourceKey("Marker", "", "m")})}


async def test_apply_sync_is_one_batch_that_collapses_past_max_keys(store: ResourceStore) -> None:
    many = 1100  # more than ChangeHub's default max_keys_per_kind (1024)
    async with store.changes.subscribe() as sub:
        await store.apply_sync(GW, [gw("default", f"gw-{i:04d}") for i in range(many)], [])
        await store.apply_sync(DP, [resource(DP, "default", "dp")], [])
        assert await next_batch(sub) == {GW: None, DP: frozenset({ResourceKey(DP, "default", "dp")})}
    assert (await store.list(GW, size=1)).total == many


async def test_subscribers_only_see_changes_after_subscribing(store: ResourceStore) -> None:
    await store.create(gw("default", "before"))
    async with store.changes.subscribe() as sub:
        await store.create(gw("default", "after"))
        assert await next_batch(sub) == {GW: frozenset({ResourceKey(GW, "default", "after")})}


async def test_concurrent_writers_get_distinct_versions(store: ResourceStore) -> None:
    results: list[Resource] = []

    async def create(i: int) -> None:
        results.append(await store.create(gw("default", f"gw-{i}")))

    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(create, i)
    assert len({r.meta.version for r in results}) == 20
    assert (await store.list(GW)).total == 20
