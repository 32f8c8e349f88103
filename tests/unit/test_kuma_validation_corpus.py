"""Kuma's own validator test cases, answered by meshgate: the same (field, message) pairs as Kuma's validator.

The corpus (tests/data/kuma_validation_corpus.yaml) holds every entry of Kuma 2.7's Mesh, MeshGateway,
MeshGatewayRoute and Dataplane validator tests and of its twelve source/destination policy kinds' (Timeout, …,
VirtualOutbound), and cases derived from the validators themselves; its header
describes the format. A case passes when meshgate's violations are exactly Kuma's, plus the ones the case lists
under `meshgate_adds` (meshgate's own extra rules, each with its reason). Order is not compared: Kuma's order
is that of its code, not a promise.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshgate.resources import codec, registry
from meshgate.resources.errors import ValidationError

CORPUS = Path(__file__).resolve().parents[1] / "data" / "kuma_validation_corpus.yaml"

Pair = tuple[str, str]


@dataclass(frozen=True)
class Case:
    kind: str
    source: str
    case: str
    input: str
    violations: tuple[Pair, ...]
    meshgate_adds: tuple[Pair, ...]
    why_added: tuple[str, ...]
    input_edit: str | None
    derived: str | None


def _pairs(items: list[dict[str, str]]) -> tuple[Pair, ...]:
    return tuple((item["field"], item["message"]) for item in items)


def _load() -> tuple[list[Case], list[dict[str, str]]]:
    doc: dict[str, Any] = yaml.safe_load(CORPUS.read_text())
    cases = [
        Case(
            kind=raw["kind"],
            source=raw["source"],
            case=raw["case"],
            input=raw["input"],
            violations=_pairs(raw["violations"]),
            meshgate_adds=_pairs(raw.get("meshgate_adds", [])),
            why_added=tuple(item["why"] for item in raw.get("meshgate_adds", [])),
            input_edit=raw.get("input_edit"),
            derived=raw.get("derived"),
        )
        for raw in doc["cases"]
    ]
    return cases, doc["skipped"]


CASES, SKIPPED = _load()


def _ids(cases: list[Case]) -> list[str]:
    seen: Counter[str] = Counter()
    ids = []
    for case in cases:
        name = f"{case.kind}: {case.case}"
        seen[name] += 1
        ids.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return ids


def meshgate_answer(case: Case) -> list[Pair]:
    """What meshgate says about the case's input: the decoder's violations if it refuses it, else the rules'."""
    (doc,) = codec.load_documents(case.input)
    # Kuma's tests read only the spec; its validators never look at the name or the mesh.
    doc.setdefault("type", case.kind)
    doc.setdefault("name", "default")
    if registry.get(case.kind).mesh_scoped:
        doc.setdefault("mesh", "default")
    try:
        resource = codec.decode(doc, kind=case.kind)
    except ValidationError as err:
        return [(v.field, v.message) for v in err.violations]
    return [(v.field, v.message) for v in codec.validate(resource)]


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_meshgate_names_what_kuma_names(case: Case) -> None:
    expected = sorted(case.violations + case.meshgate_adds)
    assert sorted(meshgate_answer(case)) == expected, case.source


def test_the_corpus_covers_every_kind_and_explains_itself() -> None:
    policies = {
        "Timeout",
        "Retry",
        "CircuitBreaker",
        "HealthCheck",
        "RateLimit",
        "FaultInjection",
        "TrafficPermission",
        "TrafficLog",
        "TrafficTrace",
        "ProxyTemplate",
        "ExternalService",
        "TrafficRoute",
        "VirtualOutbound",
    }
    assert {case.kind for case in CASES} == {"Mesh", "MeshGateway", "MeshGatewayRoute", "Dataplane"} | policies
    for kind in policies:
        # At least one valid case and three invalid ones per policy kind.
        assert any(not c.violations for c in CASES if c.kind == kind), kind
        assert sum(1 for c in CASES if c.kind == kind and c.violations) >= 3, kind
    for case in CASES:
        assert case.source.startswith("pkg/"), case.case
        assert case.case
        assert case.input.strip(), case.case
        assert all(why.strip() for why in case.why_added), case.case
        # An addition is meshgate's own; what Kuma says already belongs in `violations`.
        assert not set(case.meshgate_adds) & set(case.violations), case.case
        assert case.input_edit is None or case.input_edit.strip()
    assert all(item["why"].strip() for item in SKIPPED)
