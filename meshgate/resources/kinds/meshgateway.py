"""MeshGateway: the listeners of a builtin gateway, bound to the gateway Dataplanes its selectors match.

Rules are Kuma 2.7's `gateway_validator.go`, each violation at the field Kuma names, plus four that meshgate's
gateway reference states and Kuma leaves to the config generator: TLS listeners need `tls` as HTTPS ones do,
`crossMesh` is for HTTP listeners only, certificates are checked as Kuma checks any data source, and HTTP and TCP
listeners take no `tls`. That last one speaks only once the `tls` block passes Kuma's own checks (a mode, and
certificates when terminating), so a listener Kuma rejects gets Kuma's answer.

A global-origin MeshGateway goes down to every zone; one created in a zone goes up to the global (and no
further). Users write it on the global for now.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from meshgate.api.mesh.v1alpha1.gateway_pb2 import MeshGateway
from meshgate.resources import kinds
from meshgate.resources.descriptor import KindDescriptor, Scope, SyncDirection
from meshgate.resources.errors import Path, Violation, Violations
from meshgate.resources.kinds._conf import check_data_source
from meshgate.resources.kinds._spec import validate_resource
from meshgate.resources.model import Resource
from meshgate.resources.network import WILDCARD_HOSTNAME, check_hostname, check_port
from meshgate.resources.tags import RESERVED_GATEWAY_TAG_KEYS, check_selector, check_selectors

__all__ = ["DESCRIPTOR", "validate"]

_Listener = MeshGateway.Listener
_TLS = MeshGateway.TLS


def validate(resource: Resource) -> list[Violation]:
    return validate_resource(resource, MeshGateway, _check_spec, mesh_scoped=True)


def _check_spec(out: Violations, spec: Any) -> None:
    # A cross-mesh gateway is reached by one name per listener, so it may bind to one service only.
    cross_mesh = any(listener.crossMesh for listener in spec.conf.listeners)
    check_selectors(out, Path("selectors"), spec.selectors, at_most_one=cross_mesh)
    # The gateway's own tags select routes, not Dataplanes: the service and zone belong to the Dataplane.
    check_selector(out, Path("tags"), spec.tags, forbidden_keys=RESERVED_GATEWAY_TAG_KEYS)
    if not spec.HasField("conf"):
        out.add(Path("conf"), "cannot be empty")
        return
    path = Path("conf").field("listeners")
    listeners = spec.conf.listeners
    if not listeners:
        out.add(path, "cannot be empty")
    for i, listener in enumerate(listeners):
        _check_listener(out, path.index(i), listener)
    _check_shared_ports(out, path, listeners)


def _check_listener(out: Violations, path: Path, listener: Any) -> None:
    # The hostname is optional: routes may narrow it instead.
    if listener.hostname:
        check_hostname(out, path.field("hostname"), listener.hostname)
    check_port(out, path.field("port"), listener.port)

    protocol = listener.protocol
    has_tls = listener.HasField("tls")
    tls_path = path.field("tls")
    if protocol == _Listener.NONE:
        out.add(path.field("protocol"), "cannot be empty")
    elif listener.crossMesh and protocol != _Listener.HTTP:
        out.add(path.field("protocol"), "protocol is not supported with crossMesh")
    elif protocol in (_Listener.HTTPS, _Listener.TLS) and not has_tls:
        out.add(tls_path, "cannot be empty")
    elif protocol == _Listener.HTTPS and listener.tls.mode == _TLS.PASSTHROUGH:
        out.add(tls_path.field("mode"), "mode is not supported on HTTPS listeners")

    if has_tls and listener.crossMesh:
        # Cross-mesh traffic is mTLS with the mesh's certificates; a listener certificate would replace them.
        if listener.tls.mode != _TLS.NONE or listener.tls.certificates:
            out.add(tls_path, "must be empty with crossMesh")
    elif has_tls and _check_tls(out, tls_path, listener.tls) and protocol in (_Listener.HTTP, _Listener.TCP):
        out.add(tls_path, f"must be empty for {_Listener.Protocol.Name(protocol)} listeners")

    check_selector(out, path.field("tags"), listener.tags, forbidden_keys=RESERVED_GATEWAY_TAG_KEYS)


def _check_tls(out: Violations, path: Path, tls: Any) -> bool:
    """Kuma's checks of a listener's `tls`, whatever its protocol; True when they find nothing."""
    problems = Violations()
    if tls.mode == _TLS.NONE:
        problems.add(path.field("mode"), "cannot be empty")
    elif tls.mode == _TLS.TERMINATE:
        certificates = path.field("certificates")
        count = len(tls.certificates)
        if count == 0:
            problems.add(certificates, "cannot be empty in TLS termination mode")
        elif count > 2:
            # Envoy takes one certificate per key type: an RSA one and an ECDSA one at most.
            problems.add(certificates, "cannot have more than 2 certificates")
        for i, source in enumerate(tls.certificates):
            check_data_source(problems, certificates.index(i), source)
    out.extend(problems)
    return not problems


def _check_shared_ports(out: Violations, path: Path, listeners: Sequence[Any]) -> None:
    """Listeners on one port become one Envoy listener, so they must agree on what that listener is."""
    by_port: dict[int, list[int]] = defaultdict(list)
    for i, listener in enumerate(listeners):
        by_port[listener.port].append(i)
    for indexes in by_port.values():
        if len({listeners[i].protocol for i in indexes}) > 1:
            for i in indexes:
                out.add(path.index(i), "protocol conflicts with other listeners on this port")

        by_hostname: dict[str, list[int]] = defaultdict(list)
        for i in indexes:
            # An empty hostname matches every host, exactly as "*" does.
            by_hostname[listeners[i].hostname or WILDCARD_HOSTNAME].append(i)
        for same in by_hostname.values():
            if len(same) > 1:
                for i in same:
                    out.add(path.index(i), "multiple listeners for hostname on this port")

        limited = [i for i in indexes if listeners[i].resources.connection_limit]
        if len({listeners[i].resources.connection_limit for i in limited}) > 1:
            for i in limited:
                out.add(
                    path.index(i).field("resources").field("connectionLimit"),
                    "conflicting values for this port",
                )


DESCRIPTOR = KindDescriptor(
    name=kinds.MESH_GATEWAY,
    singular="meshgateway",
    plural="meshgateways",
    spec_type=MeshGateway,
    scope=Scope.MESH,
    sync=SyncDirection.BOTH,
    validate=validate,
    writable_on_global=True,
    writable_on_zone=True,  # Kuma 2.7 accepts zone-origin MeshGateways; they sync up, not out
)
