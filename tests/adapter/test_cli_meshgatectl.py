"""meshgatectl against a real API server running in a background thread."""

from __future__ import annotations

import functools
import json
import os
import pathlib
import socket
import subprocess
import sys
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml
from anyio.from_thread import BlockingPortal
from structlog.testing import capture_logs
from typer.testing import CliRunner, Result

from meshgate.apply_batch import batches
from meshgate.cli import meshgatectl
from meshgate.cli.client import ApiClient
from meshgate.cli.meshgatectl import app
from meshgate.cli.output import age
from meshgate.resources import codec, registry
from meshgate.resources.errors import ValidationError
from meshgate.rest.app import create_api_app
from meshgate.rest.handlers import Role
from meshgate.rest.testing import serving_in_thread
from meshgate.store.memory import MemoryStore
from meshgate.testing import factory
from tests.rest_support import dataplane, gateway, invalid_gateway, mesh, route

runner = CliRunner()


@dataclass
class Api:
    url: str
    store: MemoryStore
    portal: BlockingPortal
    logs: list[MutableMapping[str, Any]]

    def requests(self) -> list[tuple[str, str, int]]:
        return [(e["method"], e["path"], e["status"]) for e in self.logs if e["event"] == "request"]


def serve(role: Role) -> Iterator[Api]:
    store = MemoryStore()
    # The server thread's request logs would land in the CliRunner's captured stdout: capture them instead.
    with capture_logs() as logs, serving_in_thread(create_api_app(store, role=role)) as (url, portal):
        yield Api(url, store, portal, logs)


@pytest.fixture
def api() -> Iterator[Api]:
    yield from serve("global")


@pytest.fixture
def zone_api() -> Iterator[Api]:
    yield from serve("zone")


@pytest.fixture
def closed_url() -> str:
    """A loopback URL where nothing listens: bind a free port, then let it go."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def cli(api_url: str, *args: str, stdin: str | None = None) -> Result:
    return runner.invoke(app, ["--api", api_url, *args], input=stdin)


def write_docs(path: pathlib.Path, *docs: dict[str, Any]) -> str:
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return str(path)


def test_apply_creates_then_updates(api: Api, tmp_path: pathlib.Path) -> None:
    """Several resources: one request each time (POST /_apply), a line per resource."""
    file = write_docs(tmp_path / "edge.yaml", mesh(), gateway(), route())
    first = cli(api.url, "apply", "-f", file)
    assert first.exit_code == 0, first.output
    assert first.stdout.splitlines() == [
        'Mesh "default" created',
        'MeshGateway "edge" in mesh "default" created',
        'MeshGatewayRoute "web" in mesh "default" created',
    ]
    second = cli(api.url, "apply", "-f", file)
    assert second.exit_code == 0, second.output
    assert [line.rsplit(" ", 1)[1] for line in second.stdout.splitlines()] == ["updated"] * 3
    assert api.requests() == [("POST", "/_apply", 200)] * 2
    one = cli(api.url, "apply", "-f", write_docs(tmp_path / "one.yaml", route()))
    assert one.stdout.splitlines() == ['MeshGatewayRoute "web" in mesh "default" updated']
    assert api.requests()[-1] == ("PUT", "/meshes/default/meshgatewayroutes/web", 200)


def test_apply_past_the_request_bounds_splits_and_says_so(
    api: Api, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(meshgatectl, "batches", functools.partial(batches, max_items=2))
    monkeypatch.setattr(meshgatectl, "MAX_APPLY_ITEMS", 2)
    file = write_docs(tmp_path / "many.yaml", mesh(), gateway(), *(route(f"r{i}") for i in range(3)))
    result = cli(api.url, "apply", "-f", file)
    assert result.exit_code == 0, result.output
    assert "5 resources are more than one request may carry (2 resources" in result.stderr
    assert "sending 3 requests, each stored whole or not at all" in result.stderr
    assert len(result.stdout.splitlines()) == 5
    assert api.requests() == [("POST", "/_apply", 200)] * 3
    # A failing request stops there and says what was stored before it.
    file = write_docs(tmp_path / "bad.yaml", route("a"), route("b"), route("c"), invalid_gateway("bad"))
    failed = cli(api.url, "apply", "-f", file)
    assert failed.exit_code == 1
    assert failed.stdout.splitlines() == [
        'MeshGatewayRoute "a" in mesh "default" created',
        'MeshGatewayRoute "b" in mesh "default" created',
    ]
    assert "request 2 of 2 failed, so none of its 2 resources was stored; the 2 resources sent before it were" in (
        failed.stderr
    )
    assert 'Error: MeshGateway "bad" in mesh "default": Could not apply resources' in failed.stderr


def test_apply_many_to_a_zone_names_what_only_the_global_may_change(zone_api: Api, tmp_path: pathlib.Path) -> None:
    file = write_docs(tmp_path / "mixed.yaml", dataplane("dp-1"), mesh("other"))
    result = cli(zone_api.url, "apply", "-f", file)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert 'Error: Mesh "other": Method not Allowed' in result.stderr
    assert "On zone control plane you can only modify zone resources" in result.stderr


def test_apply_from_stdin(api: Api) -> None:
    result = cli(api.url, "apply", "-f", "-", stdin=yaml.safe_dump_all([mesh(), gateway()]))
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 2


def test_apply_reports_every_violation_and_stores_nothing(api: Api, tmp_path: pathlib.Path) -> None:
    """All or nothing: the valid Mesh is not stored either; each failing resource is named with its fields."""
    bad = invalid_gateway()
    with pytest.raises(ValidationError) as info:
        codec.load(bad)
    file = write_docs(tmp_path / "bad.yaml", mesh(), bad, route("lost", mesh="ghost"))
    result = cli(api.url, "apply", "-f", file)
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert "Error: Could not apply resources (2 of 3 resources are not valid; nothing was stored)" in lines
    at = lines.index('Error: MeshGateway "edge" in mesh "default": Could not apply resources')
    assert lines[at + 1 : at + 1 + len(info.value.violations)] == [
        f"  * {v.field}: {v.message}" for v in info.value.violations
    ]
    assert 'Error: MeshGatewayRoute "lost" in mesh "ghost": Could not apply resources' in lines
    assert "  * mesh: mesh of name ghost is not found" in lines
    assert api.portal.call(api.store.list, "Mesh").total == 0


def test_apply_of_one_resource_is_a_put_naming_its_violations(api: Api, tmp_path: pathlib.Path) -> None:
    bad = invalid_gateway()
    with pytest.raises(ValidationError) as info:
        codec.load(bad)
    api.portal.call(api.store.create, codec.load(mesh()))
    result = cli(api.url, "apply", "-f", write_docs(tmp_path / "bad.yaml", bad))
    assert result.exit_code == 1
    assert 'MeshGateway "edge" in mesh "default": Could not process a resource (Resource is not valid)' in (
        result.stderr
    )
    for violation in info.value.violations:
        assert f"  * {violation.field}: {violation.message}" in result.stderr.splitlines()


def test_apply_names_a_missing_mesh(api: Api, tmp_path: pathlib.Path) -> None:
    result = cli(api.url, "apply", "-f", write_docs(tmp_path / "gw.yaml", gateway(mesh="ghost")))
    assert result.exit_code == 1
    assert "  * mesh: mesh of name ghost is not found" in result.stderr.splitlines()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("type: Mesh\nname: [unclosed\n", "could not parse"),
        ("", "no resource(s) passed to apply"),
        ("name: default\n", "document 1: type is required"),
        ("type: Gizmo\nname: g\n", "document 1: unknown type 'Gizmo'"),
        ("type: MeshGateway\nname: edge\n", 'document 1 (MeshGateway "edge"): mesh is required'),
    ],
)
def test_apply_rejects_bad_files(api: Api, tmp_path: pathlib.Path, content: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    result = cli(api.url, "apply", "-f", str(path))
    assert result.exit_code == 1
    assert message in result.stderr
    assert result.stdout == ""


def test_apply_missing_file(api: Api, tmp_path: pathlib.Path) -> None:
    result = cli(api.url, "apply", "-f", str(tmp_path / "nope.yaml"))
    assert result.exit_code == 1
    assert "could not read" in result.stderr


def test_dry_run_validates_locally(closed_url: str, tmp_path: pathlib.Path) -> None:
    # `mesh` on a Mesh is ignored, as the API ignores it.
    good = cli(
        closed_url,
        "apply",
        "--dry-run",
        "-f",
        write_docs(tmp_path / "ok.yaml", {**mesh(), "mesh": "x"}, gateway()),
    )
    assert good.exit_code == 0, good.output
    assert good.stdout.splitlines() == [
        'Mesh "default" is valid (dry run)',
        'MeshGateway "edge" in mesh "default" is valid (dry run)',
    ]
    bad = cli(closed_url, "apply", "--dry-run", "-f", write_docs(tmp_path / "bad.yaml", invalid_gateway()))
    assert bad.exit_code == 1
    assert "Resource is not valid" in bad.stderr
    assert bad.stderr.count("  * ") >= 2


def test_get_in_every_format(api: Api, tmp_path: pathlib.Path) -> None:
    cli(api.url, "apply", "-f", write_docs(tmp_path / "all.yaml", mesh(), gateway("a"), gateway("b")))

    as_json = json.loads(cli(api.url, "get", "meshgateways", "-o", "json").stdout)
    assert as_json["total"] == 2
    assert [i["name"] for i in as_json["items"]] == ["a", "b"]

    as_yaml = yaml.safe_load(cli(api.url, "get", "meshgateway", "a", "-o", "yaml").stdout)
    assert as_yaml["conf"]["listeners"][0]["port"] == 8080
    assert as_yaml["type"] == "MeshGateway"

    table = cli(api.url, "get", "meshgateways").stdout.splitlines()
    assert table[0].split() == ["MESH", "NAME", "AGE"]
    assert [row.split()[:2] for row in table[1:]] == [["default", "a"], ["default", "b"]]

    meshes = cli(api.url, "get", "meshes").stdout.splitlines()
    assert meshes[0].split() == ["NAME", "AGE"]
    assert meshes[1].split()[0] == "default"

    single = cli(api.url, "get", "Mesh", "default", "-o", "json")
    assert json.loads(single.stdout)["name"] == "default"


def test_get_pages_through_everything(api: Api, tmp_path: pathlib.Path) -> None:
    docs = [mesh(), *(gateway(f"gw-{i}") for i in range(5))]
    cli(api.url, "apply", "-f", write_docs(tmp_path / "many.yaml", *docs))
    with ApiClient(api.url, page_size=2) as client:
        items = client.list(registry.lookup("meshgateways"), "default")
    assert [i["name"] for i in items] == [f"gw-{i}" for i in range(5)]


def test_get_dataplanes_shows_the_zone(zone_api: Api, tmp_path: pathlib.Path) -> None:
    zone_api.portal.call(zone_api.store.create, codec.load(mesh()))
    file = write_docs(tmp_path / "dp.yaml", dataplane(**{"kuma.io/zone": "zone-1"}))
    assert cli(zone_api.url, "apply", "-f", file).exit_code == 0
    table = cli(zone_api.url, "get", "dataplanes").stdout.splitlines()
    assert table[0].split() == ["MESH", "NAME", "ZONE", "AGE"]
    assert table[1].split()[:3] == ["default", "edge-1", "zone-1"]


def test_get_missing_resource(api: Api) -> None:
    cli(api.url, "apply", "-f", "-", stdin=yaml.safe_dump(mesh()))
    result = cli(api.url, "get", "meshgateway", "nope")
    assert result.exit_code == 1
    assert result.stderr == "Error: No resources found in default mesh\n"


def test_delete(api: Api, tmp_path: pathlib.Path) -> None:
    cli(api.url, "apply", "-f", write_docs(tmp_path / "gw.yaml", mesh(), gateway()))
    deleted = cli(api.url, "delete", "meshgateway", "edge", "--mesh", "default")
    assert (deleted.exit_code, deleted.stdout) == (0, 'deleted MeshGateway "edge"\n')
    again = cli(api.url, "delete", "meshgateway", "edge")
    assert again.exit_code == 1
    assert again.stderr == 'Error: there is no MeshGateway with name "edge"\n'


def test_delete_read_only_kind_prints_the_server_reason(api: Api) -> None:
    result = cli(api.url, "delete", "dataplane", "dp-1")
    assert result.exit_code == 1
    assert "Method not Allowed" in result.stderr
    assert "zone control plane" in result.stderr


def test_unknown_kind(api: Api) -> None:
    result = cli(api.url, "get", "gizmos")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: unknown TYPE: gizmos. Allowed values: ")


@pytest.mark.parametrize(
    "args",
    [["get", "meshes"], ["delete", "mesh", "default"], ["apply", "-f", "-"]],
)
def test_unreachable_api_is_one_clear_line(closed_url: str, args: list[str]) -> None:
    result = cli(closed_url, *args, stdin=yaml.safe_dump(mesh()))
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"Error: could not connect to the meshgate API at {closed_url}")


def test_api_url_from_the_environment(api: Api) -> None:
    result = runner.invoke(app, ["get", "meshes", "-o", "json"], env={"MESHGATE_API": api.url})
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["total"] == 0


def test_installed_entry_point(closed_url: str) -> None:
    exe = pathlib.Path(sys.executable).with_name("meshgatectl")
    env = {**os.environ, "MESHGATE_API": closed_url}
    done = subprocess.run([str(exe), "get", "meshes"], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 1
    assert done.stderr.startswith(f"Error: could not connect to the meshgate API at {closed_url}")


@pytest.mark.parametrize(
    ("delta", "expected"),
    [
        (timedelta(seconds=5), "5s"),
        (timedelta(minutes=3, seconds=59), "3m"),
        (timedelta(hours=5), "5h"),
        (timedelta(days=40), "40d"),
        (timedelta(days=800), "2y"),
        (timedelta(seconds=-30), "never"),
    ],
)
def test_age_like_kumactl(delta: timedelta, expected: str) -> None:
    now = datetime(2024, 6, 1, tzinfo=UTC)
    assert age((now - delta).isoformat(), now) == expected
    assert age(None, now) == "-"


def test_kds_trace_without_a_name_needs_a_mesh_name(closed_url: str) -> None:
    result = cli(closed_url, "kds", "trace", "meshgateway")
    assert result.exit_code == 1
    assert "kds trace needs KIND NAME" in result.output


def test_get_timeouts_and_other_policies_by_kumas_names(api: Api, tmp_path: pathlib.Path) -> None:
    docs = [mesh(), factory.timeout("t1"), factory.timeout("t2"), factory.traffic_permission("allow")]
    assert cli(api.url, "apply", "-f", write_docs(tmp_path / "policies.yaml", *docs)).exit_code == 0
    table = cli(api.url, "get", "timeouts").stdout.splitlines()
    assert table[0].split() == ["MESH", "NAME", "AGE"]
    assert [row.split()[:2] for row in table[1:]] == [["default", "t1"], ["default", "t2"]]
    one = yaml.safe_load(cli(api.url, "get", "timeout", "t1", "-o", "yaml").stdout)
    assert (one["type"], one["conf"]["connectTimeout"]) == ("Timeout", "5s")
    listed = json.loads(cli(api.url, "get", "traffic-permissions", "-o", "json").stdout)
    assert [i["name"] for i in listed["items"]] == ["allow"]
    deleted = cli(api.url, "delete", "timeout", "t2")
    assert (deleted.exit_code, deleted.stdout) == (0, 'deleted Timeout "t2"\n')
