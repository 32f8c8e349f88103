"""The shortcuts that keep generation fast give what the plain way gives.

- A virtual host shares one action message between entries with the same backends (a match's twins): each
  route equals the one built for its entry alone, and the same destinations are resolved.
- `is_ip` (a dotted-quad fast path), `needs_dns_for` (no assignment read back), `cluster_name` (one hash
  update), `EndpointIndex.matching` (service-only fast path), `protocol_of`, `hostnames.most_exact` and the
  cluster templates agree with their plain definitions.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Mapping

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from meshgate.api.mesh.v1alpha1.dataplane_pb2 import Dataplane
from meshgate.resources.model import Meta, Resource
from meshgate.resources.selectors import selector_matches
from meshgate.xds import clusters, hostnames
from meshgate.xds.routes import UNRESOLVED_BACKEND, Destination, entries
from meshgate.xds.virtual_hosts import add_virtual_host, route_configuration
from tests.unit.test_xds_properties import gateway_routes

ZONES = ["zone-1", "zone-2"]
ADDRESSES = ["10.0.0.1", "10.0.0.2", "fd00::1", "backend.internal", "01.2.3.4", "256.0.0.1"]


class _Recorder:
    """A deterministic resolver that remembers what it was asked: `ghost` is unknown to the mesh."""

    def __init__(self) -> None:
        self.asked: set[Destination] = set()

    def __call__(self, dest: Destination) -> str:
        self.asked.add(Destination(dest.tags))
        tags = dest.tag_map
        return UNRESOLVED_BACKEND if tags.get("kuma.io/service") == "ghost" else clusters.cluster_name(tags)


@st.composite
def http_route_sets(draw: st.DrawFn) -> list[Resource]:
    routes = [draw(gateway_routes(i)) for i in range(draw(st.integers(1, 4)))]
    http = [r for r in routes if r.spec.conf.HasField("http")]  # type: ignore[attr-defined]
    assume(entries(http))  # an empty table is the 404 route, not a table to share actions in
    return http


@settings(max_examples=200, deadline=None)
@given(routes=http_route_sets(), tls=st.booleans())
def test_shared_actions_equal_actions_built_per_entry(routes: list[Resource], tls: bool) -> None:
    table = entries(routes)
    shared, alone = _Recorder(), _Recorder()
    config = route_configuration("rc")
    vhost = add_virtual_host(config, "a.example.com", table, listener_port=8080, tls=tls, resolve=shared)
    one_by_one = []
    for entry in table:
        single = add_virtual_host(
            route_configuration("rc"), "a.example.com", [entry], listener_port=8080, tls=tls, resolve=alone
        )
        one_by_one.extend(single.routes)
    assert [r.SerializeToString(deterministic=True) for r in vhost.routes] == [
        r.SerializeToString(deterministic=True) for r in one_by_one
    ]
    assert shared.asked == alone.asked  # the proxy gets the same clusters


def _parses(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


@given(
    text=st.one_of(
        st.text(alphabet="0123456789.:af", max_size=20),
        st.tuples(*[st.integers(0, 300)] * 4).map(lambda q: ".".join(map(str, q))),
        st.from_regex(r"\A0?[0-9]{1,3}(\.0?[0-9]{1,3}){3}\n?\Z"),
    )
)
def test_is_ip_agrees_with_ipaddress(text: str) -> None:
    assert clusters.is_ip(text) == _parses(text)


@st.composite
def endpoint_lists(draw: st.DrawFn) -> list[clusters.Endpoint]:
    return [
        clusters.Endpoint(
            draw(st.sampled_from(ADDRESSES)),
            draw(st.integers(1, 3)),
            zone,
            {"kuma.io/service": "backend", "kuma.io/zone": zone},
            draw(st.booleans()),
        )
        for zone in draw(st.lists(st.sampled_from(ZONES), max_size=4))
    ]


@given(endpoints=endpoint_lists(), local=st.sampled_from(ZONES))
def test_needs_dns_for_agrees_with_the_assignment(endpoints: list[clusters.Endpoint], local: str) -> None:
    assignment = clusters.load_assignment("c", endpoints, local_zone=local)
    assert clusters.needs_dns_for(endpoints) == clusters.needs_dns(assignment)


def _kuma_cluster_name(tags: Mapping[str, str]) -> str:
    digest = hashlib.sha256()
    for key in sorted(tags):
        digest.update(key.encode())
        digest.update(tags[key].encode())
    return f"{tags.get('kuma.io/service', '')}-{digest.digest()[:8].hex()}"


@given(tags=st.dictionaries(st.sampled_from(["kuma.io/service", "version", "é", "a"]), st.text(max_size=5)))
def test_cluster_name_is_kumas_hash(tags: dict[str, str]) -> None:
    assert clusters.cluster_name(tags) == _kuma_cluster_name(tags)


def _dataplane(name: str, service: str | None, version: str, protocol: str | None) -> Resource:
    spec = Dataplane()
    spec.networking.address = "10.0.0.1"
    tags = {"version": version} if service is None else {"kuma.io/service": service, "version": version}
    if protocol:
        tags["kuma.io/protocol"] = protocol
    spec.networking.inbound.add(port=8000, tags=tags)
    return Resource("Dataplane", Meta(name=name, mesh="default"), spec)


@st.composite
def indexed_meshes(draw: st.DrawFn) -> list[Resource]:
    return [
        _dataplane(
            f"dp-{i}",
            draw(st.sampled_from(["backend", "db", "*", "", None])),
            draw(st.sampled_from(["v1", "v2"])),
            draw(st.sampled_from([None, "http", "grpc"])),
        )
        for i in range(draw(st.integers(0, 6)))
    ]


@given(
    dataplanes=indexed_meshes(),
    tags=st.dictionaries(
        st.sampled_from(["kuma.io/service", "version", "kuma.io/protocol"]), st.sampled_from(["backend", "v1", "*", ""])
    ),
)
def test_matching_and_protocol_agree_with_a_scan(dataplanes: list[Resource], tags: dict[str, str]) -> None:
    index = clusters.EndpointIndex(dataplanes, mesh="default", zone="zone-1")
    # The index looks endpoints up by the destination's service, then checks every tag.
    same_service = index._by_service.get(tags.get("kuma.io/service", ""), [])
    found = index.matching(tags)
    assert found == [e for e in same_service if selector_matches(tags, e.tags)]
    agreed = {e.tags.get("kuma.io/protocol", "tcp") for e in found}
    plain = tags["kuma.io/protocol"] if tags.get("kuma.io/protocol") else (agreed.pop() if len(agreed) == 1 else "tcp")
    assert clusters.protocol_of(tags, found) == index.protocol(tags) == plain


@given(names=st.lists(st.sampled_from(["", "*", "a.b", "*.b", "x.a.b", "*.a.b", "c"]), min_size=1))
def test_most_exact_is_first_by_exactness(names: list[str]) -> None:
    assert hostnames.most_exact(names) == hostnames.by_exactness(names)[0]


def test_cluster_templates_are_copied_not_shared() -> None:
    first = clusters.cluster("a", "grpc")
    first.connect_timeout.seconds = 99
    first.typed_extension_protocol_options.clear()
    second = clusters.cluster("b", "grpc")
    assert second.name == "b"
    assert second.connect_timeout.seconds == clusters.CONNECT_TIMEOUT_SECONDS
    assert len(second.typed_extension_protocol_options) == 1
