"""`.mesh` names from Dataplane inbounds and cross-mesh MeshGateway listeners (gateway.md, "DNS and VIPs")."""

from __future__ import annotations

from typing import Any

from meshgate.dns.names import NameSet, mesh_names
from meshgate.resources.model import Resource
from meshgate.testing import factory
from meshgate.testing.factory import resource


def dataplane(name: str, *services: str, mesh: str = "default") -> Resource:
    return resource(factory.dataplane(name, *services, mesh=mesh))


def gateway(name: str, *listeners: dict[str, Any], labels: dict[str, str] | None = None) -> Resource:
    # Decoded, not validated: an upper-case hostname shows that names are lower-cased.
    return resource(factory.gateway(name, listeners=listeners, labels=labels), check=False)


def table(names: NameSet) -> list[tuple[str, tuple[str, ...], tuple[int, ...], tuple[str, ...]]]:
    return [(e.key, e.names, e.ports, e.sources) for e in names.entries]


def test_service_names_and_the_dotted_form_share_an_entry() -> None:
    names = mesh_names(
        "default",
        [dataplane("web-1", "web", "echo_default_svc_80"), dataplane("web-2", "web")],
        [],
    )
    assert table(names) == [
        (
            "echo_default_svc_80.mesh",
            ("echo_default_svc_80.mesh", "echo.default.svc.80.mesh"),
            (80,),
            ("Dataplane web-1",),
        ),
        ("web.mesh", ("web.mesh",), (80,), ("Dataplane web-1", "Dataplane web-2")),
    ]
    assert names.problems == ()


def test_other_meshes_are_ignored_and_the_domain_is_configurable() -> None:
    names = mesh_names("default", [dataplane("a", "Web"), dataplane("b", "db", mesh="other")], [], domain="Corp.")
    assert table(names) == [("web.corp", ("web.corp",), (80,), ("Dataplane a",))]


def test_cross_mesh_listeners_use_the_hostname_or_the_internal_name() -> None:
    gw = gateway(
        "edge-x1y2",
        {"port": 8080, "protocol": "HTTP", "crossMesh": True, "hostname": "API.example.com"},
        {"port": 8081, "protocol": "HTTP", "crossMesh": True, "hostname": "*.example.com"},
        {"port": 8082, "protocol": "HTTP", "crossMesh": True},
        {"port": 8083, "protocol": "HTTP", "hostname": "plain.example.com"},
        labels={"kuma.io/display-name": "edge"},
    )
    names = mesh_names("default", [], [gw])
    assert table(names) == [
        ("api.example.com", ("api.example.com",), (8080,), ("MeshGateway edge (listener :8080)",)),
        (
            "internal.edge.default.mesh",
            ("internal.edge.default.mesh",),
            (8081, 8082),
            ("MeshGateway edge (listener :8081)", "MeshGateway edge (listener :8082)"),
        ),
    ]


def test_a_clash_between_a_dotted_name_and_a_service_is_reported() -> None:
    names = mesh_names("default", [dataplane("a", "a_b", "a.b")], [])
    assert [e.key for e in names.entries] == ["a.b.mesh", "a_b.mesh"]
    assert names.entries[1].names == ("a_b.mesh",)
    assert names.problems == ('mesh "default": name a.b.mesh of a_b.mesh is already taken by a.b.mesh',)
