"""A stream that looks alive while nothing flows: a zone that subscribes and then never ACKs."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from envoy.service.discovery.v3 import discovery_pb2

from meshgate.api.mesh.v1alpha1 import kds_pb2_grpc
from tests.support.kds_peer import kds_channel, kds_metadata
from tests.support.processes import ProcessGroup
from tests.support.wait import eventually

pytestmark = pytest.mark.e2e


async def test_unacked_response_is_reported_as_a_stall(procs: ProcessGroup) -> None:
    g = await procs.global_cp("global", "--kds-stall-threshold", "0.5")
    async with httpx.AsyncClient(base_url=g.url()) as http:
        assert (await http.put("/meshes/default", json={"type": "Mesh", "name": "default"})).status_code == 201

        async with kds_channel(g) as channel:
            metadata = await kds_metadata(g, "mute")
            call = kds_pb2_grpc.KDSSyncServiceStub(channel).GlobalToZoneSync(metadata=metadata)
            await call.write(discovery_pb2.DeltaDiscoveryRequest(type_url="Mesh", resource_names_subscribe=["*"]))
            first = await call.read()
            assert isinstance(first, discovery_pb2.DeltaDiscoveryResponse)
            assert [r.name for r in first.resources] == ["default."]
            # ...and never ACK it.

            async def warned() -> list[Any]:
                doc = (await http.get("/zones/mute/_overview")).json()
                return list(doc.get("warnings", []))

            await eventually(warned, what="a stall warning on the zone's insight")
            warnings = await warned()
            assert any("Mesh" in w and f"nonce {first.nonce}" in w for w in warnings), warnings
            async with httpx.AsyncClient(base_url=g.url("diagnostics")) as diag:
                metrics = (await diag.get("/metrics")).text
            assert 'meshgate_kds_stalls{zone="mute",type_url="Mesh"} 1' in metrics
            call.cancel()
    assert "kds.stall" in g.logs()
