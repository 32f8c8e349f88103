"""TrafficPermission (Kuma 2.7 Universal) on a builtin gateway: INTERIM gateway-side enforcement.

In Kuma the gateway never checks TrafficPermission for mesh services: the *destination's* sidecar does, with
an RBAC filter on its inbound (`xds/envoy/listeners/v3/network_rbac_configurer.go`, policies picked by
`core/policy/connection_matcher.go:173` `SelectInboundConnectionPolicy`: of the TrafficPermissions whose
`destinations` match the inbound's tags, the most specific (then the newest) one, whose `sources` become the
allowed principals). meshgate has no sidecars yet (issue 14), so until it does this module enforces the same
verdict at the gateway, per route backend, so that the issue's row holds: a gateway's route to a service the
gateway is not permitted to reach answers 403. For ExternalServices the gateway is where Kuma enforces it
(`plugins/runtime/gateway/generator.go:175`, `permissions.MatchExternalServicesTrafficPermissions`), with the
same selection. When sidecars exist, mesh-service enforcement moves to them and this module keeps only that.

The verdict (`gate`): with mTLS disabled on the Mesh (no `mtls.enabledBackend`) permissions are not enforced,
as in Kuma (RBAC needs the peer's certificate). With mTLS enabled, the backend is permitted when the selected
TrafficPermission's `sources` match the gateway listener's tags (the gateway's `kuma.io/service`, which its mesh
certificate carries); with none selected, it is denied. A denied backend's share of a route answers 403
(`policies.denial`); on a TCP route its share has no cluster and the connection is closed.
"""

from __future__ import annotations

from typing import Any

from meshgate.resources.selectors import selector_matches
from meshgate.xds.policies.matching import Candidates, best_for_destination, index_of, selectors
from meshgate.xds.policies.module import Gate, PolicyModule

__all__ = ["KIND", "MODULE", "mtls_enabled"]

KIND = "TrafficPermission"
NO_MTLS = "mTLS is disabled on the mesh: permissions are not enforced"
NO_PERMISSION = "no TrafficPermission's destinations match the backend"
NOT_A_SOURCE = "the selected TrafficPermission's sources do not match the gateway"


def mtls_enabled(mesh: Any) -> bool:
    return mesh is not None and bool(mesh.spec.mtls.enabledBackend)


def _gate(gate: Gate) -> str | None:
    if not mtls_enabled(gate.mesh):
        return None
    # Kuma's inbound selection ranks by destination only: every policy is a candidate on the source side.
    candidates = Candidates.every(index_of(gate.policies))
    match = best_for_destination(candidates, gate.backend)
    if match is None:
        return NO_PERMISSION
    if any(selector_matches(s, gate.source) for s in selectors(match.winner, "sources")):
        return None
    return f"{NOT_A_SOURCE} ({match.winner.meta.name})"


MODULE = PolicyModule(KIND, gate=_gate)
