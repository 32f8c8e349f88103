"""The global's own KDS CA and server certificate (global_cp/kds_tls.py), and the zone's token file."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import anyio
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from global_cp.kds_tls import CA_KIND, KdsCertificates, server_names
from meshgate.auth import ZoneAuthenticator, generate_key_pem, issue, public_key
from meshgate.kds.limits import ECHO_LIMIT, clip
from meshgate.observability.process import StartupError
from meshgate.pki import issue_server
from meshgate.resources import registry
from meshgate.store.factory import open_store
from zone_cp.cp_token import CpToken


def test_the_ca_is_an_internal_kind_never_synced_nor_served() -> None:
    assert CA_KIND not in {d.name for d in registry.KINDS}


def test_server_names_cover_loopback_host_bind_address_and_extra_sans() -> None:
    names = server_names("10.1.2.3", ["kds.example.com", "192.0.2.7", "*.global.test"], hostname="global-1")
    assert names == [
        "localhost",
        "127.0.0.1",
        "::1",
        "global-1",
        "10.1.2.3",
        "kds.example.com",
        "192.0.2.7",
        "*.global.test",
    ]
    assert server_names("0.0.0.0", hostname="h") == ["localhost", "127.0.0.1", "::1", "h"]
    with pytest.raises(StartupError, match="--kds-tls-san 'not a name!'"):
        server_names("0.0.0.0", ["not a name!"])


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
async def test_replicas_share_one_ca_and_each_issues_a_server_certificate_it_signs(
    backend: str, tmp_path: Path
) -> None:
    store = await open_store(backend, data_dir=tmp_path / "store")
    try:
        replicas = [KdsCertificates(store, tmp_path / f"replica-{i}") for i in range(3)]
        chains: list[bytes] = []

        async def start(replica: KdsCertificates) -> None:
            chain, _key = await replica.server_pem(["localhost", "127.0.0.1", f"host-{len(chains)}"])
            chains.append(chain)

        async with anyio.create_task_group() as tg:
            for replica in replicas:
                tg.start_soon(start, replica)
        ca_files = {r.ca_file.read_bytes() for r in replicas}
        assert len(ca_files) == 1  # the race's loser read the winner's CA
        (ca_pem,) = ca_files
        assert (await store.list(CA_KIND)).total == 1
        ca = x509.load_pem_x509_certificate(ca_pem)
        for chain in chains:
            leaf = x509.load_pem_x509_certificates(chain)[0]
            leaf.verify_directly_issued_by(ca)
            sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            assert "localhost" in sans.get_values_for_type(x509.DNSName)
            assert ipaddress.ip_address("127.0.0.1") in sans.get_values_for_type(x509.IPAddress)
            usage = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
            assert ExtendedKeyUsageOID.SERVER_AUTH in usage
        # A restart reads the CA back: zones keep trusting the file they were given.
        again = KdsCertificates(store, tmp_path / "later")
        assert (await again.authority()).cert_pem == ca_pem
    finally:
        await store.close()


async def test_server_certificate_never_outlives_its_ca(tmp_path: Path) -> None:
    store = await open_store("memory", data_dir=tmp_path)
    try:
        ca = await KdsCertificates(store, tmp_path).authority()
        leaf = x509.load_pem_x509_certificates(issue_server(ca, ["localhost"]).chain_pem)[0]
        assert leaf.not_valid_after_utc <= ca.certificate.not_valid_after_utc
    finally:
        await store.close()


def test_revoked_tokens_fail_after_the_signature_checks() -> None:
    key = generate_key_pem()
    asked: list[str] = []

    def revoked(jti: str) -> bool:
        asked.append(jti)
        return jti == "bad"

    auth = ZoneAuthenticator(public_key(key), clock=lambda: 1000.0, is_revoked=revoked)
    assert auth.check("z", f"Bearer {issue(key, 'z', ['cp'], 60, 1000.0, 'good')}") is None
    failure = auth.check("z", f"Bearer {issue(key, 'z', ['cp'], 60, 1000.0, 'bad')}")
    assert failure is not None
    assert failure.code == "revoked"
    # A forged token is refused for its signature: the revocation list is never asked about it.
    other = generate_key_pem()
    forged = auth.check("z", f"Bearer {issue(other, 'z', ['cp'], 60, 1000.0, 'forged')}")
    assert forged is not None
    assert forged.code == "bad_signature"
    assert asked == ["good", "bad"]


def test_clip_bounds_what_is_echoed() -> None:
    assert clip("short") == "short"
    long = clip("x" * 10_000)
    assert long.startswith("x" * ECHO_LIMIT)
    assert len(long) < ECHO_LIMIT + 32
    assert long.endswith("(10000 chars)")


def test_token_file_is_reread_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "zone.token"
    path.write_text("first\n")
    token = CpToken.load("", path)
    changed: list[str] = []
    token.on_change = lambda: changed.append(token())
    assert token() == "first"
    assert not token.poll()  # unchanged file
    path.write_text("second-token\n")
    assert token.poll()
    assert token() == "second-token"
    assert changed == ["second-token"]
    # An unreadable file later keeps the last good token (the zone keeps working).
    path.unlink()
    assert not token.poll()
    assert token() == "second-token"
    # An atomic replace (as a Kubernetes Secret volume does) is seen too.
    tmp = tmp_path / "new"
    tmp.write_text("third\n")
    os.replace(tmp, path)
    assert token.poll()
    assert token() == "third"


def test_token_flags_fail_at_start_naming_the_flag(tmp_path: Path) -> None:
    with pytest.raises(StartupError, match=r"--cp-token-path .*cannot read the zone token"):
        CpToken.load("", tmp_path / "missing")
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(StartupError, match="the file is empty"):
        CpToken.load("", tmp_path / "empty")
    with pytest.raises(StartupError, match="exclusive"):
        CpToken.load("inline", tmp_path / "empty")
    assert CpToken.load(" inline \n", None)() == "inline"
