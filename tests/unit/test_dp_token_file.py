"""Reloadable data plane tokens without processes: the bootstrap that names a token file (Kuma's
file_based_metadata), when meshgate-dp uses it, and the clean copy of the operator's file that Envoy reads."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from envoy.config.bootstrap.v3 import bootstrap_pb2

# Registers FileBasedMetadataConfig, which the call credentials pack, for json_format's @type lookup.
from envoy.config.grpc_credential.v3 import file_based_metadata_pb2
from google.protobuf import json_format
from structlog.testing import capture_logs

from meshgate.dp.app import DpConfig
from meshgate.dp.bootstrap import parse_cp_address, reloads_token_file, render_bootstrap
from meshgate.dp.cli import load_dataplane
from meshgate.dp.token_file import TokenCopy

TOKEN = "secret.jwt.token"
CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def _google_grpc(doc: dict[str, object]) -> bootstrap_pb2.Bootstrap:
    return json_format.ParseDict(doc, bootstrap_pb2.Bootstrap())


def test_with_a_token_file_the_bootstrap_names_the_file_and_carries_no_token() -> None:
    """Kuma's reloadable tokens (template_v3.go): gRPC's own client, call credentials from the
    file_based_metadata plugin reading the file as `authorization`, SSL with the zone's CA; no xds_cluster."""
    doc = render_bootstrap(
        "default.gw-1",
        parse_cp_address("https://zone.example:5678"),
        admin_port=0,
        metadata={"dataplane.resource": "{}", "dataplane.admin.port": "9901"},
        token_file="/run/dp/token",
        ca_pem=CA,
    )
    assert TOKEN not in json.dumps(doc)
    parsed = _google_grpc(doc)
    (service,) = parsed.dynamic_resources.ads_config.grpc_services
    assert not service.initial_metadata
    assert not service.HasField("envoy_grpc")
    google = service.google_grpc
    assert google.target_uri == "zone.example:5678"
    assert google.credentials_factory_name == "envoy.grpc_credentials.file_based_metadata"
    assert google.channel_credentials.ssl_credentials.root_certs.inline_string == CA
    (creds,) = google.call_credentials
    assert creds.from_plugin.name == "envoy.grpc_credentials.file_based_metadata"
    config = file_based_metadata_pb2.FileBasedMetadataConfig()
    creds.from_plugin.typed_config.Unpack(config)
    assert config.secret_data.filename == "/run/dp/token"
    assert config.header_key == "authorization"
    assert not parsed.static_resources.clusters
    # Everything else is as it was: delta ADS, the node metadata, the admin on loopback.
    ads = parsed.dynamic_resources.ads_config
    assert ads.api_type == ads.DELTA_GRPC
    assert ads.set_node_on_first_message_only
    assert parsed.node.metadata.fields["dataplane.admin.port"].string_value == "9901"
    assert parsed.admin.address.socket_address.address == "127.0.0.1"


def test_the_system_roots_and_ip_targets() -> None:
    doc = render_bootstrap(
        "m.x", parse_cp_address("https://[::1]:5678"), admin_port=0, token_file="/t", ca_file="/etc/ssl/ca.pem"
    )
    google = _google_grpc(doc).dynamic_resources.ads_config.grpc_services[0].google_grpc
    assert google.target_uri == "[::1]:5678"
    assert google.channel_credentials.ssl_credentials.root_certs.filename == "/etc/ssl/ca.pem"


def test_a_token_file_needs_checked_tls() -> None:
    """file_based_metadata always builds gRPC SSL credentials checked against a CA: no plaintext channel,
    no unchecked one. meshgate-dp then embeds the token read at start (and warns)."""
    assert reloads_token_file(parse_cp_address("https://zone"), ca_pem=CA)
    assert not reloads_token_file(parse_cp_address("grpc://zone"), ca_pem=CA)
    assert not reloads_token_file(parse_cp_address("https://zone"))  # --skip-verify
    with pytest.raises(ValueError, match="TLS control plane and a CA"):
        render_bootstrap("m.x", parse_cp_address("grpc://127.0.0.1:1"), admin_port=0, token_file="/t")


def _config(cp: str, token_file: Path | None, ca_pem: str) -> DpConfig:
    dataplane = load_dataplane(
        json.dumps(
            {
                "mesh": "default",
                "name": "gw-1",
                "networking": {"address": "10.0.0.1", "gateway": {"tags": {"kuma.io/service": "e"}}},
            }
        )
    )
    return DpConfig(
        dataplane, parse_cp_address(cp), Path("/envoy"), 1, token=TOKEN, token_file=token_file, ca_pem=ca_pem
    )


def test_which_token_files_envoy_reads() -> None:
    assert _config("https://zone", Path("t"), CA).reloaded_token_file == Path("t")
    assert _config("grpc://zone", Path("t"), CA).reloaded_token_file is None
    assert _config("https://zone", Path("t"), "").reloaded_token_file is None
    assert _config("https://zone", None, CA).reloaded_token_file is None  # an inline --dataplane-token


def test_the_copy_holds_the_token_stripped_and_follows_the_file(tmp_path: Path) -> None:
    source, copy = tmp_path / "token", tmp_path / "dp" / "token"
    copy.parent.mkdir()
    source.write_text("first\n")
    tc = TokenCopy(source, copy, "first")
    assert copy.read_text() == "first"
    assert copy.stat().st_mode & 0o777 == 0o600
    assert not tc.poll()  # the first poll re-reads the file: unchanged
    source.write_text("  second\n")
    with capture_logs() as logs:
        assert tc.poll()
    assert copy.read_text() == "second"
    assert [e["event"] for e in logs] == ["dp.token.reloaded"]
    assert not tc.poll()


def test_an_unreadable_or_empty_file_keeps_the_last_token_logged_once(tmp_path: Path) -> None:
    source, copy = tmp_path / "token", tmp_path / "copy"
    source.write_text("good")
    tc = TokenCopy(source, copy, "good")
    with capture_logs() as logs:
        source.write_text("")
        assert not tc.poll()
        os.utime(source, ns=(1, 1))
        assert not tc.poll()
        source.unlink()
        assert not tc.poll()
    assert copy.read_text() == "good"
    assert [(e["event"], e["error"]) for e in logs] == [
        ("dp.token.unreadable", "the file is empty, expected a data plane token"),
        ("dp.token.unreadable", "cannot read the data plane token: No such file or directory"),
    ]
    source.write_text("better")
    assert tc.poll()
    assert copy.read_text() == "better"


def test_a_kubernetes_style_symlink_swap_is_seen(tmp_path: Path) -> None:
    """The kubelet updates a projected volume by pointing `..data` at a new directory: the path's inode changes."""
    for version, token in (("v1", "one"), ("v2", "two")):
        (tmp_path / version).mkdir()
        (tmp_path / version / "token").write_text(token)
    (tmp_path / "..data").symlink_to("v1")
    (tmp_path / "token").symlink_to("..data/token")
    tc = TokenCopy(tmp_path / "token", tmp_path / "copy", "one")
    assert not tc.poll()
    (tmp_path / "..data_tmp").symlink_to("v2")
    os.replace(tmp_path / "..data_tmp", tmp_path / "..data")
    assert tc.poll()
    assert (tmp_path / "copy").read_text() == "two"
