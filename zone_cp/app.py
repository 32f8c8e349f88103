"""The zone control plane: KDS client + local store + HTTP API, wired in one place.

The zone's store is its own: resources from the global are mirrored into it, so the zone keeps
serving everything it knows while the global is unreachable.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from ipaddress import IPv4Network
from pathlib import Path

import anyio
import structlog
from aiohttp import web

from meshgate.collector import freeze_long_lived
from meshgate.dns.names import SERVICE_PORT
from meshgate.dns.upstream import Upstream
from meshgate.gui import add_gui
from meshgate.k8s.api import KubeApi
from meshgate.k8s.token_review import ServiceAccountTokens
from meshgate.kds import ownership
from meshgate.kds.limits import DEFAULT_MAX_MSG_SIZE
from meshgate.observability.diagnostics import create_diagnostics_app
from meshgate.observability.process import write_ports_file
from meshgate.resources import codec, registry
from meshgate.resources.model import Resource
from meshgate.rest.app import ExtraRoute, create_api_app
from meshgate.rest.authn import ApiAuth
from meshgate.rest.config_dump import zone_config_dump_route
from meshgate.rest.cp_config import config_route
from meshgate.rest.inspect import gateway_dataplanes_route, gateway_listeners_route
from meshgate.rest.overviews import Annotation, dataplane_overview_routes
from meshgate.rest.policy_inspect import zone_policies_route
from meshgate.rest.server import serve_app
from meshgate.store.factory import open_store
from meshgate.store.protocol import ResourceStore
from meshgate.store.redis_durability import ensure_durable
from meshgate.sync.snapshots import SnapshotSource
from meshgate.tokens import DataplaneTokens, UserTokens, token_admin_routes, user_token_route
from meshgate.tokens.admin_token import ensure_admin_token
from meshgate.tokens.dataplane_route import dataplane_token_route
from meshgate.transport.ads_server import ADS_SERVICE_NAME, AggregatedDiscoveryService, register_ads
from meshgate.transport.grpc_server import serve_grpc
from meshgate.transport.kds_client import GlobalToZoneClient
from meshgate.transport.kds_upstream import ZoneUpstream
from meshgate.transport.xds_configs import ConfigDumpAnswerer
from meshgate.xds.ads import ProxyId
from meshgate.xds.ads_registry import ProxyRegistry, dataplane_insight
from meshgate.xds.insight_sink import DEFAULT_FLUSH_INTERVAL, DEFAULT_SUBSCRIPTION_LIMIT
from meshgate.xds.vips import VipOutbound
from zone_cp import kubernetes
from zone_cp.config_view import zone_config_view
from zone_cp.cp_token import CpToken
from zone_cp.dataplane_insights import DataplaneInsightWriter
from zone_cp.dns import ZoneDns
from zone_cp.dp_server import DpServer
from zone_cp.dp_tls import XdsTls, xds_tls
from zone_cp.envoy_admin import EnvoyAdminDumper
from zone_cp.ingress import IngressServices
from zone_cp.provisioning import Provisioner
from zone_cp.xds import ZoneXds

__all__ = ["ZoneConfig", "run_zone"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class ZoneConfig:
    zone: str
    global_addresses: tuple[str, ...]
    bind_address: str = "0.0.0.0"
    api_port: int = 5681
    diagnostics_port: int = 5680
    store: str = "sqlite"
    # Start on a Redis that persists nothing (meshgate.store.redis_durability); refused otherwise.
    store_allow_volatile: bool = False
    data_dir: Path = field(default_factory=lambda: Path("data/zone"))
    ports_file: Path | None = None
    # Freeze the heap once ready (meshgate.collector.freeze_long_lived): the processes do; tests that run the
    # app inside their own process leave it off, so their heap stays the collector's.
    freeze_heap_when_ready: bool = False
    # Delta ADS for the zone's Envoys (gateways started by meshgate-dp); Kuma's port.
    xds_port: int = 5678
    # "universal" or "kubernetes": the latter also reconciles MeshGatewayInstances (zone_cp/kubernetes.py).
    environment: str = "universal"
    # `.mesh` DNS (zone_cp/dns.py): UDP and TCP port, the VIP range per mesh, the domain, and where names outside
    # the domain are forwarded (None: answered REFUSED).
    dns_port: int = 5653
    vip_cidr: str = "240.0.0.0/4"
    dns_domain: str = "mesh"
    dns_upstream: Upstream | None = None
    # For grpcs:// global addresses: trusted roots (None: the system's), or trust what the global presents.
    kds_ca_cert_file: Path | None = None
    kds_tls_skip_verify: bool = False
    # The largest KDS message sent or accepted (Kuma's KUMA_MULTIZONE_ZONE_KDS_MAX_MSG_SIZE, 10 MiB).
    kds_max_msg_size: int = DEFAULT_MAX_MSG_SIZE
    # The zone token sent on every KDS call (`authorization: Bearer`), inline or in a file (re-read when it
    # changes, zone_cp/cp_token.py); neither: none sent.
    cp_token: str = ""
    cp_token_path: Path | None = None
    # The xDS port's proxies (zone_cp/dp_server.py): "dpToken" (each proxy presents a data plane token for
    # its Dataplane) or "none" (anyone reaching the port gets any proxy's config: testing only).
    dp_server_authn: str = "dpToken"
    # TLS on the xDS port (zone_cp/dp_tls.py): given files, or a generated CA and certificate; False: plaintext.
    dp_server_tls: bool = True
    dp_server_tls_cert_file: Path | None = None
    dp_server_tls_key_file: Path | None = None
    dp_server_tls_sans: tuple[str, ...] = ()
    # A direct loopback caller without a token is the admin user (Kuma's KUMA_API_SERVER_AUTHN_LOCALHOST_IS_ADMIN).
    api_localhost_is_admin: bool = True
    # On Kubernetes: the image of the gateway Pods' meshgate-dp container ("": meshgate.k8s.settings' default).
    dataplane_image: str = ""
    # Each proxy's DataplaneInsight (zone_cp/dataplane_insights.py): written at most once per this many seconds
    # besides connect and disconnect (Kuma's KUMA_XDS_SERVER_DATAPLANE_STATUS_FLUSH_INTERVAL), keeping this many
    # subscriptions (Kuma's KUMA_METRICS_DATAPLANE_SUBSCRIPTION_LIMIT).
    dataplane_status_flush_interval: float = DEFAULT_FLUSH_INTERVAL
    dataplane_subscription_limit: int = DEFAULT_SUBSCRIPTION_LIMIT


def _kds_status_route(client: GlobalToZoneClient) -> ExtraRoute:
    async def handler(request: web.Request) -> web.Response:
        st = client.status
        return web.json_response(
            {
                "zone": client.zone,
                "connected": st.connected,
                "globalAddress": st.address,
                "connects": st.connects,
                "connectedAt": st.connected_at.isoformat() if st.connected_at else None,
                "lastError": st.last_error,
                "syncedKinds": sorted(st.synced_kinds),
                "synced": client.synced,
            }
        )

    return ExtraRoute("GET", "/status/kds", handler, "State of this zone's KDS stream to the global")


def _xds_route(ads: AggregatedDiscoveryService) -> ExtraRoute:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response(ads.registry.describe())

    return ExtraRoute("GET", "/xds/proxies", handler, "The zone's Envoy proxies: per type sent/ACKed/NACKed, last NACK")


def _insights(ads: AggregatedDiscoveryService, instance_id: str) -> Callable[[Resource], Annotation]:
    """Each Dataplane's DataplaneInsight from the zone's ADS streams; none for a proxy that never connected
    here (a Dataplane registered through the API, or relayed from another zone)."""

    def annotate(dataplane: Resource) -> Annotation:
        record = ads.registry.get(ProxyId(dataplane.meta.mesh, dataplane.meta.name))
        return Annotation() if record is None else Annotation(insight=dataplane_insight(record, instance_id))

    return annotate


def _admin(dp_server: DpServer, mesh: str, name: str) -> tuple[str, int] | None:
    target = dp_server.admin_target(mesh, name)
    return None if target is None else (target.host, target.port)


async def run_zone(
    cfg: ZoneConfig, *, task_status: anyio.abc.TaskStatus[dict[str, int]] = anyio.TASK_STATUS_IGNORED
) -> None:
    # Before anything starts: an unreadable token, or a Kubernetes zone without a cluster, fails with one line.
    cp_token = CpToken.load(cfg.cp_token, cfg.cp_token_path)
    kube = kubernetes.prepare() if cfg.environment == "kubernetes" else None
    if kube is not None and cfg.dataplane_image:
        kube = replace(kube, settings=replace(kube.settings, dataplane_image=cfg.dataplane_image))
    store: ResourceStore = await open_store(cfg.store, data_dir=cfg.data_dir)
    try:
        # Gateway Pods dial the zone's Service by name: the generated certificate must name it.
        kube_sans = (kube.control_plane_host,) if kube is not None and kube.control_plane_host else ()
        tls = await xds_tls(
            store,
            enabled=cfg.dp_server_tls,
            cert_file=cfg.dp_server_tls_cert_file,
            key_file=cfg.dp_server_tls_key_file,
            bind_address=cfg.bind_address,
            extra_sans=(*cfg.dp_server_tls_sans, *kube_sans),
            data_dir=cfg.data_dir,
        )
        if kube is not None and not kube.settings.ca_cert and tls.ca_file is not None:
            # The CA gateway Pods trust for the xDS port (mounted from a pod annotation, meshgate.k8s.container).
            kube = replace(kube, settings=replace(kube.settings, ca_cert=tls.ca_file.read_text()))
        async with contextlib.AsyncExitStack() as stack:
            kube_api: KubeApi | None = None
            if kube is not None:
                kube_api = await stack.enter_async_context(kube.open_api())
            await _serve(cfg, store, cp_token, tls, kube, kube_api, task_status)
    finally:
        with anyio.CancelScope(shield=True):
            await store.close()


async def _serve(
    cfg: ZoneConfig,
    store: ResourceStore,
    cp_token: CpToken,
    tls: XdsTls,
    kube: kubernetes.KubernetesZone | None,
    kube_api: KubeApi | None,
    task_status: anyio.abc.TaskStatus[dict[str, int]],
) -> None:
    ready = False
    # A zone issues and checks data plane tokens with the mesh keys the global made (synced Secrets).
    dataplane_tokens = DataplaneTokens(store, create_keys=False)
    if cfg.dp_server_authn == "none":
        log.warning(
            "xds.authn.disabled",
            reason="--dp-server-authn none: anyone reaching the xDS port gets any proxy's configuration",
        )
    # On Kubernetes, gateway Pods may also prove themselves with their service account token (TokenReview).
    dp_server = DpServer(
        store,
        cfg.zone,
        None if cfg.dp_server_authn == "none" else dataplane_tokens,
        service_accounts=None
        if kube is None or kube_api is None
        else ServiceAccountTokens(kube_api, kube.settings.token_audience),
    )
    dumper = EnvoyAdminDumper(store, lambda mesh, name: _admin(dp_server, mesh, name))
    # Names this process on KDS, in the index and as the controlPlaneInstanceId of its proxies' subscriptions.
    instance_id = f"{socket.gethostname()}-{os.getpid()}"
    local = SnapshotSource(
        store,
        registry.kinds_sent_to_global(),
        include=partial(ownership.zone_sends, cfg.zone),
        mapper=partial(ownership.to_global, cfg.zone),
    )
    # Kuma's ZoneAvailableServicesTracker: the zone's ZoneIngresses list the services behind them.
    ingress_services = IngressServices(store, cfg.zone)
    answerer = ConfigDumpAnswerer(dumper, cfg.zone)  # config dumps, and VIP lookups once DNS exists
    client = GlobalToZoneClient(
        zone=cfg.zone,
        addresses=cfg.global_addresses,
        store=store,
        kinds=registry.kinds_sent_to_zone(),
        validate=codec.validate,
        upstream=ZoneUpstream(cfg.zone, local, max_msg_size=cfg.kds_max_msg_size),
        instance_id=instance_id,
        xds_configs=answerer,
        ca_cert_file=cfg.kds_ca_cert_file,
        tls_skip_verify=cfg.kds_tls_skip_verify,
        token=cp_token,
        max_msg_size=cfg.kds_max_msg_size,
    )
    cp_token.on_change = client.credentials_changed
    dns = ZoneDns(store, IPv4Network(cfg.vip_cidr), cfg.dns_domain, upstream=cfg.dns_upstream)
    answerer.names = dns.lookup
    answerer.listing = dns.listing

    def service_vips(mesh: str) -> list[VipOutbound]:
        """Each service VIP of the mesh as an outbound on VIP:80 (one per VIP; aliases share it), and each
        cross-mesh gateway name of every OTHER mesh on VIP:<listener port> (gateway.md, "Cross-mesh")."""
        own = dns.meshes.get(mesh)
        out = [VipOutbound(str(vip), SERVICE_PORT, e.service) for e, vip in (own.entries if own else ()) if e.service]
        for other, other_vips in sorted(dns.meshes.items()):
            if other == mesh:
                continue
            for e, vip in other_vips.entries:
                if not (e.gateway and e.gateway_service):
                    continue
                out.extend(
                    VipOutbound(str(vip), port, e.gateway_service, "gateway", other, e.gateway, e.key)
                    for port in e.ports
                )
        return out

    xds = ZoneXds(
        store,
        cfg.zone,
        vips=service_vips,
        dns_domain=cfg.dns_domain,
        access_log_socket=dp_server.access_log_socket,
        metrics_socket=dp_server.metrics_socket,
        zone_proxy_kind=dp_server.zone_proxy_kind,
    )
    dns.on_change = xds.mark_dirty
    ads = AggregatedDiscoveryService(xds, ProxyRegistry(), gate=dp_server)
    # Each proxy's DataplaneInsight in the store, synced up to the global by `local` like any zone resource.
    insights = DataplaneInsightWriter(
        store,
        ads.registry,
        instance_id,
        flush_interval=cfg.dataplane_status_flush_interval,
        subscription_limit=cfg.dataplane_subscription_limit,
    )
    # Universal zones run their MeshGatewayInstances' gateway data planes themselves (zone_cp/provisioning.py).
    gateways = Provisioner(
        store,
        cfg.data_dir / "gateways",
        tokens=None if cfg.dp_server_authn == "none" else dataplane_tokens,
        ca_cert_file=tls.ca_file,
    )
    # The zone signs user tokens for its own API with its own keys (internal kinds, never synced); data
    # plane token keys and revocations are the global's mesh Secrets, so read-only here.
    user_tokens = UserTokens(store)

    async def annotate() -> Callable[[Resource], Annotation]:
        return _insights(ads, instance_id)

    api = create_api_app(
        store,
        role="zone",
        zone=cfg.zone,
        instance_id=instance_id,
        auth=ApiAuth(user_tokens, localhost_is_admin=cfg.api_localhost_is_admin),
        extra_routes=[
            user_token_route(user_tokens),
            *token_admin_routes(user=user_tokens, dataplane=dataplane_tokens, dataplane_writable=False),
            _kds_status_route(client),
            _xds_route(ads),
            config_route(zone_config_view(cfg)),
            *dataplane_overview_routes(store, annotate, local_zone=cfg.zone),
            gateway_dataplanes_route(store),
            gateway_listeners_route(store, local_zone=cfg.zone),
            zone_config_dump_route(dumper),
            zone_policies_route(store, cfg.zone),
            dataplane_token_route(dataplane_tokens, store, role="zone"),
            gateways.status_route(),
            dns.route(),
        ],
    )
    add_gui(api, role="zone")
    diagnostics = create_diagnostics_app(
        lambda: ready, extra_text=lambda: dns.server.metrics_text() + dp_server.metrics_text() + ads.metrics.render()
    )
    await ensure_admin_token(user_tokens, cfg.data_dir)
    async with anyio.create_task_group() as tg:
        if store.shared:
            await tg.start(partial(ensure_durable, cfg.store, allow_volatile=cfg.store_allow_volatile))
        ports = {
            "api": await tg.start(serve_app, api, cfg.bind_address, cfg.api_port),
            "diagnostics": await tg.start(serve_app, diagnostics, cfg.bind_address, cfg.diagnostics_port),
        }
        await tg.start(xds.run)
        await tg.start(dp_server.run)
        await tg.start(insights.run)
        ports["xds"] = await tg.start(
            lambda task_status: serve_grpc(
                [register_ads(ads)],
                [ADS_SERVICE_NAME],
                cfg.bind_address,
                cfg.xds_port,
                credentials=tls.credentials,
                task_status=task_status,
            )
        )
        # Persisted VIPs are loaded before the DNS port opens, so a restarted zone never answers without them.
        await tg.start(dns.run)
        ports["dns"] = await tg.start(dns.server.serve, cfg.bind_address, cfg.dns_port)
        await tg.start(local.run)
        await tg.start(cp_token.run)
        await tg.start(ingress_services.run)
        tg.start_soon(client.run)
        if kube is not None and kube_api is not None:
            await tg.start(kube.run, store, kube_api)
        else:
            await tg.start(gateways.run, cfg.bind_address, ports["api"], ports["xds"])
        # Ready means serving local state; a zone does not wait for the global to be reachable.
        frozen = freeze_long_lived() if cfg.freeze_heap_when_ready else 0  # the loaded store
        ready = True
        write_ports_file(cfg.ports_file, ports)
        log.info(
            "zone.ready",
            zone=cfg.zone,
            store=cfg.store,
            gc_frozen_objects=frozen,
            **{f"{k}_port": v for k, v in ports.items()},
        )
        task_status.started(ports)
