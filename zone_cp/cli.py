"""`meshgate-zone run --zone NAME --global-address grpc://HOST:PORT`: the zone control plane process."""

from __future__ import annotations

from ipaddress import IPv4Network
from pathlib import Path
from typing import Annotated

import typer

from meshgate.dns.upstream import Upstream
from meshgate.k8s.settings import DEFAULT_DATAPLANE_IMAGE
from meshgate.kds.limits import DEFAULT_MAX_MSG_SIZE
from meshgate.process.flags import (
    ApiLocalhostIsAdmin,
    BindAddress,
    DataDir,
    DiagnosticsPort,
    KdsMaxMsgSize,
    LogFormatOpt,
    LogLevel,
    PortsFile,
    StoreAllowVolatile,
    StoreOpt,
    parse_localhost_is_admin,
    run_process,
    setup_logging,
)
from meshgate.transport.kds_client import parse_address
from meshgate.xds.insight_sink import DEFAULT_FLUSH_INTERVAL, DEFAULT_SUBSCRIPTION_LIMIT
from zone_cp.app import ZoneConfig, run_zone

app = typer.Typer(help="meshgate zone control plane", no_args_is_help=True, add_completion=False)


def _dns_upstream(text: str) -> Upstream:
    try:
        return Upstream.parse(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


@app.callback()
def _root() -> None:
    """meshgate zone control plane."""


@app.command()
def run(
    zone: Annotated[str, typer.Option("--zone", envvar="MESHGATE_ZONE", help="This zone's name.")],
    global_address: Annotated[
        list[str],
        typer.Option(
            "--global-address",
            envvar="MESHGATE_GLOBAL_ADDRESS",
            help="grpc://HOST:PORT (or grpcs://HOST:PORT for TLS) of the global's KDS server; repeat for several"
            " replicas.",
        ),
    ],
    api_port: Annotated[int, typer.Option("--api-port", envvar="MESHGATE_API_PORT", help="HTTP API port.")] = 5681,
    xds_port: Annotated[
        int,
        typer.Option("--xds-port", envvar="MESHGATE_XDS_PORT", help="Delta ADS port the zone's Envoys connect to."),
    ] = 5678,
    diagnostics_port: DiagnosticsPort = 5680,
    bind_address: BindAddress = "0.0.0.0",
    store: StoreOpt = "sqlite",
    store_allow_volatile: StoreAllowVolatile = False,
    data_dir: DataDir = None,
    log_format: LogFormatOpt = "console",
    log_level: LogLevel = "info",
    ports_file: PortsFile = None,
    environment: Annotated[
        str,
        typer.Option(
            "--environment",
            envvar="MESHGATE_ENVIRONMENT",
            help="universal, or kubernetes to also turn MeshGatewayInstances into Deployments and Services.",
        ),
    ] = "universal",
    dns_port: Annotated[
        int, typer.Option("--dns-port", envvar="MESHGATE_DNS_PORT", help=".mesh DNS port (UDP and TCP).")
    ] = 5653,
    vip_cidr: Annotated[
        str, typer.Option("--vip-cidr", envvar="MESHGATE_VIP_CIDR", help="IPv4 CIDR that .mesh VIPs come from.")
    ] = "240.0.0.0/4",
    dns_domain: Annotated[
        str, typer.Option("--dns-domain", envvar="MESHGATE_DNS_DOMAIN", help="The DNS domain of mesh names.")
    ] = "mesh",
    dns_upstream: Annotated[
        Upstream | None,
        typer.Option(
            "--dns-upstream",
            envvar="MESHGATE_DNS_UPSTREAM",
            parser=_dns_upstream,
            metavar="IP[:PORT]",
            help="Resolver that names outside the DNS domain are forwarded to (IP:PORT, [IPv6]:PORT; port 53 by"
            " default). Without it they are answered REFUSED.",
        ),
    ] = None,
    kds_ca_cert_file: Annotated[
        Path | None,
        typer.Option(
            "--kds-ca-cert-file",
            envvar="MESHGATE_KDS_CA_CERT_FILE",
            help="PEM CA certificates trusted to sign the global's certificate on grpcs:// addresses"
            " (default: the system's roots).",
        ),
    ] = None,
    kds_tls_skip_verify: Annotated[
        bool,
        typer.Option(
            "--kds-tls-skip-verify",
            envvar="MESHGATE_KDS_TLS_SKIP_VERIFY",
            help="On grpcs:// addresses, trust whatever certificate the global presents (testing only).",
        ),
    ] = False,
    cp_token_path: Annotated[
        Path | None,
        typer.Option(
            "--cp-token-path",
            envvar="MESHGATE_CP_TOKEN_PATH",
            help="File holding this zone's token (from the global's `meshgatectl generate zone-token`), sent on"
            " every KDS call; needed unless the global runs with --kds-auth none. Re-read when it changes.",
        ),
    ] = None,
    cp_token: Annotated[
        str,
        typer.Option(
            "--cp-token",
            envvar="MESHGATE_CP_TOKEN",
            help="This zone's token inline (prefer --cp-token-path: a flag shows in the process list).",
        ),
    ] = "",
    dp_server_authn: Annotated[
        str,
        typer.Option(
            "--dp-server-authn",
            envvar="MESHGATE_DP_SERVER_AUTHN",
            help="How proxies on the xDS port prove who they are: dpToken (a data plane token for their Dataplane,"
            " from `meshgatectl generate dataplane-token`), or none (anyone gets any proxy's config: testing only).",
        ),
    ] = "dpToken",
    dp_server_tls: Annotated[
        bool,
        typer.Option(
            "--dp-server-tls/--no-dp-server-tls",
            envvar="MESHGATE_DP_SERVER_TLS",
            help="Serve xDS over TLS only (default), or in plaintext (testing only: tokens cross in the clear).",
        ),
    ] = True,
    dp_server_tls_cert_file: Annotated[
        Path | None,
        typer.Option(
            "--dp-server-tls-cert-file",
            envvar="MESHGATE_DP_SERVER_TLS_CERT_FILE",
            help="PEM certificate (chain) for the xDS port [default: one the zone generates, with its own CA].",
        ),
    ] = None,
    dp_server_tls_key_file: Annotated[
        Path | None,
        typer.Option(
            "--dp-server-tls-key-file",
            envvar="MESHGATE_DP_SERVER_TLS_KEY_FILE",
            help="Unencrypted PEM key of --dp-server-tls-cert-file.",
        ),
    ] = None,
    dp_server_tls_san: Annotated[
        list[str] | None,
        typer.Option(
            "--dp-server-tls-san",
            envvar="MESHGATE_DP_SERVER_TLS_SAN",
            help="Another DNS name or IP address the generated xDS certificate names (repeatable); localhost,"
            " 127.0.0.1, ::1, the host name and --bind-address always are.",
        ),
    ] = None,
    kds_max_msg_size: KdsMaxMsgSize = DEFAULT_MAX_MSG_SIZE,
    api_localhost_is_admin: ApiLocalhostIsAdmin = "true",
    dataplane_image: Annotated[
        str,
        typer.Option(
            "--dataplane-image",
            envvar="MESHGATE_DATAPLANE_IMAGE",
            help="With --environment kubernetes: the image gateway Pods run meshgate-dp from (Kuma's"
            f" KUMA_INJECTOR_SIDECAR_CONTAINER_IMAGE) [default: {DEFAULT_DATAPLANE_IMAGE}].",
        ),
    ] = "",
    dataplane_status_flush_interval: Annotated[
        float,
        typer.Option(
            "--dataplane-status-flush-interval",
            envvar="MESHGATE_XDS_SERVER_DATAPLANE_STATUS_FLUSH_INTERVAL",
            help="Seconds between writes of a proxy's DataplaneInsight, besides its connect and disconnect"
            " (Kuma's KUMA_XDS_SERVER_DATAPLANE_STATUS_FLUSH_INTERVAL).",
        ),
    ] = DEFAULT_FLUSH_INTERVAL,
    dataplane_subscription_limit: Annotated[
        int,
        typer.Option(
            "--dataplane-subscription-limit",
            envvar="MESHGATE_METRICS_DATAPLANE_SUBSCRIPTION_LIMIT",
            help="How many of a proxy's latest xDS subscriptions its DataplaneInsight keeps (0: none; Kuma's"
            " KUMA_METRICS_DATAPLANE_SUBSCRIPTION_LIMIT).",
        ),
    ] = DEFAULT_SUBSCRIPTION_LIMIT,
) -> None:
    """Run a zone control plane until SIGTERM or SIGINT."""
    if not zone:
        raise typer.BadParameter("must not be empty", param_hint="--zone")
    if environment not in ("universal", "kubernetes"):
        raise typer.BadParameter(f"expected universal or kubernetes, got {environment!r}", param_hint="--environment")
    for address in global_address:
        try:
            parse_address(address)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--global-address") from exc
    try:
        IPv4Network(vip_cidr)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--vip-cidr") from exc
    if not dns_domain.strip("."):
        raise typer.BadParameter("must not be empty", param_hint="--dns-domain")
    if dp_server_authn not in ("dpToken", "none"):
        raise typer.BadParameter(f"expected dpToken or none, got {dp_server_authn!r}", param_hint="--dp-server-authn")
    if dataplane_status_flush_interval <= 0:
        raise typer.BadParameter("must be positive", param_hint="--dataplane-status-flush-interval")
    if dataplane_subscription_limit < 0:
        raise typer.BadParameter("must not be negative", param_hint="--dataplane-subscription-limit")
    localhost_is_admin = parse_localhost_is_admin(api_localhost_is_admin)
    setup_logging(log_format, log_level, f"zone:{zone}")
    cfg = ZoneConfig(
        zone=zone,
        global_addresses=tuple(global_address),
        bind_address=bind_address,
        api_port=api_port,
        diagnostics_port=diagnostics_port,
        store=store,
        store_allow_volatile=store_allow_volatile,
        data_dir=data_dir or Path("data") / zone,
        ports_file=ports_file,
        environment=environment,
        xds_port=xds_port,
        dns_port=dns_port,
        vip_cidr=vip_cidr,
        dns_domain=dns_domain,
        dns_upstream=dns_upstream,
        kds_ca_cert_file=kds_ca_cert_file,
        kds_tls_skip_verify=kds_tls_skip_verify,
        cp_token=cp_token,
        cp_token_path=cp_token_path,
        dp_server_authn=dp_server_authn,
        dp_server_tls=dp_server_tls,
        dp_server_tls_cert_file=dp_server_tls_cert_file,
        dp_server_tls_key_file=dp_server_tls_key_file,
        dp_server_tls_sans=tuple(dp_server_tls_san or ()),
        kds_max_msg_size=kds_max_msg_size,
        api_localhost_is_admin=localhost_is_admin,
        dataplane_image=dataplane_image,
        dataplane_status_flush_interval=dataplane_status_flush_interval,
        dataplane_subscription_limit=dataplane_subscription_limit,
        freeze_heap_when_ready=True,
    )
    run_process("meshgate-zone", lambda: run_zone(cfg))


def main() -> None:
    app()
