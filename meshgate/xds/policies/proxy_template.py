"""ProxyTemplate (Kuma 2.7 Universal, a dataplane policy): modifications applied to a gateway's whole
generated config, last.

Kuma selects one ProxyTemplate per proxy (`core/policy/dataplane_matcher.go:28-60`, `matching.best_for_proxy`)
and applies its `conf.modifications` in order to the generated resources (`xds/generator/modifications/v3/`):

| modification | operations | match | file |
|---|---|---|---|
| `cluster` | add, patch, remove | `name` | `cluster.go` |
| `listener` | add, patch, remove | `name` | `listener.go` |
| `networkFilter` | add{First,Last,Before,After}, patch, remove | `name`, `listenerName` | `network_filter.go`|
| `httpFilter` | the same, on every HCM of the matched listeners | `name`, `listenerName` | `http_filter.go` |
| `virtualHost` | add, patch, remove | `name`, `routeConfigurationName` | `virtual_host.go` |

`value` is the Envoy message in YAML or JSON; a patch merges it into the match (`proto.Merge`; a filter's
`typed_config` merged as its own type, Kuma's `MergeAnys`). A match's `origin` other than `gateway` (Kuma's
origin of a gateway's resources) matches nothing here, nor does a `listenerTags`/`tags` match (meshgate keeps
no tags on generated resources). A modification whose value does not parse is left out and reported as a problem.

Before the modifications, as Kuma's `ProxyTemplateGenerator` (`xds/generator/proxy_template.go:24-66`):

- `imports`: Kuma builds a proxy from the profiles its template imports; a builtin gateway's own template imports
  `gateway-proxy` (`plugins/runtime/gateway/template.go`), which is the config `generate` makes. Here that config
  is kept for `gateway-proxy`; `default-proxy` (Kuma's sidecar profile, which would serve none of the gateway's
  listeners) and an empty list keep it too and are reported as a problem, so that a template written for
  sidecars never leaves a gateway without its listeners. Validation refuses unknown profiles.
- `resources`: each raw resource (`name`, `resource`: an Envoy message in YAML or JSON with its `@type`) is added
  under its type and `name`, replacing a generated one of that name; one that does not parse is left out and
  reported with Kuma's path, `resources[<i>]{name="<name>"}.resource: <reason>`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from google.protobuf import any_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.message import Message

from meshgate.resources.kinds._envoy_json import envoy_any, envoy_message
from meshgate.resources.model import Resource
from meshgate.xds.clusters import pack
from meshgate.xds.policies.module import Matcher, PolicyModule, Resources
from meshgate.xds.snapshot import CLUSTER, LISTENER, ROUTE

__all__ = ["KIND", "MODULE", "apply"]

KIND = "ProxyTemplate"
_HCM = "envoy.filters.network.http_connection_manager"
_ORIGIN = "gateway"
GATEWAY_PROFILE = "gateway-proxy"  # Kuma's `metadata.ProfileGatewayProxy`
_TYPE_PREFIX = "type.googleapis.com/"


def _merge_any(into: any_pb2.Any, patch: any_pb2.Any) -> any_pb2.Any:
    """Kuma's `MergeAnys`: both unpacked as their type, merged, packed again."""
    if not patch.type_url:
        return into
    if not into.type_url or into.type_url != patch.type_url:
        return patch
    target = _unpack(into)
    target.MergeFrom(_unpack(patch))
    return pack(target)


def _unpack(value: any_pb2.Any) -> Message:
    # The type is loaded: one side was packed here, the other parsed by `envoy_message`, which imports it.
    descriptor = descriptor_pool.Default().FindMessageTypeByName(value.type_url.rpartition("/")[2])
    message = message_factory.GetMessageClass(descriptor)()
    value.Unpack(message)
    return message


def _origin_ok(match: Any) -> bool:
    return match.origin in ("", _ORIGIN)


def _resource(resources: Resources, type_url: str, message_type: type[Message], mod: Any) -> None:
    table = resources[type_url]
    name = mod.match.name
    if mod.operation == "add":
        added = envoy_message(mod.value, message_type)
        table[str(getattr(added, "name", ""))] = added
        return
    if not _origin_ok(mod.match) or (getattr(mod.match, "tags", None) and len(mod.match.tags)):
        return
    for key in [k for k in table if not name or k == name]:
        if mod.operation == "remove":
            del table[key]
        elif mod.operation == "patch":
            table[key].MergeFrom(envoy_message(mod.value, message_type))


def _filters(resources: Resources, mod: Any, each: Callable[[listener_components_pb2.FilterChain], None]) -> None:
    if not _origin_ok(mod.match) or len(mod.match.listenerTags):
        return
    for name, listener in resources[LISTENER].items():
        if mod.match.listenerName and mod.match.listenerName != name:
            continue
        assert isinstance(listener, listener_pb2.Listener)
        for chain in listener.filter_chains:
            each(chain)


def _edit(items: Any, mod: Any, new: Message | None, patch: Callable[[Any, Any], None]) -> None:
    """One filter list (network or HTTP filters) edited as Kuma's filter modificators do."""
    name = mod.match.name
    matches = [i for i, f in enumerate(items) if not name or f.name == name]
    op = mod.operation
    if op == "addFirst":
        items.insert(0, new)
    elif op == "addLast":
        items.append(new)
    elif op in ("addBefore", "addAfter") and matches:
        items.insert(matches[0] + (op == "addAfter"), new)
    elif op == "remove":
        for i in reversed(matches):
            del items[i]
    elif op == "patch":
        for i in matches:
            patch(items[i], new)


def _patch_filter(target: Any, new: Any) -> None:
    target.typed_config.CopyFrom(_merge_any(target.typed_config, new.typed_config))


def _network_filter(resources: Resources, mod: Any) -> None:
    new = None if mod.operation == "remove" else envoy_message(mod.value, listener_components_pb2.Filter)
    _filters(resources, mod, lambda chain: _edit(chain.filters, mod, new, _patch_filter))


def _http_filter(resources: Resources, mod: Any) -> None:
    new = None if mod.operation == "remove" else envoy_message(mod.value, hcm_pb2.HttpFilter)

    def each(chain: listener_components_pb2.FilterChain) -> None:
        for network in chain.filters:
            if network.name != _HCM:
                continue
            hcm = hcm_pb2.HttpConnectionManager()
            network.typed_config.Unpack(hcm)
            _edit(hcm.http_filters, mod, new, _patch_filter)
            network.typed_config.CopyFrom(pack(hcm))

    _filters(resources, mod, each)


def _virtual_host(resources: Resources, mod: Any) -> None:
    if not _origin_ok(mod.match):
        return
    new = None if mod.operation == "remove" else envoy_message(mod.value, route_components_pb2.VirtualHost)
    for name, config in resources[ROUTE].items():
        if mod.match.routeConfigurationName and mod.match.routeConfigurationName != name:
            continue
        assert isinstance(config, route_pb2.RouteConfiguration)
        hosts = config.virtual_hosts
        if mod.operation == "add":
            hosts.append(new)
            continue
        for i in reversed(range(len(hosts))):
            if mod.match.name and hosts[i].name != mod.match.name:
                continue
            if mod.operation == "remove":
                del hosts[i]
            elif mod.operation == "patch":
                hosts[i].MergeFrom(new)


def _imports(template: Resource) -> list[str]:
    imports = list(template.spec.conf.imports)  # type: ignore[attr-defined]
    if GATEWAY_PROFILE in imports:
        return []
    which = f"imports {imports}" if imports else "no imports"
    return [
        f"ProxyTemplate {template.meta.name}: {which}: a builtin gateway is built from the {GATEWAY_PROFILE!r} "
        "profile; kept the generated gateway config"
    ]


def _raw(template: Resource, resources: Resources) -> list[str]:
    problems = []
    for i, raw in enumerate(template.spec.conf.resources):  # type: ignore[attr-defined]
        try:
            packed = envoy_any(raw.resource)
            message = _unpack(packed)
        except (ValueError, TypeError, KeyError, json_format.ParseError) as err:
            problems.append(
                f"ProxyTemplate {template.meta.name}: resources[{i}]{{name={raw.name!r}}}.resource: {err}; left out"
            )
            continue
        resources.setdefault(_TYPE_PREFIX + message.DESCRIPTOR.full_name, {})[raw.name] = message
    return problems


def apply(template: Resource, resources: Resources) -> list[str]:
    """Applies `template`'s imports, raw resources, then modifications in order; returns one problem per thing
    left out."""
    spec: Any = template.spec
    problems = _imports(template) + _raw(template, resources)
    for i, modification in enumerate(spec.conf.modifications):
        which = modification.WhichOneof("type")
        mod = getattr(modification, which)
        try:
            if which == "cluster":
                _resource(resources, CLUSTER, cluster_pb2.Cluster, mod)
            elif which == "listener":
                _resource(resources, LISTENER, listener_pb2.Listener, mod)
            elif which == "networkFilter":
                _network_filter(resources, mod)
            elif which == "httpFilter":
                _http_filter(resources, mod)
            elif which == "virtualHost":
                _virtual_host(resources, mod)
        except (ValueError, TypeError, json_format.ParseError) as err:
            problems.append(f"ProxyTemplate {template.meta.name}: modifications[{i}].{which}: {err}; left out")
    return problems


MODULE = PolicyModule(KIND, proxy=apply, matcher=Matcher.SELECTORS)
