"""Which `.mesh` names exist, computed from Dataplanes and MeshGateways (gateway.md, "DNS and VIPs").

- `<service>.<domain>` for every `kuma.io/service` tag of a Dataplane inbound in the mesh, from every zone the
  store holds Dataplanes of; VIP port 80.
- For a service tag with `_`, also the dotted form (`echo_default_svc_80` -> `echo.default.svc.80.mesh`). Both
  names are one entry, so they share one VIP.
- For each `crossMesh: true` MeshGateway listener: its hostname when set and free of `*`, otherwise
  `internal.<gateway>.<mesh>.<domain>`, where `<gateway>` is the name the user gave (`kuma.io/display-name`,
  since a synced gateway's store name is zone-local); VIP port the listener's port.

An entry's key (the allocator's name) is its first DNS name. Names are lower case, as DNS compares them. When
two sources claim one DNS name, the first entry by key keeps it and the clash is listed in `problems`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from meshgate.resources.model import LABEL_DISPLAY_NAME, LABEL_ZONE, Resource
from meshgate.resources.tags import TAG_SERVICE

__all__ = ["SERVICE_PORT", "NameSet", "VipEntry", "mesh_names"]

# Service VIPs listen on port 80 (gateway.md).
SERVICE_PORT = 80
_WILDCARD = "*"


@dataclass(frozen=True, slots=True)
class VipEntry:
    """One VIP's worth of names: `key` is what the allocator allocates for; `names` all resolve to it."""

    key: str
    mesh: str
    names: tuple[str, ...]
    ports: tuple[int, ...]
    # Where it comes from, for `inspect vips`: "Dataplane zone-1.web-1", "MeshGateway edge (listener :8080)".
    sources: tuple[str, ...]
    # The `kuma.io/service` the VIP stands for (service names only; "" for cross-mesh gateway names): what
    # a VIP outbound listener routes to.
    service: str = ""
    # Cross-mesh gateway names only: the MeshGateway's store name (in `mesh`) and the `kuma.io/service` of its
    # one selector, which the gateway Dataplanes serving it carry. Other meshes' proxies route the name there.
    gateway: str = ""
    gateway_service: str = ""


@dataclass(frozen=True, slots=True)
class NameSet:
    entries: tuple[VipEntry, ...]
    problems: tuple[str, ...]


class _Builder:
    def __init__(self, mesh: str) -> None:
        self.mesh = mesh
        self.names: dict[str, list[str]] = {}
        self.ports: dict[str, set[int]] = {}
        self.sources: dict[str, set[str]] = {}
        self.services: dict[str, str] = {}
        self.gateways: dict[str, tuple[str, str]] = {}

    def add(
        self, names: list[str], port: int, source: str, service: str = "", gateway: tuple[str, str] | None = None
    ) -> None:
        key = names[0]
        if service:
            self.services.setdefault(key, service)
        if gateway is not None:
            self.gateways.setdefault(key, gateway)
        for name in names:
            have = self.names.setdefault(key, [])
            if name not in have:
                have.append(name)
        self.ports.setdefault(key, set()).add(port)
        self.sources.setdefault(key, set()).add(source)

    def build(self) -> NameSet:
        claimed: dict[str, str] = {}
        entries: list[VipEntry] = []
        problems: list[str] = []
        for key in sorted(self.names):
            names: list[str] = []
            for name in self.names[key]:
                owner = claimed.setdefault(name, key)
                if owner == key:
                    names.append(name)
                else:
                    problems.append(f'mesh "{self.mesh}": name {name} of {key} is already taken by {owner}')
            if not names or names[0] != key:
                # Its own key is another entry's name: it cannot have a VIP of its own.
                continue
            entries.append(
                VipEntry(
                    key=key,
                    mesh=self.mesh,
                    names=tuple(names),
                    ports=tuple(sorted(self.ports[key])),
                    sources=tuple(sorted(self.sources[key])),
                    service=self.services.get(key, ""),
                    gateway=self.gateways.get(key, ("", ""))[0],
                    gateway_service=self.gateways.get(key, ("", ""))[1],
                )
            )
        return NameSet(tuple(entries), tuple(problems))


def service_names(service: str, domain: str) -> list[str]:
    """`<service>.<domain>`, then the dotted form when the tag has `_`."""
    base = service.lower()
    names = [f"{base}.{domain}"]
    if "_" in base:
        names.append(f"{base.replace('_', '.')}.{domain}")
    return names


def cross_mesh_name(hostname: str, gateway: str, mesh: str, domain: str) -> str:
    if hostname and _WILDCARD not in hostname:
        return hostname.lower().rstrip(".")
    return f"internal.{gateway}.{mesh}.{domain}".lower()


def mesh_names(
    mesh: str, dataplanes: Iterable[Resource], gateways: Iterable[Resource], *, domain: str = "mesh"
) -> NameSet:
    """Every `.mesh` entry of `mesh`; resources of other meshes are ignored."""
    domain = domain.lower().strip(".")
    out = _Builder(mesh)
    for dp in dataplanes:
        if dp.meta.mesh != mesh:
            continue
        source = f"Dataplane {dp.meta.labels.get(LABEL_DISPLAY_NAME) or dp.meta.name}"
        if dp.meta.labels.get(LABEL_ZONE):
            source += f" (zone {dp.meta.labels[LABEL_ZONE]})"
        for inbound in dp.spec.networking.inbound:  # type: ignore[attr-defined]
            service = inbound.tags.get(TAG_SERVICE, "")
            if service:
                out.add(service_names(service, domain), SERVICE_PORT, source, service)
    for gw in gateways:
        if gw.meta.mesh != mesh:
            continue
        display = gw.meta.labels.get(LABEL_DISPLAY_NAME) or gw.meta.name
        selectors = gw.spec.selectors  # type: ignore[attr-defined]
        # A crossMesh gateway has exactly one selector (validated), naming the service of its Dataplanes.
        gateway_service = str(selectors[0].match.get(TAG_SERVICE, "")) if len(selectors) == 1 else ""
        for listener in gw.spec.conf.listeners:  # type: ignore[attr-defined]
            if not listener.crossMesh:
                continue
            name = cross_mesh_name(listener.hostname, display, mesh, domain)
            where = f"MeshGateway {display} (listener :{listener.port})"
            out.add([name], int(listener.port), where, gateway=(gw.meta.name, gateway_service))
    return out.build()
