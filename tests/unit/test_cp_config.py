"""`GET /config`'s views of the global's and a zone's flags: Kuma's top-level keys, every field a decision
(shown, or named as not shown), and no secret in the answer whatever the flags hold."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from global_cp.app import GlobalConfig
from global_cp.config_view import NOT_SHOWN as GLOBAL_NOT_SHOWN
from global_cp.config_view import global_config_view
from meshgate.auth.jwt import generate_key_pem
from meshgate.dns.upstream import Upstream
from meshgate.rest.cp_config import SANITIZED, duration, redact_url, scrub, store_view
from zone_cp.app import ZoneConfig
from zone_cp.config_view import NOT_SHOWN as ZONE_NOT_SHOWN
from zone_cp.config_view import zone_config_view

JWT = "eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ.eyJOYW1lIjoiem9uZS0xIn0.c2lnbmF0dXJl"


def _distinct(cls: type[Any], base: dict[str, Any]) -> Any:
    """An instance of `cls` whose every str, int, float and Path field holds a value no other field holds
    (booleans and enums cannot be told apart by value and keep their defaults)."""
    values: dict[str, Any] = dict(base)
    for n, f in enumerate(dataclasses.fields(cls), start=1):
        if f.name in values:
            continue
        annotation = str(f.type)
        if annotation == "str":
            values[f.name] = f"value-of-{f.name.replace('_', '-')}"
        elif annotation == "int":
            values[f.name] = 40000 + n
        elif annotation == "float":
            values[f.name] = float(1000 + n)
        elif "Path" in annotation:
            values[f.name] = Path(f"/etc/meshgate/{f.name}")
        elif annotation.startswith("tuple[str"):
            values[f.name] = (f"name-of-{f.name.replace('_', '-')}.example",)
    return cls(**values)


def _shown(view: dict[str, Any], value: Any) -> bool:
    text = json.dumps(view)
    if isinstance(value, float):
        return duration(value) in text or json.dumps(value) in text
    if isinstance(value, tuple):
        return all(v in text for v in value)
    return json.dumps(str(value) if isinstance(value, Path) else value) in text or str(value) in text


@pytest.mark.parametrize(
    ("cls", "view", "not_shown", "base"),
    [
        (GlobalConfig, global_config_view, GLOBAL_NOT_SHOWN, {"store": "redis://10.0.0.9:6379/0"}),
        (
            ZoneConfig,
            zone_config_view,
            ZONE_NOT_SHOWN,
            {
                "zone": "zone-7",
                "global_addresses": ("grpcs://global.example:5685",),
                "store": "redis://10.0.0.9:6379/0",
                "cp_token": JWT,
                "vip_cidr": "241.0.0.0/8",
                "dns_upstream": Upstream("192.0.2.53", 5353),
            },
        ),
    ],
)
def test_every_flag_is_shown_or_withheld_on_purpose(
    cls: type[Any], view: Any, not_shown: dict[str, str], base: dict[str, Any]
) -> None:
    """A new field in GlobalConfig or ZoneConfig fails here until its view shows it or names why it does not."""
    cfg = _distinct(cls, base)
    doc = view(cfg)
    secrets = {"cp_token"}
    for f in dataclasses.fields(cls):
        value = getattr(cfg, f.name)
        if f.name in not_shown or f.name in secrets or isinstance(value, bool) or value is None:
            continue
        if isinstance(value, Upstream):
            assert "192.0.2.53:5353" in json.dumps(doc)
            continue
        if hasattr(value, "value"):  # an Enum
            value = value.value
        assert _shown(doc, value), f"{cls.__name__}.{f.name} = {value!r} is neither shown nor in NOT_SHOWN"


def test_kumas_top_level_keys() -> None:
    g = global_config_view(GlobalConfig())
    assert list(g) == ["mode", "environment", "general", "store", "apiServer", "diagnostics", "multizone"]
    assert (g["mode"], g["environment"]) == ("global", "universal")
    assert g["multizone"]["global"]["kds"]["zoneHealthCheck"] == {"pollInterval": "10s", "missed": 3.0}
    assert g["store"] == {"type": "sqlite", "sqlite": {"path": "data/global/meshgate.db"}}
    z = zone_config_view(ZoneConfig(zone="zone-1", global_addresses=("grpcs://g:5685",), environment="kubernetes"))
    assert list(z) == [
        "mode",
        "environment",
        "general",
        "store",
        "apiServer",
        "diagnostics",
        "multizone",
        "dpServer",
        "xdsServer",
        "metrics",
        "dnsServer",
        "runtime",
    ]
    assert (z["mode"], z["environment"]) == ("zone", "kubernetes")
    assert z["multizone"]["zone"]["globalAddress"] == "grpcs://g:5685"
    assert z["multizone"]["zone"]["kds"]["auth"] == {"cpToken": "", "cpTokenPath": ""}  # none set: shown empty
    assert z["dnsServer"] == {"domain": "mesh", "CIDR": "240.0.0.0/4", "port": 5653, "upstream": ""}
    assert z["xdsServer"] == {"dataplaneStatusFlushInterval": "10s"}
    assert z["metrics"] == {"dataplane": {"subscriptionLimit": 2}}


def test_no_secret_reaches_the_view() -> None:
    """The inline zone token is `*****`; passwords in store and global URLs are `*****`; nothing else of them."""
    z = zone_config_view(
        ZoneConfig(
            zone="zone-1",
            global_addresses=("grpcs://admin:kds-pass@g:5685",),
            store="redis://user:redis-pass@redis:6379/0?password=query-pass&prefix=mg:",
            cp_token=JWT,
            cp_token_path=Path("/var/run/secrets/zone-token"),
        )
    )
    text = json.dumps(z)
    for secret in (JWT, *JWT.split("."), "kds-pass", "redis-pass", "query-pass"):
        assert secret not in text
    assert z["multizone"]["zone"]["kds"]["auth"] == {"cpToken": SANITIZED, "cpTokenPath": "/var/run/secrets/zone-token"}
    assert z["multizone"]["zone"]["globalAddress"] == "grpcs://admin:*****@g:5685"
    assert z["store"]["redis"]["url"] == "redis://user:*****@redis:6379/0?password=*****&prefix=mg%3A"
    g = global_config_view(GlobalConfig(store="rediss://:pw-only@redis:6380/1", leader_lease=7.5))
    assert g["store"] == {
        "type": "redis",
        "redis": {"url": "rediss://:*****@redis:6380/1", "allowVolatile": False, "leaderLease": "7.5s"},
    }


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://u@h/0", "redis://u@h/0"),
        ("redis://:p@h/0", "redis://:*****@h/0"),
        ("redis://h/0?prefix=a&auth_token=t&api_key=k", "redis://h/0?prefix=a&auth_token=*****&api_key=*****"),
        ("redis://[::1:bad/0", SANITIZED),  # not parsable: nothing of it
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_scrub_replaces_pem_blocks_and_jwts_anywhere() -> None:
    key = generate_key_pem().decode()
    doc = {"a": [f"prefix {JWT}", {"b": key}], "c": "eyJ alone is fine", "d": 3, "e": ("ok",)}
    assert scrub(doc) == {"a": [SANITIZED, {"b": SANITIZED}], "c": "eyJ alone is fine", "d": 3, "e": ["ok"]}


def test_store_forms() -> None:
    assert store_view("memory", Path("d"), allow_volatile=False) == {"type": "memory"}
    assert store_view("sqlite:/srv/db.sqlite", Path("d"), allow_volatile=False) == {
        "type": "sqlite",
        "sqlite": {"path": "/srv/db.sqlite"},
    }
