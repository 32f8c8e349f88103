"""Rules for a resource's name, mesh and labels: Kuma 2.7's `ValidateMeta` and its REST label checks.

Names are lowercase RFC 1123 subdomains. A mesh reference keeps Kuma's older, looser alphabet (it may name a
Mesh created before 2.5 with `_`). Labels follow Kubernetes' label syntax, because Kuma stores them as
Kubernetes labels, and `kuma.io/origin` must be `global` or `zone`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from meshgate.resources.errors import Path, Violations, go_quote
from meshgate.resources.model import LABEL_DISPLAY_NAME, LABEL_ORIGIN, Meta, Origin

__all__ = ["MAX_LABELS", "check_labels", "check_meta"]

# Kuma itself sets at most a handful (origin, zone, display name, env, namespace); Kubernetes sets no count, but
# every label is copied into every list answer, KDS message and Envoy metadata, so a bound keeps those small:
# 64 labels of at most 317-byte keys and 63-byte values stay under 25 KiB.
MAX_LABELS = 64

_IDENTIFIER = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_IDENTIFIER_MESSAGE = (
    "invalid characters. A lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
    "characters, '-' or '.', and must start and end with an alphanumeric character"
)
_LEGACY_IDENTIFIER = re.compile(r"[0-9a-z\-_.]*")
_LEGACY_IDENTIFIER_MESSAGE = (
    "invalid characters. Valid characters are numbers, lowercase latin letters and '-', '_', '.' symbols."
)

_LABEL_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_LABEL_PREFIX = _IDENTIFIER
_LABEL_KEY_MESSAGE = (
    "label key must be a qualified name: an optional DNS subdomain prefix and '/', then at most 63 "
    "alphanumeric characters, '-', '_' or '.', starting and ending with an alphanumeric character"
)
_LABEL_VALUE_MESSAGE = (
    "label value must be at most 63 alphanumeric characters, '-', '_' or '.', starting and ending with "
    "an alphanumeric character"
)


def _check_identifier(out: Violations, path: Path, value: str, pattern: re.Pattern[str], message: str) -> None:
    if value == "":
        out.add(path, "cannot be empty")
    elif len(value) > 253:
        out.add(path, "value length must less or equal 253")
    elif not pattern.fullmatch(value):
        out.add(path, message)


def _is_label_key(key: str) -> bool:
    prefix, slash, name = key.rpartition("/")
    if slash and (prefix == "" or len(prefix) > 253 or not _LABEL_PREFIX.fullmatch(prefix)):
        return False
    return len(name) <= 63 and _LABEL_NAME.fullmatch(name) is not None


def check_labels(out: Violations, path: Path, labels: Mapping[str, str]) -> None:
    if len(labels) > MAX_LABELS:
        # Refused whole: the keys of a body that has thousands are not worth a violation each.
        out.add(path, f"at most {MAX_LABELS} labels are allowed, got {len(labels)}")
        return
    for key in sorted(labels):
        value = labels[key]
        if not _is_label_key(key):
            out.add(path.key(key), _LABEL_KEY_MESSAGE)
        # The display name is a resource name that KDS copies into a label; it follows the name rules (up to
        # 253 characters), so a long name synced from a zone is not refused for its label.
        if key != LABEL_DISPLAY_NAME and value and (len(value) > 63 or not _LABEL_NAME.fullmatch(value)):
            out.add(path.key(key), _LABEL_VALUE_MESSAGE)
        if key == LABEL_DISPLAY_NAME and len(value) > 253:
            out.add(path.key(key), "value length must less or equal 253")
        if key == LABEL_ORIGIN and value not in {o.value for o in Origin}:
            out.add(path.key(key), f"unknown resource origin {go_quote(value)}")


def check_meta(out: Violations, meta: Meta, *, mesh_scoped: bool) -> None:
    """The rules every kind shares. Paths are the Universal form's top-level keys: name, mesh, labels."""
    _check_identifier(out, Path("name"), meta.name, _IDENTIFIER, _IDENTIFIER_MESSAGE)
    if mesh_scoped:
        _check_identifier(out, Path("mesh"), meta.mesh, _LEGACY_IDENTIFIER, _LEGACY_IDENTIFIER_MESSAGE)
    elif meta.mesh:
        out.add(Path("mesh"), "must not be set")
    check_labels(out, Path("labels"), meta.labels)
