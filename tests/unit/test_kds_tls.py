"""KDS over TLS without a network: global addresses, and the flags' files checked at startup."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from cryptography import x509

from meshgate.observability.process import StartupError
from meshgate.transport.kds_client import GlobalAddress, parse_address, parse_global_address
from meshgate.transport.tls import ClientTls, certificate_names, explain_tls_failure, server_credentials
from tests.support.tls import make_ca, make_server_cert


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("grpc://127.0.0.1:5685", GlobalAddress("127.0.0.1:5685", "127.0.0.1", 5685, tls=False)),
        ("grpcs://kds.example.com:5685", GlobalAddress("kds.example.com:5685", "kds.example.com", 5685, tls=True)),
        ("GRPCS://kds:443", GlobalAddress("kds:443", "kds", 443, tls=True)),
        ("grpcs://[::1]:5685", GlobalAddress("[::1]:5685", "::1", 5685, tls=True)),
        ("global:5685", GlobalAddress("global:5685", "global", 5685, tls=False)),  # bare: plaintext, as before
    ],
)
def test_global_addresses_parse(address: str, expected: GlobalAddress) -> None:
    assert parse_global_address(address) == expected
    assert parse_address(address) == expected.target


@pytest.mark.parametrize(
    ("address", "complaint"),
    [
        ("http://global:5685", "unknown scheme 'http://'"),
        ("https://global:5685", "unknown scheme 'https://'"),
        ("unix://var/run/kds.sock", "unknown scheme 'unix://'"),
        ("grpcs://global", "expected grpc://HOST:PORT, or grpcs://HOST:PORT for TLS"),
        ("grpc://:5685", "expected grpc://HOST:PORT"),
        ("grpcs://global:http", "expected grpc://HOST:PORT"),
        ("grpcs://global:0", "expected grpc://HOST:PORT"),
        ("grpcs://global:65536", "expected grpc://HOST:PORT"),
        ("grpc://global:5685/path", "expected grpc://HOST:PORT"),
        ("grpc://::1:5685", "an IPv6 address in brackets"),
    ],
)
def test_bad_global_addresses_are_refused_naming_the_flag(address: str, complaint: str) -> None:
    with pytest.raises(ValueError, match="--global-address") as caught:
        parse_global_address(address)
    assert complaint in str(caught.value)


def test_no_tls_flags_means_plaintext() -> None:
    assert server_credentials(None, None) is None


def test_a_cert_and_a_matching_key_make_server_credentials(tmp_path: Path) -> None:
    server = make_server_cert(tmp_path, make_ca(tmp_path))
    assert isinstance(server_credentials(server.cert, server.key), grpc.ServerCredentials)


def test_one_flag_without_the_other_names_the_missing_one(tmp_path: Path) -> None:
    server = make_server_cert(tmp_path, make_ca(tmp_path))
    with pytest.raises(StartupError, match=r"^--kds-tls-key-file is required with --kds-tls-cert-file"):
        server_credentials(server.cert, None)
    with pytest.raises(StartupError, match=r"^--kds-tls-cert-file is required with --kds-tls-key-file"):
        server_credentials(None, server.key)


def test_unreadable_and_unparseable_files_name_their_flag(tmp_path: Path) -> None:
    ca = make_ca(tmp_path)
    server = make_server_cert(tmp_path, ca)
    other = make_server_cert(tmp_path, ca, name="other")
    missing = tmp_path / "missing.pem"
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a pem file\n")
    cases = [
        (missing, server.key, "--kds-tls-cert-file .*cannot read it"),
        (server.cert, missing, "--kds-tls-key-file .*cannot read it"),
        (garbage, server.key, "--kds-tls-cert-file .*not a PEM certificate"),
        (server.key, server.key, "--kds-tls-cert-file .*not a PEM certificate"),
        (server.cert, garbage, "--kds-tls-key-file .*not an unencrypted PEM private key"),
        (server.cert, server.cert, "--kds-tls-key-file .*not an unencrypted PEM private key"),
        (server.cert, other.key, "--kds-tls-key-file .*does not belong to the first certificate"),
    ]
    for cert_file, key_file, complaint in cases:
        with pytest.raises(StartupError, match=complaint):
            server_credentials(cert_file, key_file)


def test_a_zone_ca_file_is_read_and_checked(tmp_path: Path) -> None:
    ca = make_ca(tmp_path)
    assert ClientTls.load(ca.files.cert).roots == ca.files.cert.read_bytes()
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("nope")
    with pytest.raises(StartupError, match=r"^--kds-ca-cert-file .*not a PEM certificate"):
        ClientTls.load(garbage)
    with pytest.raises(StartupError, match=r"^--kds-ca-cert-file .*cannot read it"):
        ClientTls.load(tmp_path / "missing.pem")


def test_skip_verify_reads_no_roots(tmp_path: Path) -> None:
    assert ClientTls.load(None, skip_verify=True) == ClientTls(None, skip_verify=True)


def test_certificate_names_list_dns_then_ip_then_common_name(tmp_path: Path) -> None:
    server = make_server_cert(tmp_path, make_ca(tmp_path), hosts=("10.1.2.3", "kds.example.com"))
    cert = x509.load_pem_x509_certificate(server.cert.read_bytes())
    assert certificate_names(cert) == ["kds.example.com", "10.1.2.3", "10.1.2.3"]


def test_tls_failures_get_a_hint_naming_the_flag() -> None:
    verify = "UNAVAILABLE: ... CERTIFICATE_VERIFY_FAILED: unable to get local issuer certificate"
    assert explain_tls_failure(verify, tls=True).startswith("TLS: the global's certificate is not trusted")
    assert "--kds-ca-cert-file" in explain_tls_failure(verify, tls=True)
    assert explain_tls_failure(verify, tls=True).endswith(verify)
    assert "use grpc://" in explain_tls_failure("... WRONG_VERSION_NUMBER ...", tls=True)
    assert "use grpcs://" in explain_tls_failure("UNAVAILABLE: ipv4:127.0.0.1:1: Socket closed", tls=False)
    assert explain_tls_failure("UNAVAILABLE: Connection refused", tls=True) == "UNAVAILABLE: Connection refused"
