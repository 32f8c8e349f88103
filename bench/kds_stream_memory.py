"""What KDS streams cost the global in memory, and whether a closed stream gives it back.

The security issue's third attack: 40 streams under distinct client-ids, each offering ~3.3 MB of initial
versions, took a global from 490 MiB to 1,758 MiB and never released it (closed streams kept their whole state
per client-id). This replays it against a real global process with the secure defaults (each zone with a token
the global issued, over TLS) for several rounds, and prints the global's RSS before, while the 40 streams are
open, and after they close, each round. The baseline is the same process before the first round: with closed
streams keeping only counters, RSS after a round stays near the first round's instead of growing by the
offered state every round. (CPython rarely returns freed memory to the OS, so "after" is compared round to
round, not to the baseline; how much the allocator hands back after a round varies from round to round, so
the steadier sign of state kept across rounds is the RSS while the streams are open: with nothing kept it
stays at round 1's, with each round's state kept it would grow by it.)

Usage: python bench/kds_stream_memory.py [--zones 40] [--versions 30000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import anyio  # noqa: E402
import grpc  # noqa: E402
from envoy.service.discovery.v3 import discovery_pb2  # noqa: E402

import meshgate.resources  # noqa: E402, F401  (import order: resources before store)
from meshgate.api.mesh.v1alpha1 import kds_pb2_grpc  # noqa: E402
from meshgate.testing.kds_peer import kds_channel  # noqa: E402
from meshgate.testing.processes import CPProcess, global_argv, issue_zone_token  # noqa: E402

MIB = 1024 * 1024


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def subscribe(versions: int, round_: int) -> discovery_pb2.DeltaDiscoveryRequest:
    # ~110 bytes an entry: a wire name of 88 characters and a 20-character version, as the attack offered.
    offered = {f"gw-{round_}-{i:06d}-{'x' * 70}.default": f"{i:020x}" for i in range(versions)}
    return discovery_pb2.DeltaDiscoveryRequest(
        type_url="MeshGateway", resource_names_subscribe=["*"], initial_resource_versions=offered
    )


async def one_round(g: CPProcess, tokens: dict[str, str], versions: int, round_: int) -> tuple[float, float, int]:
    """Opens a stream per zone (all at once), measures, closes them all, measures again."""
    request = subscribe(versions, round_)
    size = request.ByteSize()
    async with kds_channel(g) as channel:
        stub = kds_pb2_grpc.KDSSyncServiceStub(channel)
        calls = []
        for zone, token in tokens.items():
            metadata = (
                ("client-id", zone),
                ("zone-instance-id", f"bench-{round_}"),
                ("authorization", f"Bearer {token}"),
            )
            call = stub.GlobalToZoneSync(metadata=metadata)
            await call.write(request)
            calls.append(call)
        for call in calls:  # the global answered: it has read and kept the offered versions
            await call.read()
        await anyio.sleep(1.0)
        open_rss = rss_mib(g.proc.pid)
        for call in calls:
            call.cancel()
    await anyio.sleep(2.0)  # the global sees the cancellations and closes the streams
    return open_rss, rss_mib(g.proc.pid), size


async def main(zones: int, versions: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory(prefix="kds-memory-") as tmp:
        work = Path(tmp)
        argv = global_argv("--store", "memory", "--data-dir", str(work / "global"), "--log-level", "warning")
        g = CPProcess("global_cp", argv, work, "global")
        try:
            await g.wait_ready()
            tokens = {f"zone-{i}": await issue_zone_token(g, f"zone-{i}") for i in range(zones)}
            await anyio.sleep(1.0)
            baseline = rss_mib(g.proc.pid)
            print(f"global RSS before any stream: {baseline:.0f} MiB")
            after_first = open_first = 0.0
            for r in range(rounds):
                open_rss, closed_rss, size = await one_round(g, tokens, versions, r)
                after_first = after_first or closed_rss
                open_first = open_first or open_rss
                print(
                    f"round {r + 1}: {zones} streams x {size / MIB:.1f} MB offered: {open_rss:.0f} MiB while open"
                    f" ({open_rss / open_first:.2f}x round 1's), {closed_rss:.0f} MiB after close"
                    f" ({closed_rss / baseline:.2f}x baseline, {closed_rss / after_first:.2f}x round 1's)"
                )
        except grpc.aio.AioRpcError as exc:
            print(f"the global refused: {exc.code().name}: {exc.details()}")
            raise
        finally:
            g.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zones", type=int, default=40)
    parser.add_argument("--versions", type=int, default=30_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    anyio.run(main, args.zones, args.versions, args.rounds)
