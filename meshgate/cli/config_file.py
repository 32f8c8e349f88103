"""meshgatectl's config file: control planes and the current one, in kumactl's layout (`~/.kumactl/config`).

    currentContext: global
    contexts:
    - name: global
      controlPlane: global
    controlPlanes:
    - name: global
      coordinates:
        apiServer:
          url: https://cp.example.com:5681
          authType: tokens
          authConf:
            token: eyJhbGciOi...

Default path `~/.meshgatectl/config` (`--config-file` overrides). It holds tokens, so it is written with
mode 0600 (a new file, renamed over the old one) and its directory 0700. Parsing and saving are pure
apart from the two file functions at the end.

Error tree::

    ConfigFileError   the file cannot be read, parsed or written; the message names the file and the field
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

import yaml

__all__ = [
    "AUTH_TYPE_TOKENS",
    "DEFAULT_CONFIG_FILE",
    "ConfigFile",
    "ConfigFileError",
    "ControlPlane",
    "load",
    "save",
]

DEFAULT_CONFIG_FILE: Final = Path("~/.meshgatectl/config")
AUTH_TYPE_TOKENS: Final = "tokens"


class ConfigFileError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class ControlPlane:
    name: str
    url: str
    auth_type: str = ""
    auth_conf: dict[str, str] = field(default_factory=dict)

    @property
    def token(self) -> str:
        return self.auth_conf.get("token", "") if self.auth_type == AUTH_TYPE_TOKENS else ""

    def as_yaml(self) -> dict[str, Any]:
        server: dict[str, Any] = {"url": self.url}
        if self.auth_type:
            server["authType"] = self.auth_type
            server["authConf"] = dict(self.auth_conf)
        return {"name": self.name, "coordinates": {"apiServer": server}}


@dataclass(frozen=True, slots=True)
class ConfigFile:
    control_planes: tuple[ControlPlane, ...] = ()
    current_context: str = ""

    def current(self) -> ControlPlane | None:
        return self.find(self.current_context)

    def find(self, name: str) -> ControlPlane | None:
        return next((cp for cp in self.control_planes if cp.name == name), None)

    def with_control_plane(self, cp: ControlPlane, *, overwrite: bool) -> ConfigFile:
        """This config with `cp` added (or replacing its namesake when `overwrite`) and made current."""
        if self.find(cp.name) is not None and not overwrite:
            raise ConfigFileError(
                f"Control Plane with name {cp.name!r} already exists. Use --overwrite to replace an existing one."
            )
        others = tuple(c for c in self.control_planes if c.name != cp.name)
        return ConfigFile((*others, cp), cp.name)

    def without(self, name: str) -> ConfigFile:
        if self.find(name) is None:
            raise ConfigFileError(f"there is no Control Plane with name {name!r}")
        current = "" if self.current_context == name else self.current_context
        return ConfigFile(tuple(c for c in self.control_planes if c.name != name), current)

    def switched(self, name: str) -> ConfigFile:
        if self.find(name) is None:
            raise ConfigFileError(f"there is no Control Plane with name {name!r}")
        return replace(self, current_context=name)

    def as_yaml(self) -> dict[str, Any]:
        return {
            "currentContext": self.current_context,
            "contexts": [{"name": c.name, "controlPlane": c.name} for c in self.control_planes],
            "controlPlanes": [c.as_yaml() for c in self.control_planes],
        }


def _str(value: Any, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ConfigFileError(f"{where}: must be a string")
    return value


def parse(doc: Any, source: str = "config") -> ConfigFile:
    """A ConfigFile from the decoded YAML; ConfigFileError naming the field otherwise."""
    if doc is None:
        return ConfigFile()
    if not isinstance(doc, dict):
        raise ConfigFileError(f"{source}: must be a mapping")
    planes: list[ControlPlane] = []
    for i, item in enumerate(doc.get("controlPlanes") or []):
        where = f"{source}: controlPlanes[{i}]"
        if not isinstance(item, dict):
            raise ConfigFileError(f"{where}: must be a mapping")
        server = ((item.get("coordinates") or {}).get("apiServer")) or {}
        if not isinstance(server, dict):
            raise ConfigFileError(f"{where}.coordinates.apiServer: must be a mapping")
        conf = server.get("authConf") or {}
        if not isinstance(conf, dict):
            raise ConfigFileError(f"{where}.coordinates.apiServer.authConf: must be a mapping")
        planes.append(
            ControlPlane(
                _str(item.get("name"), f"{where}.name"),
                _str(server.get("url"), f"{where}.coordinates.apiServer.url"),
                _str(server.get("authType"), f"{where}.coordinates.apiServer.authType"),
                {str(k): _str(v, f"{where}.coordinates.apiServer.authConf.{k}") for k, v in conf.items()},
            )
        )
    # kumactl's contexts point at control planes by name; ours are one-to-one, so the current context's
    # control plane is the one named by the context.
    contexts = {
        str(c.get("name")): str(c.get("controlPlane")) for c in doc.get("contexts") or [] if isinstance(c, dict)
    }
    current = _str(doc.get("currentContext"), f"{source}: currentContext")
    return ConfigFile(tuple(planes), contexts.get(current, current))


def load(path: Path) -> ConfigFile:
    """The config at `path` (an empty one when the file does not exist)."""
    path = path.expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ConfigFile()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigFileError(f"could not read the config file {path}: {exc}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigFileError(f"could not parse the config file {path}: {exc}") from None
    return parse(doc, str(path))


def save(path: Path, config: ConfigFile) -> None:
    """Writes `config` to `path`, owner-only from the first byte."""
    path = path.expanduser()
    text = yaml.safe_dump(config.as_yaml(), sort_keys=False)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, text.encode("utf-8"))
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        raise ConfigFileError(f"could not write the config file {path}: {exc}") from None
