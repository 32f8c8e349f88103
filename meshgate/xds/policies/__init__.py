"""The policy seam: how a gateway policy shapes the Envoy config `generate` builds, one module per policy kind.

A policy module is a `PolicyModule`: the kind it handles and a hook per Envoy message it shapes, each a function
`(Match, message) -> None` that mutates the message in place:

| hook | shapes (message) | on | matched by (`matching`) |
|---|---|---|---|
| `cluster` | `Cluster` | each cluster a gateway route reaches | `best_for_cluster`: listener tags, backend tags |
| `route` | `Route` | each route of a gateway virtual host | `best_for_route`: listener tags, the route's backends |
| `listener` | `Listener` | each gateway listener | `best_for_route` over every backend of its routes |

A `gate` hook (`(Gate) -> reason | None`) is asked for every backend of every gateway route, whether or not the
kind has policies, and denies it: Envoy then answers 403 for that backend's share of the route (`denial.py`);
TrafficPermission is one (`trafficpermission.py`, interim gateway-side enforcement until sidecars exist).

A module with no hook is a kind Kuma's gateway ignores (TrafficRoute, VirtualOutbound): its policies are
reported as ignored and change nothing. A kind with policies in the context and no module at all is reported
as unsupported. `REGISTRY` holds the modules `generate` applies by default; a `MeshContext` may carry another
(tests do). A new policy is one module (`timeout.py` is the example) plus one line in `_BUILTIN`.

**Clusters.** A cluster shaped by a policy is named from its destination tags plus each winning policy's kind
and name (Kuma names a gateway cluster from destination and listener tags for the same reason): two listeners
whose policies differ for one backend get two clusters, and a cluster no policy shapes keeps the name and bytes
it had before policies existed.

**Report.** Generation returns, with the snapshot, a `PolicyReport`: per kind, which policy shaped which
listener, route and cluster (the `Match`, with every loser and why), and the kinds ignored. `meshgatectl
inspect dataplane --type policies` reads it.

**targetRef policies** (Kuma's MeshTimeout, MeshRetry, MeshHTTPRoute, ...) slot in the same way: a module per
kind with the same hooks; what differs is the matcher. Their resources select proxies by `targetRef` (Mesh,
MeshGateway, MeshService, with `to`/`from` entries) and the matching ones are *merged*, not ranked against each
other, so a `PolicyModule` for one will set `matcher` to a targetRef matcher (to be written beside
`matching.py`) that yields the merged `conf` per listener, route or cluster; the hooks keep their signature
with that result in place of a `Match`. Only `CONNECTION` exists today.

Errors: none raised. A hook must not raise for a policy the kind's validator accepted.
"""

from __future__ import annotations

from meshgate.xds.policies import ignored, timeout, trafficpermission
from meshgate.xds.policies.matching import Loser, Match
from meshgate.xds.policies.module import (
    EMPTY_REPORT,
    Applied,
    Denied,
    Gate,
    Ignored,
    Matcher,
    PolicyModule,
    PolicyRegistry,
    PolicyReport,
    Target,
    conf,
    ignored_kinds,
)

__all__ = [
    "EMPTY_REPORT",
    "REGISTRY",
    "Applied",
    "Denied",
    "Gate",
    "Ignored",
    "Loser",
    "Match",
    "Matcher",
    "PolicyModule",
    "PolicyRegistry",
    "PolicyReport",
    "Target",
    "conf",
    "ignored_kinds",
]

# The modules `generate` applies unless a MeshContext carries its own registry.
REGISTRY = PolicyRegistry([timeout.MODULE, trafficpermission.MODULE, *ignored.MODULES])
