"""`applications`: the `aggregate` entries meshgate-dp reads from the header the zone's route sets."""

from __future__ import annotations

import json

import pytest

from meshgate.dp.metrics import Application, applications


def test_each_entry_becomes_a_url() -> None:
    header = json.dumps(
        [
            {"name": "app", "address": "10.0.0.1", "port": 9000, "path": "/metrics/app"},
            {"name": "v6", "address": "fd00::1", "port": 9001, "path": "m"},
            {"name": "root", "address": "10.0.0.1", "port": 9002, "path": ""},
        ]
    )
    assert applications(header) == [
        Application("app", "http://10.0.0.1:9000/metrics/app"),
        Application("v6", "http://[fd00::1]:9001/m"),
        Application("root", "http://10.0.0.1:9002/"),
    ]


@pytest.mark.parametrize(
    "header",
    [
        "",
        "not json",
        '{"name": "app"}',
        '[{"name": "app"}]',
        '[{"name": "app", "address": "10.0.0.1", "port": 0, "path": "/"}]',
        '[{"name": "app", "address": "10.0.0.1", "port": "x", "path": "/"}]',
        '[{"name": 1, "address": "10.0.0.1", "port": 9000, "path": "/"}]',
        "[1, null]",
    ],
)
def test_malformed_entries_are_skipped(header: str) -> None:
    assert applications(header) == []
