"""SQLite ResourceStore: the embedded default store of the control planes (stdlib sqlite3).

Durability
    WAL journal with ``synchronous=FULL``: every COMMIT fsyncs the WAL, so a write that returned survives
    a process crash (SIGKILL) and a power loss. ``NORMAL`` would survive a process crash too (the WAL
    pages sit in the OS page cache) but can lose the last commits on power loss, and a caller that was told
    "created" must never see the resource vanish. Control-plane writes are rare; one fsync each is cheap, and
    many at once (`write_batch`, a bulk apply of 10k routes) are one transaction and so one fsync.
    Every write is exactly one ``BEGIN IMMEDIATE ... COMMIT``. IMMEDIATE takes the write lock before the
    version check, so check-then-write cannot interleave with another writer (even another process), and
    a crash anywhere before COMMIT leaves the previous state: no half-written resource, no half a batch.

Threading
    sqlite3 calls block, so every operation is one function run in a worker thread with
    `anyio.to_thread.run_sync`, on one connection guarded by an `anyio.Lock`. One connection, because
    SQLite admits one writer at a time anyway and decoding holds the GIL; a second read-only connection
    would only let a snapshot read overlap a write's fsync, which is not worth a second lock until a
    benchmark asks for it. The thread call is not abandoned on cancellation (anyio's default): a cancelled
    caller waits for its transaction to finish, so no second thread ever touches the connection, and a
    write that committed always publishes its event (nothing awaits between the thread's return and
    `publish`).

Schema
    ``resources`` is keyed by (kind, mesh, name): that primary-key index serves both ``get`` and
    ``list(kind[, mesh])`` already ordered by (mesh, name), so a snapshot is one range scan. A second index
    on ``mesh`` serves the Mesh cascade. A resource's row (labels, spec type and bytes) is
    `meshgate.store.sqlite_rows`'.
    Versions come from a store-wide counter in ``meta``, never from ``max(version)``: max() would give a
    deleted resource's version to the next write, and a client holding that stale version could then
    update a different incarnation of the resource (ABA).
    ``PRAGMA user_version`` is the applied schema version and ``schema_version`` keeps the history; both
    change in the migration's own transaction. Append migrations to `_MIGRATIONS`; never edit one.

Errors
    sqlite3 errors are mapped here, at the boundary: busy, locked, I/O, full, read-only and can't-open
    become `StoreUnavailableError`; anything else (corruption, a bug) becomes `StoreError`.
"""

from __future__ import annotations

import functools
import os
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Final, TypeVar

import anyio
import anyio.abc
import anyio.to_thread

from meshgate.resources import kinds
from meshgate.resources.model import Resource, ResourceKey, utcnow
from meshgate.store.events import ChangeEvent, ChangeHub, Op
from meshgate.store.protocol import (
    AlreadyExistsError,
    ConflictError,
    NotFoundError,
    Page,
    StoreError,
    StoreUnavailableError,
    check_distinct,
)
from meshgate.store.sqlite_rows import Row, decode, encode

__all__ = ["SCHEMA_VERSION", "SqliteStore"]

_T = TypeVar("_T")
# What a write returns from its transaction: its result and the changes to publish after COMMIT.
_Written = tuple[_T, list[ChangeEvent]]


# Migration i (0-based) takes the schema from version i to i + 1.
_MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    (
        "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)",
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
        "INSERT INTO meta (key, value) VALUES ('last_version', 0)",
        """
        CREATE TABLE resources (
            kind TEXT NOT NULL,
            mesh TEXT NOT NULL,
            name TEXT NOT NULL,
            version INTEGER NOT NULL,
            labels TEXT NOT NULL,
            spec_type TEXT NOT NULL,
            spec BLOB NOT NULL,
            creation_time TEXT NOT NULL,
            modification_time TEXT NOT NULL,
            PRIMARY KEY (kind, mesh, name)
        )
        """,
        "CREATE INDEX resources_by_mesh ON resources (mesh)",
    ),
)
SCHEMA_VERSION: Final = len(_MIGRATIONS)

# Primary result codes that mean "the database cannot serve now", not "the data or the code is wrong".
_UNAVAILABLE_CODES: Final = frozenset(
    {
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_NOMEM,
        sqlite3.SQLITE_PROTOCOL,
    }
)

# Whole statements as literals (no SQL is ever built from values): every value is a bound parameter.
_SELECT_ONE: Final = (
    "SELECT kind, mesh, name, version, labels, spec_type, spec, creation_time, modification_time "
    "FROM resources WHERE kind = ? AND mesh = ? AND name = ?"
)
_SELECT_KIND: Final = (
    "SELECT kind, mesh, name, version, labels, spec_type, spec, creation_time, modification_time "
    "FROM resources WHERE kind = ? ORDER BY mesh, name LIMIT ? OFFSET ?"
)
_SELECT_KIND_MESH: Final = (
    "SELECT kind, mesh, name, version, labels, spec_type, spec, creation_time, modification_time "
    "FROM resources WHERE kind = ? AND mesh = ? ORDER BY mesh, name LIMIT ? OFFSET ?"
)
_COUNT_KIND: Final = "SELECT COUNT(*) FROM resources WHERE kind = ?"
_COUNT_KIND_MESH: Final = "SELECT COUNT(*) FROM resources WHERE kind = ? AND mesh = ?"
_SELECT_VERSION: Final = "SELECT version, creation_time FROM resources WHERE kind = ? AND mesh = ? AND name = ?"
_INSERT: Final = (
    "INSERT INTO resources "
    "(kind, mesh, name, version, labels, spec_type, spec, creation_time, modification_time) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_REPLACE: Final = (
    "UPDATE resources SET version = ?, labels = ?, spec_type = ?, spec = ?, modification_time = ? "
    "WHERE kind = ? AND mesh = ? AND name = ?"
)
_DELETE_ONE: Final = "DELETE FROM resources WHERE kind = ? AND mesh = ? AND name = ?"
_SELECT_MESH_CONTENTS: Final = "SELECT kind, name FROM resources WHERE mesh = ? AND kind != ?"
_DELETE_MESH_CONTENTS: Final = "DELETE FROM resources WHERE mesh = ? AND kind != ?"


class SqliteStore:
    """A `ResourceStore` in one SQLite file.

    `await SqliteStore.open(path)` opens the file at once, so a bad path or a too-new schema fails there.
    `SqliteStore(path)` does no I/O (it is safe to call on the event loop) and opens the file on first use.
    Change events are in-process only: one control-plane process owns the file.
    """

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 5.0) -> None:
        """`busy_timeout`: seconds a write waits for another connection's lock; then StoreUnavailableError."""
        self._path = os.fspath(path)
        self._busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        self._lock = anyio.Lock()
        # The lock already admits one thread at a time; a limiter of our own keeps store calls from
        # queueing behind unrelated work that saturates anyio's shared default thread limiter.
        self._limiter = anyio.CapacityLimiter(1)
        self._changes = ChangeHub()

    @classmethod
    async def open(cls, path: str | os.PathLike[str], *, busy_timeout: float = 5.0) -> SqliteStore:
        """Opens (creating if needed) and migrates the database at `path` now."""
        store = cls(path, busy_timeout=busy_timeout)
        await store._read(_nothing)
        return store

    @property
    def changes(self) -> ChangeHub:
        return self._changes

    @property
    def shared(self) -> bool:
        return False

    async def follow(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        # The file is this process's own: every change is published by the write that made it.
        task_status.started()

    @property
    def path(self) -> str:
        return self._path

    async def get(self, key: ResourceKey) -> Resource:
        return await self._read(functools.partial(_get, key=key))

    async def list(self, kind: str, mesh: str | None = None, *, offset: int = 0, size: int | None = None) -> Page:
        _check_paging(offset, size)
        return await self._read(functools.partial(_list, kind=kind, mesh=mesh, offset=offset, size=size))

    async def create(self, resource: Resource) -> Resource:
        return await self._write(functools.partial(_create, resource=resource))

    async def update(self, resource: Resource) -> Resource:
        return await self._write(functools.partial(_update, resource=resource))

    async def delete(self, key: ResourceKey, *, version: str | None = None) -> None:
        await self._write(functools.partial(_delete, key=key, version=version))

    async def apply_sync(self, kind: str, upserts: Sequence[Resource], removals: Sequence[ResourceKey]) -> None:
        _check_sync_kinds(kind, upserts, removals)
        # Thousands of upserts (a KDS full sync) publish their kind, not an event per key (ChangeHub.collapses).
        whole_kind = self._changes.collapses(len(upserts))
        await self._write(
            functools.partial(_apply_sync, upserts=upserts, removals=removals, key_events=not whole_kind),
            whole_kinds=(kind,) if whole_kind else (),
        )

    async def write_batch(self, resources: Sequence[Resource]) -> None:
        check_distinct(resources)
        if resources:
            await self._write(functools.partial(_write_batch, resources=resources))

    async def close(self) -> None:
        """Closes the connection after any operation in flight. Idempotent."""
        # Shielded: a cancelled shutdown must still close the file, or the WAL is left uncheckpointed.
        with anyio.CancelScope(shield=True):
            async with self._lock:
                self._closed = True
                conn, self._conn = self._conn, None
                if conn is not None:
                    await anyio.to_thread.run_sync(conn.close, limiter=self._limiter)

    async def _read(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        async with self._lock:
            return await self._call(fn)

    async def _write(self, fn: Callable[[sqlite3.Connection], _Written[_T]], *, whole_kinds: Sequence[str] = ()) -> _T:
        """Runs `fn` in a transaction, then publishes its events and, when it commits, `whole_kinds`."""
        async with self._lock:
            result, events = await self._call(functools.partial(_in_transaction, fn))
            # Still under the lock, so events follow commit order; only now, after COMMIT returned.
            self._changes.publish_resync(whole_kinds)
            self._changes.publish(events)
        return result

    async def _call(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        """Runs `fn` on the connection in the worker thread, connecting first if needed. Holds the lock."""
        if self._closed:
            raise StoreUnavailableError(f"sqlite store {self._path} is closed")
        try:
            if self._conn is None:
                self._conn = await anyio.to_thread.run_sync(
                    _connect, self._path, self._busy_timeout, limiter=self._limiter
                )
            return await anyio.to_thread.run_sync(fn, self._conn, limiter=self._limiter)
        except sqlite3.Error as exc:
            raise _map_error(self._path, exc) from exc


# Everything below runs in the worker thread that holds the connection.


def _nothing(conn: sqlite3.Connection) -> None:
    return None


def _connect(path: str, busy_timeout: float) -> sqlite3.Connection:
    # isolation_level=None: the sqlite3 module opens no implicit transactions; we issue BEGIN ourselves.
    conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
    try:
        (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
        if mode != "wal":
            raise StoreError(f"sqlite store {path}: cannot use a WAL journal (got {mode!r})")
        conn.execute("PRAGMA synchronous = FULL")
        _migrate(conn, path)
    except BaseException:
        conn.close()
        raise
    return conn


def _migrate(conn: sqlite3.Connection, path: str) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        (current,) = conn.execute("PRAGMA user_version").fetchone()
        if current > SCHEMA_VERSION:
            raise StoreError(
                f"sqlite store {path} has schema version {current}, newer than this meshgate "
                f"understands ({SCHEMA_VERSION}); upgrade meshgate"
            )
        for version in range(current, SCHEMA_VERSION):
            for statement in _MIGRATIONS[version]:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                (version + 1, utcnow().isoformat()),
            )
            # PRAGMA takes no parameters; the value is our own integer. The header write is part of
            # this transaction, so user_version and the tables it describes change together.
            conn.execute(f"PRAGMA user_version = {version + 1:d}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _in_transaction(fn: Callable[[sqlite3.Connection], _T], conn: sqlite3.Connection) -> _T:
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn)
        conn.execute("COMMIT")
    except BaseException:
        # SQLite may already have rolled back on its own (e.g. SQLITE_FULL); then there is nothing to undo.
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return result


def _get(conn: sqlite3.Connection, *, key: ResourceKey) -> Resource:
    row = conn.execute(_SELECT_ONE, (key.kind, key.mesh, key.name)).fetchone()
    if row is None:
        raise NotFoundError(key)
    return decode(row)


def _list(conn: sqlite3.Connection, *, kind: str, mesh: str | None, offset: int, size: int | None) -> Page:
    count, select, params = (
        (_COUNT_KIND, _SELECT_KIND, (kind,)) if mesh is None else (_COUNT_KIND_MESH, _SELECT_KIND_MESH, (kind, mesh))
    )
    # One read transaction, so the total and the page describe the same state. The primary-key index
    # yields rows already in (mesh, name) order: one range scan, no sort, no query per resource.
    conn.execute("BEGIN")
    try:
        (total,) = conn.execute(count, params).fetchone()
        rows = conn.execute(select, (*params, -1 if size is None else size, offset)).fetchall()
    finally:
        conn.execute("COMMIT")
    end = total if size is None else offset + size
    return Page([decode(row) for row in rows], total, end if end < total else None)


def _create(conn: sqlite3.Connection, *, resource: Resource) -> _Written[Resource]:
    key = resource.key
    if _stored_version(conn, key) is not None:
        raise AlreadyExistsError(key)
    version = _allocate_versions(conn, 1)
    now = utcnow()
    _insert(conn, key, version, encode(resource), now, now)
    stored = resource.with_meta(version=str(version), creation_time=now, modification_time=now)
    return stored, [ChangeEvent(key, Op.CREATE)]


def _update(conn: sqlite3.Connection, *, resource: Resource) -> _Written[Resource]:
    key = resource.key
    current = conn.execute(_SELECT_VERSION, (key.kind, key.mesh, key.name)).fetchone()
    if current is None:
        raise NotFoundError(key)
    stored_version, creation_time = str(current[0]), datetime.fromisoformat(current[1])
    if resource.meta.version != stored_version:
        raise ConflictError(key, resource.meta.version, stored_version)
    version = _allocate_versions(conn, 1)
    now = utcnow()
    _replace(conn, key, version, encode(resource), now)
    stored = resource.with_meta(version=str(version), creation_time=creation_time, modification_time=now)
    return stored, [ChangeEvent(key, Op.UPDATE)]


def _delete(conn: sqlite3.Connection, *, key: ResourceKey, version: str | None) -> _Written[None]:
    stored_version = _stored_version(conn, key)
    if stored_version is None:
        raise NotFoundError(key)
    if version is not None and version != stored_version:
        raise ConflictError(key, version, stored_version)
    conn.execute(_DELETE_ONE, (key.kind, key.mesh, key.name))
    removed = [key, *_delete_mesh_contents(conn, key)]
    return None, [ChangeEvent(k, Op.DELETE) for k in removed]


def _apply_sync(
    conn: sqlite3.Connection, *, upserts: Sequence[Resource], removals: Sequence[ResourceKey], key_events: bool
) -> _Written[None]:
    # Specs are encoded here, in the worker thread, because a KDS snapshot can carry thousands; a spec
    # that fails to encode rolls the whole batch back like any other failure. Without `key_events` the
    # upserts publish no event each: the caller publishes their kind.
    events: list[ChangeEvent] = []
    now = utcnow()
    stamp = now.isoformat()
    version = _allocate_versions(conn, len(upserts)) if upserts else 0
    stored = _stored_keys(conn, upserts)
    inserts: list[tuple[object, ...]] = []
    replaces: list[tuple[object, ...]] = []
    labels_json: dict[tuple[tuple[str, str], ...], str] = {}
    for resource in upserts:
        m = resource.meta
        key = resource.key
        labels, spec_type, spec = encode(resource, labels_json)
        if (m.mesh, m.name) in stored:
            replaces.append((version, labels, spec_type, spec, stamp, key.kind, key.mesh, key.name))
            if key_events:
                events.append(ChangeEvent(key, Op.UPDATE))
        else:
            created = stamp if m.creation_time is None else m.creation_time.isoformat()  # `now`'s, formatted once
            inserts.append((key.kind, key.mesh, key.name, version, labels, spec_type, spec, created, stamp))
            if key_events:
                events.append(ChangeEvent(key, Op.CREATE))
            stored.add((m.mesh, m.name))  # the same key twice in one batch: the later one replaces it
        version += 1
    # One statement each for all inserts and all replaces: a full KDS sync is one response of thousands.
    conn.executemany(_INSERT, inserts)
    conn.executemany(_REPLACE, replaces)
    for key in removals:
        cursor = conn.execute(_DELETE_ONE, (key.kind, key.mesh, key.name))
        if cursor.rowcount:
            events.extend(ChangeEvent(k, Op.DELETE) for k in [key, *_delete_mesh_contents(conn, key)])
    return None, events


def _write_batch(conn: sqlite3.Connection, *, resources: Sequence[Resource]) -> _Written[None]:
    # One transaction, one fsync for the whole batch: 10k routes cost one COMMIT, not 10k. Checks and rows
    # interleave; a failing check raises and _in_transaction rolls everything back.
    now = utcnow()
    stamp = now.isoformat()
    version = _allocate_versions(conn, len(resources))
    inserts: list[tuple[object, ...]] = []
    replaces: list[tuple[object, ...]] = []
    events: list[ChangeEvent] = []
    for resource in resources:
        key = resource.key
        stored = _stored_version(conn, key)
        if not resource.meta.version:
            if stored is not None:
                raise AlreadyExistsError(key)
            inserts.append((key.kind, key.mesh, key.name, version, *encode(resource), stamp, stamp))
            events.append(ChangeEvent(key, Op.CREATE))
        else:
            if stored is None:
                raise NotFoundError(key)
            if stored != resource.meta.version:
                raise ConflictError(key, resource.meta.version, stored)
            replaces.append((version, *encode(resource), stamp, key.kind, key.mesh, key.name))
            events.append(ChangeEvent(key, Op.UPDATE))
        version += 1
    conn.executemany(_INSERT, inserts)
    conn.executemany(_REPLACE, replaces)
    return None, events


# Above this many upserts, `_stored_keys` reads every key of the kind at once instead of one row at a time.
_SCAN_ABOVE: Final = 64


def _stored_keys(conn: sqlite3.Connection, upserts: Sequence[Resource]) -> set[tuple[str, str]]:
    """(mesh, name) of those of `upserts` (all of one kind) already stored."""
    if not upserts:
        return set()
    if len(upserts) > _SCAN_ABOVE:
        rows = conn.execute("SELECT mesh, name FROM resources WHERE kind = ?", (upserts[0].kind,))
        return {(mesh, name) for mesh, name in rows}
    return {(r.meta.mesh, r.meta.name) for r in upserts if _stored_version(conn, r.key) is not None}


def _stored_version(conn: sqlite3.Connection, key: ResourceKey) -> str | None:
    row = conn.execute(_SELECT_VERSION, (key.kind, key.mesh, key.name)).fetchone()
    return None if row is None else str(row[0])


def _allocate_versions(conn: sqlite3.Connection, count: int) -> int:
    """Reserves `count` consecutive versions and returns the first."""
    (last,) = conn.execute("SELECT value FROM meta WHERE key = 'last_version'").fetchone()
    conn.execute("UPDATE meta SET value = ? WHERE key = 'last_version'", (last + count,))
    return int(last) + 1


def _insert(
    conn: sqlite3.Connection,
    key: ResourceKey,
    version: int,
    row: Row,
    creation_time: datetime,
    modification_time: datetime,
) -> None:
    conn.execute(
        _INSERT,
        (
            key.kind,
            key.mesh,
            key.name,
            version,
            *row,
            creation_time.isoformat(),
            modification_time.isoformat(),
        ),
    )


def _replace(conn: sqlite3.Connection, key: ResourceKey, version: int, row: Row, now: datetime) -> None:
    conn.execute(
        _REPLACE,
        (version, *row, now.isoformat(), key.kind, key.mesh, key.name),
    )


def _delete_mesh_contents(conn: sqlite3.Connection, key: ResourceKey) -> list[ResourceKey]:
    """The Mesh cascade: deleting Mesh X deletes every resource in mesh X, in the caller's transaction."""
    if key.kind != kinds.MESH:
        return []
    params = (key.name, kinds.MESH)
    rows = conn.execute(_SELECT_MESH_CONTENTS, params).fetchall()
    conn.execute(_DELETE_MESH_CONTENTS, params)
    return [ResourceKey(kind, key.name, name) for kind, name in rows]


def _check_paging(offset: int, size: int | None) -> None:
    # A size of 0 would return next_offset == offset forever; a negative offset has no order meaning.
    if offset < 0:
        raise ValueError(f"offset must be >= 0, got {offset}")
    if size is not None and size < 1:
        raise ValueError(f"size must be >= 1 or None, got {size}")


def _check_sync_kinds(kind: str, upserts: Sequence[Resource], removals: Sequence[ResourceKey]) -> None:
    stray = {r.kind for r in upserts} | {k.kind for k in removals}
    stray.discard(kind)
    if stray:
        raise ValueError(f"apply_sync({kind!r}) given resources of other kinds: {sorted(stray)}")


def _map_error(path: str, exc: sqlite3.Error) -> StoreError:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in _UNAVAILABLE_CODES:
        return StoreUnavailableError(f"sqlite store {path}: {exc}")
    return StoreError(f"sqlite store {path}: {exc}")
