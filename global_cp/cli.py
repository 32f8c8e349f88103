"""`meshgate-global run`: the global control plane process."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from global_cp.app import DEFAULT_MAX_CONCURRENT_ADMISSIONS, GlobalConfig, run_global
from global_cp.zones import DEFAULT_MAX_ZONES
from meshgate.auth import KDSAuth
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


def _kds_auth(text: str) -> KDSAuth:
    try:
        return KDSAuth(text)
    except ValueError:
        raise typer.BadParameter(
            f"expected {' or '.join(a.value for a in KDSAuth)}, got {text!r}", param_hint="--kds-auth"
        ) from None


def _split_sans(values: list[str]) -> list[str]:
    # From the environment, MESHGATE_KDS_TLS_SAN holds several names separated by spaces or commas.
    return [n for v in values for n in v.replace(",", " ").split()]


app = typer.Typer(help="meshgate global control plane", no_args_is_help=True, add_completion=False)


@app.callback()
def _root() -> None:
    """meshgate global control plane."""


@app.command()
def run(
    api_port: Annotated[int, typer.Option("--api-port", envvar="MESHGATE_API_PORT", help="HTTP API port.")] = 5681,
    kds_port: Annotated[
        int, typer.Option("--kds-port", envvar="MESHGATE_KDS_PORT", help="KDS gRPC port zones connect to.")
    ] = 5685,
    diagnostics_port: DiagnosticsPort = 5680,
    bind_address: BindAddress = "0.0.0.0",
    store: StoreOpt = "sqlite",
    store_allow_volatile: StoreAllowVolatile = False,
    data_dir: DataDir = None,
    log_format: LogFormatOpt = "console",
    log_level: LogLevel = "info",
    ports_file: PortsFile = None,
    zone_health_interval: Annotated[
        float,
        typer.Option(
            "--zone-health-interval",
            envvar="MESHGATE_ZONE_HEALTH_INTERVAL",
            help="Seconds between zone pings.",
        ),
    ] = 10.0,
    kds_stall_threshold: Annotated[
        float,
        typer.Option(
            "--kds-stall-threshold",
            envvar="MESHGATE_KDS_STALL_THRESHOLD",
            help="Seconds a KDS response may stay un-ACKed before it is reported as a stall.",
        ),
    ] = 10.0,
    kds_tls_cert_file: Annotated[
        Path | None,
        typer.Option(
            "--kds-tls-cert-file",
            envvar="MESHGATE_KDS_TLS_CERT_FILE",
            help="PEM certificate (chain) of the KDS server, with --kds-tls-key-file; without them the global"
            " serves a certificate from its own CA (written to <data-dir>/kds-ca.crt for zones).",
        ),
    ] = None,
    kds_tls_key_file: Annotated[
        Path | None,
        typer.Option(
            "--kds-tls-key-file",
            envvar="MESHGATE_KDS_TLS_KEY_FILE",
            help="PEM private key of --kds-tls-cert-file (unencrypted).",
        ),
    ] = None,
    kds_tls_enabled: Annotated[
        bool,
        typer.Option(
            "--kds-tls-enabled/--no-kds-tls-enabled",
            envvar="MESHGATE_KDS_TLS_ENABLED",
            help="Serve KDS over TLS (default). --no-kds-tls-enabled serves plaintext and warns: only behind"
            " something that already encrypts the port.",
        ),
    ] = True,
    kds_tls_san: Annotated[
        list[str] | None,
        typer.Option(
            "--kds-tls-san",
            envvar="MESHGATE_KDS_TLS_SAN",
            help="A DNS name or IP address zones dial this global by, added to the certificate the global issues"
            " itself (besides localhost, 127.0.0.1, ::1, the host name and the bind address); repeatable.",
        ),
    ] = None,
    kds_max_zones: Annotated[
        int,
        typer.Option(
            "--kds-max-zones",
            envvar="MESHGATE_KDS_MAX_ZONES",
            min=1,
            help="Zone records KDS may create; a new zone beyond it is refused until a record is deleted.",
        ),
    ] = DEFAULT_MAX_ZONES,
    kds_max_concurrent_admissions: Annotated[
        int,
        typer.Option(
            "--kds-max-concurrent-admissions",
            envvar="MESHGATE_KDS_MAX_CONCURRENT_ADMISSIONS",
            min=0,
            help="Zones whose initial KDS sync (or resume) runs at once; more wait their turn, so a reconnect"
            " storm never starves zones already in sync. 0: no limit.",
        ),
    ] = DEFAULT_MAX_CONCURRENT_ADMISSIONS,
    kds_token_recheck_interval: Annotated[
        float,
        typer.Option(
            "--kds-token-recheck-interval",
            envvar="MESHGATE_KDS_TOKEN_RECHECK_INTERVAL",
            min=0.1,
            help="Seconds between re-checks of every open KDS stream's zone token (expired, revoked).",
        ),
    ] = 60.0,
    kds_auth: Annotated[
        KDSAuth,
        typer.Option(
            "--kds-auth",
            envvar="MESHGATE_KDS_AUTH",
            parser=_kds_auth,
            metavar="none|cp-token",
            help="How zones prove their name on KDS: cp-token (default: a zone token from POST /tokens/zone or"
            " `meshgatectl generate zone-token`, sent as 'authorization: Bearer TOKEN'), or none (warns: any"
            " client can speak as any zone).",
        ),
    ] = KDSAuth.CP_TOKEN,
    kds_max_msg_size: KdsMaxMsgSize = DEFAULT_MAX_MSG_SIZE,
    api_localhost_is_admin: ApiLocalhostIsAdmin = "true",
) -> None:
    """Run the global control plane until SIGTERM or SIGINT."""
    localhost_is_admin = parse_localhost_is_admin(api_localhost_is_admin)
    setup_logging(log_format, log_level, "global")
    cfg = GlobalConfig(
        bind_address=bind_address,
        api_port=api_port,
        kds_port=kds_port,
        diagnostics_port=diagnostics_port,
        store=store,
        store_allow_volatile=store_allow_volatile,
        data_dir=data_dir or Path("data/global"),
        zone_health_interval=zone_health_interval,
        kds_stall_threshold=kds_stall_threshold,
        ports_file=ports_file,
        kds_tls_cert_file=kds_tls_cert_file,
        kds_tls_key_file=kds_tls_key_file,
        kds_tls_enabled=kds_tls_enabled,
        kds_tls_sans=tuple(_split_sans(kds_tls_san or [])),
        kds_max_zones=kds_max_zones,
        kds_max_concurrent_admissions=kds_max_concurrent_admissions,
        kds_token_recheck_interval=kds_token_recheck_interval,
        kds_auth=kds_auth,
        kds_max_msg_size=kds_max_msg_size,
        api_localhost_is_admin=localhost_is_admin,
        freeze_heap_when_ready=True,
    )
    run_process("meshgate-global", lambda: run_global(cfg))


def main() -> None:
    app()
