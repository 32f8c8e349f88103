"""What the redis store keeps and where: key names, index members, records and change messages. No I/O.

Keys, all under one prefix (default ``meshgate:``, so deployments and tests can share a server)::

    {p}version      string   store-wide version counter (INCR), seeded from the server clock
    {p}kinds        set      every kind ever written (never shrinks): the Mesh cascade and resyncs walk it
    {p}d:{kind}     hash     member -> record: the resources of one kind
    {p}i:{kind}     zset     member, every score 0: the (mesh, name) order, so `list` pages and counts
                             are ZRANGEBYLEX / ZLEXCOUNT ranges; a mesh is the range [mesh\\0, mesh\\1)
    {p}changes      channel  one pub/sub message per committed write, published by the write's own script

Why a hash per kind and not a key per resource: a page of `list` is one ZRANGEBYLEX plus one HMGET on two
known keys, in one read script, so the total and the page come from the same state; a kind of 10k
resources is 2 keys, not 10k; and the Mesh cascade is one lex range per kind. (Per-resource TTLs or
Cluster sharding of a kind would need a key per resource; we want neither.)

Member: ``mesh + "\\0" + name``. NUL sorts below every other byte, so the bytewise (UTF-8) order of
members is exactly the (mesh, name) tuple order of the other stores ("m1\\0a" < "m10\\0a"). Names that
contain NUL are therefore refused (`ValueError`).

Record: ``version \\n ctime \\n mtime \\n spec_type \\n labels_json \\n spec_bytes``. Times are integer
microseconds since the epoch from the Redis server clock (`TIME`), one clock for every replica, so a
modification time never precedes the creation time another replica wrote. The script writes the first
three fields; this module writes the body (everything after them); labels JSON escapes newlines, and
the spec bytes come last, so they may contain anything.

Versions: the counter is seeded from `TIME` (microseconds) when it does not exist. A Redis restart
without persistence loses the counter along with the data; restarting it at 1 would give new
incarnations versions a client may still hold from before (ABA). Seeding from the clock keeps every
version larger than any handed out earlier, unless the store once sustained more than one write per
microsecond.

Change message: JSON ``{"w": write id, "e": [[op, kind, member], ...], "k": [kind, ...]}``; op is
``c``/``u``/``d``; ``k`` lists kinds whose keys were too many to list (subscribers re-read the whole kind).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from google.protobuf import descriptor_pool, message_factory
from google.protobuf.message import DecodeError, Message

from meshgate.resources.model import Meta, Resource, ResourceKey
from meshgate.store.events import ChangeEvent, Op
from meshgate.store.protocol import StoreError

__all__ = [
    "EVENT_KEYS_PER_KIND",
    "ChangeMessage",
    "Keys",
    "WriteOp",
    "decode_message",
    "decode_record",
    "encode_body",
    "from_micros",
    "member",
    "mesh_range",
    "split_page",
    "to_micros",
]

# A write names at most this many keys of one kind in its message; more and it names the kind instead.
# Equal to ChangeHub's default max_keys_per_kind, past which a subscriber collapses the kind anyway, so
# nothing is lost, and a 10k-resource apply_sync publishes a few bytes instead of ~400 kB.
EVENT_KEYS_PER_KIND: Final = 1024

_SEP: Final = "\0"
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_OPS: Final = {"c": Op.CREATE, "u": Op.UPDATE, "d": Op.DELETE}


@dataclass(frozen=True, slots=True)
class Keys:
    """The key names under one prefix."""

    prefix: str

    @property
    def version(self) -> str:
        return f"{self.prefix}version"

    @property
    def kinds(self) -> str:
        return f"{self.prefix}kinds"

    @property
    def channel(self) -> str:
        return f"{self.prefix}changes"

    def data(self, kind: str) -> str:
        return f"{self.prefix}d:{kind}"

    def index(self, kind: str) -> str:
        return f"{self.prefix}i:{kind}"


def member(key: ResourceKey) -> str:
    if _SEP in key.mesh or _SEP in key.name:
        raise ValueError(f"{key!r}: mesh and name must not contain NUL")
    return f"{key.mesh}{_SEP}{key.name}"


def _split(kind: str, raw: bytes) -> ResourceKey:
    mesh, name = raw.decode().split(_SEP, 1)
    return ResourceKey(kind, mesh, name)


def mesh_range(mesh: str | None) -> tuple[str, str]:
    """The ZRANGEBYLEX bounds of every member (None) or of the members of one mesh."""
    if mesh is None:
        return "-", "+"
    if _SEP in mesh:
        raise ValueError(f"mesh {mesh!r} must not contain NUL")
    return f"[{mesh}\0", f"({mesh}\1"


def to_micros(t: datetime) -> str:
    # A naive time is taken as UTC, as `utcnow()` would have produced it.
    aware = t if t.tzinfo is not None else t.replace(tzinfo=UTC)
    return str((aware - _EPOCH) // timedelta(microseconds=1))


# Cached: a list decodes two times per resource, and most are shared (an apply_sync gives its whole batch
# one modification time). datetimes are immutable, so sharing them is safe.
@functools.lru_cache(maxsize=4096)
def from_micros(raw: bytes | str) -> datetime:
    return _EPOCH + timedelta(microseconds=int(raw))


def encode_body(resource: Resource) -> bytes:
    spec = resource.spec
    labels = json.dumps(dict(resource.meta.labels), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return f"{spec.DESCRIPTOR.full_name}\n{labels}\n".encode() + spec.SerializeToString(deterministic=True)


def decode_record(key: ResourceKey, record: bytes) -> Resource:
    try:
        version, ctime, mtime, spec_type, labels, spec = record.split(b"\n", 5)
        message = _message_class(spec_type.decode()).FromString(spec)
        meta = Meta(
            name=key.name,
            mesh=key.mesh,
            version=version.decode(),
            # Most resources have no labels; skipping the JSON parser for them is a third of a list's decoding.
            labels={} if labels == b"{}" else json.loads(labels),
            creation_time=from_micros(ctime),
            modification_time=from_micros(mtime),
        )
    except (ValueError, DecodeError) as exc:
        raise StoreError(f"{key}: stored record does not decode: {exc}") from exc
    return Resource(kind=key.kind, meta=meta, spec=message)


@functools.cache
def _message_class(type_name: str) -> type[Message]:
    # functools.cache keeps only successes: a type whose module is imported later resolves then.
    try:
        descriptor = descriptor_pool.Default().FindMessageTypeByName(type_name)
    except KeyError:
        raise StoreError(
            f"stored spec type {type_name!r} is unknown to this process; import the module that defines it"
        ) from None
    return message_factory.GetMessageClass(descriptor)


def split_page(kind: str, page: bytes) -> list[Resource]:
    """Decodes the LIST script's page: netstrings ``len:member`` and ``len:record``, alternating."""
    items: list[Resource] = []
    pos, end = 0, len(page)
    try:
        while pos < end:
            fields: list[bytes] = []
            for _ in range(2):
                colon = page.index(b":", pos)
                start = colon + 1
                pos = start + int(page[pos:colon])
                fields.append(page[start:pos])
            raw_member, record = fields
            items.append(decode_record(_split(kind, raw_member), record))
    except ValueError as exc:
        raise StoreError(f"a page of {kind} does not decode: {exc}") from exc
    return items


@dataclass(frozen=True, slots=True)
class WriteOp:
    """One step of the write script. `code` is the script's vocabulary:

    create     fails ('exists') if the key is there
    update     fails ('missing') if absent, ('conflict') unless its version equals `expected`
    delete     fails ('missing') if absent
    delete_if  like delete, and ('conflict') unless its version equals `expected`
    put        creates or replaces, unconditionally (apply_sync)
    remove     deletes if present (apply_sync)

    Every delete and remove of a key with `cascade` set also deletes every resource of another kind whose
    mesh is `cascade` (the Mesh rule). Checks run against the state before the script, so a script with
    checked ops names each key once (create and update ops of `write_batch`, whose keys are distinct).
    """

    code: str
    key: ResourceKey
    expected: str = ""
    body: bytes = b""
    creation: str = ""
    cascade: str = ""

    def args(self) -> tuple[str | bytes, ...]:
        return (self.code, self.key.kind, member(self.key), self.expected, self.body, self.creation, self.cascade)


@dataclass(frozen=True, slots=True)
class ChangeMessage:
    write_id: str
    events: list[ChangeEvent]
    # Kinds whose keys the writer did not list: re-read them whole.
    kinds: list[str]


def decode_message(data: bytes) -> ChangeMessage:
    """Parses a change message; raises ValueError if it is not one (a foreign publisher on our channel)."""
    payload = json.loads(data)
    if not isinstance(payload, dict):
        raise ValueError("a change message is a JSON object")
    events: list[ChangeEvent] = []
    # The script's JSON encoder writes an empty Lua table as {}, hence `or []` and the type check.
    raw_events = payload.get("e") or []
    raw_kinds = payload.get("k") or []
    if not isinstance(raw_events, list) or not isinstance(raw_kinds, list):
        raise ValueError("malformed change message")
    for entry in raw_events:
        op, kind, raw_member = _triple(entry)
        events.append(ChangeEvent(_split(kind, raw_member.encode()), _OPS[op]))
    return ChangeMessage(str(payload.get("w", "")), events, [str(k) for k in raw_kinds])


def _triple(entry: object) -> tuple[str, str, str]:
    if not (isinstance(entry, Sequence) and len(entry) == 3 and all(isinstance(x, str) for x in entry)):
        raise ValueError(f"malformed change event {entry!r}")
    op, kind, raw_member = entry
    if op not in _OPS or _SEP not in raw_member:
        raise ValueError(f"malformed change event {entry!r}")
    return op, kind, raw_member
