"""Cross-mesh gateways in `generate` (gateway.md, "Cross-mesh"): the crossMesh listener's mTLS on the builtin
gateway, and the VIP outbound of another mesh's proxy that speaks mTLS to it.

Mesh `b` runs the builtin gateway `edge` (Dataplane edge-1, service `edge`) with a crossMesh listener on 8080,
routing to `echo`; mesh `a` has the delegated gateway `kong-1` (service `kong`). Both have builtin mTLS; the
CAs are real (meshgate.mtls), and the zone glue (`ZoneXds` reading CA Secrets made by the global's
`CaProvisioner`) is exercised at the end.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import anyio
import pytest
from cryptography import x509
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2, tls_pb2

from global_cp.ca import CaProvisioner
from meshgate.dns.names import mesh_names
from meshgate.mtls import CertificateAuthority, LeafCache, generate_ca
from meshgate.resources import codec
from meshgate.resources.model import Resource
from meshgate.store import MemoryStore
from meshgate.xds import CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET, MeshContext, Snapshot, VipOutbound, generate
from meshgate.xds.ads import ProxyId
from meshgate.xds.crossmesh import CrossMesh
from tests.support.cross_mesh import NAME, mesh_b, mtls_mesh
from tests.support.cross_mesh import kong as kong_doc
from tests.support.wait import eventually
from tests.unit.test_xds_generate import filters
from zone_cp.xds import ZoneXds

VIP = VipOutbound("127.1.0.9", 8080, "edge", "gateway", "b", "edge", NAME)
MESH_B = mesh_b(gateway_port=8080, gateway_address="10.0.0.5", echo_address="10.0.0.6", echo_port=9000)
KONG = kong_doc("10.0.1.2")


def resources(docs: Sequence[dict[str, Any]]) -> list[Resource]:
    return [codec.load(d) for d in docs]


B = resources(MESH_B)
GATEWAYS = [r for r in B if r.kind == "MeshGateway"]
ROUTES = [r for r in B if r.kind == "MeshGatewayRoute"]
DATAPLANES_B = [r for r in B if r.kind == "Dataplane"]
CAS = {"a": generate_ca("a"), "b": generate_ca("b")}
MESHES = {m: codec.load(mtls_mesh(m)) for m in ("a", "b")}


def cross(cas: dict[str, CertificateAuthority], leaves: LeafCache | None = None) -> CrossMesh:
    return CrossMesh(cas, gateways=GATEWAYS, dataplanes=DATAPLANES_B, zone="zone-1", leaves=leaves)


def gateway_snapshot(cm: CrossMesh | None) -> Snapshot:
    edge = next(d for d in DATAPLANES_B if d.meta.name == "edge-1")
    return generate(edge, b_context(GATEWAYS, cm))


def b_context(gateways: list[Resource], cm: CrossMesh | None) -> MeshContext:
    return MeshContext.build(
        "b",
        mesh_resource=MESHES["b"],
        gateways=gateways,
        routes=ROUTES,
        dataplanes=DATAPLANES_B,
        zone="zone-1",
        cross_mesh=cm,
    )


def client_snapshot(cm: CrossMesh | None, vips: Sequence[VipOutbound] = (VIP,)) -> Snapshot:
    kong = codec.load(KONG)
    ctx = MeshContext.build("a", mesh_resource=MESHES["a"], dataplanes=[kong], zone="zone-1", vips=vips, cross_mesh=cm)
    return generate(kong, ctx)


def secret(secrets: Any, name: str) -> secret_pb2.Secret:
    """The Secret `name` of a snapshot's SECRET map (messages) or of a served snapshot's entries (wire)."""
    found = secrets[name]
    if isinstance(found, secret_pb2.Secret):
        return found
    out = secret_pb2.Secret()
    assert found.wire.resource.Unpack(out)
    return out


def identity(secrets: Any, mesh: str) -> bytes:
    return bytes(secret(secrets, f"identity_cert:secret:{mesh}").tls_certificate.certificate_chain.inline_bytes)


def sds_names(common: Any) -> tuple[list[str], str]:
    """The identity Secret and the validation context Secret a TLS context names (both over ADS)."""
    certs = [c.name for c in common.tls_certificate_sds_secret_configs]
    assert all(c.sds_config.HasField("ads") for c in common.tls_certificate_sds_secret_configs)
    validation = common.combined_validation_context.validation_context_sds_secret_config
    assert validation.sds_config.HasField("ads")
    assert not common.tls_certificates, "no key inline in LDS or CDS"
    return certs, validation.name


def downstream(listener: Any) -> tls_pb2.DownstreamTlsContext:
    out = tls_pb2.DownstreamTlsContext()
    assert listener.filter_chains[0].transport_socket.typed_config.Unpack(out)
    return out


def upstream(cluster: Any) -> tls_pb2.UpstreamTlsContext:
    out = tls_pb2.UpstreamTlsContext()
    assert cluster.transport_socket.typed_config.Unpack(out)
    return out


def sans(pem: bytes) -> tuple[list[str], list[str]]:
    ext = x509.load_pem_x509_certificate(pem).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return ext.get_values_for_type(x509.UniformResourceIdentifier), ext.get_values_for_type(x509.DNSName)


# --- the gateway side --------------------------------------------------------------------------------------


def test_a_cross_mesh_listener_requires_a_client_certificate_from_any_mesh_ca() -> None:
    snap = gateway_snapshot(cross(CAS))
    assert snap.problems == ()
    listener = snap[LISTENER]["edge:HTTP:8080"]
    (chain,) = listener.filter_chains  # type: ignore[attr-defined]
    assert chain.filter_chain_match.transport_protocol == "tls", "plaintext matches no chain"
    assert not chain.filter_chain_match.server_names
    tls = downstream(listener)
    assert tls.require_client_certificate.value is True
    # Kuma's: the gateway's own identity, and every mesh's CA in one Secret (`RequestAllInOneCa`).
    assert sds_names(tls.common_tls_context) == (["identity_cert:secret:b"], "mesh_ca:secret:all")
    trusted = secret(snap[SECRET], "mesh_ca:secret:all").validation_context.trusted_ca.inline_bytes
    assert CAS["a"].cert_pem in trusted
    assert CAS["b"].cert_pem in trusted
    (san,) = tls.common_tls_context.combined_validation_context.default_validation_context.match_typed_subject_alt_names
    assert san.matcher.prefix == "spiffe://"
    certificate = identity(snap[SECRET], "b")
    assert sans(certificate)[0][0] == "spiffe://b/edge"
    x509.load_pem_x509_certificate(certificate).verify_directly_issued_by(CAS["b"].certificate)
    # Routes are bound as on any HTTP listener.
    hcm = filters(listener)["envoy.filters.network.http_connection_manager"]
    (vhost,) = snap[ROUTE][hcm.rds.route_config_name].virtual_hosts  # type: ignore[attr-defined]
    assert vhost.domains == ["*"]
    assert vhost.routes[0].route.weighted_clusters.clusters[0].name.startswith("echo-")


def test_no_private_key_is_inline_in_a_listener_or_cluster() -> None:
    for snap, mesh in ((gateway_snapshot(cross(CAS)), "b"), (client_snapshot(cross(CAS)), "a")):
        for type_url in (LISTENER, CLUSTER):
            for message in snap[type_url].values():
                assert b"PRIVATE KEY" not in message.SerializeToString()
        assert b"PRIVATE KEY" in secret(snap[SECRET], f"identity_cert:secret:{mesh}").SerializeToString()


def test_without_mtls_on_its_mesh_the_cross_mesh_listener_is_skipped() -> None:
    for cm in (cross({"a": CAS["a"]}), None):
        snap = gateway_snapshot(cm)
        assert "edge:HTTP:8080" not in snap[LISTENER]
        assert "crossMesh listener on port 8080 needs mTLS enabled on mesh b; skipped" in snap.problems


def test_a_port_mixing_cross_mesh_and_plain_listeners_keeps_the_first_kind() -> None:
    doc = json.loads(json.dumps(MESH_B[0]))
    doc["conf"]["listeners"].append({"port": 8080, "protocol": "HTTP", "hostname": "plain.example.com"})
    gateways = [codec.load(doc)]
    edge = next(d for d in DATAPLANES_B if d.meta.name == "edge-1")
    snap = generate(edge, b_context(gateways, cross(CAS)))
    assert "edge:HTTP:8080" in snap[LISTENER]
    assert snap.problems == ("listener on port 8080: crossMesh false conflicts with true; skipped",)


# --- the client side ---------------------------------------------------------------------------------------


def test_a_cross_mesh_vip_is_mtls_to_the_target_meshes_gateway_dataplanes() -> None:
    snap = client_snapshot(cross(CAS))
    assert snap.problems == ()
    listener = snap[LISTENER]["outbound:127.1.0.9:8080"]
    assert listener.address.socket_address.address == "127.1.0.9"  # type: ignore[attr-defined]
    hcm = filters(listener)["envoy.filters.network.http_connection_manager"]
    (vhost,) = snap[ROUTE][hcm.rds.route_config_name].virtual_hosts  # type: ignore[attr-defined]
    (name,) = [c.name for c in vhost.routes[0].route.weighted_clusters.clusters]
    assert name.startswith("edge-")
    cluster = snap[CLUSTER][name]
    tls = upstream(cluster)
    assert tls.sni == NAME
    # Kuma's: the client's own identity, and the target mesh's CA only (`RequestCa(mesh)`).
    assert sds_names(tls.common_tls_context) == (["identity_cert:secret:a"], "mesh_ca:secret:b")
    trusted = secret(snap[SECRET], "mesh_ca:secret:b").validation_context.trusted_ca.inline_bytes
    assert trusted.strip() == CAS["b"].cert_pem.strip()
    validation = tls.common_tls_context.combined_validation_context.default_validation_context
    assert [m.matcher.exact for m in validation.match_typed_subject_alt_names] == ["spiffe://b/edge"]
    certificate = identity(snap[SECRET], "a")
    assert sans(certificate) == (["spiffe://a/kong"], [])
    x509.load_pem_x509_certificate(certificate).verify_directly_issued_by(CAS["a"].certificate)
    (group,) = snap[ENDPOINT][name].endpoints  # type: ignore[attr-defined]
    assert [
        (e.endpoint.address.socket_address.address, e.endpoint.address.socket_address.port_value)
        for e in group.lb_endpoints
    ] == [("10.0.0.5", 8080)]


@pytest.mark.parametrize("mesh", ["a", "b"])
def test_without_mtls_on_either_mesh_the_cross_mesh_vip_is_skipped(mesh: str) -> None:
    snap = client_snapshot(cross({m: ca for m, ca in CAS.items() if m != mesh}))
    assert not snap[CLUSTER]
    assert "outbound:127.1.0.9:8080" not in snap[LISTENER]
    assert (
        f"outbound:127.1.0.9:8080: cross-mesh name {NAME} needs mTLS enabled on mesh {mesh}; skipped" in snap.problems
    )


def test_regenerating_with_one_leaf_cache_is_byte_equal() -> None:
    leaves = LeafCache()
    for build in (gateway_snapshot, client_snapshot):
        first, again = build(cross(CAS, leaves)), build(cross(CAS, leaves))
        assert all(first.versions(t) == again.versions(t) for t in first)


def test_vip_outbound_keeps_the_cross_mesh_fields_together() -> None:
    assert VIP.cross_mesh
    assert not VipOutbound("127.1.0.9", 8080, "edge", "gateway").cross_mesh
    with pytest.raises(ValueError, match="go together"):
        VipOutbound("127.1.0.9", 8080, "edge", "gateway", "b")
    with pytest.raises(ValueError, match="go together"):
        VipOutbound("127.1.0.9", 8080, "edge", "service", "b", "edge", NAME)


def test_names_carry_the_gateway_a_cross_mesh_vip_routes_to() -> None:
    (entry,) = mesh_names("b", [], GATEWAYS).entries
    assert (entry.key, entry.ports, entry.gateway, entry.gateway_service) == (NAME, (8080,), "edge", "edge")
    assert entry.service == ""


# --- the zone: CAs from the Secrets the global made --------------------------------------------------------


async def test_the_zone_reads_each_meshes_ca_from_its_secrets() -> None:
    store = MemoryStore()
    for doc in (mtls_mesh("a"), mtls_mesh("b"), *MESH_B, KONG):
        await store.create(codec.load(doc))
    await CaProvisioner(store).reconcile()  # on the global; KDS would bring these Secrets to the zone
    xds = ZoneXds(store, "zone-1", vips=lambda mesh: [VIP] if mesh == "a" else [])
    edge, kong = ProxyId("b", "edge-1"), ProxyId("a", "kong-1")
    with xds.listen(edge), xds.listen(kong):
        await xds.regenerate()
        gw, client = xds.snapshot(edge), xds.snapshot(kong)
        assert gw is not None
        assert client is not None
        (wire,) = [e.wire.resource for e in gw.entries(LISTENER).values()]
        listener = listener_pb2.Listener()
        wire.Unpack(listener)
        assert sds_names(downstream(listener).common_tls_context)[1] == "mesh_ca:secret:all"
        trusted = secret(gw.entries(SECRET), "mesh_ca:secret:all").validation_context.trusted_ca.inline_bytes
        assert trusted.count(b"BEGIN CERTIFICATE") == 2
        clusters = []
        for entry in client.entries(CLUSTER).values():
            c = cluster_pb2.Cluster()
            entry.wire.resource.Unpack(c)
            clusters.append(c)
        (cluster,) = clusters
        assert upstream(cluster).sni == NAME
        versions = {t: {n: e.wire.version for n, e in client.entries(t).items()} for t in client.resources}
        await xds.regenerate()
        again = xds.snapshot(kong)
        assert again is not None
        assert {t: {n: e.wire.version for n, e in again.entries(t).items()} for t in again.resources} == versions


async def test_the_zone_rotates_leaf_certificates_without_any_store_change() -> None:
    """Leaves are re-issued at half-life; the periodic regeneration is what gets the new one to Envoy."""
    store = MemoryStore()
    for doc in (mtls_mesh("a"), mtls_mesh("b"), *MESH_B, KONG):
        await store.create(codec.load(doc))
    await CaProvisioner(store).reconcile()
    leaves = LeafCache(validity=timedelta(seconds=2))  # re-issued after 1 s
    xds = ZoneXds(store, "zone-1", vips=lambda mesh: [], refresh_interval=0.05, leaves=leaves)
    edge = ProxyId("b", "edge-1")

    def certificate() -> bytes:
        snapshot = xds.snapshot(edge)
        assert snapshot is not None
        return identity(snapshot.entries(SECRET), "b")

    with xds.listen(edge), anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            await tg.start(xds.run)
            await eventually(lambda: xds.snapshot(edge) is not None, what="the first snapshot")
            first = certificate()
            await eventually(lambda: certificate() != first, what="a rotated certificate", timeout=20)
            tg.cancel_scope.cancel()
