"""meshgatectl's authentication against a real API (in a background thread) that trusts no loopback caller:
`--auth-token`, MESHGATE_AUTH_TOKEN, config file contexts, `generate user-token`, `revoke token`,
`rotate signing-key`, and refusals shown as one line."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from anyio.from_thread import BlockingPortal
from structlog.testing import capture_logs
from typer.testing import CliRunner, Result

from meshgate.auth.jwt import unverified_payload
from meshgate.cli.meshgatectl import app
from meshgate.rest.app import create_api_app
from meshgate.rest.authn import ApiAuth
from meshgate.rest.testing import serving_in_thread
from meshgate.store.memory import MemoryStore
from meshgate.tokens import UserTokens, ZoneTokens, token_admin_routes, user_token_route

runner = CliRunner()


@dataclass
class Api:
    url: str
    admin: str
    portal: BlockingPortal
    users: UserTokens


@pytest.fixture
def api() -> Iterator[Api]:
    store = MemoryStore()
    users = UserTokens(store)
    auth = ApiAuth(users, localhost_is_admin=False)
    routes = [user_token_route(users), *token_admin_routes(zone=ZoneTokens(store), user=users)]
    app = create_api_app(store, role="global", auth=auth, extra_routes=routes)
    with capture_logs(), serving_in_thread(app) as (url, portal):
        admin = portal.call(users.issue, "root", ["mesh-system:admin"], 3600)
        yield Api(url, admin, portal, users)


def ctl(*args: str, config: Path, env: dict[str, str] | None = None) -> Result:
    """meshgatectl with its config file in the test's directory (never the user's home)."""
    return runner.invoke(app, ["--config-file", str(config), *args], env={"MESHGATE_AUTH_TOKEN": None, **(env or {})})


MESH = "type: Mesh\nname: team-a\n"


def test_without_a_token_the_refusal_is_one_line(api: Api, tmp_path: Path) -> None:
    """401 from the API: one line naming what is missing, no traceback, exit 1."""
    result = ctl("--api", api.url, "get", "meshes", config=tmp_path / "config")
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert "Unauthenticated" in lines[0]
    assert "needs a user token" in lines[0]


def test_auth_token_flag_and_env(api: Api, tmp_path: Path) -> None:
    """--auth-token and MESHGATE_AUTH_TOKEN both authenticate; a read-only token is refused a write in one line."""
    config = tmp_path / "config"
    (tmp_path / "mesh.yaml").write_text(MESH)
    result = ctl("--api", api.url, "--auth-token", api.admin, "apply", "-f", str(tmp_path / "mesh.yaml"), config=config)
    assert result.exit_code == 0, result.output
    result = ctl("--api", api.url, "get", "meshes", config=config, env={"MESHGATE_AUTH_TOKEN": api.admin})
    assert result.exit_code == 0, result.output
    assert "team-a" in result.output
    reader = api.portal.call(api.users.issue, "alice", ["users"], 3600)
    result = ctl("--api", api.url, "--auth-token", reader, "delete", "mesh", "team-a", config=config)
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1
    assert 'Access Denied (the user "alice" in groups [users, mesh-system:authenticated] may not' in result.output


def test_config_file_context_carries_the_token_and_is_owner_only(api: Api, tmp_path: Path) -> None:
    """`config control-planes add --auth-type tokens --auth-conf token=T` makes a current context used by every
    command; the file is 0600 in kumactl's layout; its token is not sent to a different --api."""
    config = tmp_path / "dir" / "config"
    result = ctl(
        "config",
        "control-planes",
        "add",
        "--name",
        "test-cp",
        "--address",
        api.url,
        "--auth-type",
        "tokens",
        "--auth-conf",
        f"token={api.admin}",
        config=config,
    )
    assert result.exit_code == 0, result.output
    assert 'switched active Control Plane to "test-cp"' in result.output
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    doc = yaml.safe_load(config.read_text())
    assert doc["currentContext"] == "test-cp"
    assert doc["controlPlanes"][0]["coordinates"]["apiServer"] == {
        "url": api.url,
        "authType": "tokens",
        "authConf": {"token": api.admin},
    }
    (tmp_path / "mesh.yaml").write_text(MESH)
    assert ctl("apply", "-f", str(tmp_path / "mesh.yaml"), config=config).exit_code == 0
    assert "team-a" in ctl("get", "meshes", config=config).output
    listed = ctl("config", "control-planes", "list", config=config).output
    assert "test-cp" in listed
    assert api.admin not in listed
    # Another --api: the context's token stays home, so the API sees an anonymous caller.
    other = api.url.replace("127.0.0.1", "localhost")
    assert ctl("--api", other, "get", "meshes", config=config).exit_code == 1
    assert ctl("config", "control-planes", "remove", "--name", "test-cp", config=config).exit_code == 0
    assert yaml.safe_load(config.read_text())["controlPlanes"] == []


def test_generate_user_token_revoke_it_and_rotate_keys(api: Api, tmp_path: Path) -> None:
    """kumactl's flags; the printed token works, `revoke token` refuses it at once, `rotate signing-key` rotates."""
    config = tmp_path / "config"
    admin = ("--api", api.url, "--auth-token", api.admin)
    result = ctl(
        *admin,
        "generate",
        "user-token",
        "--name",
        "bob",
        "--group",
        "a",
        "--group",
        "b",
        "--valid-for",
        "24h",
        config=config,
    )
    assert result.exit_code == 0, result.output
    token = result.output.strip()
    claims = unverified_payload(token)
    assert (claims["Name"], claims["Groups"]) == ("bob", ["a", "b"])
    assert ctl("--api", api.url, "--auth-token", token, "get", "meshes", config=config).exit_code == 0
    result = ctl(*admin, "revoke", "token", "--type", "user", "--id", claims["jti"], config=config)
    assert result.exit_code == 0, result.output
    refused = ctl("--api", api.url, "--auth-token", token, "get", "meshes", config=config)
    assert refused.exit_code == 1
    assert "revoked" in refused.output
    result = ctl(*admin, "rotate", "signing-key", "--type", "user", "--grace-period", "1h", config=config)
    assert result.exit_code == 0, result.output
    assert "signed with key 2" in result.output
    bad = ctl(*admin, "generate", "user-token", "--name", "bob", "--valid-for", "never", config=config)
    assert bad.exit_code == 1
    assert "validFor" in bad.output
