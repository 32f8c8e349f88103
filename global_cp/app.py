"""The global control plane: store + HTTP API + KDS server + zone records, wired in one place."""

from __future__ import annotations

import secrets
import socket
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import anyio
import grpc
import structlog

from global_cp.ca import CaProvisioner
from global_cp.config_view import global_config_view
from global_cp.insights import HealthPolicy, insight_routes
from global_cp.kds_tls import KdsCertificates, server_names
from global_cp.lifecycle import ZoneLifecycle
from global_cp.replicas import ReplicaDirectory
from global_cp.token_keys import TokenKeyUpkeep
from global_cp.tokens import token_route
from global_cp.trace import trace_routes
from global_cp.trace_names import trace_name_route
from global_cp.vips import vips_route
from global_cp.watch import KDSWatch
from global_cp.watchdog import Watchdog
from global_cp.zone_sink import ZoneSink
from global_cp.zones import DEFAULT_MAX_ZONES, ZoneRecords
from meshgate.api.mesh.v1alpha1 import kds_pb2_grpc
from meshgate.auth import KDSAuth, ZoneAuthenticator
from meshgate.collector import freeze_long_lived
from meshgate.gui import add_gui
from meshgate.ha.lease import RedisLease
from meshgate.kds import ownership
from meshgate.kds.limits import DEFAULT_MAX_MSG_SIZE, payload_budget
from meshgate.observability.diagnostics import create_diagnostics_app
from meshgate.observability.metrics import KDSMetrics
from meshgate.observability.process import StartupError, write_ports_file
from meshgate.resources import registry
from meshgate.rest.app import create_api_app
from meshgate.rest.authn import ApiAuth
from meshgate.rest.config_dump import global_config_dump_route
from meshgate.rest.cp_config import config_route
from meshgate.rest.inspect import gateway_dataplanes_route, gateway_listeners_route
from meshgate.rest.policy_inspect import global_policies_route
from meshgate.rest.server import serve_app
from meshgate.store.factory import open_store
from meshgate.store.protocol import ResourceStore
from meshgate.store.redis_durability import ensure_durable
from meshgate.sync.snapshots import SnapshotSource
from meshgate.sync.streams import StreamRegistry
from meshgate.tokens import DataplaneTokens, UserTokens, ZoneTokens, token_admin_routes, user_token_route
from meshgate.tokens.admin_token import ensure_admin_token
from meshgate.tokens.dataplane_route import dataplane_token_route
from meshgate.transport.grpc_server import serve_grpc
from meshgate.transport.kds_admission import ZoneAdmission
from meshgate.transport.kds_server import GlobalKDSService, KDSSyncService
from meshgate.transport.tls import server_credentials
from meshgate.transport.xds_configs import XDSConfigBroker

__all__ = ["GlobalConfig", "run_global"]

log = structlog.get_logger(__name__)

# Zones in their initial sync or resume at once (meshgate/transport/kds_admission.py, SyncSlots). Each full sync
# of 10k routes is a response of a few MB serialized and encrypted for that zone: 16 keep both cores busy while
# bounding that transient memory, and leave the event loop room for changes to zones already in sync.
DEFAULT_MAX_CONCURRENT_ADMISSIONS = 16

KDS_SERVICES = ("kuma.mesh.v1alpha1.KDSSyncService", "kuma.mesh.v1alpha1.GlobalKDSService")


@dataclass(frozen=True, slots=True)
class GlobalConfig:
    bind_address: str = "0.0.0.0"
    api_port: int = 5681
    kds_port: int = 5685
    diagnostics_port: int = 5680
    store: str = "sqlite"
    # Start on a Redis that persists nothing (meshgate.store.redis_durability); refused otherwise.
    store_allow_volatile: bool = False
    data_dir: Path = field(default_factory=lambda: Path("data/global"))
    zone_health_interval: float = 10.0
    # A zone that misses this many health checks in a row is offline, even with its stream open.
    zone_health_missed: float = 3.0
    # Seconds a KDS response may stay un-ACKed before the watchdog reports a stall; how often it looks.
    kds_stall_threshold: float = 10.0
    watchdog_interval: float = 1.0
    # Seconds a leader holds the singleton lease without renewing (Redis store only).
    leader_lease: float = 10.0
    resync_interval: float = 60.0
    ports_file: Path | None = None
    # Freeze the heap once ready (meshgate.collector.freeze_long_lived): the processes do; tests that run the
    # app inside their own process leave it off, so their heap stays the collector's.
    freeze_heap_when_ready: bool = False
    # KDS over TLS (Kuma's KUMA_MULTIZONE_GLOBAL_KDS_TLS_ENABLED, on by default): with the operator's certificate
    # when both files are set (meshgate.transport.tls), else with the global's own CA (global_cp/kds_tls.py),
    # whose server certificate also names each of `kds_tls_sans`. Off: plaintext, with a warning.
    kds_tls_enabled: bool = True
    kds_tls_cert_file: Path | None = None
    kds_tls_key_file: Path | None = None
    kds_tls_sans: tuple[str, ...] = ()
    # cp-token (the default): every KDS call must carry a zone token for its client-id (Kong Mesh's cpToken).
    kds_auth: KDSAuth = KDSAuth.CP_TOKEN
    # Seconds between re-checks of every open stream's zone token (expired or revoked since it connected).
    kds_token_recheck_interval: float = 60.0
    # Zone records KDS may create (global_cp/zones.py), and zones whose stream history is kept in memory.
    kds_max_zones: int = DEFAULT_MAX_ZONES
    # Global-to-zone streams in their initial sync at once; the rest wait (0: no limit).
    kds_max_concurrent_admissions: int = DEFAULT_MAX_CONCURRENT_ADMISSIONS
    # The largest KDS message sent or accepted (Kuma's KUMA_MULTIZONE_GLOBAL_KDS_MAX_MSG_SIZE, 10 MiB). A Kuma
    # zone reads the first response per kind as the whole state: it is split only when larger than this.
    kds_max_msg_size: int = DEFAULT_MAX_MSG_SIZE
    # A direct loopback caller without a token is the admin user (Kuma's KUMA_API_SERVER_AUTHN_LOCALHOST_IS_ADMIN).
    api_localhost_is_admin: bool = True


def advertised_host(bind_address: str) -> str:
    """How other replicas reach this one: the bind address, or this host's address when bound to all."""
    if bind_address not in ("0.0.0.0", "::", ""):
        return bind_address
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return socket.gethostname()


def _check_kds_flags(cfg: GlobalConfig) -> grpc.ServerCredentials | None:
    """The operator's KDS credentials (None: none given), after refusing contradictory flags with one line."""
    if not cfg.kds_tls_enabled:
        if cfg.kds_tls_cert_file is not None or cfg.kds_tls_key_file is not None:
            raise StartupError(
                "--kds-tls-cert-file/--kds-tls-key-file contradict --no-kds-tls-enabled: drop one or the other"
            )
        if cfg.kds_tls_sans:
            raise StartupError("--kds-tls-san contradicts --no-kds-tls-enabled: there is no certificate to name")
        return None
    names = server_names(cfg.bind_address, cfg.kds_tls_sans)  # a bad --kds-tls-san fails here
    creds = server_credentials(cfg.kds_tls_cert_file, cfg.kds_tls_key_file)
    if creds is not None and cfg.kds_tls_sans:
        log.warning("kds.tls.sans_unused", reason="--kds-tls-cert-file is served as given", names=names)
    return creds


async def _kds_credentials(
    cfg: GlobalConfig, store: ResourceStore, given: grpc.ServerCredentials | None
) -> grpc.ServerCredentials | None:
    if not cfg.kds_tls_enabled:
        log.warning(
            "kds.tls.disabled",
            risk="KDS is plaintext: resources, Secrets and zone tokens cross the network readable and forgeable;"
            " enable it unless a mesh or tunnel already encrypts this port",
        )
        return None
    if given is not None:
        return given
    certificates = KdsCertificates(store, cfg.data_dir)
    names = server_names(cfg.bind_address, cfg.kds_tls_sans)
    chain, key = await certificates.server_pem(names)
    log.info(
        "kds.tls.enabled",
        names=names,
        ca_file=str(certificates.ca_file.resolve()),
        hint="zones dial grpcs:// and trust ca_file with --kds-ca-cert-file",
    )
    return grpc.ssl_server_credentials([(key, chain)])


async def run_global(
    cfg: GlobalConfig, *, task_status: anyio.abc.TaskStatus[dict[str, int]] = anyio.TASK_STATUS_IGNORED
) -> None:
    # Before anything starts: a bad TLS flag fails the process with one line naming it.
    given_credentials = _check_kds_flags(cfg)
    store: ResourceStore = await open_store(cfg.store, data_dir=cfg.data_dir)
    ready = False
    try:
        kds_credentials = await _kds_credentials(cfg, store, given_credentials)
        metrics = KDSMetrics()
        zone_tokens = ZoneTokens(store)
        user_tokens = UserTokens(store)
        dataplane_tokens = DataplaneTokens(store, create_keys=True)
        authenticator = None
        if cfg.kds_auth is KDSAuth.CP_TOKEN:
            # Loaded (or created) before KDS serves, so no zone is ever checked against a missing key.
            await zone_tokens.keys.signer()
            authenticator = ZoneAuthenticator(zone_tokens.keys, is_revoked=zone_tokens.revocations.is_revoked)
        else:
            log.warning(
                "kds.auth.disabled",
                risk="--kds-auth none: any client that reaches the KDS port can speak as any zone, replace"
                " its Dataplanes and inject resources relayed to every other zone; use cp-token",
            )
        streams = StreamRegistry(
            metrics, instance_id=f"{socket.gethostname()}-{secrets.token_hex(2)}", max_zones=cfg.kds_max_zones
        )
        admission = ZoneAdmission(streams, authenticator)
        zones = ZoneRecords(store, cfg.kds_max_zones)
        source = SnapshotSource(
            store,
            registry.kinds_sent_to_zone(),
            include=ownership.global_sends,
            mapper=partial(ownership.to_zone, hash_suffix=False),
            hashed=(
                {d.name for d in registry.kinds_sent_to_zone() if ownership.hashed_down(d.name)},
                partial(ownership.to_zone, hash_suffix=True),
            ),
            resync_interval=cfg.resync_interval,
            origin_zone=ownership.origin_zone,
        )
        kds = KDSSyncService(
            source,
            streams,
            on_connect=zones.on_connect,
            sink=ZoneSink(store),
            admission=admission,
            max_bytes=payload_budget(cfg.kds_max_msg_size),
            max_concurrent_admissions=cfg.kds_max_concurrent_admissions,
        )
        xds_configs = XDSConfigBroker()
        health = GlobalKDSService(streams, cfg.zone_health_interval, xds_configs, admission=admission)
        policy = HealthPolicy(cfg.zone_health_interval, cfg.zone_health_missed)
        lifecycle = ZoneLifecycle(store, streams)
        watchdog = Watchdog(streams, stall_after=cfg.kds_stall_threshold, health=policy)
        watch = KDSWatch(streams)
        api = create_api_app(
            store,
            role="global",
            instance_id=streams.instance_id,
            before_write=lifecycle.before_write,
            auth=ApiAuth(user_tokens, localhost_is_admin=cfg.api_localhost_is_admin),
            extra_routes=[
                config_route(global_config_view(cfg)),
                *insight_routes(store, streams, policy),
                gateway_dataplanes_route(store),
                gateway_listeners_route(store),
                *watch.routes(),
                *trace_routes(store, streams, source, policy),
                trace_name_route(store, streams, source, policy, xds_configs),
                global_config_dump_route(store, xds_configs),
                global_policies_route(store),
                vips_route(store, streams, policy, xds_configs),
                token_route(zone_tokens),
                dataplane_token_route(dataplane_tokens, store, role="global"),
                user_token_route(user_tokens),
                # A revocation here closes this replica's streams with the token at once (other replicas: when
                # their refresh sees the list change, `run_refresh(on_change=...)` below).
                *token_admin_routes(
                    zone=zone_tokens, user=user_tokens, dataplane=dataplane_tokens, on_revoked=[admission.recheck]
                ),
            ],
        )
        add_gui(api, role="global")
        diagnostics = create_diagnostics_app(lambda: ready, extra_text=metrics.render)
        register = [
            lambda s: kds_pb2_grpc.add_KDSSyncServiceServicer_to_server(kds, s),
            lambda s: kds_pb2_grpc.add_GlobalKDSServiceServicer_to_server(health, s),
        ]
        directory: ReplicaDirectory | None = None
        async with anyio.create_task_group() as tg:
            if store.shared:
                await tg.start(partial(ensure_durable, cfg.store, allow_volatile=cfg.store_allow_volatile))
                # Shared store: follow every replica's writes, tell the others which zones we hold, and
                # run singleton work only on the replica holding the lease.
                await tg.start(store.follow)
                directory = ReplicaDirectory(cfg.store, streams)
                await tg.start(directory.run)
                lease = RedisLease(cfg.store, "global-leader", streams.instance_id, ttl=cfg.leader_lease)
                streams.leader = lambda: lease.is_leader
                await tg.start(lease.run, lifecycle.sweep_forever)
            else:
                streams.leader = lambda: True
                tg.start_soon(lifecycle.sweep_forever)
            await tg.start(source.run)
            await tg.start(lifecycle.run, cfg.watchdog_interval)
            await tg.start(watchdog.run, cfg.watchdog_interval)
            await tg.start(watch.run)
            await tg.start(admission.run, cfg.kds_token_recheck_interval)
            # Builtin mTLS CAs as Secrets (global_cp/ca.py); they reach zones with every other Secret.
            await tg.start(CaProvisioner(store).run)
            # Data plane token keys per Mesh, retired keys swept; cached zone token keys kept fresh for KDS.
            await tg.start(TokenKeyUpkeep(store, dataplane_tokens, [zone_tokens, user_tokens]).run)
            await tg.start(partial(zone_tokens.run_refresh, on_change=admission.recheck))
            await ensure_admin_token(user_tokens, cfg.data_dir)
            ports = {
                "kds": await tg.start(
                    partial(serve_grpc, credentials=kds_credentials, max_msg_size=cfg.kds_max_msg_size),
                    register,
                    KDS_SERVICES,
                    cfg.bind_address,
                    cfg.kds_port,
                ),
                "api": await tg.start(serve_app, api, cfg.bind_address, cfg.api_port),
                "diagnostics": await tg.start(serve_app, diagnostics, cfg.bind_address, cfg.diagnostics_port),
            }
            if directory is not None:
                directory.api_url = f"http://{advertised_host(cfg.bind_address)}:{ports['api']}"
            frozen = freeze_long_lived() if cfg.freeze_heap_when_ready else 0  # the loaded store
            ready = True
            write_ports_file(cfg.ports_file, ports)
            log.info(
                "global.ready",
                store=cfg.store,
                gc_frozen_objects=frozen,
                kds_auth=cfg.kds_auth.value,
                kds_tls=cfg.kds_tls_enabled,
                **{f"{k}_port": v for k, v in ports.items()},
            )
            task_status.started(ports)
    finally:
        with anyio.CancelScope(shield=True):
            await store.close()
