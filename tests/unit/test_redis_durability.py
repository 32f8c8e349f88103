"""The verdict on a Redis' persistence settings (`meshgate.store.redis_durability.assess`)."""

from __future__ import annotations

import pytest

# meshgate.store and meshgate.resources import each other: load resources first, as the processes do.
import meshgate.resources  # noqa: F401
from meshgate.store.redis_durability import _redacted, assess


@pytest.mark.parametrize(
    ("config", "persists"),
    [
        ({"appendonly": "yes", "save": ""}, True),
        ({"appendonly": "yes", "save": "3600 1 300 100"}, True),
        ({"appendonly": "no", "save": "3600 1"}, True),
        ({"appendonly": "no", "save": ""}, False),
        ({"appendonly": "no", "save": "   "}, False),
        ({}, False),
        ({"appendonly": "YES"}, True),
    ],
)
def test_aof_or_any_save_rule_persists(config: dict[str, str], persists: bool) -> None:
    assert assess(config).persists is persists


def test_the_verdict_says_how_or_why_not() -> None:
    assert "appendonly no" in assess({"appendonly": "no", "save": ""}).how
    assert "save '3600 1'" in assess({"appendonly": "no", "save": "3600 1"}).how


def test_a_password_in_the_url_is_never_repeated() -> None:
    assert _redacted("redis://:s3cret@redis:6379/0") == "redis://:***@redis:6379/0"
    assert _redacted("rediss://user:s3cret@redis:6379/0?prefix=p") == "rediss://user:***@redis:6379/0?prefix=p"
    assert _redacted("redis://redis:6379/0") == "redis://redis:6379/0"
