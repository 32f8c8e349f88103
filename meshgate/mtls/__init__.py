"""Mesh mTLS certificates: a builtin CA per mesh and the leaf certificates proxies present. Pure: no I/O.

Kuma 2.7's builtin CA (`pkg/plugins/ca/builtin`) keeps one self-signed CA per mesh and backend in two mesh
Secrets, `<mesh>.ca-builtin-cert-<backend>` and `<mesh>.ca-builtin-key-<backend>` (PEM). Every data plane
certificate it signs carries the SPIFFE identity `spiffe://<mesh>/<service>` as a URI SAN. meshgate keeps the
names and the identities; the keys are EC P-256 (Kuma's builtin CA is RSA 2048 by default).

- `generate_ca(mesh)` makes a CA (10 years); `load_ca(cert, key)` reads one back from its Secrets.
- `issue_leaf(ca, mesh, service, dns_sans)` signs a short-lived leaf (24 h);
  `LeafCache.leaf(...)` returns the same leaf for equal inputs until half its life is gone, so regenerating a
  proxy's config is neither a signature per call nor a new config version per call.
- `builtin_ca_secret_names` and `enabled_builtin_backend` say which Secrets hold a Mesh's CA.
- Kuma's `provided` backend (`_provided.py`): `provided_ca_data` resolves the backend's cert and key data
  sources from the mesh's Secrets, `load_provided_ca` checks the pair with Kuma's messages
  (`validate_provided_ca`) and returns a CA that signs leaves as a builtin one does (EC or RSA key).

Error tree::

    MtlsError (ValueError)   PEM that is not a usable CA: unreadable, not a CA, or a key of another certificate
"""

from __future__ import annotations

from meshgate.mtls._ca import (
    CA_VALIDITY,
    CertificateAuthority,
    MtlsError,
    builtin_ca_secret_names,
    enabled_backend,
    enabled_builtin_backend,
    generate_ca,
    load_ca,
)
from meshgate.mtls._leaf import LEAF_VALIDITY, Leaf, LeafCache, issue_leaf, spiffe_id
from meshgate.mtls._provided import PROVIDED, load_provided_ca, provided_ca_data, validate_provided_ca

__all__ = [
    "CA_VALIDITY",
    "LEAF_VALIDITY",
    "PROVIDED",
    "CertificateAuthority",
    "Leaf",
    "LeafCache",
    "MtlsError",
    "builtin_ca_secret_names",
    "enabled_backend",
    "enabled_builtin_backend",
    "generate_ca",
    "issue_leaf",
    "load_ca",
    "load_provided_ca",
    "provided_ca_data",
    "spiffe_id",
    "validate_provided_ca",
]
