"""Helpers for the store tests: resources with protobuf well-known specs, and the crash-test writer.

Resource kinds are not ready, so specs are `google.protobuf.struct_pb2.Struct` (and a few other
well-known messages); the store treats every spec as an opaque message anyway.
"""

from __future__ import annotations

import hashlib
import pathlib
import struct as binary
import sys
from collections.abc import Mapping

import anyio
from google.protobuf import struct_pb2
from google.protobuf.message import Message

from meshgate.resources.model import Meta, Resource, ResourceKey
from meshgate.store.events import ChangeBatch, ChangeSubscriber
from meshgate.store.factory import open_store
from meshgate.store.protocol import ResourceStore
from meshgate.store.sqlite import SqliteStore
from meshgate.testing.factory import struct

__all__ = [
    "BACKENDS",
    "CRASH_BATCH",
    "CRASH_KIND",
    "CRASH_WINDOW",
    "checksummed_spec",
    "crash_position",
    "crash_writer",
    "mesh",
    "next_batch",
    "open_backend",
    "resource",
    "spec_is_intact",
    "struct",
    "wal_uncommitted_frames",
]

BACKENDS = ("memory", "sqlite")

# Deadlock guard for waiting on change events; not a speed assertion.
EVENT_TIMEOUT = 10.0


async def open_backend(backend: str, data_dir: pathlib.Path) -> ResourceStore:
    return await open_store(backend, data_dir=data_dir)


async def next_batch(sub: ChangeSubscriber) -> ChangeBatch:
    with anyio.fail_after(EVENT_TIMEOUT):
        return await sub.next_batch()


def resource(
    kind: str,
    mesh: str,
    name: str,
    spec: Message | None = None,
    labels: Mapping[str, str] | None = None,
    version: str = "",
) -> Resource:
    return Resource(
        kind=kind,
        meta=Meta(name=name, mesh=mesh, version=version, labels=dict(labels or {})),
        spec=spec if spec is not None else struct(name=name),
    )


def mesh(name: str, **labels: str) -> Resource:
    return resource("Mesh", "", name, struct(mtls=False), labels)


# The crash test: a child process applies batches of big resources until it is killed.
CRASH_KIND = "Blob"
CRASH_BATCH = 4  # resources per apply_sync: each batch must be all there or all gone
CRASH_WINDOW = 3  # batch n removes batch n - CRASH_WINDOW in the same transaction
# Payload bytes per resource. A 4 MiB transaction outgrows SQLite's default 2 MiB page cache, so it spills
# pages into the WAL before its commit frame: a window where the WAL holds a torn transaction.
_CRASH_PAYLOAD = 1024 * 1024


def checksummed_spec(batch: int, index: int, payload: str) -> struct_pb2.Struct:
    spec = struct(batch=batch, index=index, payload=payload)
    spec["sha256"] = hashlib.sha256(_content(spec)).hexdigest()
    return spec


def spec_is_intact(spec: Message) -> bool:
    if not isinstance(spec, struct_pb2.Struct) or "sha256" not in spec:
        return False
    return bool(spec["sha256"] == hashlib.sha256(_content(spec)).hexdigest())


def crash_position(spec: Message) -> tuple[int, int]:
    """(batch, index) of a crash-test spec."""
    assert isinstance(spec, struct_pb2.Struct)
    batch, index = spec["batch"], spec["index"]
    assert isinstance(batch, float)
    assert isinstance(index, float)
    return int(batch), int(index)


def _content(spec: struct_pb2.Struct) -> bytes:
    return f"{spec['batch']}/{spec['index']}/{spec['payload']}".encode()


def crash_writer(db_path: str) -> None:
    """Entry point of the child process; prints each batch number after its commit returned."""
    anyio.run(_crash_writer, pathlib.Path(db_path))


async def _crash_writer(path: pathlib.Path) -> None:
    store = await SqliteStore.open(path)
    batch = 1 + max((crash_position(r.spec)[0] for r in (await store.list(CRASH_KIND)).items), default=-1)
    while True:
        payload = hashlib.sha256(str(batch).encode()).hexdigest() * (_CRASH_PAYLOAD // 64)
        upserts = [
            resource(CRASH_KIND, "default", f"b{batch}-{i}", checksummed_spec(batch, i, payload))
            for i in range(CRASH_BATCH)
        ]
        gone = batch - CRASH_WINDOW
        removals = [ResourceKey(CRASH_KIND, "default", f"b{gone}-{i}") for i in range(CRASH_BATCH)]
        await store.apply_sync(CRASH_KIND, upserts, removals)
        sys.stdout.write(f"{batch}\n")
        sys.stdout.flush()
        batch += 1


def wal_uncommitted_frames(wal: pathlib.Path) -> int:
    """Frames of the current WAL generation written after its last commit frame: a transaction in flight.

    Format (https://www.sqlite.org/fileformat2.html#walformat): a 32-byte header (page size at offset 8,
    salts at 16..24), then frames of a 24-byte header (commit size at 4..8, non-zero only on a commit
    frame; the salts at 8..16, equal to the header's for frames of the current generation) and one page.
    """
    try:
        data = wal.read_bytes()
    except FileNotFoundError:
        return 0
    if len(data) < 32:
        return 0
    (page_size,) = binary.unpack(">I", data[8:12])
    salts = data[16:24]
    frames = since_commit = 0
    offset = 32
    while offset + 24 + page_size <= len(data) and data[offset + 8 : offset + 16] == salts:
        frames += 1
        (commit_size,) = binary.unpack(">I", data[offset + 4 : offset + 8])
        since_commit = 0 if commit_size else since_commit + 1
        offset += 24 + page_size
    return since_commit
