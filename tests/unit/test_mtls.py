"""meshgate.mtls: the builtin mesh CA and the leaves it signs, checked with `cryptography` itself."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from meshgate.api.mesh.v1alpha1.mesh_pb2 import Mesh
from meshgate.mtls import (
    CA_VALIDITY,
    LEAF_VALIDITY,
    LeafCache,
    MtlsError,
    builtin_ca_secret_names,
    enabled_builtin_backend,
    generate_ca,
    issue_leaf,
    load_ca,
)
from meshgate.resources import codec

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _cert(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def _uris(cert: x509.Certificate) -> list[str]:
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.UniformResourceIdentifier
    )


def _dns(cert: x509.Certificate) -> list[str]:
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)


def test_a_ca_is_a_self_signed_p256_ca_for_the_mesh_valid_for_ten_years() -> None:
    ca = generate_ca("payments", now=NOW)
    cert = _cert(ca.cert_pem)
    cert.verify_directly_issued_by(cert)
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert _uris(cert) == ["spiffe://payments"]
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == CA_VALIDITY
    assert cert.not_valid_before_utc <= NOW < cert.not_valid_after_utc
    assert load_ca(ca.cert_pem, ca.key_pem).fingerprint == ca.fingerprint


def test_a_leaf_verifies_against_its_ca_and_names_the_service() -> None:
    ca = generate_ca("a", now=NOW)
    leaf = issue_leaf(ca, "a", "web_a_svc_80", ["internal.edge.a.mesh"], now=NOW)
    cert = _cert(leaf.cert_pem)
    cert.verify_directly_issued_by(_cert(ca.cert_pem))
    assert _uris(cert) == ["spiffe://a/web_a_svc_80"]
    assert _dns(cert) == ["internal.edge.a.mesh"]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).critical, "empty subject"
    assert cert.not_valid_before_utc <= NOW < cert.not_valid_after_utc
    assert cert.not_valid_after_utc - NOW == LEAF_VALIDITY
    # The key in the leaf's PEM is the one its certificate carries.
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(leaf.key_pem, password=None)
    assert key.public_key() == cert.public_key()


def test_a_leaf_does_not_verify_against_another_meshes_ca() -> None:
    leaf = issue_leaf(generate_ca("a"), "a", "web")
    with pytest.raises(ValueError, match=r"[Ii]ssuer"):
        _cert(leaf.cert_pem).verify_directly_issued_by(_cert(generate_ca("b").cert_pem))


def test_the_cache_returns_the_same_pem_until_half_life_then_a_new_one() -> None:
    ca = generate_ca("a", now=NOW)
    cache = LeafCache()
    first = cache.leaf(ca, "a", "web", ["x.mesh"], now=NOW)
    again = cache.leaf(ca, "a", "web", ["x.mesh"], now=NOW + timedelta(hours=11))
    assert again.cert_pem == first.cert_pem
    assert again.key_pem == first.key_pem
    assert len(cache) == 1
    # Other SANs, service or CA: another leaf.
    assert cache.leaf(ca, "a", "web", ["y.mesh"], now=NOW).cert_pem != first.cert_pem
    assert cache.leaf(ca, "a", "api", ["x.mesh"], now=NOW).cert_pem != first.cert_pem
    other_ca = generate_ca("a", now=NOW)
    assert cache.leaf(other_ca, "a", "web", ["x.mesh"], now=NOW).cert_pem != first.cert_pem
    # Past half its life, the leaf is re-issued (rotation), and then cached again.
    rotated = cache.leaf(ca, "a", "web", ["x.mesh"], now=NOW + timedelta(hours=13))
    assert rotated.cert_pem != first.cert_pem
    assert cache.leaf(ca, "a", "web", ["x.mesh"], now=NOW + timedelta(hours=14)).cert_pem == rotated.cert_pem


def test_the_cache_is_bounded() -> None:
    ca = generate_ca("a")
    cache = LeafCache(size=2)
    for service in ("s1", "s2", "s3"):
        cache.leaf(ca, "a", service)
    assert len(cache) == 2


def test_a_ca_for_an_existing_key_keeps_the_key() -> None:
    ca = generate_ca("a")
    again = generate_ca("a", key_pem=ca.key_pem)
    assert again.key_pem == ca.key_pem
    assert _cert(again.cert_pem).public_key() == _cert(ca.cert_pem).public_key()


@pytest.mark.parametrize(
    ("cert", "key", "message"),
    [
        (b"nope", None, "readable PEM certificate"),
        (None, b"nope", "readable"),
        ("other", None, "does not belong"),
        ("leaf", "leaf-key", "not a CA"),
    ],
)
def test_load_ca_rejects_what_is_not_a_usable_ca(cert: object, key: object, message: str) -> None:
    ca, other = generate_ca("a"), generate_ca("b")
    leaf = issue_leaf(ca, "a", "web")
    certs = {None: ca.cert_pem, "other": other.cert_pem, "leaf": leaf.cert_pem}
    keys = {None: ca.key_pem, "leaf-key": leaf.key_pem}
    cert_pem = cert if isinstance(cert, bytes) else certs[cert]  # type: ignore[index]
    key_pem = key if isinstance(key, bytes) else keys[key]  # type: ignore[index]
    with pytest.raises(MtlsError, match=message):
        load_ca(cert_pem, key_pem)


def test_secret_names_and_the_enabled_builtin_backend() -> None:
    assert builtin_ca_secret_names("a", "ca-1") == ("a.ca-builtin-cert-ca-1", "a.ca-builtin-key-ca-1")
    builtin = codec.load(
        {
            "type": "Mesh",
            "name": "a",
            "mtls": {"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin"}]},
        }
    )
    provided = Mesh()
    provided.mtls.enabledBackend = "p"
    provided.mtls.backends.add(name="p", type="provided")
    disabled = codec.load({"type": "Mesh", "name": "b", "mtls": {"backends": [{"name": "ca-1", "type": "builtin"}]}})
    assert enabled_builtin_backend(builtin.spec) == "ca-1"
    assert enabled_builtin_backend(provided) is None
    assert enabled_builtin_backend(disabled.spec) is None
    assert enabled_builtin_backend(Mesh()) is None
