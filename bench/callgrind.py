"""Instruction counts of the hot paths against their baselines, under `valgrind --tool=callgrind` (issue 16, 6).

Wall-clock ratios on a shared machine swing between runs; instructions executed do not: the same code on the same
input runs the same instructions whatever else the machine is doing. For each hot path this runs one worker
process per side and size under callgrind and reports instructions per operation as the difference between a
run of N operations and a run of 2N (both pay the same interpreter start, imports and setup, which cancel out):

    dns       the UDP server's per-datagram path (`_Udp.datagram_received`, an answer remembered and one not:
              `answer`) vs a bare echo protocol's, both sending into the same stub transport
    kds       one changed MeshGatewayRoute on the global: its snapshot entry, the new snapshot revision, the
              sender's response, serialized, and the ACK received; vs building the same response bytes directly
              (the envelope serialized, the DeltaDiscoveryResponse constructed and serialized)
    apply     the zone applying that response (decode, ownership, validation, the memory store's write, the ACK)
              vs decoding the response, the envelope and the spec only
    xds       `meshgate.xds.generate` for 20 gateway proxies over --routes routes vs constructing the same Envoy
              messages from a precomputed plan (bench/gateway_latency.py's `build_direct`, which asserts equality)

Usage: python bench/callgrind.py [--cases dns,kds,apply,xds] [--n 2000] [--routes 1000] [--json]
Needs valgrind (Debian's `valgrind`). PYTHONHASHSEED is fixed so that dict and set orders repeat too.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, bench/ comes first on sys.path, where bench/dns.py would shadow dnspython's `dns`.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

Op = Callable[[int], None]

# Distinct changes prepared for the kds case: more than its largest run (2N plus the warm-up) needs.
CHANGES = 600
# Per case: the operations per run (scaled by --n) for each side; xDS builds are big, so few.
SCALE = {"dns": 1.0, "kds": 0.1, "apply": 0.1, "xds": 0.001}


def _dns(side: str, routes: int) -> Op:
    from ipaddress import IPv4Address

    import dns.message

    from bench.dns import _Echo, names
    from meshgate.dns.responder import Table, answer
    from meshgate.dns.server import DnsServer, _Udp

    table = Table("mesh", {name: IPv4Address(0xF0000001 + i) for i, name in enumerate(names(10_000))})
    queries = [dns.message.make_query(name, "A").to_wire() for name in names(1000)]
    sent: list[bytes] = []

    class Transport:
        def sendto(self, data: bytes, addr: Any) -> None:
            sent.append(data)

    addr = ("127.0.0.1", 5353)
    if side == "echo":
        echo = _Echo()
        echo.connection_made(Transport())  # type: ignore[arg-type]
        handle = echo.datagram_received
    elif side == "first-answer":
        # The answer path a query takes the first time (nothing remembered): build the answer from the table.
        def handle(data: bytes, addr: Any) -> None:
            table.answers.clear()
            sent.append(answer(data, table) or b"")
    else:
        udp = _Udp(DnsServer(table), None)  # type: ignore[arg-type]  # no upstream: the task group is never used
        udp.connection_made(Transport())  # type: ignore[arg-type]
        handle = udp.datagram_received
    for q in queries:  # warm: every name answered once, so "remembered" measures the steady state
        handle(q, addr)

    def op(n: int) -> None:
        for i in range(n):
            handle(queries[i % len(queries)], addr)
        sent.clear()

    return op


def _route(i: int, k: int) -> Any:
    from bench.propagation import route_doc
    from meshgate.resources import codec

    return codec.load(route_doc(i, prefix=f"/changed/{k}"))


def _kds_setup(routes: int) -> tuple[Any, Any, Any]:
    from envoy.service.discovery.v3 import discovery_pb2

    from bench.propagation import route_doc
    from meshgate.delta.entry import Entry
    from meshgate.delta.snapshot import KindSnapshot
    from meshgate.kds import ownership
    from meshgate.kds.envelope import to_wire
    from meshgate.kds.sender import Sender
    from meshgate.resources import codec

    def entry(r: Any) -> Entry:
        return Entry.of(to_wire(ownership.to_zone(r, hash_suffix=False)))

    snapshot = KindSnapshot.of("MeshGatewayRoute", [entry(codec.load(route_doc(i))) for i in range(routes)])
    sender = Sender(["MeshGatewayRoute"])
    sender.receive(discovery_pb2.DeltaDiscoveryRequest(type_url="MeshGatewayRoute"), 0)
    while (resp := sender.next_response(snapshot, 0)) is not None:
        sender.receive(discovery_pb2.DeltaDiscoveryRequest(type_url="MeshGatewayRoute", response_nonce=resp.nonce), 0)
    return snapshot, sender, entry


def _kds(side: str, routes: int) -> Op:
    from envoy.service.discovery.v3 import discovery_pb2
    from google.protobuf import any_pb2

    from meshgate.kds import ownership
    from meshgate.kds.envelope import to_envelope

    snapshot, sender, entry = _kds_setup(routes)
    # Each operation changes a route to content it never had, so the sender always has something to send.
    changes = [_route(i % routes, i) for i in range(CHANGES)]
    state = {"snapshot": snapshot, "next": 0}

    if side == "direct":

        def op(n: int) -> None:
            for i in range(n):
                r = ownership.to_zone(changes[i % len(changes)], hash_suffix=False)
                env = to_envelope(r).SerializeToString()
                resp = discovery_pb2.DeltaDiscoveryResponse(
                    type_url="MeshGatewayRoute",
                    nonce=str(i),
                    system_version_info=str(i),
                    resources=[
                        discovery_pb2.Resource(
                            name=r.meta.name, version=str(i), resource=any_pb2.Any(type_url="kds", value=env)
                        )
                    ],
                )
                resp.SerializeToString()

        return op

    def op_ours(n: int) -> None:
        for _ in range(n):
            e = entry(changes[state["next"]])
            state["next"] += 1
            snap = state["snapshot"] = state["snapshot"].evolve({e.name: e})
            resp = sender.next_response(snap, 0)
            assert resp is not None
            resp.SerializeToString()
            sender.receive(
                discovery_pb2.DeltaDiscoveryRequest(type_url="MeshGatewayRoute", response_nonce=resp.nonce), 0
            )

    return op_ours


def _apply(side: str, routes: int) -> Op:
    from envoy.service.discovery.v3 import discovery_pb2

    from meshgate.api.mesh.v1alpha1 import kds_pb2
    from meshgate.kds.receiver import Receiver
    from meshgate.resources import codec, registry
    from meshgate.store.memory import MemoryStore

    snapshot, sender, entry = _kds_setup(routes)
    frames = []
    for k in range(256):
        e = entry(_route(k % routes, k))
        snapshot = snapshot.evolve({e.name: e})
        resp = sender.next_response(snapshot, 0)
        assert resp is not None
        sender.receive(discovery_pb2.DeltaDiscoveryRequest(type_url="MeshGatewayRoute", response_nonce=resp.nonce), 0)
        frames.append(resp.SerializeToString())

    if side == "decode":
        spec_type = registry.get("MeshGatewayRoute").spec_type

        def op(n: int) -> None:
            for i in range(n):
                resp = discovery_pb2.DeltaDiscoveryResponse.FromString(frames[i % len(frames)])
                for wire in resp.resources:
                    env = kds_pb2.KumaResource.FromString(wire.resource.value)
                    spec_type.FromString(env.spec.value)

        return op

    from functools import partial

    from meshgate.kds import ownership

    store = MemoryStore()
    receiver = Receiver(
        [registry.get(k) for k in ("MeshGatewayRoute",)],
        codec.validate,
        accept=partial(ownership.zone_accepts, "zone-1"),
    )
    receiver.subscribe({})

    def run(coro: Any) -> None:  # the memory store awaits nothing: drive its coroutine without a loop
        try:
            coro.send(None)
        except StopIteration:
            return
        raise RuntimeError("the memory store awaited")

    def op_ours(n: int) -> None:
        for i in range(n):
            plan = receiver.receive(discovery_pb2.DeltaDiscoveryResponse.FromString(frames[i % len(frames)]))
            assert not plan.rejections, plan.rejections
            run(store.apply_sync(plan.kind, [r for _, _, r in plan.upserts], [k for _, k in plan.removals]))
            receiver.applied(plan)

    return op_ours


def _xds(side: str, routes: int) -> Op:
    from bench.gateway_latency import build_direct, build_generate, direct_plan, scale_inputs

    gateways = 20
    gws, rts, proxies, dps = scale_inputs(routes, gateways)
    plan = direct_plan(routes, gateways)

    def op(n: int) -> None:
        for _ in range(n):
            if side == "direct":
                build_direct(plan, 8080)
            else:
                build_generate(gws, rts, proxies, dps)

    return op


CASES: dict[str, tuple[Callable[[str, int], Op], tuple[str, ...]]] = {
    "dns": (_dns, ("echo", "remembered", "first-answer")),
    "kds": (_kds, ("direct", "sender")),
    "apply": (_apply, ("decode", "receiver")),
    "xds": (_xds, ("direct", "generate")),
}


def worker(case: str, side: str, n: int, routes: int) -> None:
    import gc

    op = CASES[case][0](side, routes)
    op(max(1, n // 10))  # warm caches and lazily built tables on both runs alike
    gc.collect()
    op(n)


def instructions(case: str, side: str, n: int, routes: int, work: Path) -> int:
    out = work / f"{case}-{side}-{n}.cg"
    cmd = [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={out}",
        sys.executable,
        __file__,
        "--worker",
        f"{case}:{side}:{n}:{routes}",
    ]
    env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    for line in out.read_text().splitlines():
        if line.startswith("summary:"):
            return int(line.split()[1])
    raise RuntimeError(f"no summary in {out}")


def per_op(case: str, side: str, n: int, routes: int, work: Path) -> float:
    one, two = instructions(case, side, n, routes, work), instructions(case, side, 2 * n, routes, work)
    return (two - one) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--n", type=int, default=2000, help="operations per run of the dns case (others scaled)")
    parser.add_argument("--routes", type=int, default=1000)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        case, side, n, routes = args.worker.split(":")
        worker(case, side, int(n), int(routes))
        return
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not on PATH: apt-get install valgrind")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="meshgate-callgrind-") as tmp:
        for case in args.cases.split(","):
            sides = CASES[case][1]
            n = max(2, round(args.n * SCALE[case]))
            counts = {side: per_op(case, side, n, args.routes, Path(tmp)) for side in sides}
            base = counts[sides[0]]
            for side in sides:
                rows.append(
                    {"case": case, "side": side, "n": n, "instructions": counts[side], "ratio": counts[side] / base}
                )
                if not args.json:
                    print(
                        f"{case:<6}{side:<14}{counts[side]:>16,.0f} instructions/op{counts[side] / base:>9.2f}x"
                        f"   (N={n} vs 2N)",
                        flush=True,
                    )
    if args.json:
        print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
