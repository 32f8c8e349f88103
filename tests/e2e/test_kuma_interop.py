"""Interoperability with Kuma 2.7 (issue 11): peers that speak KDS as Kuma's zone and global do, against real
meshgate processes. The peers' kinds, nodes and metadata come from Kuma's source (tests/support/kuma_peer.py)."""

from __future__ import annotations

import base64
import itertools
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import grpc
import httpx
import pytest
from envoy.service.discovery.v3 import discovery_pb2

from meshgate.api.mesh.v1alpha1 import kds_pb2, kds_pb2_grpc
from meshgate.kds.envelope import from_wire
from meshgate.kds.naming import hashed_name
from meshgate.resources import codec, registry
from meshgate.testing import factory
from tests.support.kds_peer import kds_channel, kds_metadata
from tests.support.kuma_peer import (
    KUMA_GLOBAL_TO_ZONE_KINDS,
    KUMA_ZONE_FEATURES_METADATA,
    KUMA_ZONE_TO_GLOBAL_KINDS,
    FakeKumaGlobal,
    kuma_ack,
    kuma_global_resource,
    kuma_node,
    kuma_subscribe,
    kuma_zone_resource,
)
from tests.support.processes import CPProcess, ProcessGroup
from tests.support.wait import eventually

pytestmark = pytest.mark.e2e

MESH = {"type": "Mesh", "name": "default"}
GATEWAY = {
    "type": "MeshGateway",
    "mesh": "default",
    "name": "edge",
    "selectors": [{"match": {"kuma.io/service": "edge"}}],
    "conf": {"listeners": [{"port": 8080, "protocol": "HTTP", "hostname": "*"}]},
}


def route(name: str) -> dict[str, Any]:
    return {
        "type": "MeshGatewayRoute",
        "mesh": "default",
        "name": name,
        "selectors": [{"match": {"kuma.io/service": "edge"}}],
        "conf": {
            "http": {
                "rules": [
                    {
                        "matches": [{"path": {"match": "PREFIX", "value": "/"}}],
                        "backends": [{"destination": {"kuma.io/service": "backend"}}],
                    }
                ]
            }
        },
    }


async def put(cp: CPProcess, path: str, doc: dict[str, Any]) -> None:
    async with httpx.AsyncClient(base_url=cp.url(), headers=cp.admin_headers()) as c:
        r = await c.put(path, json=doc)
    assert r.status_code in (200, 201), r.text


async def _index(cp: CPProcess) -> Any:
    async with httpx.AsyncClient(base_url=cp.url(), headers=cp.admin_headers()) as c:
        return (await c.get("/")).json()


async def test_a_kuma_zone_gets_a_first_response_for_each_of_its_36_kinds_and_keeps_its_stream(
    procs: ProcessGroup,
) -> None:
    """A Kuma 2.7 zone subscribes to 36 kinds (pkg/kds/zone/components.go:121) with node and metadata as
    pkg/kds/v2/client/stream.go:211-231 and pkg/kds/mux/client.go:100-105 build them, and restarts its whole
    KDS client on a stream error (pkg/kds/mux/client.go:123-130). meshgate-global answers every kind: the
    gateway and policy kinds with their content, the kinds it does not serve empty; after the ACKs the stream stays
    open and later changes still arrive on it, while nothing more comes for the unknown kinds."""
    g = await procs.global_cp()
    await put(g, "/meshes/default", MESH)
    await put(g, "/meshes/default/meshgateways/edge", GATEWAY)
    await put(g, "/meshes/default/meshgatewayroutes/r1", route("r1"))
    # One of each of Kuma's source/destination policies (and ExternalService): served with their content.
    policies = [build() for build in factory.POLICY_BUILDERS.values()]
    for doc in policies:
        await put(g, f"/meshes/default/{registry.get(doc['type']).plural}/{doc['name']}", doc)
    node = kuma_node("zone-1", "zone-1-instance", config="{}")
    async with kds_channel(g) as channel:
        metadata = (*await kds_metadata(g, "zone-1"), *KUMA_ZONE_FEATURES_METADATA)
        call = kds_pb2_grpc.KDSSyncServiceStub(channel).GlobalToZoneSync(metadata=metadata)
        for kind in KUMA_GLOBAL_TO_ZONE_KINDS:
            await call.write(kuma_subscribe(kind, node))
        first: dict[str, discovery_pb2.DeltaDiscoveryResponse] = {}
        with anyio.fail_after(30):
            while len(first) < len(KUMA_GLOBAL_TO_ZONE_KINDS):
                resp = await call.read()
                assert isinstance(resp, discovery_pb2.DeltaDiscoveryResponse), resp
                assert resp.nonce
                first.setdefault(resp.type_url, resp)
                await call.write(kuma_ack(resp, "zone-1"))
        assert set(first) == set(KUMA_GLOBAL_TO_ZONE_KINDS)
        # Named as a Kuma global names them for a zone with `hash-suffix` (pkg/kds/context/context.go:84-90).
        assert [r.name for r in first["Mesh"].resources] == ["default."]
        assert [r.name for r in first["MeshGateway"].resources] == [f"{hashed_name('default', 'edge')}.default"]
        assert [r.name for r in first["MeshGatewayRoute"].resources] == [f"{hashed_name('default', 'r1')}.default"]
        # Every response names the global's instance (control_plane_id_callbacks.go); meta.version is "".
        index = await _index(g)
        assert {r.control_plane.identifier for r in first.values()} == {index["instanceId"]}
        envelope = kds_pb2.KumaResource.FromString(first["MeshGateway"].resources[0].resource.value)
        assert envelope.meta.version == ""
        gw = from_wire(registry.get("MeshGateway"), first["MeshGateway"].resources[0])
        assert gw.meta.labels == {"kuma.io/origin": "global", "kuma.io/display-name": "edge"}
        for doc in policies:
            (sent,) = first[doc["type"]].resources
            assert sent.name == f"{hashed_name('default', doc['name'])}.default", doc["type"]
            policy = from_wire(registry.get(doc["type"]), sent)
            assert policy.meta.labels == {"kuma.io/origin": "global", "kuma.io/display-name": doc["name"]}
        served = {"Mesh", "MeshGateway", "MeshGatewayRoute", "Secret", *factory.POLICY_BUILDERS}
        assert served <= set(KUMA_GLOBAL_TO_ZONE_KINDS)
        for kind in set(KUMA_GLOBAL_TO_ZONE_KINDS) - served:
            assert not first[kind].resources, kind
            assert not first[kind].removed_resources, kind

        # Still open: a new route arrives on the same stream, and no unknown kind is answered again.
        await put(g, "/meshes/default/meshgatewayroutes/r2", route("r2"))
        with anyio.fail_after(30):
            while True:
                resp = await call.read()
                assert isinstance(resp, discovery_pb2.DeltaDiscoveryResponse), resp
                assert resp.type_url in served, resp.type_url
                await call.write(kuma_ack(resp, "zone-1"))
                if any(r.name == f"{hashed_name('default', 'r2')}.default" for r in resp.resources):
                    break
        call.cancel()


@asynccontextmanager
async def kuma_global(peer: FakeKumaGlobal) -> AsyncIterator[int]:
    """`peer` served on a loopback port (yielded) by a grpc.aio server, stopped on exit."""
    server = grpc.aio.server()
    kds_pb2_grpc.add_KDSSyncServiceServicer_to_server(peer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield port
    finally:
        await server.stop(None)


async def test_a_meshgate_zone_answers_a_kuma_global_and_sends_node_in_every_request(procs: ProcessGroup) -> None:
    """A Kuma 2.7 global asks a zone for 22 kinds on ZoneToGlobalSync (pkg/kds/global/components.go:179-182).
    meshgate-zone answers each (empty for the 20 it does not serve), keeps the session, and a Dataplane
    created later goes up on the same stream. Every request it sends on GlobalToZoneSync carries `node`:
    id = the zone name, and on the first per kind Kuma's metadata (pkg/kds/v2/client/stream.go:211-228:
    version, config, control-plane-id, features as a list); its call metadata lists features one per value
    (pkg/kds/mux/client.go:100-105)."""
    peer = FakeKumaGlobal(
        seed={
            "Mesh": [kuma_global_resource(codec.load(MESH))],
            "MeshGateway": [kuma_global_resource(codec.load(GATEWAY))],
        }
    )
    async with kuma_global(peer) as port:
        z = await procs.zone_cp("zone-1", port, secure=False)

        def answered() -> bool:
            return {r.type_url for r in peer.responses} >= set(KUMA_ZONE_TO_GLOBAL_KINDS)

        await eventually(answered, timeout=30, what="a first response for each of the 22 kinds")
        firsts: dict[str, discovery_pb2.DeltaDiscoveryResponse] = {}
        for r in peer.responses:
            firsts.setdefault(r.type_url, r)
        for kind in set(KUMA_ZONE_TO_GLOBAL_KINDS) - {"Dataplane", "MeshGateway"}:
            assert not firsts[kind].resources, kind

        async with httpx.AsyncClient(base_url=z.url()) as c:
            await eventually(lambda: _ok(c.get("/meshes/default")), timeout=30, what="the mesh in the zone")
            dp = {
                "type": "Dataplane",
                "mesh": "default",
                "name": "web-1",
                "networking": {"address": "10.0.0.1", "inbound": [{"port": 80, "tags": {"kuma.io/service": "web"}}]},
            }
            assert (await c.put("/meshes/default/dataplanes/web-1", json=dp)).status_code == 201

        def dataplane_up() -> bool:
            return any(r.type_url == "Dataplane" and r.resources for r in peer.responses)

        await eventually(dataplane_up, timeout=30, what="the Dataplane on ZoneToGlobalSync")
        assert len(peer.attempts) == 1, peer.attempts  # one session throughout
        # Names both ways, as a Kuma zone's (context.go:94-103): the Dataplane goes up hash-suffixed and
        # labelled; the Kuma global's hash-suffixed MeshGateway is stored as received.
        assert all(r.control_plane.identifier for r in peer.responses)  # the zone's instance id
        (up,) = [w for r in peer.responses if r.type_url == "Dataplane" for w in r.resources]
        assert up.name == f"{hashed_name('default', 'web-1', 'zone-1', '')}.default"
        sent = from_wire(registry.get("Dataplane"), up)
        assert sent.meta.labels == {"kuma.io/origin": "zone", "kuma.io/zone": "zone-1", "kuma.io/display-name": "web-1"}
        async with httpx.AsyncClient(base_url=z.url()) as c:
            synced = (await c.get(f"/meshes/default/meshgateways/{hashed_name('default', 'edge')}")).json()
        assert synced["labels"]["kuma.io/display-name"] == "edge"

        # The kinds a meshgate zone subscribes to: the gateway kinds, Dataplanes, ZoneIngresses and the policy kinds.
        kinds = {
            "Mesh",
            "Secret",
            "MeshGateway",
            "MeshGatewayRoute",
            "Dataplane",
            "ZoneIngress",
            *factory.POLICY_BUILDERS,
        }
        assert {r.type_url for r in peer.requests if not r.response_nonce} == kinds
        for req in peer.requests:
            assert req.node.id == "zone-1", req
            if not req.response_nonce:
                md = req.node.metadata.fields
                assert [v.string_value for v in md["features"].list_value.values] == ["zone-ping-health", "hash-suffix"]
                assert md["control-plane-id"].string_value
                assert md["version"].struct_value.fields["kumaCp"].struct_value.fields["version"].string_value
                assert md["config"].WhichOneof("kind") == "string_value"
        assert any(r.response_nonce for r in peer.requests)  # ACKs were seen, and checked above
        (metadata,) = peer.call_metadata
        assert [v for k, v in metadata if k == "features"] == ["zone-ping-health", "hash-suffix"]
        assert ("client-id", "zone-1") in metadata
        assert z.running


async def _ok(response: Any) -> bool:
    return bool((await response).status_code == 200)


async def test_a_zone_backs_off_from_a_global_that_ends_every_session(procs: ProcessGroup) -> None:
    """A global that ends every session at once must not see a reconnect loop (issue 11: 170 reconnects in
    15 s). meshgate's Backoff (1 s growing to 1 min; Kuma: 5 s to 1 min, pkg/config/app/kuma-cp/config.go:408-409)
    makes the delays [0.5, 1], [1, 2], [2, 4] s: four attempts take at least 3.5 s, and the third gap is longer
    than the first. Bounds are generous: they count attempts, never time a single one."""
    peer = FakeKumaGlobal(end_at_once=True)
    async with kuma_global(peer) as port:
        z = await procs.zone_cp("zone-1", port, secure=False)
        await eventually(lambda: len(peer.attempts) >= 4, timeout=60, what="four connection attempts")
        t = peer.attempts[:4]
        gaps = [b - a for a, b in itertools.pairwise(t)]
        assert t[3] - t[0] >= 3.5 * 0.9, gaps
        assert all(gap >= 0.4 for gap in gaps), gaps
        assert gaps[2] > gaps[0], gaps
        assert z.running


async def _first_responses(
    call: Any, kinds: tuple[str, ...], node_id: str
) -> dict[str, discovery_pb2.DeltaDiscoveryResponse]:
    """Reads until each of `kinds` has had its first response, ACKing each as a Kuma zone does."""
    first: dict[str, discovery_pb2.DeltaDiscoveryResponse] = {}
    with anyio.fail_after(30):
        while len(first) < len(kinds):
            resp = await call.read()
            assert isinstance(resp, discovery_pb2.DeltaDiscoveryResponse), resp
            assert resp.type_url not in first, f"a second response for {resp.type_url} before every first one"
            first[resp.type_url] = resp
            await call.write(kuma_ack(resp, node_id))
    return first


async def test_a_kuma_zone_without_hash_suffix_gets_names_as_stored(procs: ProcessGroup) -> None:
    """context.go:204: the global hash-suffixes only for a zone that lists `hash-suffix`; a zone older than
    2.6 gets `edge.default`, as a Kuma global sends it."""
    g = await procs.global_cp()
    await put(g, "/meshes/default", MESH)
    await put(g, "/meshes/default/meshgateways/edge", GATEWAY)
    node = kuma_node("zone-1", "zone-1-instance")
    node.metadata.fields["features"].list_value.Clear()
    async with kds_channel(g) as channel:
        metadata = (*await kds_metadata(g, "zone-1"), ("kds-version", "v3"), ("features", "zone-ping-health"))
        call = kds_pb2_grpc.KDSSyncServiceStub(channel).GlobalToZoneSync(metadata=metadata)
        for kind in ("Mesh", "MeshGateway"):
            await call.write(kuma_subscribe(kind, node))
        first = await _first_responses(call, ("Mesh", "MeshGateway"), "zone-1")
        assert [r.name for r in first["MeshGateway"].resources] == ["edge.default"]
        call.cancel()


def _dataplane(name: str) -> Any:
    return codec.load(
        {
            "type": "Dataplane",
            "mesh": "default",
            "name": name,
            "networking": {"address": "10.0.0.1", "inbound": [{"port": 80, "tags": {"kuma.io/service": "backend"}}]},
        }
    )


async def _serve_zone_to_global(
    g: CPProcess, zone: str, features: tuple[str, ...], dataplanes: list[discovery_pb2.Resource]
) -> list[discovery_pb2.DeltaDiscoveryRequest]:
    """A Kuma zone's side of ZoneToGlobalSync (pkg/kds/zone/components.go: the zone serves its cache over the
    call it opened): the global subscribes, the zone answers every kind once (Dataplane with `dataplanes`),
    and the global's ACK or NACK of the Dataplanes is returned with the requests before it."""
    seen: list[discovery_pb2.DeltaDiscoveryRequest] = []
    async with kds_channel(g) as channel:
        metadata = (*await kds_metadata(g, zone), ("kds-version", "v3"), *(("features", f) for f in features))
        call = kds_pb2_grpc.KDSSyncServiceStub(channel).ZoneToGlobalSync(metadata=metadata)
        nonce = 0
        with anyio.fail_after(30):
            while True:
                req = await call.read()
                assert isinstance(req, discovery_pb2.DeltaDiscoveryRequest), req
                seen.append(req)
                if req.response_nonce:
                    if req.type_url == "Dataplane":
                        break
                    continue
                nonce += 1
                resources = dataplanes if req.type_url == "Dataplane" else []
                await call.write(
                    discovery_pb2.DeltaDiscoveryResponse(type_url=req.type_url, nonce=str(nonce), resources=resources)
                )
        call.cancel()
    return seen


async def test_a_kuma_zone_sends_dataplanes_up_and_the_global_stores_them_as_named(procs: ProcessGroup) -> None:
    """pkg/kds/v2/store/sync.go GlobalSyncCallback: from a zone with `hash-suffix` the global stores the
    hash-suffixed name the zone chose, labelled with the zone; from a zone without it, `<zone>.<name>`.
    The global's requests carry `node` (id: the zone) as Kuma's global sends them (components.go:179)."""
    g = await procs.global_cp()
    await put(g, "/meshes/default", MESH)
    dp = _dataplane("backend-01")
    modern = await _serve_zone_to_global(
        g, "zone-1", ("zone-ping-health", "hash-suffix"), [kuma_zone_resource(dp, "zone-1")]
    )
    assert not modern[-1].HasField("error_detail"), modern[-1]  # ACK
    assert all(r.node.id == "zone-1" for r in modern)
    assert {r.type_url for r in modern if not r.response_nonce} >= {"Dataplane", "MeshGateway"}
    legacy = await _serve_zone_to_global(
        g, "zone-2", ("zone-ping-health",), [kuma_zone_resource(dp, "zone-2", hash_suffix=False)]
    )
    assert not legacy[-1].HasField("error_detail"), legacy[-1]

    async with httpx.AsyncClient(base_url=g.url(), headers=g.admin_headers()) as c:
        hashed = (
            await c.get(f"/meshes/default/dataplanes/{hashed_name('default', 'backend-01', 'zone-1', '')}")
        ).json()
        old = (await c.get("/meshes/default/dataplanes/zone-2.backend-01")).json()
    assert hashed["labels"] == {
        "kuma.io/origin": "zone",
        "kuma.io/zone": "zone-1",
        "kuma.io/display-name": "backend-01",
    }
    assert old["labels"]["kuma.io/zone"] == "zone-2"
    assert old["labels"]["kuma.io/display-name"] == "backend-01"


async def test_a_6_mib_initial_state_reaches_a_kuma_zone_in_one_response(procs: ProcessGroup) -> None:
    """A Kuma zone takes the first response per kind as the whole state and deletes what it lacks
    (pkg/kds/v2/store/sync.go:179-184, IsInitialRequest). Ten 640 KiB Secrets (6.25 MiB) go out in one response,
    under Kuma's 10 MiB default (`--kds-max-msg-size`)."""
    g = await procs.global_cp()
    await put(g, "/meshes/default", MESH)
    blob = base64.b64encode(os.urandom(640 * 1024)).decode()
    for i in range(10):
        await put(
            g,
            f"/meshes/default/secrets/big-{i}",
            {"type": "Secret", "mesh": "default", "name": f"big-{i}", "data": blob},
        )
    node = kuma_node("zone-1", "zone-1-instance")
    async with kds_channel(g) as channel:
        metadata = (*await kds_metadata(g, "zone-1"), *KUMA_ZONE_FEATURES_METADATA)
        call = kds_pb2_grpc.KDSSyncServiceStub(channel).GlobalToZoneSync(metadata=metadata)
        await call.write(kuma_subscribe("Secret", node))
        first = await _first_responses(call, ("Secret",), "zone-1")
        names = {r.name for r in first["Secret"].resources}
        assert {f"big-{i}.default" for i in range(10)} <= names  # Secrets keep their names (context.go:87)
        assert first["Secret"].ByteSize() > 6 * 1024 * 1024
        call.cancel()
