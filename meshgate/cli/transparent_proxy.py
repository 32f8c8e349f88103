"""`meshgatectl install transparent-proxy` and `meshgatectl uninstall transparent-proxy`.

kumactl's commands (app/kumactl/cmd/install/install_transparent_proxy.go, uninstall/uninstall_transparent_proxy.go
at v2.7.29) for the iptables mode, with their flags, defaults, checks and messages; the rules go into the
network namespace this process runs in. Not carried over: eBPF, firewalld, `--vnet`, the lock and retry flags
(`--wait`, `--max-retries`, ...), the deprecated per-protocol uid flags and `--redirect-inbound-port-v6`; they
are refused as unknown options. Kuma 2.7 also rewrites nothing in /etc/resolv.conf on install, so uninstall
restores it only from a `/etc/resolv.conf.kuma-backup` left by an older kumactl, as kumactl does.

A second install into a namespace that has the rules is refused, with the uninstall command to run: kumactl
2.7 fails there too (its `iptables-restore --noflush` cannot create KUMA_ chains that exist), only later and
after retries.
"""

from __future__ import annotations

import pwd
import sys
from pathlib import Path
from typing import Annotated

import typer

from meshgate.cli.context import fail
from meshgate.transparentproxy.config import (
    DEFAULT_DNS_PORT,
    DEFAULT_INBOUND_PORT,
    DEFAULT_OUTBOUND_PORT,
    ConfigError,
    TransparentProxyConfig,
    parse_ips,
    parse_port,
    parse_ports,
    parse_ports_for_uids,
)
from meshgate.transparentproxy.iptables import TransparentProxyError, detect_host, install, rulesets, uninstall

__all__ = ["install_app", "uninstall_app"]

install_app = typer.Typer(help="Install meshgate's host pre-requisites.", no_args_is_help=True)
uninstall_app = typer.Typer(help="Uninstall meshgate's host pre-requisites.", no_args_is_help=True)

_RESOLV_BACKUP = Path("/etc/resolv.conf.kuma-backup")


def _find_uid(uid: str, user: str) -> str:
    """kumactl's findUidGid (install_transparent_proxy.go:242-260): a uid that names a user, else the user's
    uid, else the uid as given (no such user is needed: iptables matches numbers)."""
    if uid:
        try:
            return str(pwd.getpwuid(int(uid)).pw_uid)
        except (KeyError, ValueError):
            pass
    if user:
        try:
            return str(pwd.getpwnam(user).pw_uid)
        except KeyError:
            fail(
                "unable to find the kuma-dp user:"
                " --kuma-dp-user or --kuma-dp-uid should refer to a valid user on the host"
            )
    if not uid.isdigit():
        fail("unable to find the kuma-dp user: --kuma-dp-uid must be a number")
    return uid


@install_app.command("transparent-proxy")
def install_transparent_proxy(
    kuma_dp_user: Annotated[str, typer.Option("--kuma-dp-user", help="the user that will run kuma-dp")] = "",
    kuma_dp_uid: Annotated[str, typer.Option("--kuma-dp-uid", help="the uid of the user that will run kuma-dp")] = "",
    redirect_outbound_port: Annotated[
        str, typer.Option("--redirect-outbound-port", help="outbound port redirected to Envoy")
    ] = str(DEFAULT_OUTBOUND_PORT),
    redirect_inbound: Annotated[
        bool,
        typer.Option(
            "--redirect-inbound/--no-redirect-inbound",
            help="redirect the inbound traffic to the Envoy. Should be disabled for Gateway data plane proxies.",
        ),
    ] = True,
    redirect_inbound_port: Annotated[
        str, typer.Option("--redirect-inbound-port", help="inbound port redirected to Envoy")
    ] = str(DEFAULT_INBOUND_PORT),
    ip_family_mode: Annotated[
        str,
        typer.Option(
            "--ip-family-mode", help="The IP family mode to enable traffic redirection for: dualstack or ipv4"
        ),
    ] = "dualstack",
    exclude_inbound_ports: Annotated[
        str, typer.Option("--exclude-inbound-ports", help="a comma separated list of inbound ports to exclude")
    ] = "",
    exclude_outbound_ports: Annotated[
        str, typer.Option("--exclude-outbound-ports", help="a comma separated list of outbound ports to exclude")
    ] = "",
    exclude_outbound_ports_for_uids: Annotated[
        list[str] | None,
        typer.Option(
            "--exclude-outbound-ports-for-uids",
            help="[protocol:][ports:]uids, e.g. tcp:53,3000-5000:106-108; repeatable",
        ),
    ] = None,
    exclude_outbound_ips: Annotated[
        list[str] | None,
        typer.Option(
            "--exclude-outbound-ips", help="addresses or CIDRs not redirected outbound (Kuma 2.9); repeatable"
        ),
    ] = None,
    exclude_inbound_ips: Annotated[
        list[str] | None,
        typer.Option("--exclude-inbound-ips", help="source addresses or CIDRs not redirected inbound (Kuma 2.9)"),
    ] = None,
    redirect_dns: Annotated[
        bool, typer.Option("--redirect-dns", help="redirect DNS requests to the servers in /etc/resolv.conf")
    ] = False,
    redirect_all_dns_traffic: Annotated[
        bool, typer.Option("--redirect-all-dns-traffic", help="redirect all DNS traffic to --redirect-dns-port")
    ] = False,
    redirect_dns_port: Annotated[
        str, typer.Option("--redirect-dns-port", help="the port where the DNS agent is listening")
    ] = str(DEFAULT_DNS_PORT),
    skip_dns_conntrack_zone_split: Annotated[
        bool, typer.Option("--skip-dns-conntrack-zone-split", help="skip applying conntrack zone splitting rules")
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the rules instead of installing them")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", help="verbose")] = False,
) -> None:
    """Install the transparent proxy's iptables rules in this network namespace (run as root)."""
    if not dry_run and not sys.platform.startswith("linux"):
        fail("transparent proxy will work only on Linux OSes")
    if not kuma_dp_user and not kuma_dp_uid:
        fail("--kuma-dp-user or --kuma-dp-uid should be supplied")
    if redirect_all_dns_traffic and redirect_dns:
        fail("one of --redirect-dns or --redirect-all-dns-traffic should be specified")
    if ip_family_mode not in ("dualstack", "ipv4"):
        fail(f"--ip-family-mode: {ip_family_mode!r}: must be dualstack or ipv4")
    uid = _find_uid(kuma_dp_uid, kuma_dp_user)
    try:
        cfg = TransparentProxyConfig(
            uid=uid,
            redirect_outbound_port=parse_port(redirect_outbound_port, "--redirect-outbound-port"),
            redirect_inbound=redirect_inbound,
            redirect_inbound_port=parse_port(redirect_inbound_port, "--redirect-inbound-port"),
            exclude_inbound_ports=parse_ports(exclude_inbound_ports, "--exclude-inbound-ports"),
            exclude_outbound_ports=parse_ports(exclude_outbound_ports, "--exclude-outbound-ports"),
            exclude_outbound_ports_for_uids=parse_ports_for_uids(exclude_outbound_ports_for_uids or ()),
            exclude_outbound_ips=parse_ips(exclude_outbound_ips or (), "--exclude-outbound-ips"),
            exclude_inbound_ips=parse_ips(exclude_inbound_ips or (), "--exclude-inbound-ips"),
            redirect_dns=redirect_dns or redirect_all_dns_traffic,
            capture_all_dns=redirect_all_dns_traffic,
            dns_port=parse_port(redirect_dns_port, "--redirect-dns-port"),
            conntrack_zone_split=not skip_dns_conntrack_zone_split,
        )
    except ConfigError as exc:
        fail(str(exc))
    host = detect_host(ipv4_only=ip_family_mode == "ipv4")
    if dry_run:
        sets = rulesets(cfg, host)
        for ruleset in sets:
            if len(sets) > 1:
                typer.echo(f"# {'ip6tables' if ruleset.ipv6 else 'iptables'}-restore --noflush")
            typer.echo(ruleset.render(verbose), nl=False)
        return
    typer.echo(
        "# meshgatectl is about to apply the iptables rules that will enable transparent proxying on the machine."
        " The SSH connection may drop. If that happens, just reconnect again."
    )
    try:
        install(cfg, host, echo=typer.echo, warn=lambda line: typer.echo(line, err=True), verbose=verbose)
    except TransparentProxyError as exc:
        fail(f"failed to setup transparent proxy: {exc}")
    typer.echo("# Transparent proxy set up successfully, you can now run meshgate-dp using transparent-proxy.")


@uninstall_app.command("transparent-proxy")
def uninstall_transparent_proxy(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print what would be removed")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", help="verbose")] = False,
) -> None:
    """Remove the transparent proxy's iptables rules from this network namespace (run as root)."""
    if not dry_run and not sys.platform.startswith("linux"):
        fail("transparent proxy will work only on Linux OSes")
    try:
        removed = uninstall(echo=typer.echo, dry_run=dry_run)
    except TransparentProxyError as exc:
        fail(f"transparent proxy cleanup failed: {exc}")
    if not removed and verbose:
        typer.echo("# no transparent proxy rules found in this network namespace")
    if _RESOLV_BACKUP.is_file():
        # uninstall_transparent_proxy.go:67-81: an older kumactl's backup of resolv.conf is put back.
        content = _RESOLV_BACKUP.read_bytes()
        if not dry_run:
            Path("/etc/resolv.conf").write_bytes(content)
        typer.echo(content.decode(errors="replace"))
    typer.echo("\nTransparent proxy cleaned up successfully")
