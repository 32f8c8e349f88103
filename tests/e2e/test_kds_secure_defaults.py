"""KDS is secure by default: TLS from the global's own CA, zone tokens required, one instance per zone.

Each attack that worked against the old defaults is replayed against real processes and must do no harm.
"""

from __future__ import annotations

from typing import Any

import grpc
import httpx
import pytest
from envoy.service.discovery.v3 import discovery_pb2

from meshgate.api.mesh.v1alpha1 import kds_pb2_grpc
from meshgate.auth.jwt import unverified_payload
from meshgate.kds import ownership
from meshgate.kds.envelope import to_wire
from meshgate.resources import codec, registry
from meshgate.testing import factory
from tests.support.kds_peer import kds_channel, kds_metadata
from tests.support.processes import CPProcess, ProcessGroup, issue_zone_token
from tests.support.wait import eventually

pytestmark = pytest.mark.e2e

MESH = {"type": "Mesh", "name": "default"}


def dataplane(name: str, address: str, service: str, mesh: str = "default") -> dict[str, Any]:
    return factory.dataplane(name, service, mesh=mesh, address=address, port=80)


async def get(cp: CPProcess, path: str) -> Any:
    async with httpx.AsyncClient(base_url=cp.url(), timeout=10) as c:
        r = await c.get(path)
    return r.json() if r.status_code == 200 else None


async def put(cp: CPProcess, path: str, doc: dict[str, Any]) -> int:
    async with httpx.AsyncClient(base_url=cp.url(), timeout=10) as c:
        return (await c.put(path, json=doc)).status_code


async def kds_status(z: CPProcess) -> dict[str, Any]:
    status = await get(z, "/status/kds")
    assert status is not None
    return dict(status)


async def addresses(cp: CPProcess, service: str) -> set[str]:
    """Addresses of the Dataplanes of `service` that `cp` holds (its own and relayed ones)."""
    listed = await get(cp, "/meshes/default/dataplanes")
    return {
        i["networking"]["address"]
        for i in (listed or {"items": []})["items"]
        if i["networking"]["inbound"][0]["tags"]["kuma.io/service"] == service
    }


async def status_of(call: Any) -> tuple[grpc.StatusCode, str]:
    try:
        while await call.read() is not grpc.aio.EOF:  # type: ignore[attr-defined]
            pass
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details() or ""
    return await call.code(), await call.details()


async def test_a_global_with_no_flags_serves_tls_from_its_own_ca_and_requires_tokens(procs: ProcessGroup) -> None:
    g = await procs.global_cp()
    ca = g.kds_ca_file
    assert ca is not None
    assert ca.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    assert "kds.tls.enabled" in g.logs()
    assert str(ca) in g.logs()  # the path an operator hands to zones
    assert await put(g, "/meshes/default", MESH) == 201

    # The harness's zone: grpcs:// trusting that CA, a token from the global's API.
    z = await procs.zone_cp("zone-1", g.ports["kds"])
    assert z.args[z.args.index("--global-address") + 1].startswith("grpcs://")
    await eventually(lambda: get(z, "/meshes/default"), what="the mesh in zone-1")

    # Plaintext is not served, and TLS without a token is refused: neither syncs nor leaves a Zone record.
    plain = await procs.zone_cp("zone-plain", g.ports["kds"], secure=False)
    anonymous = await procs.zone_cp("zone-anon", g.ports["kds"], token=False)

    async def failed(zone: CPProcess, text: str) -> bool:
        return text in (await kds_status(zone))["lastError"]

    await eventually(lambda: failed(plain, "grpcs://"), what="the plaintext zone told to use grpcs://")
    await eventually(lambda: failed(anonymous, "UNAUTHENTICATED: missing zone token"), what="the tokenless zone")
    for zone in (plain, anonymous):
        assert (await kds_status(zone))["connects"] == 0
        assert await get(zone, "/meshes/default") is None
    zones = await get(g, "/zones")
    assert [i["name"] for i in zones["items"]] == ["zone-1"]


async def test_the_opt_outs_warn_at_start(procs: ProcessGroup) -> None:
    g = await procs.global_cp("global", "--no-kds-tls-enabled", "--kds-auth", "none")
    logs = g.logs()
    assert "kds.tls.disabled" in logs
    assert "KDS is plaintext" in logs
    assert "kds.auth.disabled" in logs
    assert await put(g, "/meshes/default", MESH) == 201
    z = await procs.zone_cp("zone-1", g.ports["kds"])
    assert "--cp-token-path" not in z.args
    assert "--kds-ca-cert-file" not in z.args
    await eventually(lambda: get(z, "/meshes/default"), what="the mesh over plaintext")


async def test_a_stolen_zone_name_is_refused_and_the_zones_dataplanes_stay_everywhere(procs: ProcessGroup) -> None:
    """Attack 1, even with a stolen valid token: a second client as zone-3 with an empty state. Refused with
    ALREADY_EXISTS; zone-3's Dataplane stays on the global and in zone-1, and zone-3 stays connected."""
    g = await procs.global_cp()
    assert await put(g, "/meshes/default", MESH) == 201
    z1 = await procs.zone_cp("zone-1", g.ports["kds"])
    z3 = await procs.zone_cp("zone-3", g.ports["kds"])
    assert await put(z3, "/meshes/default/dataplanes/echo-1", dataplane("echo-1", "10.3.0.1", "echo")) == 201
    await eventually(lambda: _eq(addresses(z1, "echo"), {"10.3.0.1"}), what="zone-3's echo relayed to zone-1")

    async with kds_channel(g) as channel:
        stolen = await kds_metadata(g, "zone-3", instance="attacker")
        stub = kds_pb2_grpc.KDSSyncServiceStub(channel)
        up = stub.ZoneToGlobalSync(metadata=stolen)
        code, details = await status_of(up)
        assert code == grpc.StatusCode.ALREADY_EXISTS
        assert "zone 'zone-3' already has a KDS stream from instance" in details
        down = stub.GlobalToZoneSync(metadata=stolen)
        await down.write(discovery_pb2.DeltaDiscoveryRequest(type_url="Mesh", resource_names_subscribe=["*"]))
        assert (await status_of(down))[0] == grpc.StatusCode.ALREADY_EXISTS

    assert await addresses(g, "echo") == {"10.3.0.1"}
    assert await addresses(z1, "echo") == {"10.3.0.1"}
    status = await kds_status(z3)
    assert (status["connected"], status["connects"]) == (True, 1)
    assert "kds.stream.refused_busy" in g.logs()


async def test_injected_dataplanes_need_a_token_and_a_mesh_the_global_has(procs: ProcessGroup) -> None:
    """Attack 2: a new client-id injecting a Dataplane for echo_default_svc_80 -> 10.6.6.6, and resources in
    a mesh that does not exist. Without a token: refused. With one: the unknown mesh is NACKed by name, and
    nothing of it is stored or relayed."""
    g = await procs.global_cp()
    assert await put(g, "/meshes/default", MESH) == 201
    z1 = await procs.zone_cp("zone-1", g.ports["kds"])
    await eventually(lambda: get(z1, "/meshes/default"), what="the mesh in zone-1")

    def evil(name: str, mesh: str) -> discovery_pb2.Resource:
        r = codec.load(dataplane(name, "10.6.6.6", "echo_default_svc_80", mesh))
        return to_wire(ownership.to_global("zone-evil", r))

    async with kds_channel(g) as channel:
        stub = kds_pb2_grpc.KDSSyncServiceStub(channel)
        anonymous = stub.ZoneToGlobalSync(metadata=await kds_metadata(g, "zone-evil", token=False))
        code, details = await status_of(anonymous)
        assert code == grpc.StatusCode.UNAUTHENTICATED
        assert "missing zone token" in details

        call = stub.ZoneToGlobalSync(metadata=await kds_metadata(g, "zone-evil"))
        subscribed: set[str] = set()
        while subscribed != {d.name for d in registry.kinds_sent_to_global()}:
            subscribed.add((await call.read()).type_url)
        injected = evil("evil-1", "ghost")
        await call.write(discovery_pb2.DeltaDiscoveryResponse(type_url="Dataplane", nonce="1", resources=[injected]))
        nack = await call.read()
        call.cancel()
    assert injected.name in nack.error_detail.message  # named as the zone sent it
    assert "mesh 'ghost' does not exist on the global" in nack.error_detail.message
    assert await get(g, "/meshes/ghost/dataplanes") in (None, {"items": [], "total": 0, "next": None})
    assert await addresses(z1, "echo_default_svc_80") == set()


async def test_zone_picks_up_a_rewritten_token_file_and_an_expired_stream_is_closed(
    procs: ProcessGroup,
) -> None:
    """The global re-checks open streams' tokens: a token that expires while its stream is open gets the
    stream closed (UNAUTHENTICATED, expired). The operator rewrites the token file; the same zone process
    reads it and reconnects, without a restart."""
    g = await procs.global_cp("global", "--kds-token-recheck-interval", "0.5")
    assert await put(g, "/meshes/default", MESH) == 201
    token_file = procs.workdir / "zone-1.short.token"
    token_file.write_text(await issue_zone_token(g, "zone-1", valid_for="10s"))
    z = await procs.zone_cp("zone-1", g.ports["kds"], "--cp-token-path", str(token_file))
    pid = z.proc.pid
    await eventually(lambda: _connected(z), what="zone-1 connected with its short-lived token")

    async def expired() -> bool:
        status = await kds_status(z)
        return not status["connected"] and "expired" in status["lastError"]

    await eventually(expired, timeout=30, what="zone-1's stream closed when its token expired")
    assert "UNAUTHENTICATED" in (await kds_status(z))["lastError"]
    assert "kds.auth.recheck_failed" in g.logs()

    token_file.write_text(await issue_zone_token(g, "zone-1", valid_for="1h") + "\n")

    async def back() -> bool:
        status = await kds_status(z)
        return bool(status["connected"]) and status["connects"] >= 2

    await eventually(back, timeout=30, what="zone-1 reconnected with the new token")
    assert z.running  # the same process: no restart
    assert z.proc.pid == pid
    assert "zone.cp_token.reloaded" in z.logs()
    # The new token cut the reconnect backoff short (the zone did not wait out its delay).
    assert "kds.client.credentials_changed" in z.logs()


async def _connected(z: CPProcess) -> bool:
    return bool((await kds_status(z))["connected"])


async def _eq(value: Any, expected: object) -> bool:
    return bool(await value == expected)


async def test_a_revoked_zone_token_closes_its_open_stream_at_once_and_a_fake_zone_with_it_is_refused(
    procs: ProcessGroup,
) -> None:
    """A token minted and then revoked through the API (`POST /tokens/revocations`, the token's `jti`): the real
    zone streaming with it is closed at once (no recheck interval involved: the default is 60 s), and a fake zone
    presenting it afterwards is refused as revoked. Another token for the same zone still works."""
    g = await procs.global_cp()
    assert await put(g, "/meshes/default", MESH) == 201
    token = await issue_zone_token(g, "zone-1")
    token_file = procs.workdir / "zone-1.revoked.token"
    token_file.write_text(token)
    z = await procs.zone_cp("zone-1", g.ports["kds"], "--cp-token-path", str(token_file))
    await eventually(lambda: _connected(z), what="zone-1 connected")

    jti = unverified_payload(token)["jti"]
    async with httpx.AsyncClient(base_url=g.url(), timeout=10) as c:
        r = await c.post("/tokens/revocations", json={"type": "zone", "id": jti})
    assert r.status_code == 200, r.text

    async def revoked() -> bool:
        status = await kds_status(z)
        return not status["connected"] and "revoked" in (status["lastError"] or "")

    await eventually(revoked, timeout=20, what="zone-1's stream closed when its token was revoked")

    async with kds_channel(g) as channel:
        stub = kds_pb2_grpc.KDSSyncServiceStub(channel)
        metadata = (("client-id", "zone-1"), ("zone-instance-id", "thief"), ("authorization", f"Bearer {token}"))
        code, details = await status_of(stub.GlobalToZoneSync(metadata=metadata))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert "revoked" in details

    token_file.write_text(await issue_zone_token(g, "zone-1"))
    await eventually(lambda: _connected(z), timeout=30, what="zone-1 back with a fresh token")
