"""`meshgatectl kds watch` and `kds trace`: what crosses the zones' streams, and where one resource stands.

`watch` tails the global's `/kds/watch` NDJSON stream: one line per event, as it happens, until Ctrl-C.
`trace` answers "why isn't it in my zone?" for one resource: the global's version, then per zone what was
sent, with which nonce, what the zone confirmed, and one closing verdict line per zone. The formatters are
plain functions of the JSON (and a `now`), so tests pin their output.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from meshgate.cli.client import ApiResponseError
from meshgate.cli.context import api_errors, fail, settings_of
from meshgate.cli.inspect import dump
from meshgate.cli.output import OutputFormat, age, table
from meshgate.resources import registry
from meshgate.resources.errors import UnknownKindError

__all__ = ["app", "format_event", "render_name_trace", "render_trace"]

app = typer.Typer(help="Debug KDS streams between the global and its zones.", no_args_is_help=True)

Doc = Mapping[str, Any]

# How many upserts/removals a watch line shows before "(+N more)": enough for a typical apply, short enough
# to stay one readable line when a full resync sends thousands.
_LIST_LIMIT = 5
_WATCH_VERSION = 8
_TRACE_VERSION = 12


def _kind(alias: str) -> str:
    try:
        return registry.lookup(alias).name
    except UnknownKindError:
        fail(f"unknown KIND: {alias}. Allowed values: {', '.join(sorted(d.plural for d in registry.KINDS))}")


def _clip(items: Sequence[str], left_out: int = 0) -> str:
    """The first few items, then how many more (`left_out`: ones the server already left out of the event)."""
    shown = " ".join(items[:_LIST_LIMIT])
    more = max(len(items) - _LIST_LIMIT, 0) + left_out
    return shown + (f" (+{more} more)" if more else "")


def format_event(doc: Doc) -> str | None:
    """One human line for one watch event; None for a heartbeat (it only keeps the connection open)."""
    event = doc.get("event")
    if event == "heartbeat":
        return None
    if event == "dropped":
        return f"({doc.get('count', '?')} events dropped: this watch fell behind)"
    at = str(doc.get("at", ""))
    parts = [at[11:23] + "Z" if len(at) >= 23 else at, str(doc.get("zone", "")), str(doc.get("direction", ""))]
    parts.append(f"{event!s:<10}")
    if doc.get("kind"):
        parts.append(str(doc["kind"]))
    if doc.get("nonce"):
        parts.append(f"nonce={doc['nonce']}")
    upserts = [f"+{u['name']}@{str(u['version'])[:_WATCH_VERSION]}" for u in doc.get("upserts") or []]
    removals = [f"-{name}" for name in doc.get("removals") or []]
    if upserts or removals:
        parts.append(_clip(upserts + removals, int(doc.get("more") or 0)))
    if doc.get("latencyMs") is not None:
        parts.append(f"{doc['latencyMs']:g}ms")
    rejected = [f"{r['name']} ({r['reason']})" for r in doc.get("rejected") or []]
    if rejected:
        parts.append("rejected: " + _clip(rejected))
    elif doc.get("error"):
        parts.append(f"error: {doc['error']}")
    return "  ".join(parts)


@app.command("watch")
def watch(
    ctx: typer.Context,
    zone: Annotated[str | None, typer.Option("--zone", help="Only this zone's streams.")] = None,
    kind: Annotated[str | None, typer.Option("--kind", help="Only this kind (meshgateways, Mesh, ...).")] = None,
    output: Annotated[
        OutputFormat, typer.Option("--output", "-o", help="table: one line per event; json: the raw events.")
    ] = OutputFormat.TABLE,
) -> None:
    """Tail what crosses the KDS streams, live: responses, ACKs, NACKs, stalls, connects. Ctrl-C stops."""
    params = {"zone": zone or "", "kind": _kind(kind) if kind else ""}
    params = {k: v for k, v in params.items() if v}
    try:
        with (
            settings_of(ctx).client() as client,
            api_errors("kds watch"),
            client.stream_lines("/kds/watch", params) as lines,
        ):
            scope = ", ".join(f"{k} {v}" for k, v in params.items()) or "every zone and kind"
            typer.echo(f"Watching KDS events at {client.base_url} ({scope}); Ctrl-C to stop.", err=True)
            for line in lines:
                if not line.strip():
                    continue
                doc = json.loads(line)
                if output is OutputFormat.TABLE:
                    text = format_event(doc)
                    if text is not None:
                        typer.echo(text)
                elif doc.get("event") != "heartbeat":
                    typer.echo(line)
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


def _sent(row: Doc, now: datetime) -> tuple[str, str]:
    sent = row.get("sent")
    if not sent:
        return "-", "-"
    return f"{age(sent.get('at'), now)} ago", str(sent.get("nonce", "-"))


def render_trace(trace: Doc, now: datetime) -> str:
    kind, name, mesh = trace.get("kind", ""), trace.get("name", ""), trace.get("mesh", "")
    where = f' in mesh "{mesh}"' if mesh else ""
    rows_in = list(trace.get("zones") or [])
    lines = [f'{kind} "{name}"{where} (KDS name {trace.get("wireName", "")}), {trace.get("direction", "")}']
    if trace.get("direction") == "zone-to-global":
        rows = [["ZONE", "STATUS", "ON GLOBAL", "ZONE VERSION", "RESULT"]]
        rows += [
            [
                str(r["zone"]),
                str(r["status"]).capitalize(),
                str(r.get("globalName") or "-"),
                str(r.get("zoneVersion") or "-")[:_TRACE_VERSION],
                str(r["verdict"]),
            ]
            for r in rows_in
        ]
    else:
        version = trace.get("globalVersion")
        lines.append(f"Global version: {version or 'none (deleted, or never created)'}")
        rows = [["ZONE", "STATUS", "SENT", "NONCE", "ZONE VERSION", "RESULT"]]
        for r in rows_in:
            sent, nonce = _sent(r, now)
            if r.get("inFlight"):
                nonce += " (in flight)"
            zone_version = r.get("zoneVersion") or ("-" if "zoneVersion" in r else "?")
            rows.append(
                [
                    str(r["zone"]),
                    str(r["status"]).capitalize(),
                    sent,
                    nonce,
                    str(zone_version)[:_TRACE_VERSION],
                    str(r["verdict"]),
                ]
            )
    lines.append("")
    body = table(rows).rstrip("\n") if rows_in else "(no zones)"
    lines.append(body)
    lines.append("")
    for r in rows_in:
        verdict = str(r["verdict"])
        reason = r.get("reason") if verdict != "in sync" or r.get("relayed") else None
        lines.append(f"{r['zone']}: {verdict}" + (f" — {reason}" if reason else ""))
    return "\n".join(lines) + "\n"


# `kds trace name <dns name>`: why a .mesh name exists (GET /kds/trace/name), rather than a resource kind.
_NAME_KINDS = frozenset({"name", "names", "dns", "vip", "vips"})


def render_name_trace(trace: Doc) -> str:
    lines = [f"{trace.get('name', '')}: made by"]
    for s in trace.get("sources") or []:
        origin = f"zone {s['zone']}" if s.get("zone") else "the global"
        lines.append(f"  {s['kind']} {s['name']} in mesh {s['mesh']} ({s['detail']}; from {origin}; port {s['port']})")
    rows_in = list(trace.get("zones") or [])
    rows = [["ZONE", "STATUS", "RESULT", "VIP"]]
    rows += [
        [str(r["zone"]), str(r["status"]).capitalize(), str(r["verdict"]), str(r.get("vip") or "-")] for r in rows_in
    ]
    lines.append("")
    lines.append(table(rows).rstrip("\n") if rows_in else "(no zones)")
    lines.append("")
    for r in rows_in:
        vip = f"; VIP {r['vip']}" if r.get("vip") else (f"; VIP unknown: {r['vipError']}" if r.get("vipError") else "")
        lines.append(f"{r['zone']}: {r['verdict']} — {r['reason']}{vip}")
    return "\n".join(lines) + "\n"


@app.command("trace")
def trace(
    ctx: typer.Context,
    kind_name: Annotated[
        str, typer.Argument(metavar="KIND", help="meshgateways, meshes, dataplanes, ...; or name for a .mesh name")
    ],
    name: Annotated[
        str | None, typer.Argument(metavar="NAME", help="The resource's name (as on the global), or a .mesh name.")
    ] = None,
    mesh: Annotated[
        str | None, typer.Option("--mesh", "-m", help="Mesh of a mesh-scoped kind (default: default).")
    ] = None,
    output: Annotated[OutputFormat, typer.Option("--output", "-o", help="Output format.")] = OutputFormat.TABLE,
) -> None:
    """Where one resource stands in every zone: global version, sent/nonce, zone version, and a verdict.

    `kds trace name echo.default.svc.80.mesh` (or just `kds trace echo.default.svc.80.mesh`) explains a .mesh
    name instead: the resources that make it, and per zone whether they arrived there and its VIP."""
    if name is None:
        if "." not in kind_name:
            fail("kds trace needs KIND NAME (e.g. meshgateway edge), or a .mesh name (e.g. echo.mesh)")
        kind_name, name = "name", kind_name
    if kind_name.lower() in _NAME_KINDS:
        with settings_of(ctx).client() as client, api_errors(f'kds trace name "{name}"'):
            try:
                params = {"name": name, **({"mesh": mesh} if mesh else {})}
                body = client.get_json("/kds/trace/name", params)
            except ApiResponseError as exc:
                if exc.status == 404:
                    fail(exc.detail or str(exc))
                raise
        typer.echo(render_name_trace(body) if output is OutputFormat.TABLE else dump(body, output), nl=False)
        return
    kind = _kind(kind_name)
    mesh = mesh or "default"
    with settings_of(ctx).client() as client, api_errors(f'kds trace {kind} "{name}"'):
        try:
            body = client.get_json("/kds/trace", {"kind": kind, "name": name, "mesh": mesh})
        except ApiResponseError as exc:
            if exc.status == 404:
                fail(exc.detail or str(exc))
            raise
    typer.echo(render_trace(body, datetime.now(UTC)) if output is OutputFormat.TABLE else dump(body, output), nl=False)
