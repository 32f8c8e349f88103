"""An instance's `Ready` condition, computed as Kuma's controller computes it, and the status patch that sets it.

`compute_ready(deployment, service, gateway_matched=..., mesh=...)` is Kuma's `updateStatus` and
`getCombinedReadiness` (gateway_instance_controller.go):

| situation                                                         | status  | reason                      |
|-------------------------------------------------------------------|---------|-----------------------------|
| no MeshGateway in the mesh selects the instance's tags            | False   | NoGatewayMatched            |
| the Deployment's `Available` condition is False                   | False   | DeploymentNotAvailable      |
| the Deployment's `Available` condition is Unknown                 | Unknown | DeploymentNotAvailable      |
| ClusterIP / NodePort Service without a cluster IP yet             | False   | LoadBalancerAddressNotReady |
| LoadBalancer Service without an ingress address yet               | False   | LoadBalancerAddressNotReady |
| otherwise                                                         | True    | Ready                       |

meshgate adds one reason Kuma never writes, `InvalidInstance`, for an instance that Kuma's admission webhook
would have rejected (meshgate has none; see `meshgate.k8s.instance`).

`set_condition` is apimachinery's `meta.SetStatusCondition`: the transition time moves only when the status
does. `status_patch` is the JSON merge patch (RFC 7386) from the old status to the new one, as controller-runtime's
`MergeFrom` sends it: lists are replaced whole, removed keys become null.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "CONDITION_READY",
    "REASON_DEPLOYMENT_NOT_AVAILABLE",
    "REASON_INVALID_INSTANCE",
    "REASON_LOAD_BALANCER_ADDRESS_NOT_READY",
    "REASON_NO_GATEWAY_MATCHED",
    "REASON_READY",
    "Condition",
    "compute_ready",
    "format_time",
    "invalid_condition",
    "merge_patch",
    "parse_conditions",
    "set_condition",
    "status_patch",
]

CONDITION_READY = "Ready"
REASON_READY = "Ready"
REASON_NO_GATEWAY_MATCHED = "NoGatewayMatched"
REASON_DEPLOYMENT_NOT_AVAILABLE = "DeploymentNotAvailable"
REASON_LOAD_BALANCER_ADDRESS_NOT_READY = "LoadBalancerAddressNotReady"
REASON_INVALID_INSTANCE = "InvalidInstance"

TRUE, FALSE, UNKNOWN = "True", "False", "Unknown"


@dataclass(frozen=True, slots=True)
class Condition:
    """metav1.Condition. `last_transition_time` is RFC 3339 text, as the API server stores it."""

    type: str
    status: str
    reason: str
    message: str = ""
    observed_generation: int = 0
    last_transition_time: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": self.type,
            "status": self.status,
            "observedGeneration": self.observed_generation,
            "lastTransitionTime": self.last_transition_time,
            "reason": self.reason,
            "message": self.message,
        }
        if not self.observed_generation:
            del out["observedGeneration"]
        return out


def format_time(moment: datetime) -> str:
    """metav1.Time's JSON form: RFC 3339 in UTC, whole seconds."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_conditions(raw: object) -> tuple[Condition, ...]:
    """Conditions from an object's status; entries that are not conditions are skipped."""
    if not isinstance(raw, Sequence) or isinstance(raw, str):
        return ()
    result = []
    for item in raw:
        if not isinstance(item, Mapping) or not isinstance(item.get("type"), str):
            continue
        generation = item.get("observedGeneration")
        result.append(
            Condition(
                type=item["type"],
                status=str(item.get("status", "")),
                reason=str(item.get("reason", "")),
                message=str(item.get("message", "")),
                observed_generation=generation if isinstance(generation, int) else 0,
                last_transition_time=str(item.get("lastTransitionTime", "")),
            )
        )
    return tuple(result)


def _deployment_availability(deployment: Mapping[str, Any] | None) -> str | None:
    """The status of the Deployment's `Available` condition that decides readiness, or None when it does not."""
    if deployment is None:
        # Kuma always has the Deployment it just created or patched; meshgate may not have read it yet.
        return FALSE
    for condition in parse_conditions(_get(deployment, "status", "conditions")):
        if condition.type != "Available":
            continue
        if condition.status == FALSE:
            return FALSE
        if condition.status == UNKNOWN:
            return UNKNOWN
        # Go's `break` here leaves the switch, not the loop: a later Available condition still counts.
    return None


def _service_has_address(service: Mapping[str, Any] | None) -> bool:
    if service is None:
        return False
    service_type = _get(service, "spec", "type")
    if service_type in ("NodePort", "ClusterIP"):
        cluster_ips = _get(service, "spec", "clusterIPs") or []
        return any(ip not in ("", "None") for ip in cluster_ips if isinstance(ip, str))
    if service_type == "LoadBalancer":
        return bool(_get(service, "status", "loadBalancer", "ingress"))
    return False


def compute_ready(
    deployment: Mapping[str, Any] | None,
    service: Mapping[str, Any] | None,
    *,
    gateway_matched: bool,
    mesh: str,
    generation: int = 0,
) -> Condition:
    """The `Ready` condition (without a transition time) from the live Deployment and Service."""
    if not gateway_matched:
        return Condition(
            CONDITION_READY,
            FALSE,
            REASON_NO_GATEWAY_MATCHED,
            f"No Gateway matched by tags in mesh: '{mesh}'",
            generation,
        )
    availability = _deployment_availability(deployment)
    if availability is not None:
        return Condition(CONDITION_READY, availability, REASON_DEPLOYMENT_NOT_AVAILABLE, "", generation)
    if _service_has_address(service):
        return Condition(CONDITION_READY, TRUE, REASON_READY, "", generation)
    return Condition(CONDITION_READY, FALSE, REASON_LOAD_BALANCER_ADDRESS_NOT_READY, "", generation)


def invalid_condition(violations: Iterable[object], generation: int) -> Condition:
    return Condition(CONDITION_READY, FALSE, REASON_INVALID_INSTANCE, "; ".join(map(str, violations)), generation)


def set_condition(conditions: Sequence[Condition], new: Condition, now: str) -> tuple[Condition, ...]:
    """apimachinery's SetStatusCondition: replace the condition of `new.type`, keeping its transition time
    unless its status changed."""
    result = list(conditions)
    for i, existing in enumerate(result):
        if existing.type != new.type:
            continue
        moved = existing.status != new.status
        when = (new.last_transition_time or now) if moved else existing.last_transition_time
        result[i] = dataclasses.replace(new, last_transition_time=when)
        return tuple(result)
    result.append(dataclasses.replace(new, last_transition_time=new.last_transition_time or now))
    return tuple(result)


def merge_patch(old: Any, new: Any) -> Any:
    """The RFC 7386 merge patch that turns `old` into `new`; {} when they are equal."""
    if not isinstance(old, Mapping) or not isinstance(new, Mapping):
        return new
    patch: dict[str, Any] = {}
    for key in old.keys() - new.keys():
        patch[key] = None
    for key, value in new.items():
        if key not in old:
            patch[key] = value
        elif old[key] != value:
            # Two different objects always differ somewhere, so the inner patch is never empty.
            patch[key] = merge_patch(old[key], value)
    return patch


def status_patch(old_status: Mapping[str, Any], new_status: Mapping[str, Any]) -> dict[str, Any] | None:
    """`{"status": ...}` merge patch for the status subresource, or None when nothing changed."""
    diff = merge_patch(old_status, new_status)
    return {"status": diff} if diff else None


def _get(obj: Mapping[str, Any], *path: str) -> Any:
    current: Any = obj
    for key in path:
        if not isinstance(current, Mapping):
            return None
        current = current.get(key)
    return current
