"""meshgatectl: kumactl's everyday verbs (apply, get, delete) against a meshgate control plane.

Commands talk to the HTTP API named by `--api` (or MESHGATE_API). Every failure prints to stderr and
exits 1: one line for an unreachable API, the server's title/detail and each `field: reason` for a
rejected request. The `inspect`, `kds` and `generate` command groups live in their own modules, added with
`app.add_typer`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from meshgate.apply_batch import MAX_APPLY_BYTES, MAX_APPLY_ITEMS, batches
from meshgate.cli.client import ApiClientError, ApiResponseError, ConnectionFailed
from meshgate.cli.config import app as config_app
from meshgate.cli.config_file import DEFAULT_CONFIG_FILE
from meshgate.cli.context import DEFAULT_API, Settings, resolve
from meshgate.cli.context import fail as _fail
from meshgate.cli.context import settings_of as _settings
from meshgate.cli.generate import app as generate_app
from meshgate.cli.inspect import app as inspect_app
from meshgate.cli.kds import app as kds_app
from meshgate.cli.output import OutputFormat, render
from meshgate.cli.tokens import revoke_app, rotate_app
from meshgate.cli.transparent_proxy import install_app, uninstall_app
from meshgate.resources import codec, registry
from meshgate.resources.descriptor import KindDescriptor
from meshgate.resources.errors import UnknownKindError, ValidationError

__all__ = ["app", "main"]

app = typer.Typer(
    name="meshgatectl",
    help="Manage meshgate resources (Kuma 2.7 compatible).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_violations(fields: list[tuple[str, str]]) -> None:
    for field, reason in fields:
        typer.echo(f"  * {field}: {reason}" if field else f"  * {reason}", err=True)


def _report_api_error(subject: str, exc: ApiClientError) -> None:
    if isinstance(exc, ApiResponseError):
        typer.echo(f"Error: {subject}: {exc}", err=True)
        _print_violations([(f.field, f.reason) for f in exc.fields])
    else:
        typer.echo(f"Error: {exc}", err=True)


def _kind(alias: str) -> KindDescriptor:
    try:
        return registry.lookup(alias)
    except UnknownKindError:
        allowed = sorted(d.plural for d in registry.KINDS)
        _fail(f"unknown TYPE: {alias}. Allowed values: {', '.join(allowed)}")


@app.callback()
def _main(
    ctx: typer.Context,
    api: Annotated[
        str | None,
        typer.Option(
            "--api",
            envvar="MESHGATE_API",
            help="URL of the control plane's HTTP API [default: the config file's current control plane, or"
            f" {DEFAULT_API}].",
        ),
    ] = None,
    auth_token: Annotated[
        str | None,
        typer.Option(
            "--auth-token",
            envvar="MESHGATE_AUTH_TOKEN",
            help="User token sent as 'Authorization: Bearer' [default: the current control plane's, when --api is"
            " unset or its URL].",
        ),
    ] = None,
    config_file: Annotated[
        Path,
        typer.Option(
            "--config-file", envvar="MESHGATE_CONFIG_FILE", help="meshgatectl's config file (control planes)."
        ),
    ] = DEFAULT_CONFIG_FILE,
) -> None:
    ctx.obj = resolve(api, auth_token, config_file)


# -- apply ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Item:
    kind: KindDescriptor
    mesh: str
    name: str
    doc: dict[str, Any]

    def __str__(self) -> str:
        if self.kind.mesh_scoped:
            return f'{self.kind.name} "{self.name}" in mesh "{self.mesh}"'
        return f'{self.kind.name} "{self.name}"'


def _read_source(file: str) -> str:
    if file == "-":
        return sys.stdin.read()
    try:
        return Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        _fail(f"could not read {file}: {exc}")


def _items(docs: list[dict[str, Any]]) -> tuple[list[_Item], list[str]]:
    """Each document with its kind, mesh and name; and a message for every document lacking them."""
    items: list[_Item] = []
    problems: list[str] = []
    for number, doc in enumerate(docs, start=1):
        if not isinstance(doc, dict):
            problems.append(f"document {number}: not a mapping")
            continue
        type_name = doc.get("type")
        if not isinstance(type_name, str) or not type_name:
            problems.append(f"document {number}: type is required")
            continue
        try:
            kind = registry.lookup(type_name)
        except UnknownKindError:
            problems.append(f"document {number}: unknown type {type_name!r}")
            continue
        name, mesh = doc.get("name"), doc.get("mesh", "")
        if not isinstance(name, str) or not name:
            problems.append(f"document {number} ({kind.name}): name is required")
            continue
        if kind.mesh_scoped and (not isinstance(mesh, str) or not mesh):
            problems.append(f'document {number} ({kind.name} "{name}"): mesh is required')
            continue
        if not kind.mesh_scoped:
            # The API ignores `mesh` on a kind that is not mesh-scoped (as Kuma's does); the local codec
            # would reject it, so drop it here and let --dry-run and a real apply agree.
            doc = {k: v for k, v in doc.items() if k != "mesh"}
        items.append(_Item(kind, str(mesh) if kind.mesh_scoped else "", name, doc))
    return items, problems


def _dry_run(items: list[_Item]) -> bool:
    ok = True
    for item in items:
        try:
            codec.load(item.doc, kind=item.kind.name)
        except ValidationError as exc:
            ok = False
            typer.echo(f"Error: {item}: {exc.title}", err=True)
            _print_violations([(v.field, v.message) for v in exc.violations])
            continue
        typer.echo(f"{item} is valid (dry run)")
    return ok


def _apply_all(settings: Settings, items: list[_Item]) -> bool:
    """Several resources: one `POST /_apply`, all stored or none; more requests only past its bounds."""
    runs = list(batches([item.doc for item in items]))
    if len(runs) > 1:
        typer.echo(
            f"{len(items)} resources are more than one request may carry ({MAX_APPLY_ITEMS} resources,"
            f" {MAX_APPLY_BYTES // (1024 * 1024)} MiB): sending {len(runs)} requests, each stored whole or not at all",
            err=True,
        )
    done = 0
    with settings.client() as client:
        for number, run in enumerate(runs, start=1):
            chunk = items[done : done + len(run)]
            try:
                statuses = client.apply(run)
            except ConnectionFailed as exc:
                _fail(str(exc))
            except ApiResponseError as exc:
                if exc.status in (401, 403):
                    _fail(str(exc))
                _report_batch_error(chunk, exc)
                if len(runs) > 1:
                    typer.echo(
                        f"Error: request {number} of {len(runs)} failed, so none of its {len(run)} resources was"
                        f" stored; the {done} resources sent before it were",
                        err=True,
                    )
                return False
            except ApiClientError as exc:
                _report_api_error(f"apply {len(run)} resources", exc)
                return False
            for item, status in zip(chunk, statuses, strict=False):
                typer.echo(f"{item} {status}")
            done += len(run)
    return True


def _report_batch_error(chunk: list[_Item], exc: ApiResponseError) -> None:
    """The server's answer, with each failing resource by name (`resources` in its body) and its fields."""
    if not exc.items:
        _report_api_error(f"apply {len(chunk)} resources", exc)
        return
    typer.echo(f"Error: {exc}", err=True)
    for failed in exc.items:
        subject = str(chunk[failed.index]) if 0 <= failed.index < len(chunk) else f"item {failed.index}"
        typer.echo(f"Error: {subject}: {exc.title}", err=True)
        _print_violations([(f.field, f.reason) for f in failed.fields])


def _put_all(settings: Settings, items: list[_Item]) -> bool:
    ok = True
    with settings.client() as client:
        for item in items:
            try:
                created = client.put(item.kind, item.mesh, item.name, item.doc)
            except ConnectionFailed as exc:
                _fail(str(exc))  # nothing further can succeed
            except ApiResponseError as exc:
                if exc.status in (401, 403):
                    _fail(f"{item}: {exc}")  # nor here: the next item meets the same refusal
                ok = False
                _report_api_error(str(item), exc)
                continue
            except ApiClientError as exc:
                ok = False
                _report_api_error(str(item), exc)
                continue
            typer.echo(f"{item} {'created' if created else 'updated'}")
    return ok


@app.command()
def apply(
    ctx: typer.Context,
    file: Annotated[str, typer.Option("--file", "-f", help="YAML or JSON file with resources; - for stdin.")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate locally and print the result; change nothing.")
    ] = False,
) -> None:
    """Create or update resources from a multi-document YAML file.

    Several resources go in one request and are stored all or none (`POST /_apply`); a failure names every
    failing resource and field."""
    text = _read_source(file)
    try:
        docs = codec.load_documents(text)
    except ValidationError as exc:
        _fail(f"could not parse {file}: " + "; ".join(str(v) for v in exc.violations))
    if not docs:
        _fail("no resource(s) passed to apply")
    items, problems = _items(docs)
    for problem in problems:
        typer.echo(f"Error: {problem}", err=True)
    if problems and not dry_run:
        # All or nothing: a file with a broken document applies none of it.
        _fail(f"nothing was applied: {len(problems)} of {len(docs)} documents are not resources")
    if dry_run:
        ok = _dry_run(items)
    elif len(items) == 1:
        ok = _put_all(_settings(ctx), items)
    else:
        ok = _apply_all(_settings(ctx), items)
    if problems or not ok:
        raise typer.Exit(1)


# -- get / delete ----------------------------------------------------------------------------------------


@app.command()
def get(
    ctx: typer.Context,
    kind_name: Annotated[str, typer.Argument(metavar="KIND", help="meshes, meshgateways, dataplanes, ...")],
    name: Annotated[str | None, typer.Argument(metavar="NAME", help="Show only this resource.")] = None,
    mesh: Annotated[str, typer.Option("--mesh", "-m", help="Mesh of a mesh-scoped kind.")] = "default",
    output: Annotated[OutputFormat, typer.Option("--output", "-o", help="Output format.")] = OutputFormat.TABLE,
) -> None:
    """Show one resource or list every resource of a kind."""
    kind = _kind(kind_name)
    with _settings(ctx).client() as client:
        try:
            data: Any = client.list(kind, mesh) if name is None else client.get(kind, mesh, name)
        except ApiResponseError as exc:
            if exc.status == 404 and name is not None and exc.title == "Could not retrieve a resource":
                # kumactl's wording (app/kumactl/cmd/get/get_resource.go)
                _fail(
                    f"No resources found in {mesh} mesh"
                    if kind.mesh_scoped
                    else f'there is no {kind.name} with name "{name}"'
                )
            _report_api_error(f"get {kind.plural}", exc)
            raise typer.Exit(1) from None
        except ApiClientError as exc:
            _fail(str(exc))
    typer.echo(render(kind, data, output), nl=False)


@app.command()
def delete(
    ctx: typer.Context,
    kind_name: Annotated[str, typer.Argument(metavar="KIND", help="meshes, meshgateways, dataplanes, ...")],
    name: Annotated[str, typer.Argument(metavar="NAME", help="Name of the resource.")],
    mesh: Annotated[str, typer.Option("--mesh", "-m", help="Mesh of a mesh-scoped kind.")] = "default",
) -> None:
    """Delete a resource (deleting a Mesh deletes everything in it)."""
    kind = _kind(kind_name)
    with _settings(ctx).client() as client:
        try:
            client.delete(kind, mesh, name)
        except ApiResponseError as exc:
            if exc.status == 404 and exc.title == "Could not delete a resource":
                # kumactl's wording (app/kumactl/cmd/delete/delete.go)
                _fail(f'there is no {kind.name} with name "{name}"')
            _report_api_error(f'delete {kind.name} "{name}"', exc)
            raise typer.Exit(1) from None
        except ApiClientError as exc:
            _fail(str(exc))
    # kumactl's wording: deleted MeshGateway "edge"
    typer.echo(f'deleted {kind.name} "{name}"')


app.add_typer(inspect_app, name="inspect")
app.add_typer(kds_app, name="kds")
app.add_typer(generate_app, name="generate")
app.add_typer(config_app, name="config")
app.add_typer(revoke_app, name="revoke")
app.add_typer(rotate_app, name="rotate")
app.add_typer(install_app, name="install")
app.add_typer(uninstall_app, name="uninstall")


def main() -> None:
    app()
