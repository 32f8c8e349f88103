"""Simulated zones for the benches: real KDS clients (GlobalToZoneClient) over real gRPC, many in one process.

`zone_client` is the one way a bench builds a zone's client (bench/propagation.py and bench/zone_memory.py).
Run as a script, this module is the separate client process of bench/zone_memory.py: it connects `--zones`
zones to a global, reports on stdout (JSON lines) when every zone holds the full initial state, and then obeys
commands on stdin, one per line:

    disconnect   end every zone's session (the global sees the streams close)
    reconnect    connect every zone again; each offers what it holds as initial_resource_versions (resume),
                 and the report counts the resources and removals the global sent after that
    mark         (while connected) zero the counters and remember each zone's connect count: for a global
                 killed and restarted under the zones, whose clients reconnect by themselves
    resynced     wait until every zone has connected again since `mark` and holds the full state; report
                 when each did (time.time(), the host's clock) and what arrived since `mark`
    watch NAME   arm: note when each zone's store first receives MeshGatewayRoute NAME (mesh default)
    arrivals     wait until every zone has, and report when (time.time())
    quit         (or end of input) stop

`--first` names this process's zones zone-FIRST... (several fleet processes share one global).
`--shared-decode` decodes and validates each distinct wire resource once per process for all its zones (each
zone still receives, parses and ACKs its own responses and applies them to its own store), and keeps what each
zone holds as (wire name, version) as it applies it, instead of re-encoding its whole store at every reconnect:
N real zones each pay that on their own CPU, so a fleet of simulated zones on the global's host must not pay it
N times over (500 zones re-encoding 10k routes each at once kept one fleet busy for 15 s after a restart).

The zones' stores are what a bench process pays for, not the global: N zones over 10k routes would hold N
decoded copies of every route (about 30 MiB per zone). `FleetStore` keeps one object per distinct resource
across the fleet instead (`Interned`), after decoding and validating each zone's copy as a real zone does.

Usage: python bench/zone_fleet.py --address grpcs://127.0.0.1:PORT --zones 200 --expect MeshGatewayRoute=10000
    [--ca-cert-file kds-ca.crt] [--tokens-file tokens.json] [--first 0] [--shared-decode]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TextIO

import anyio

# Run as a script, bench/ comes first on sys.path, where bench/dns.py would shadow dnspython's `dns`.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import meshgate.kds.receiver  # noqa: E402
import meshgate.transport.kds_client  # noqa: E402
from meshgate.kds.envelope import from_wire, to_wire  # noqa: E402
from meshgate.kds.naming import hashed_name, wire_name  # noqa: E402
from meshgate.observability.logging import configure_logging  # noqa: E402
from meshgate.resources import codec, registry  # noqa: E402
from meshgate.resources.descriptor import KindDescriptor  # noqa: E402
from meshgate.resources.errors import Violation  # noqa: E402
from meshgate.resources.model import Resource, ResourceKey  # noqa: E402
from meshgate.store import MemoryStore  # noqa: E402
from meshgate.store.protocol import ResourceStore  # noqa: E402
from meshgate.transport.kds_client import Backoff, GlobalToZoneClient  # noqa: E402

__all__ = ["FleetStore", "Interned", "rss_kib", "share_decode", "zone_client"]


def zone_client(
    zone: str,
    address: str,
    store: ResourceStore,
    *,
    ca_cert_file: Path | None = None,
    token: str = "",
    instance_id: str = "",
    validate: Callable[[Resource], list[Violation]] = codec.validate,
    client_type: type[GlobalToZoneClient] = GlobalToZoneClient,
) -> GlobalToZoneClient:
    """A zone's KDS client as a zone process builds it, reconnecting quickly (a bench waits on it)."""
    return client_type(
        zone=zone,
        addresses=[address],
        store=store,
        kinds=registry.kinds_sent_to_zone(),
        validate=validate,
        backoff=Backoff(initial=0.05, maximum=0.5),
        ca_cert_file=ca_cert_file,
        token=token,
        instance_id=instance_id,
    )


def rss_kib(pid: int | str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def share_decode() -> Callable[[Resource], list[Violation]]:
    """Makes this process's KDS receivers decode each distinct (kind, name, version) once, and its zones' resume
    encode each shared stored object once; returns the validator to give every zone, which validates each
    decoded object once. Bench processes only: it patches the two modules' names."""
    decoded: dict[tuple[str, str, str], Resource] = {}
    encoded: dict[int, tuple[Resource, Any]] = {}
    verdicts: dict[int, tuple[Resource, list[Violation]]] = {}

    def decode(descriptor: KindDescriptor, wire: Any) -> Resource:
        key = (descriptor.name, wire.name, wire.version)
        r = decoded.get(key)
        if r is None:
            r = decoded[key] = from_wire(descriptor, wire)
            encoded[id(r)] = (r, wire)  # what it encodes to, when a zone tells the global what it holds
        return r

    def encode(r: Resource, labels: Any = None) -> Any:
        hit = encoded.get(id(r))
        if labels is not None or hit is None or hit[0] is not r:
            wire = to_wire(r, labels)
            if labels is None:
                encoded[id(r)] = (r, wire)  # keeps r alive, so its id is not reused
            return wire
        return hit[1]

    def validate(r: Resource) -> list[Violation]:
        hit = verdicts.get(id(r))
        if hit is None or hit[0] is not r:
            hit = verdicts[id(r)] = (r, codec.validate(r))
        return hit[1]

    meshgate.kds.receiver.from_wire = decode  # type: ignore[attr-defined]
    meshgate.transport.kds_client.to_wire = encode  # type: ignore[attr-defined,assignment]
    return validate


class FleetClient(GlobalToZoneClient):
    """A zone's client that offers the global what its FleetStore recorded as held (see `--shared-decode`)."""

    async def _held(self) -> dict[str, dict[str, tuple[ResourceKey, str]]]:
        store = self._store
        assert isinstance(store, FleetStore)
        return {kind: dict(held) for kind, held in store.held.items()}


class Interned:
    """One Resource object per key and content across every zone of the fleet (meta versions and times,
    which each zone's store assigns, are the first holder's: a zone's client never reads them)."""

    def __init__(self) -> None:
        self._canon: dict[ResourceKey, Resource] = {}

    def intern(self, r: Resource) -> Resource:
        c = self._canon.get(r.key)
        if c is not None and c.meta.labels == r.meta.labels and c.spec == r.spec:
            return c
        self._canon[r.key] = r
        return r


class FleetStore(MemoryStore):
    """A zone's MemoryStore that shares equal resources with the fleet and counts what KDS applied to it."""

    def __init__(self, interned: Interned) -> None:
        super().__init__()
        self._interned = interned
        self.upserts: Counter[str] = Counter()
        self.removals: Counter[str] = Counter()
        # Upserts whose content this store already held: a sender that computes another version for the same
        # content re-sends it on every resume.
        self.unchanged: Counter[str] = Counter()
        # `watch NAME`: the key to look for, and when (time.time()) an upsert of it first arrived.
        self.watch: ResourceKey | None = None
        self.arrived: float | None = None
        # kind -> wire name -> (key, version) of what KDS applied here (FleetClient offers it on reconnect).
        self.held: dict[str, dict[str, tuple[ResourceKey, str]]] = {}
        self.track_held = False

    async def apply_sync(self, kind: str, upserts: Sequence[Resource], removals: Sequence[ResourceKey]) -> None:
        if self.watch is not None and self.arrived is None and any(r.key == self.watch for r in upserts):
            self.arrived = time.time()
        if self.track_held:
            versions = self.held.setdefault(kind, {})
            for r in upserts:
                wire = meshgate.transport.kds_client.to_wire(r)  # type: ignore[attr-defined]
                versions[wire.name] = (r.key, wire.version)
            for key in removals:
                versions.pop(wire_name(key.name, key.mesh), None)
        self.upserts[kind] += len(upserts)
        self.removals[kind] += len(removals)
        for r in upserts:
            held = self._items.get(r.key)
            if held is not None and held.meta.labels == r.meta.labels and held.spec == r.spec:
                self.unchanged[kind] += 1
        await super().apply_sync(kind, upserts, removals)
        for r in upserts:
            self._items[r.key] = self._interned.intern(self._items[r.key])

    def count(self, kind: str) -> int:
        return sum(1 for k in self._items if k.kind == kind)


class Fleet:
    def __init__(self, args: argparse.Namespace, report: TextIO) -> None:
        self.address: str = args.address
        self.zones = [f"zone-{i}" for i in range(args.first, args.first + args.zones)]
        self.validate = share_decode() if args.shared_decode else codec.validate
        self.client_type = FleetClient if args.shared_decode else GlobalToZoneClient
        self.ca = Path(args.ca_cert_file) if args.ca_cert_file else None
        self.tokens: dict[str, str] = json.loads(Path(args.tokens_file).read_text()) if args.tokens_file else {}
        self.expect = {k: int(n) for k, _, n in (e.partition("=") for e in args.expect)}
        interned = Interned()
        self.stores = {z: FleetStore(interned) for z in self.zones}
        for store in self.stores.values():
            store.track_held = args.shared_decode
        self._report = report
        # Since `mark`: each zone's connect count then, and when (time.time()) it was back in sync.
        self._connects: dict[str, int] = {}
        self._resynced: dict[str, float] = {}

    def report(self, **fields: Any) -> None:
        self._report.write(json.dumps({**fields, "rss_mib": round(rss_kib() / 1024, 1)}) + "\n")
        self._report.flush()

    def _complete(self, store: FleetStore) -> bool:
        return all(store.count(kind) == n for kind, n in self.expect.items())

    async def session(self, phase: str) -> str:
        """Connects every zone, reports once each has applied and ACKed every kind's first response and holds
        what `--expect` says, and keeps the sessions until the next command (which it returns)."""
        for s in self.stores.values():
            s.upserts, s.removals, s.unchanged = Counter(), Counter(), Counter()
        clients = {
            z: zone_client(
                z,
                self.address,
                self.stores[z],
                ca_cert_file=self.ca,
                token=self.tokens.get(z, ""),
                instance_id=z,
                validate=self.validate,
                client_type=self.client_type,
            )
            for z in self.zones
        }
        t0 = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for c in clients.values():
                tg.start_soon(c.run)
            pending = set(self.zones)
            while pending:
                # A zone's store is counted only once its client says every kind arrived: counting is O(store).
                pending -= {z for z in pending if clients[z].synced and self._complete(self.stores[z])}
                await anyio.sleep(0.05)
            responses = bytes_ = 0
            for c in clients.values():
                assert c.receiver is not None
                responses += sum(k.responses for k in c.receiver.kinds.values())
                bytes_ += sum(k.bytes_received for k in c.receiver.kinds.values())
            self.report(
                event="synced",
                phase=phase,
                seconds=round(time.perf_counter() - t0, 2),
                upserts=sum((s.upserts for s in self.stores.values()), Counter()),
                removals=sum((s.removals for s in self.stores.values()), Counter()),
                unchanged=sum((s.unchanged for s in self.stores.values()), Counter()),
                responses=responses,
                bytes=bytes_,
                held={k: self.stores[self.zones[0]].count(k) for k in self.expect},
            )
            command = await self.serve(clients)
            tg.cancel_scope.cancel()
        self.report(event="disconnected")
        return command

    async def serve(self, clients: dict[str, GlobalToZoneClient]) -> str:
        """Obeys the commands that keep the zones connected; returns the first that does not."""
        while True:
            command, _, arg = (await read_command()).partition(" ")
            if command == "mark":
                await self.mark(clients)
            elif command == "resynced":
                await self.resynced(clients)
            elif command == "watch":
                key = ResourceKey("MeshGatewayRoute", "default", hashed_name("default", arg))  # as a zone names it
                for s in self.stores.values():
                    s.watch, s.arrived = key, None
                self.report(event="armed")
            elif command == "arrivals":
                while any(s.arrived is None for s in self.stores.values()):
                    await anyio.sleep(0.01)
                self.report(event="arrivals", times=[s.arrived for s in self.stores.values()])
            else:
                return command

    async def mark(self, clients: dict[str, GlobalToZoneClient]) -> None:
        self._connects = {z: c.status.connects for z, c in clients.items()}
        self._resynced = {}
        for s in self.stores.values():
            s.upserts, s.removals, s.unchanged = Counter(), Counter(), Counter()

        def on_synced(zone: str, _kind: str) -> None:
            c = clients[zone]
            if zone not in self._resynced and c.synced and c.status.connects > self._connects[zone]:
                self._resynced[zone] = time.time()

        for z, c in clients.items():
            c.on_synced = partial(on_synced, z)
        self.report(event="marked")

    async def resynced(self, clients: dict[str, GlobalToZoneClient]) -> None:
        while len(self._resynced) < len(clients):
            await anyio.sleep(0.05)
        pending = set(self.zones)
        while pending:  # the full state, counted once each zone is back
            pending -= {z for z in pending if self._complete(self.stores[z])}
            await anyio.sleep(0.05)
        self.report(
            event="resynced",
            times=sorted(self._resynced.values()),
            upserts=sum((s.upserts for s in self.stores.values()), Counter()),
            removals=sum((s.removals for s in self.stores.values()), Counter()),
            unchanged=sum((s.unchanged for s in self.stores.values()), Counter()),
        )


async def read_command() -> str:
    line = await anyio.to_thread.run_sync(sys.stdin.readline)
    return line.strip() or "quit"


async def main(args: argparse.Namespace) -> None:
    # Reports keep the real stdout; anything else that prints goes to stderr (the caller's log file).
    report = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    configure_logging("console", "warning")
    fleet = Fleet(args, report)
    command = await fleet.session("initial")
    while command != "quit":
        if command == "disconnect":
            command = await read_command()
        elif command == "reconnect":
            command = await fleet.session("resumed")
        else:
            raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", required=True, help="grpc://HOST:PORT or grpcs://HOST:PORT")
    parser.add_argument("--zones", type=int, required=True)
    parser.add_argument("--ca-cert-file")
    parser.add_argument("--tokens-file", help="JSON: zone name -> zone token")
    parser.add_argument("--expect", nargs="*", default=[], help="KIND=COUNT each zone must hold before reporting")
    parser.add_argument("--first", type=int, default=0, help="the number of this process's first zone")
    parser.add_argument("--shared-decode", action="store_true", help="decode each wire resource once per process")
    anyio.run(main, parser.parse_args())
