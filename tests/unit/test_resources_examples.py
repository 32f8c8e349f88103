"""The examples in deploy/examples are valid and survive a round trip through the codec."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshgate.resources import codec

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "deploy" / "examples").rglob("*.yaml"))


def test_the_examples_exist() -> None:
    assert {p.name for p in EXAMPLES} >= {"mesh.yaml", "meshgateway.yaml", "meshgatewayroute.yaml", "echo.yaml"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_is_valid(path: Path) -> None:
    documents = codec.load_documents(path.read_text())
    assert documents
    for doc in documents:
        resource = codec.load(doc)
        assert codec.encode(resource) == doc
