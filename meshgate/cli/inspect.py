"""`meshgatectl inspect zones` and `inspect zone NAME`: the global's zone insights, as kumactl shows them.

`inspect zones` prints kumactl's columns (app/kumactl/cmd/inspect/inspect_zones.go, v2.7.29) for the
questions people ask first, plus IN FLIGHT (responses awaiting an ACK: how many, and the oldest one's age) and
WARNINGS (stalls, lapsed health checks, oversized resources), so a stuck stream shows up in the overview.
`inspect zone NAME` opens one zone: every kind, both directions, with the last NACK and what it named.
`inspect dataplane NAME --mesh M --type config-dump` prints a proxy's Envoy config dump, against a zone or the global.
`inspect dataplane NAME --type policies` (kumactl's default type) prints, for a builtin gateway, which policy of each
kind shaped which listener, route and cluster, the policies that lost and why, and the kinds the gateway ignores
(meshgate.rest.policy_inspect computes it, on the zone or the global alike).
`inspect vips --mesh M` lists a zone's `.mesh` names: VIP, ports and the Dataplanes or gateway behind each.
The renderers are plain functions of the JSON and a `now`, so tests pin their output.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any
from urllib.parse import quote

import typer
import yaml

from meshgate.cli.client import ApiResponseError
from meshgate.cli.context import api_errors, fail, settings_of
from meshgate.cli.output import OutputFormat, age, table

__all__ = ["app", "render_policies", "render_vips", "render_zone", "render_zones"]

app = typer.Typer(
    help="Inspect zones and their KDS streams (on the global), and proxies' Envoy config.", no_args_is_help=True
)

Doc = Mapping[str, Any]


def dump(data: Any, fmt: OutputFormat) -> str:
    if fmt is OutputFormat.JSON:
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    return str(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


def _ago(ts: object, now: datetime) -> str:
    # kumactl's table.Ago prints "never" for a time that is not there.
    return "never" if not ts else age(ts, now)


def _subscriptions(overview: Doc) -> list[Doc]:
    return list((overview.get("zoneInsight") or {}).get("subscriptions") or [])


def _total(overview: Doc, field: str) -> int:
    return sum(int((s.get("status") or {}).get("total", {}).get(field, 0)) for s in _subscriptions(overview))


def _in_flight(overview: Doc, now: datetime) -> str:
    since = [
        stat["inFlightSince"]
        for s in _subscriptions(overview)
        if not s.get("disconnectTime")
        for stat in ((s.get("status") or {}).get("stat") or {}).values()
        if stat.get("inFlightSince")
    ]
    if not since:
        return "0"
    return f"{len(since)} ({age(min(since), now)})"


def _status(overview: Doc) -> str:
    return str(overview.get("status", "offline")).capitalize()


def render_zones(overviews: Sequence[Doc], now: datetime) -> str:
    headers = [
        "NAME",
        "STATUS",
        "LAST CONNECTED AGO",
        "LAST UPDATED AGO",
        "TOTAL UPDATES",
        "TOTAL ERRORS",
        "IN FLIGHT",
        "WARNINGS",
    ]
    rows = [headers]
    for o in overviews:
        subs = _subscriptions(o)
        last = subs[-1] if subs else {}
        rows.append(
            [
                str(o.get("name", "")),
                _status(o),
                _ago(last.get("connectTime"), now),
                _ago((last.get("status") or {}).get("lastUpdateTime"), now),
                str(_total(o, "responsesSent")),
                str(_total(o, "responsesRejected")),
                _in_flight(o, now),
                str(len(o.get("warnings") or [])),
            ]
        )
    return table(rows)


def _kind_rows(sub: Doc, now: datetime) -> tuple[str, list[str]]:
    stats: Mapping[str, Doc] = (sub.get("status") or {}).get("stat") or {}
    rows = [["KIND", "SENT", "ACKED", "NACKED", "IN FLIGHT SINCE", "LAST NONCE", "ANSWERED IN"]]
    nacks: list[str] = []
    for kind, st in stats.items():
        latency = st.get("lastAckLatencyMs")
        since = st.get("inFlightSince")
        rows.append(
            [
                kind,
                str(st.get("responsesSent", 0)),
                str(st.get("responsesAcknowledged", 0)),
                str(st.get("responsesRejected", 0)),
                f"{age(since, now)} ago (nonce {st.get('inFlightNonce', '?')})" if since else "-",
                str(st.get("lastNonce") or "-"),
                f"{latency:g}ms" if isinstance(latency, int | float) else "-",
            ]
        )
        nack = st.get("lastNack")
        if nack:
            when = f", {age(nack['at'], now)} ago" if nack.get("at") else ""
            nacks.append(f"    last NACK of {kind} (nonce {nack.get('nonce', '?')}{when}): {nack.get('error', '')}")
            nacks.extend(f"      {name}: {reason}" for name, reason in (nack.get("resources") or {}).items())
    return table(rows, indent="    "), nacks


def render_zone(overview: Doc, now: datetime) -> str:
    health = overview.get("healthCheck") or {}
    seen = health.get("lastSeen")
    lines = [
        f"Zone:          {overview.get('name', '')}",
        f"Status:        {_status(overview)}",
        f"Enabled:       {str((overview.get('zone') or {}).get('enabled', True)).lower()}",
        f"Health check:  {f'last {age(seen, now)} ago' if seen else 'none received'}"
        f" (every {health.get('interval', '?')}s)",
    ]
    warnings = list(overview.get("warnings") or [])
    lines.append(f"Warnings:      {len(warnings) or 'none'}")
    lines.extend(f"  - {w}" for w in warnings)
    subs = _subscriptions(overview)
    lines.append("")
    lines.append(f"Subscriptions ({len(subs)}, newest last):")
    for sub in subs:
        closed = sub.get("disconnectTime")
        when = f"connected {_ago(sub.get('connectTime'), now)} ago"
        when += f", disconnected {_ago(closed, now)} ago" if closed else ", active"
        total = (sub.get("status") or {}).get("total") or {}
        lines.append(
            f"  {sub.get('id', '')}  {sub.get('direction', '')}  {when}"
            f"  (sent {total.get('responsesSent', 0)}, ACKed {total.get('responsesAcknowledged', 0)},"
            f" NACKed {total.get('responsesRejected', 0)})"
        )
        if closed:
            continue
        rows, nacks = _kind_rows(sub, now)
        lines.append(rows.rstrip("\n"))
        lines.extend(nacks)
        lines.extend(f"    warning: {w}" for w in sub.get("warnings") or [])
    return "\n".join(lines) + "\n"


Output = Annotated[OutputFormat, typer.Option("--output", "-o", help="Output format.")]


@app.command("zones")
def inspect_zones(ctx: typer.Context, output: Output = OutputFormat.TABLE) -> None:
    """Every zone: status, last connect and update, totals, responses in flight, warnings."""
    with settings_of(ctx).client() as client, api_errors("inspect zones"):
        body = client.get_json("/zones/_overview")
    if output is OutputFormat.TABLE:
        typer.echo(render_zones(body.get("items") or [], datetime.now(UTC)), nl=False)
    else:
        typer.echo(dump(body, output), nl=False)


@app.command("zone")
def inspect_zone(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="The zone's name.")],
    output: Output = OutputFormat.TABLE,
) -> None:
    """One zone: per kind and direction, responses sent/ACKed/NACKed, in flight, and the last NACK's reason."""
    with settings_of(ctx).client() as client, api_errors(f'inspect zone "{name}"'):
        try:
            body = client.get_json(f"/zones/{name}/_overview")
        except ApiResponseError as exc:
            if exc.status == 404:
                fail(f'there is no Zone with name "{name}"')  # kumactl's wording
            raise
    if output is OutputFormat.TABLE:
        typer.echo(render_zone(body, datetime.now(UTC)), nl=False)
    else:
        typer.echo(dump(body, output), nl=False)


class InspectType(StrEnum):
    CONFIG_DUMP = "config-dump"
    POLICIES = "policies"


def render_policies(body: Doc) -> str:
    """A gateway's policy report, grouped by kind: the target each policy shaped, then each loser and why."""
    if body.get("kind") != "MeshGatewayDataplane":
        return "no policies: meshgate applies policies to builtin gateways only\n"
    gateway = body.get("gateway") or {}
    lines = [f"MESHGATEWAY {gateway.get('name', '')} (mesh {gateway.get('mesh', '')}):"]
    applied: list[Doc] = list(body.get("applied") or [])
    if not applied:
        lines.append("  no policy shapes this gateway")
    kind = None
    for item in applied:
        if item.get("type") != kind:
            kind = item.get("type")
            lines.append(f"  {kind}")
        policy = (item.get("policy") or {}).get("name", "")
        lines.append(f"    {str(item.get('target', '')).upper()} {item.get('name', '')}: {policy}")
        lines.extend(f"      lost: {lo.get('name', '')}: {lo.get('reason', '')}" for lo in item.get("losers") or [])
    for ignored in body.get("ignored") or []:
        names = ", ".join(ignored.get("policies") or [])
        lines.append(f"  {ignored.get('type', '')} (ignored: {ignored.get('reason', '')}): {names}")
    for denied in body.get("denied") or []:
        service = (denied.get("backend") or {}).get("kuma.io/service", "")
        lines.append(f"  {denied.get('type', '')} denies {service} (403): {denied.get('reason', '')}")
    lines.extend(f"  problem: {p}" for p in body.get("problems") or [])
    return "\n".join(lines) + "\n"


@app.command("dataplane")
def inspect_dataplane(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="The Dataplane's name (on the global: either name).")],
    mesh: Annotated[str, typer.Option("--mesh", "-m", help="The mesh.")] = "default",
    kind: Annotated[InspectType, typer.Option("--type", help="What to show.")] = InspectType.CONFIG_DUMP,
    include_eds: Annotated[bool, typer.Option("--include-eds", help="Include endpoints (EDS) in the dump.")] = False,
    output: Output = OutputFormat.TABLE,
) -> None:
    """A proxy's Envoy config dump (JSON): from its admin on a zone, or asked of its zone over KDS on the global.
    `--type policies`: which policy shaped each gateway listener, route and cluster, and why others lost."""
    policies = kind is InspectType.POLICIES
    params = {"include_eds": "true"} if include_eds and not policies else {}
    leaf = "policies" if policies else "xds"
    with settings_of(ctx).client() as client, api_errors(f'inspect dataplane "{name}"'):
        try:
            body = client.get_json(f"/meshes/{quote(mesh, safe='')}/dataplanes/{quote(name, safe='')}/{leaf}", params)
        except ApiResponseError as exc:
            if exc.status == 404:
                fail(f'there is no Dataplane with name "{name}" in mesh "{mesh}"')
            raise
    if not policies:
        typer.echo(json.dumps(body, indent=2, ensure_ascii=False))
    elif output is OutputFormat.TABLE:
        typer.echo(render_policies(body), nl=False)
    else:
        typer.echo(dump(body, output), nl=False)


def render_vips(items: Sequence[Doc]) -> str:
    rows = [["NAME", "VIP", "PORTS", "SOURCE"]]
    for item in items:
        rows.append(
            [
                str(item.get("name", "")),
                str(item.get("vip", "")),
                ",".join(str(p) for p in item.get("ports") or []),
                ", ".join(str(s) for s in item.get("source") or []),
            ]
        )
    return table(rows)


@app.command("vips")
def inspect_vips(
    ctx: typer.Context,
    mesh: Annotated[str, typer.Option("--mesh", "-m", help="The mesh.")] = "default",
    output: Output = OutputFormat.TABLE,
) -> None:
    """A zone's .mesh names in a mesh: VIP, ports, and the Dataplanes or gateway listener each comes from."""
    with settings_of(ctx).client() as client, api_errors("inspect vips"):
        body = client.get_json("/vips", {"mesh": mesh})
    if output is OutputFormat.TABLE:
        typer.echo(render_vips(body.get("items") or []), nl=False)
        for problem in body.get("problems") or []:
            typer.echo(f"problem: {problem}", err=True)
    else:
        typer.echo(dump(body, output), nl=False)
