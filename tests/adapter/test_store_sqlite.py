"""SqliteStore beyond the shared contract: durability, crash safety, schema, error mapping, query shape."""

from __future__ import annotations

import contextlib
import os
import pathlib
import select
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator

import anyio
import pytest
from google.protobuf import duration_pb2

from meshgate.resources.model import ResourceKey
from meshgate.store import (
    NotFoundError,
    SqliteStore,
    StoreError,
    StoreUnavailableError,
)
from meshgate.store.sqlite import SCHEMA_VERSION
from tests.store_support import (
    CRASH_BATCH,
    CRASH_KIND,
    CRASH_WINDOW,
    crash_position,
    mesh,
    next_batch,
    resource,
    spec_is_intact,
    struct,
    wal_uncommitted_frames,
)

GW = "MeshGateway"
REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture
def db_path(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "meshgate.db"


@pytest.fixture
async def store(db_path: pathlib.Path) -> AsyncIterator[SqliteStore]:
    s = await SqliteStore.open(db_path)
    try:
        yield s
    finally:
        await s.close()


@contextlib.contextmanager
def raw_connection(path: pathlib.Path) -> Iterator[sqlite3.Connection]:
    """A second, plain connection to the same file, for inspecting or sabotaging it."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


def connection_of(store: SqliteStore) -> sqlite3.Connection:
    """White box: the store's own connection (per-connection pragmas and statement tracing)."""
    conn = store._conn
    assert conn is not None
    return conn


async def test_data_survives_close_and_reopen(db_path: pathlib.Path) -> None:
    store = await SqliteStore.open(db_path)
    await store.create(mesh("default", team="core"))
    edge = await store.create(resource(GW, "default", "edge", struct(port=80), {"kuma.io/origin": "global"}))
    edge = await store.update(resource(GW, "default", "edge", struct(port=443), {"a": "b"}, edge.meta.version))
    await store.create(resource("Timeout", "default", "t", duration_pb2.Duration(seconds=5)))
    last = await store.create(resource(GW, "default", "gone"))
    await store.delete(last.key)
    before = {kind: (await store.list(kind)).items for kind in ("Mesh", GW, "Timeout")}
    await store.close()

    reopened = await SqliteStore.open(db_path)
    try:
        after = {kind: (await reopened.list(kind)).items for kind in ("Mesh", GW, "Timeout")}
        assert after == before
        assert (await reopened.get(edge.key)).meta == edge.meta
        # The counter survives too: the deleted resource's version, the newest, is not handed out again.
        again = await reopened.create(resource(GW, "default", "gone"))
        assert int(again.meta.version) > int(last.meta.version)
    finally:
        await reopened.close()


async def test_the_constructor_does_no_io_and_first_use_opens(db_path: pathlib.Path) -> None:
    store = SqliteStore(db_path)
    assert not db_path.exists()
    try:
        await store.create(resource(GW, "default", "edge"))
        assert db_path.is_file()
    finally:
        await store.close()
    unused = SqliteStore(db_path.with_name("unused.db"))
    await unused.close()
    assert not db_path.with_name("unused.db").exists()
    with pytest.raises(StoreUnavailableError, match="closed"):
        await unused.list(GW)


async def test_schema_is_versioned_and_journal_is_durable(store: SqliteStore, db_path: pathlib.Path) -> None:
    assert connection_of(store).execute("PRAGMA synchronous").fetchone() == (2,)  # FULL
    with raw_connection(db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        history = [v for (v,) in conn.execute("SELECT version FROM schema_version ORDER BY version")]
        assert history == list(range(1, SCHEMA_VERSION + 1))


async def test_reopening_does_not_migrate_again(db_path: pathlib.Path) -> None:
    for _ in range(2):
        await (await SqliteStore.open(db_path)).close()
    with raw_connection(db_path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM schema_version").fetchone() == (SCHEMA_VERSION,)


async def test_a_newer_schema_is_refused(db_path: pathlib.Path) -> None:
    await (await SqliteStore.open(db_path)).close()
    with raw_connection(db_path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="newer than this meshgate"):
        await SqliteStore.open(db_path)


async def test_a_file_that_is_not_a_database_is_a_store_error(db_path: pathlib.Path) -> None:
    db_path.write_bytes(b"definitely not sqlite " * 100)
    with pytest.raises(StoreError) as info:
        await SqliteStore.open(db_path)
    assert not isinstance(info.value, StoreUnavailableError)


async def test_a_missing_directory_is_unavailable(tmp_path: pathlib.Path) -> None:
    with pytest.raises(StoreUnavailableError):
        await SqliteStore.open(tmp_path / "no" / "such" / "dir" / "x.db")


async def test_a_closed_store_is_unavailable(db_path: pathlib.Path) -> None:
    store = await SqliteStore.open(db_path)
    await store.close()
    await store.close()  # idempotent
    with pytest.raises(StoreUnavailableError, match="closed"):
        await store.get(ResourceKey(GW, "default", "edge"))
    with pytest.raises(StoreUnavailableError, match="closed"):
        await store.create(resource(GW, "default", "edge"))


async def test_a_locked_database_is_unavailable_and_publishes_nothing(db_path: pathlib.Path) -> None:
    store = await SqliteStore.open(db_path, busy_timeout=0.05)
    try:
        async with store.changes.subscribe() as sub:
            with raw_connection(db_path) as other:
                other.execute("BEGIN IMMEDIATE")
                with pytest.raises(StoreUnavailableError, match="locked"):
                    await store.create(resource(GW, "default", "edge"))
                other.execute("ROLLBACK")
            await store.create(resource(GW, "default", "after"))
            assert await next_batch(sub) == {GW: frozenset({ResourceKey(GW, "default", "after")})}
        with pytest.raises(NotFoundError):
            await store.get(ResourceKey(GW, "default", "edge"))
    finally:
        await store.close()


async def test_a_failure_mid_transaction_rolls_back_the_whole_write(store: SqliteStore, db_path: pathlib.Path) -> None:
    before = await store.create(resource(GW, "default", "before"))
    with raw_connection(db_path) as conn:
        conn.execute(
            "CREATE TRIGGER boom BEFORE INSERT ON resources WHEN NEW.name = 'boom' "
            "BEGIN SELECT RAISE(ABORT, 'boom'); END"
        )
    async with store.changes.subscribe() as sub:
        with pytest.raises(StoreError, match="boom"):
            await store.apply_sync(
                GW,
                [resource(GW, "default", "first"), resource(GW, "default", "boom")],
                [before.key],
            )
        after = await store.create(resource(GW, "default", "after"))
        assert await next_batch(sub) == {GW: frozenset({after.key})}
    assert [r.meta.name for r in (await store.list(GW)).items] == ["after", "before"]
    # Nothing of the failed write stuck, not even the version counter it advanced.
    assert int(after.meta.version) == int(before.meta.version) + 1


async def test_an_unknown_spec_type_is_a_store_error(store: SqliteStore, db_path: pathlib.Path) -> None:
    created = await store.create(resource(GW, "default", "edge"))
    with raw_connection(db_path) as conn:
        conn.execute("UPDATE resources SET spec_type = 'no.such.Message'")
    with pytest.raises(StoreError, match=r"no\.such\.Message"):
        await store.get(created.key)


async def test_a_corrupt_spec_is_a_store_error(store: SqliteStore, db_path: pathlib.Path) -> None:
    created = await store.create(resource(GW, "default", "edge"))
    with raw_connection(db_path) as conn:
        conn.execute("UPDATE resources SET spec = x'ffffffff'")
    with pytest.raises(StoreError, match="does not decode"):
        await store.get(created.key)


async def test_listing_is_one_query_not_one_per_resource(store: SqliteStore) -> None:
    await store.apply_sync(GW, [resource(GW, f"m{i % 3}", f"gw-{i}") for i in range(300)], [])
    statements: list[str] = []
    connection_of(store).set_trace_callback(statements.append)
    try:
        page = await store.list(GW)
        mesh_page = await store.list(GW, "m1", offset=10, size=20)
    finally:
        connection_of(store).set_trace_callback(None)
    assert (len(page.items), len(mesh_page.items)) == (300, 20)
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) == 4  # a count and a page, per list call


async def test_listing_10k_resources(store: SqliteStore) -> None:
    """Correctness at KDS-snapshot scale; prints the time once (informational, never asserted)."""
    n = 10_000
    upserts = [
        resource(GW, f"mesh-{i % 10}", f"gw-{i:05d}", struct(port=i, name=f"gw-{i}", tls=i % 2 == 0)) for i in range(n)
    ]
    await store.apply_sync(GW, upserts, [])
    started = time.perf_counter()
    page = await store.list(GW)
    elapsed = time.perf_counter() - started
    print(f"\nsqlite: listing {n} resources took {elapsed * 1000:.1f} ms")
    assert page.total == n
    assert [(r.meta.mesh, r.meta.name) for r in page.items] == sorted((r.meta.mesh, r.meta.name) for r in upserts)
    assert page.items[-1].spec == upserts[-1].spec


# Crash safety: a child process applies batches of big resources; we SIGKILL it mid-run, several times.

_CHILD = "import sys; from tests.store_support import crash_writer; crash_writer(sys.argv[1])"
_CHILD_DEADLINE = 60.0  # deadlock guard for the child's progress, not a speed limit


def run_writer_until_killed(db: pathlib.Path, min_batch: int, *, torn: bool) -> int:
    """Starts the writer and SIGKILLs it once it has reported batch `min_batch`; returns the last reported.

    With `torn`, the kill waits until the WAL holds frames of a transaction that has not committed, so the
    crash provably lands mid-write; without it, the kill lands wherever the child happens to be.
    """
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(db)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        bufsize=0,
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    wal = db.with_name(db.name + "-wal")
    reported = -1
    buffered = b""
    try:
        deadline = time.monotonic() + _CHILD_DEADLINE
        while reported < min_batch or (torn and not wal_uncommitted_frames(wal)):
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"writer reached batch {reported} only, in {_CHILD_DEADLINE}s"
            # Block on the child's output until min_batch; then poll the WAL without waiting.
            timeout = remaining if reported < min_batch else 0
            readable, _, _ = select.select([proc.stdout], [], [], timeout)
            if not readable:
                continue
            chunk = os.read(proc.stdout.fileno(), 4096)
            assert chunk, f"writer exited early: {proc.stderr.read().decode(errors='replace')}"
            buffered += chunk
            *lines, buffered = buffered.split(b"\n")
            reported = max([reported, *(int(line) for line in lines)])
    finally:
        proc.kill()  # SIGKILL: no atexit, no sqlite close, no checkpoint
        proc.wait()
        # What it reported between our last read and the kill is still in the pipe: on a busy machine the kill
        # can land several batches after the WAL check, and each reported batch had committed.
        *lines, _partial = (buffered + proc.stdout.read()).split(b"\n")
        reported = max([reported, *(int(line) for line in lines)])
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -9
    return reported


async def check_crashed_database(db: pathlib.Path, reported: int) -> int:
    """Asserts every invariant a crash must keep; returns the newest batch that survived."""
    store = await SqliteStore.open(db)
    try:
        items = (await store.list(CRASH_KIND)).items
    finally:
        await store.close()
    assert items, "nothing survived"
    assert all(spec_is_intact(r.spec) for r in items), "a spec is torn"
    versions = [r.meta.version for r in items]
    assert len(set(versions)) == len(versions), "a version was handed out twice"

    batches: dict[int, set[int]] = {}
    for r in items:
        batch, index = crash_position(r.spec)
        batches.setdefault(batch, set()).add(index)
    assert all(indexes == set(range(CRASH_BATCH)) for indexes in batches.values()), f"half a batch: {batches}"
    newest = max(batches)
    # Every batch the child reported had committed; at most one more committed before it could report.
    assert newest in (reported, reported + 1)
    # Each batch removed the one CRASH_WINDOW before it, in the same transaction.
    assert sorted(batches) == list(range(max(0, newest - CRASH_WINDOW + 1), newest + 1))

    with raw_connection(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    return newest


@pytest.mark.parametrize("torn", [True, False], ids=["in-flight-transaction", "anywhere"])
def test_sigkill_mid_write_keeps_every_committed_write_whole(tmp_path: pathlib.Path, torn: bool) -> None:
    db = tmp_path / "crash.db"
    newest = -1
    for _ in range(3):  # each round recovers from the previous kill, then is killed again
        reported = run_writer_until_killed(db, min_batch=newest + 3, torn=torn)
        newest = anyio.run(check_crashed_database, db, reported)
