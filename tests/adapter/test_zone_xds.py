"""The zone's per-proxy xDS snapshots from its store: regenerated on changes, Secrets feeding TLS listeners."""

from __future__ import annotations

import base64
from pathlib import Path

from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.access_loggers.file.v3 import file_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2

from meshgate.mtls import builtin_ca_secret_names, generate_ca
from meshgate.resources import codec
from meshgate.store import MemoryStore
from meshgate.testing import factory
from meshgate.transport.ads_server import GatedSession
from meshgate.xds import LISTENER
from meshgate.xds.ads import ProxyId
from meshgate.xds.snapshot import Snapshot
from tests.support.gateway_harness import self_signed
from zone_cp.dp_server import DpServer
from zone_cp.xds import ZoneXds

PROXY = ProxyId("default", "edge-1")


def listeners(snapshot: Snapshot) -> list[listener_pb2.Listener]:
    """The Envoy Listeners of a prepared snapshot (each entry holds the wire Resource with an Any)."""
    out = []
    for entry in snapshot.entries(LISTENER).values():
        listener = listener_pb2.Listener()
        entry.wire.resource.Unpack(listener)
        out.append(listener)
    return out


def docs(secret_pem: str) -> list[dict[str, object]]:
    return [
        {"type": "Mesh", "name": "default"},
        {
            "type": "Secret",
            "mesh": "default",
            "name": "shop-cert",
            "data": base64.b64encode(secret_pem.encode()).decode(),
        },
        {
            "type": "MeshGateway",
            "mesh": "default",
            "name": "edge",
            "selectors": [{"match": {"kuma.io/service": "edge"}}],
            "conf": {
                "listeners": [
                    {
                        "port": 8443,
                        "protocol": "HTTPS",
                        "hostname": "shop.example.com",
                        "tls": {"mode": "TERMINATE", "certificates": [{"secret": "shop-cert"}]},
                    }
                ]
            },
        },
        {
            "type": "Dataplane",
            "mesh": "default",
            "name": "edge-1",
            "networking": {"address": "127.0.0.1", "gateway": {"type": "BUILTIN", "tags": {"kuma.io/service": "edge"}}},
        },
    ]


async def test_https_listener_takes_its_certificate_from_a_mesh_secret(tmp_path: Path) -> None:
    cert = self_signed(tmp_path, "shop.example.com")
    store = MemoryStore()
    for doc in docs(cert.pem):
        await store.create(codec.load(doc))
    xds = ZoneXds(store, "zone-1")
    with xds.listen(PROXY):
        await xds.regenerate()
        snapshot = xds.snapshot(PROXY)
        assert snapshot is not None
        (listener,) = listeners(snapshot)
        (chain,) = listener.filter_chains
        assert list(chain.filter_chain_match.server_names) == ["shop.example.com"]
        tls = tls_pb2.DownstreamTlsContext()
        chain.transport_socket.typed_config.Unpack(tls)
        (certificate,) = tls.common_tls_context.tls_certificates
        assert certificate.certificate_chain.inline_bytes.decode() in cert.pem
        assert certificate.private_key.inline_bytes

        # The Secret goes away: the listener's certificate cannot be resolved, so its chain is dropped.
        await store.delete(codec.load(docs(cert.pem)[1]).key)
        await xds.regenerate()
        after = xds.snapshot(PROXY)
        assert after is not None
        assert not any(lst.filter_chains for lst in listeners(after))
    assert xds.snapshot(PROXY) is not None  # kept until the store says otherwise; the stream is gone


async def test_a_proxy_without_a_registered_dataplane_gets_no_snapshot() -> None:
    store = MemoryStore()
    xds = ZoneXds(store, "zone-1")
    with xds.listen(PROXY):
        await xds.regenerate()
        assert xds.snapshot(PROXY) is None


def _log_paths(snapshot: Snapshot) -> set[str]:
    paths = set()
    for listener in listeners(snapshot):
        for chain in listener.filter_chains:
            hcm = hcm_pb2.HttpConnectionManager()
            chain.filters[0].typed_config.Unpack(hcm)
            for log in hcm.access_log:
                config = file_pb2.FileAccessLog()
                log.typed_config.Unpack(config)
                paths.add(config.path)
    return paths


async def _open(server: DpServer, proxy: ProxyId, **metadata: str) -> GatedSession:
    node = base_pb2.Node(id=f"{proxy.mesh}.{proxy.name}")
    node.metadata.update(metadata)
    return await server.open(proxy, node, (), "ipv4:127.0.0.1:40000")


async def test_a_tcp_traffic_log_goes_to_the_pipe_the_proxy_declared_on_its_stream() -> None:
    """DpServer keeps the `accessLogSocketPath` of the proxy's newest stream; ZoneXds generates with it; without
    one (or with one Envoy could not open) the zone names it as Kuma does (metadata.go:207-214)."""
    store = MemoryStore()
    logging = {"defaultBackend": "t", "backends": [{"name": "t", "type": "tcp", "conf": {"address": "c:1"}}]}
    gateway = {**docs("")[2], "conf": {"listeners": [{"port": 8080, "protocol": "HTTP", "hostname": "*"}]}}
    for doc in ({"type": "Mesh", "name": "default", "logging": logging}, gateway, docs("")[3]):
        await store.create(codec.load(doc))
    await store.create(codec.load(factory.traffic_log()))
    server = DpServer(store, "zone-1", None)
    xds = ZoneXds(store, "zone-1", access_log_socket=server.access_log_socket)
    with xds.listen(PROXY):
        session = await _open(server, PROXY, accessLogSocketPath="/run/dp/kuma-al-edge-1-default.sock")
        await xds.regenerate()
        snapshot = xds.snapshot(PROXY)
        assert snapshot is not None
        assert _log_paths(snapshot) == {"/run/dp/kuma-al-edge-1-default.sock"}
        await session.close()

        session = await _open(server, PROXY, accessLogSocketPath="/run/dp/a\nb.sock")
        await xds.regenerate()
        snapshot = xds.snapshot(PROXY)
        assert snapshot is not None
        assert _log_paths(snapshot) == {"/tmp/kuma-al-edge-1-default.sock"}
        await session.close()


async def test_a_mesh_switched_from_permissive_to_strict_regenerates_the_sidecar_inbound() -> None:
    """The zone reads the mTLS mode from the Mesh in its store: PERMISSIVE gives the inbound Kuma's three filter
    chains and the TLS inspector, an update to STRICT one mTLS chain (Envoy runs both: test_sidecar_permissive)."""
    store = MemoryStore()
    ca = generate_ca("default")
    cert_name, key_name = builtin_ca_secret_names("default", "ca-1")
    sidecar = {
        "type": "Dataplane",
        "mesh": "default",
        "name": "app-1",
        "networking": {
            "address": "127.0.0.1",
            "inbound": [{"port": 8080, "servicePort": 18080, "tags": {"kuma.io/service": "app"}}],
        },
    }
    for doc in (
        factory.mtls_mesh(mode="PERMISSIVE"),
        factory.secret(cert_name, ca.cert_pem),
        factory.secret(key_name, ca.key_pem),
        sidecar,
    ):
        await store.create(codec.load(doc))
    proxy = ProxyId("default", "app-1")
    xds = ZoneXds(store, "zone-1")

    def inbound() -> listener_pb2.Listener:
        snapshot = xds.snapshot(proxy)
        assert snapshot is not None
        (found,) = [lst for lst in listeners(snapshot) if lst.name == "inbound:127.0.0.1:8080"]
        return found

    with xds.listen(proxy):
        await xds.regenerate()
        permissive = inbound()
        assert [c.filter_chain_match.transport_protocol for c in permissive.filter_chains] == [
            "raw_buffer",
            "tls",
            "tls",
        ]
        assert [f.name for f in permissive.listener_filters] == ["envoy.filters.listener.tls_inspector"]

        stored = await store.get(codec.load(factory.mtls_mesh()).key)
        await store.update(codec.load(factory.mtls_mesh(mode="STRICT")).with_meta(version=stored.meta.version))
        await xds.regenerate()
        strict = inbound()
        (chain,) = strict.filter_chains
        assert chain.HasField("transport_socket")
        assert not chain.HasField("filter_chain_match")
        assert list(strict.listener_filters) == []
