"""The resource model: kinds, their descriptors and rules, and the Universal (YAML/JSON) codec.

Error tree::

    MeshgateResourceError
    ├── ValidationError        one or more Violations (field path + message); the resource is rejected
    └── UnknownKindError       a kind name that no descriptor declares
"""

from __future__ import annotations

from meshgate.resources.codec import decode, encode, load, load_documents, spec_bytes, validate
from meshgate.resources.descriptor import KindDescriptor, Scope, SyncDirection
from meshgate.resources.errors import (
    MeshgateResourceError,
    Path,
    UnknownKindError,
    ValidationError,
    Violation,
    Violations,
)
from meshgate.resources.model import (
    LABEL_DISPLAY_NAME,
    LABEL_ORIGIN,
    LABEL_ZONE,
    Meta,
    Origin,
    Resource,
    ResourceKey,
    utcnow,
)
from meshgate.resources.registry import KINDS, get, kinds_sent_to_global, kinds_sent_to_zone, lookup
from meshgate.resources.selectors import select_gateway, select_gateway_for, selector_matches
from meshgate.resources.tags import TAG_EXTERNAL_SERVICE, TAG_PROTOCOL, TAG_SERVICE, TAG_ZONE

__all__ = [
    "KINDS",
    "LABEL_DISPLAY_NAME",
    "LABEL_ORIGIN",
    "LABEL_ZONE",
    "TAG_EXTERNAL_SERVICE",
    "TAG_PROTOCOL",
    "TAG_SERVICE",
    "TAG_ZONE",
    "KindDescriptor",
    "MeshgateResourceError",
    "Meta",
    "Origin",
    "Path",
    "Resource",
    "ResourceKey",
    "Scope",
    "SyncDirection",
    "UnknownKindError",
    "ValidationError",
    "Violation",
    "Violations",
    "decode",
    "encode",
    "get",
    "kinds_sent_to_global",
    "kinds_sent_to_zone",
    "load",
    "load_documents",
    "lookup",
    "select_gateway",
    "select_gateway_for",
    "selector_matches",
    "spec_bytes",
    "utcnow",
    "validate",
]
