"""The policy seam: how a gateway policy shapes the Envoy config `generate` builds, one module per policy kind.

A policy module is a `PolicyModule`: the kind it handles and a hook per Envoy message it shapes, each a function
`(Match, message) -> None` that mutates the message in place (a cluster hook also gets the cluster's protocol,
`(Match, Cluster, protocol)`, as Kuma's cluster configurers do; a hook reads the winner's conf as the kind's
`Conf` message with `typed_conf`):

| hook | shapes (message) | on | matched by (`matching`) |
|---|---|---|---|
| `cluster` | `Cluster` | each cluster a gateway route reaches | `best_for_cluster`: listener tags, backend tags |
| `route` | `Route` | each route of a gateway virtual host | `best_for_route`: listener tags, the route's backends |
| `listener` | `Listener` | each gateway listener | `best_for_route` over every backend of its routes |
| `http_filter` | (returns an `HttpFilter`) | each gateway HCM one of whose routes the kind's `route` hook shaped | - |
| `access_log` | (returns an `AccessLog`) | each gateway filter chain | listener tags, `PASS_THROUGH` |
| `proxy` | `Resources`, all of them | a builtin gateway, last | `best_for_proxy`: gateway tags (`SELECTORS`) |
| `dataplane` | `Resources`, its HCMs (`DataplaneSite`) | any proxy, before `proxy` | `best_for_dataplane` |

A `gate` hook (`(Gate) -> reason | None`) is asked for every backend of every gateway route, whether or not the
kind has policies, and denies it: Envoy then answers 403 for that backend's share of the route (`denial.py`);
TrafficPermission is one (`trafficpermission.py`, interim gateway-side enforcement until sidecars exist).

A module with no hook is a kind Kuma's gateway ignores (TrafficRoute, VirtualOutbound): its policies are
reported as ignored and change nothing. A kind with policies in the context and no module at all is reported
as unsupported. `REGISTRY` holds the modules `generate` applies by default; a `MeshContext` may carry another
(tests do). A new policy is one module (`timeout.py`, `retry.py`, `circuit_breaker.py`, `health_check.py` are
examples) plus one line in `REGISTRY`.

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

from meshgate.xds.policies import (
    circuit_breaker,
    fault_injection,
    health_check,
    ignored,
    proxy_template,
    rate_limit,
    retry,
    timeout,
    traffic_log,
    traffic_trace,
    trafficpermission,
)
from meshgate.xds.policies.matching import Loser, Match
from meshgate.xds.policies.module import (
    EMPTY_REPORT,
    PASS_THROUGH,
    Applied,
    ConnectionManager,
    DataplaneSite,
    Denied,
    Direction,
    Gate,
    Ignored,
    LogSite,
    Matcher,
    PolicyModule,
    PolicyRegistry,
    PolicyReport,
    Resources,
    Target,
    conf,
    ignored_kinds,
    typed_conf,
)

__all__ = [
    "EMPTY_REPORT",
    "PASS_THROUGH",
    "REGISTRY",
    "Applied",
    "ConnectionManager",
    "DataplaneSite",
    "Denied",
    "Direction",
    "Gate",
    "Ignored",
    "LogSite",
    "Loser",
    "Match",
    "Matcher",
    "PolicyModule",
    "PolicyRegistry",
    "PolicyReport",
    "Resources",
    "Target",
    "conf",
    "ignored_kinds",
    "typed_conf",
]

# The modules `generate` applies unless a MeshContext carries its own registry.
REGISTRY = PolicyRegistry(
    [
        timeout.MODULE,
        trafficpermission.MODULE,
        retry.MODULE,
        circuit_breaker.MODULE,
        health_check.MODULE,
        rate_limit.MODULE,
        fault_injection.MODULE,
        traffic_log.MODULE,
        traffic_trace.MODULE,
        proxy_template.MODULE,
        *ignored.MODULES,
    ]
)
