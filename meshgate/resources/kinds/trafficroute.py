"""TrafficRoute: how the traffic from `sources` to `destinations` is split, balanced and rewritten.

Kuma's builtin gateway ignores TrafficRoutes (its routes are MeshGatewayRoutes); they are stored, served and
synced as Kuma does. Rules are Kuma 2.7's `traffic_route_validator.go`: sources name a service, destinations
are exactly one `kuma.io/service`; `conf` and each HTTP rule have either a `destination` or a `split`;
matchers, rewrites and header changes are complete; the load balancer's options are valid.

Kuma tells a list or map that is absent from one that is present but empty; protobuf cannot, so both read as
absent here (an empty `split: []` asks for a destination, as an absent one does).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from meshgate.api.mesh.v1alpha1.traffic_route_pb2 import TrafficRoute
from meshgate.resources import kinds
from meshgate.resources.errors import Path, Violation, Violations
from meshgate.resources.kinds._policy import check_service_destinations, check_source_services, policy_descriptor
from meshgate.resources.kinds._spec import validate_resource
from meshgate.resources.model import Resource
from meshgate.resources.tags import check_selector

__all__ = ["DESCRIPTOR", "validate"]

_CANNOT_BE_EMPTY = "cannot be empty"
_HASH_FUNCTIONS = frozenset({"XX_HASH", "MURMUR_HASH_2"})


def validate(resource: Resource) -> list[Violation]:
    return validate_resource(resource, TrafficRoute, _check_spec, mesh_scoped=True)


def _check_spec(out: Violations, spec: Any) -> None:
    check_source_services(out, Path("sources"), spec.sources)
    check_service_destinations(out, Path("destinations"), spec.destinations)
    root = Path("conf")
    if not spec.HasField("conf"):
        out.add(root, _CANNOT_BE_EMPTY)
        return
    conf = spec.conf
    _check_split_and_destination(out, root, conf.split, conf.destination)
    for i, http in enumerate(conf.http):
        path = root.field("http").index(i)
        _check_match(out, path.field("match"), http.match)
        _check_modify(out, path.field("modify"), http.modify, http.match)
        _check_split_and_destination(out, path, http.split, http.destination)
    lb = conf.load_balancer
    which = lb.WhichOneof("lb_type")
    if which == "least_request" and lb.least_request.choice_count == 1:
        out.add("conf.loadBalancer.leastRequest.choiceCount", "value must be greater than or equal to 2")
    elif which == "ring_hash" and lb.ring_hash.hash_function not in _HASH_FUNCTIONS:
        out.add("conf.loadBalancer.ringHash.hashFunction", "must have a valid hash function")


def _check_split_and_destination(
    out: Violations, path: Path, split: Sequence[Any], destination: Mapping[str, str]
) -> None:
    if not split and not destination:
        out.add(path, 'requires either "destination" or "split"')
    if split and destination:
        out.add(path, '"split" cannot be defined at the same time as "destination"')
    if split:
        total = 0
        for i, entry in enumerate(split):
            if not entry.HasField("weight"):
                out.add(path.field("split").index(i).field("weight"), "needs to be defined")
            total += entry.weight.value
            _check_destination(out, path.field("split").index(i).field("destination"), entry.destination)
        if total == 0:
            out.add(path.field("split"), "there must be at least one split entry with weight above 0")
    if destination:
        _check_destination(out, path.field("destination"), destination)


def _check_destination(out: Violations, path: Path, destination: Mapping[str, str]) -> None:
    check_selector(out, path, destination, require_tag=True, require_service=True)


def _check_match(out: Violations, path: Path, match: Any) -> None:
    if not (match.HasField("path") or match.HasField("method") or match.headers):
        out.add(path, 'must be present and contain at least one of the elements: "method", "path" or "headers"')
        return
    if match.HasField("method"):
        _check_string_matcher(out, path.field("method"), match.method)
    if match.HasField("path"):
        _check_string_matcher(out, path.field("path"), match.path)
    for key in sorted(match.headers):
        header = path.field("headers").key(key)
        if not key:
            out.add(header, _CANNOT_BE_EMPTY)
        _check_string_matcher(out, header, match.headers[key])


def _check_string_matcher(out: Violations, path: Path, matcher: Any) -> None:
    which = matcher.WhichOneof("matcherType")
    if which is None:
        out.add(path, 'cannot be empty. Available options: "exact", "split" or "regex"')
    elif which != "exact" and not getattr(matcher, which):
        out.add(path.field(which), _CANNOT_BE_EMPTY)


def _check_modify(out: Violations, path: Path, modify: Any, match: Any) -> None:
    if modify.HasField("path"):
        _check_path_rewrite(out, path.field("path"), modify.path, match)
    if modify.HasField("host"):
        host = modify.host
        which = host.WhichOneof("type")
        if which == "value":
            if not host.value:
                out.add(path.field("host").field("value"), _CANNOT_BE_EMPTY)
        elif which == "fromPath":
            _check_regex_replace(out, path.field("host").field("fromPath"), host.fromPath)
        else:
            out.add(path.field("host"), 'either "value" or "fromPath" has to be set')
    for field in ("requestHeaders", "responseHeaders"):
        if modify.HasField(field):
            _check_headers(out, path.field(field), getattr(modify, field))


def _check_path_rewrite(out: Violations, path: Path, rewrite: Any, match: Any) -> None:
    which = rewrite.WhichOneof("type")
    if which == "rewritePrefix":
        if not rewrite.rewritePrefix:
            out.add(path.field("rewritePrefix"), _CANNOT_BE_EMPTY)
        elif not match.path.prefix:
            out.add(path.field("rewritePrefix"), "can only be set when .http.match.path.prefix is not empty")
    elif which == "regex":
        _check_regex_replace(out, path.field("regex"), rewrite.regex)
    else:
        out.add(path, 'either "rewritePrefix" or "regex" has to be set')


def _check_regex_replace(out: Violations, path: Path, replace: Any) -> None:
    if not replace.pattern:
        out.add(path.field("pattern"), _CANNOT_BE_EMPTY)
    if not replace.substitution:
        out.add(path.field("substitution"), _CANNOT_BE_EMPTY)


def _check_headers(out: Violations, path: Path, headers: Any) -> None:
    for i, add in enumerate(headers.add):
        _check_header_name(out, path.field("add").index(i).field("name"), add.name)
        if not add.value:
            out.add(path.field("add").index(i).field("value"), _CANNOT_BE_EMPTY)
    for i, remove in enumerate(headers.remove):
        _check_header_name(out, path.field("remove").index(i).field("name"), remove.name)


def _check_header_name(out: Violations, path: Path, name: str) -> None:
    if not name:
        out.add(path, _CANNOT_BE_EMPTY)
    elif name[0] == ":" or name in ("host", "Host"):
        out.add(path, "host header and HTTP/2 pseudo-headers are not allowed to be modified")


DESCRIPTOR = policy_descriptor(
    name=kinds.TRAFFIC_ROUTE,
    singular="traffic-route",
    plural="traffic-routes",
    spec_type=TrafficRoute,
    validate=validate,
)
