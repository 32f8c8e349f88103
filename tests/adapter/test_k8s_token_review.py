"""Gateway Pods on a Kubernetes zone authenticate their xDS stream with a projected service account token.

The real boundary is a Kubernetes API server answering TokenReviews, which cannot run here: these tests use
`meshgate.k8s.testing.FakeKubeApi`, which issues service account tokens and reviews them as the API server
does (audiences, Pod binding, `system:serviceaccount:<ns>:<sa>`), directly and behind the HTTP fake API server
(`tests.k8s_support.fake_api_server`) through lightkube. What a real cluster adds (signatures, the kubelet's
token rotation) is not exercised.

The zone's gate (`zone_cp.dp_server.DpServer.open`) is driven with the node and gRPC metadata a meshgate-dp
proxy sends, as the ADS server would call it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import grpc
import pytest
from envoy.config.core.v3 import base_pb2

from meshgate.k8s.api import Kind
from meshgate.k8s.client import open_api
from meshgate.k8s.errors import KubeUnavailableError
from meshgate.k8s.testing import FakeKubeApi
from meshgate.k8s.token_review import TOKEN_AUDIENCE, ServiceAccountTokens
from meshgate.resources import codec
from meshgate.resources.model import ResourceKey
from meshgate.rest.testing import serving
from meshgate.store.memory import MemoryStore
from meshgate.testing.factory import SERVICE_TAG, gateway_dataplane
from meshgate.tokens import DataplaneTokens
from meshgate.transport.ads_server import StreamRefused
from meshgate.xds.ads import ProxyId
from tests.k8s_support import Seen, config_for, fake_api_server
from zone_cp.dp_server import FIELD_DATAPLANE, DpServer

NS = "gateways"
INSTANCE = "edge-gateway"
SERVICE = f"{INSTANCE}_{NS}_svc"


def add_instance(fake: FakeKubeApi, name: str = INSTANCE, namespace: str = NS, **spec: Any) -> None:
    fake.create(
        {
            "apiVersion": "kuma.io/v1alpha1",
            "kind": "MeshGatewayInstance",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }
    )


def add_pod(
    fake: FakeKubeApi, name: str, *, instance: str = INSTANCE, namespace: str = NS, service_account: str = ""
) -> None:
    """A replica as the Deployment controller makes it: label app=<instance>, controlled by its ReplicaSet."""
    spec: dict[str, Any] = {"containers": [{"name": "kuma-gateway", "image": "meshgate:0.1.0"}]}
    if service_account:
        spec["serviceAccountName"] = service_account
    fake.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {"app": instance},
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "ReplicaSet",
                        "name": f"{instance}-5d8f9c7b6",
                        "uid": "rs-1",
                        "controller": True,
                    }
                ],
            },
            "spec": spec,
        }
    )


@pytest.fixture
def fake() -> FakeKubeApi:
    fake = FakeKubeApi()
    fake.create_namespace(NS)
    fake.create_namespace("other")
    add_instance(fake)
    add_pod(fake, f"{INSTANCE}-5d8f9c7b6-abcde")
    add_instance(fake, "internal-gateway")
    add_pod(fake, "internal-gateway-7f6d5c4b3-zzzzz", instance="internal-gateway")
    add_instance(fake, INSTANCE, namespace="other")
    add_pod(fake, f"{INSTANCE}-5d8f9c7b6-fghij", namespace="other")
    return fake


async def zone_store() -> MemoryStore:
    store = MemoryStore()
    await store.create(codec.load({"type": "Mesh", "name": "default"}))
    return store


def dataplane(name: str, mesh: str = "default", tags: Mapping[str, str] | None = None) -> dict[str, Any]:
    """What the rendered Pod's --dataplane becomes once the kubelet has expanded $(POD_NAME) and the rest."""
    more = dict(tags or {SERVICE_TAG: SERVICE})
    return gateway_dataplane(name, more.pop(SERVICE_TAG), mesh=mesh, address="10.0.0.7", tags=more)


def node(doc: Mapping[str, Any]) -> base_pb2.Node:
    n = base_pb2.Node(id=f"{doc['mesh']}.{doc['name']}")
    n.metadata.fields[FIELD_DATAPLANE].string_value = json.dumps(doc)
    return n


async def open_stream(server: DpServer, doc: Mapping[str, Any], token: str) -> object:
    metadata = (("authorization", token),)
    return await server.open(ProxyId(doc["mesh"], doc["name"]), node(doc), metadata, "ipv4:10.0.0.7:40000")


def gate(fake: FakeKubeApi, store: MemoryStore) -> DpServer:
    tokens = DataplaneTokens(store, create_keys=False)
    return DpServer(store, "zone-k8s", tokens, service_accounts=ServiceAccountTokens(fake))


async def refused(server: DpServer, doc: Mapping[str, Any], token: str) -> StreamRefused:
    with pytest.raises(StreamRefused) as info:
        await open_stream(server, doc, token)
    return info.value


async def test_a_gateway_pods_projected_token_is_admitted_and_registers_its_dataplane(fake: FakeKubeApi) -> None:
    store = await zone_store()
    server = gate(fake, store)
    pod = f"{INSTANCE}-5d8f9c7b6-abcde"
    token = fake.issue_token(NS, "default", pod=pod, audiences=[TOKEN_AUDIENCE])
    doc = dataplane(f"{pod}.{NS}")
    await open_stream(server, doc, token)
    assert server.connected("default", doc["name"])
    assert (await store.get(ResourceKey("Dataplane", "default", doc["name"]))).meta.name == doc["name"]
    # The zone asked about exactly its own audience.
    assert fake.token_reviews == [(token, (TOKEN_AUDIENCE,))]


async def test_a_token_from_another_namespace_is_refused_with_the_reason(fake: FakeKubeApi) -> None:
    server = gate(fake, await zone_store())
    token = fake.issue_token("other", "default", pod=f"{INSTANCE}-5d8f9c7b6-fghij", audiences=[TOKEN_AUDIENCE])
    # It claims the Pod in `gateways`, whose instance has the same name and tags.
    exc = await refused(server, dataplane(f"{INSTANCE}-5d8f9c7b6-abcde.{NS}"), token)
    assert exc.reason == "wrong_identity"
    assert exc.status == grpc.StatusCode.UNAUTHENTICATED
    assert str(exc) == (
        f"authentication failed: proxy name from requestor: {INSTANCE}-5d8f9c7b6-abcde.{NS} is different than the"
        f" token's Pod: {INSTANCE}-5d8f9c7b6-fghij.other"
    )


async def test_a_token_of_another_instances_pod_cannot_claim_this_instances_dataplane(fake: FakeKubeApi) -> None:
    server = gate(fake, await zone_store())
    pod = "internal-gateway-7f6d5c4b3-zzzzz"
    token = fake.issue_token(NS, "default", pod=pod, audiences=[TOKEN_AUDIENCE])
    # Its own name, but edge-gateway's service tag: the gateway listeners it would get are edge-gateway's.
    exc = await refused(server, dataplane(f"{pod}.{NS}"), token)
    assert exc.reason == "wrong_identity"
    assert "proxy tags from requestor" in str(exc)
    assert f"MeshGatewayInstance {NS}/internal-gateway" in str(exc)
    # And the wrong mesh is named as such.
    other_mesh = await refused(
        server, dataplane(f"{pod}.{NS}", mesh="payments", tags={"kuma.io/service": f"internal-gateway_{NS}_svc"}), token
    )
    assert "proxy mesh from requestor: payments is different than" in str(other_mesh)


async def test_unauthenticated_tokens_are_refused(fake: FakeKubeApi) -> None:
    server = gate(fake, await zone_store())
    pod = f"{INSTANCE}-5d8f9c7b6-abcde"
    doc = dataplane(f"{pod}.{NS}")
    # The automounted token is for the API server, not for the zone.
    api_token = fake.issue_token(NS, "default", pod=pod)
    exc = await refused(server, doc, api_token)
    assert exc.reason == "sa_unauthenticated"
    assert "did not authenticate the service account token for audience 'meshgate-zone'" in str(exc)
    assert "token audiences" in str(exc)
    # A token the API server never issued, shaped like one.
    forged = api_token.rsplit(".", 1)[0] + ".forged"
    assert (await refused(server, doc, forged)).reason == "sa_unauthenticated"
    # A token whose Pod is gone (bound tokens die with their Pod).
    bound = fake.issue_token(NS, "default", pod=pod, audiences=[TOKEN_AUDIENCE])
    fake.remove(Kind.POD, NS, pod)
    assert (await refused(server, doc, bound)).reason == "sa_unauthenticated"


async def test_a_token_not_bound_to_a_pod_or_of_another_service_account_is_refused(fake: FakeKubeApi) -> None:
    server = gate(fake, await zone_store())
    pod = f"{INSTANCE}-5d8f9c7b6-abcde"
    doc = dataplane(f"{pod}.{NS}")
    legacy = fake.issue_token(NS, "default", audiences=[TOKEN_AUDIENCE])
    exc = await refused(server, doc, legacy)
    assert exc.reason == "sa_not_pod_bound"
    assert "mount a projected serviceAccountToken volume" in str(exc)
    # Kuma's check: the token's service account must be the Pod's.
    wrong_sa = fake.issue_token(NS, "builder", pod=pod, audiences=[TOKEN_AUDIENCE])
    exc = await refused(server, doc, wrong_sa)
    assert str(exc) == "authentication failed: service account of the token 'builder' is not the Pod's 'default'"


async def test_a_pod_outside_any_instance_is_refused(fake: FakeKubeApi) -> None:
    server = gate(fake, await zone_store())
    fake.create(
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "debug", "namespace": NS}, "spec": {"containers": []}}
    )
    token = fake.issue_token(NS, "default", pod="debug", audiences=[TOKEN_AUDIENCE])
    exc = await refused(server, dataplane(f"debug.{NS}"), token)
    assert str(exc) == f"authentication failed: Pod {NS}/debug is not a replica of a MeshGatewayInstance"


async def test_an_unreachable_api_server_is_unavailable_not_a_refusal_of_the_proxy(fake: FakeKubeApi) -> None:
    server = gate(fake, await zone_store())
    pod = f"{INSTANCE}-5d8f9c7b6-abcde"
    token = fake.issue_token(NS, "default", pod=pod, audiences=[TOKEN_AUDIENCE])
    fake.fail("review_token", KubeUnavailableError("connection refused"))
    exc = await refused(server, dataplane(f"{pod}.{NS}"), token)
    assert exc.status == grpc.StatusCode.UNAVAILABLE
    assert exc.reason == "kube_unavailable"
    await open_stream(server, dataplane(f"{pod}.{NS}"), token)  # the proxy's retry gets in


async def test_data_plane_tokens_keep_working_on_a_kubernetes_zone(fake: FakeKubeApi) -> None:
    store = await zone_store()
    # On a real zone the mesh's key arrives from the global; here the test makes it.
    issuer = DataplaneTokens(store, create_keys=True)
    doc = dataplane("edge-1", tags={"kuma.io/service": "edge"})
    token = await issuer.issue("default", name="edge-1", proxy_type="gateway", valid_for=3600)
    server = gate(fake, store)
    await open_stream(server, doc, token)
    assert server.connected("default", "edge-1")
    assert fake.token_reviews == []  # a data plane token never goes to the API server


async def test_the_review_goes_over_the_wire_through_lightkube(fake: FakeKubeApi) -> None:
    """The same check with LightkubeApi against the HTTP fake API server: the TokenReview is POSTed as
    authentication.k8s.io/v1 with the audience, the Pod and the instance are read."""
    pod = f"{INSTANCE}-5d8f9c7b6-abcde"
    token = fake.issue_token(NS, "default", pod=pod, audiences=[TOKEN_AUDIENCE])
    seen = Seen()
    async with serving(fake_api_server(fake, seen)) as url, open_api(config_for(url)) as api:
        accounts = ServiceAccountTokens(api)
        identity = await accounts.authenticate(
            token, name=f"{pod}.{NS}", mesh="default", tags={"kuma.io/service": [SERVICE]}, proxy_type="gateway"
        )
        assert (identity.namespace, identity.service_account, identity.pod, identity.instance) == (
            NS,
            "default",
            pod,
            INSTANCE,
        )
        api_token = fake.issue_token(NS, "default", pod=pod)
        status = await api.review_token(api_token, [TOKEN_AUDIENCE])
        assert status["authenticated"] is False
    posts = [r for r in seen.requests if r[0] == "POST"]
    assert [r[1] for r in posts] == ["/apis/authentication.k8s.io/v1/tokenreviews"] * 2
    assert ("GET", f"/api/v1/namespaces/{NS}/pods/{pod}") in [(r[0], r[1]) for r in seen.requests]
