"""meshgate-dp without processes: the bootstrap, the addresses, the Dataplane flags, the Envoy command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from envoy.config.bootstrap.v3 import bootstrap_pb2

# Registers HttpProtocolOptions, which the xds_cluster packs, for json_format's @type lookup.
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2  # noqa: F401
from google.protobuf import json_format
from typer.testing import CliRunner

from meshgate.dp.bootstrap import ControlPlaneAddress, parse_cp_address, render_bootstrap
from meshgate.dp.cli import app, load_dataplane, read_ca
from meshgate.dp.envoy import EnvoyNotFoundError, envoy_argv, find_envoy, unique_base_id
from meshgate.dp.registration import TokenSourceError, node_metadata, read_token

DATAPLANE = """\
type: Dataplane
mesh: default
name: gw-1
networking:
  address: 10.0.0.1
  gateway:
    type: BUILTIN
    tags:
      kuma.io/service: edge
"""


def test_bootstrap_is_a_valid_envoy_bootstrap_with_delta_ads_and_loopback_admin() -> None:
    doc = render_bootstrap("default.gw-1", ControlPlaneAddress("10.1.2.3", 5678), admin_port=9901)
    parsed = json_format.ParseDict(doc, bootstrap_pb2.Bootstrap())
    assert parsed.node.id == "default.gw-1"
    assert parsed.admin.address.socket_address.address == "127.0.0.1"
    assert parsed.admin.address.socket_address.port_value == 9901
    ads = parsed.dynamic_resources.ads_config
    assert ads.api_type == ads.DELTA_GRPC
    assert ads.grpc_services[0].envoy_grpc.cluster_name == "xds_cluster"
    assert parsed.dynamic_resources.cds_config.HasField("ads")
    assert parsed.dynamic_resources.lds_config.HasField("ads")
    (xds,) = parsed.static_resources.clusters
    assert xds.type == xds.STATIC
    endpoint = xds.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address
    assert (endpoint.address, endpoint.port_value) == ("10.1.2.3", 5678)
    assert "envoy.extensions.upstreams.http.v3.HttpProtocolOptions" in xds.typed_extension_protocol_options


def test_a_host_name_control_plane_is_resolved_by_dns() -> None:
    doc = render_bootstrap("m.x", ControlPlaneAddress("zone.example", 5678), admin_port=0)
    assert doc["static_resources"]["clusters"][0]["type"] == "STRICT_DNS"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://zone:5678", ControlPlaneAddress("zone", 5678, tls=True)),
        ("grpcs://zone", ControlPlaneAddress("zone", 5678, tls=True)),
        ("grpc://zone:5678", ControlPlaneAddress("zone", 5678)),
        ("grpc://10.0.0.1", ControlPlaneAddress("10.0.0.1", 5678)),
        ("zone:1234", ControlPlaneAddress("zone", 1234, tls=True)),
        ("grpc://[::1]:5678", ControlPlaneAddress("::1", 5678)),
    ],
)
def test_cp_address(url: str, expected: ControlPlaneAddress) -> None:
    assert parse_cp_address(url) == expected


@pytest.mark.parametrize("url", ["http://zone:5678", "tcp://zone:5678", "grpc://:5678", "grpc://zone:99999"])
def test_cp_address_refused(url: str) -> None:
    with pytest.raises(ValueError, match="--cp-address"):
        parse_cp_address(url)


def test_tls_bootstrap_trusts_the_zone_ca_checks_the_name_and_sends_the_token() -> None:
    """Kuma's bootstrap: the token as `authorization` initial metadata on the ADS gRPC service; the xDS
    cluster speaks TLS (ALPN h2) and accepts only a certificate from the given CA naming the host dialled."""
    doc = render_bootstrap(
        "default.gw-1",
        parse_cp_address("https://zone.example:5678"),
        admin_port=0,
        token="a.b.c",
        ca_pem="-----BEGIN CERTIFICATE-----\n",
    )
    parsed = json_format.ParseDict(doc, bootstrap_pb2.Bootstrap())
    (service,) = parsed.dynamic_resources.ads_config.grpc_services
    assert [(m.key, m.value) for m in service.initial_metadata] == [("authorization", "a.b.c")]
    (xds,) = parsed.static_resources.clusters
    assert xds.transport_socket.name == "envoy.transport_sockets.tls"
    tls = tls_pb2.UpstreamTlsContext()
    xds.transport_socket.typed_config.Unpack(tls)
    assert tls.sni == "zone.example"
    assert list(tls.common_tls_context.alpn_protocols) == ["h2"]
    validation = tls.common_tls_context.validation_context
    assert validation.trusted_ca.inline_string.startswith("-----BEGIN CERTIFICATE-----")
    (san,) = validation.match_typed_subject_alt_names
    assert (san.san_type, san.matcher.exact) == (san.DNS, "zone.example")
    by_ip = render_bootstrap("m.x", parse_cp_address("https://127.0.0.1:1"), admin_port=0, ca_pem="x")
    ctx = by_ip["static_resources"]["clusters"][0]["transport_socket"]["typed_config"]
    assert "sni" not in ctx
    assert ctx["common_tls_context"]["validation_context"]["match_typed_subject_alt_names"][0]["san_type"] == (
        "IP_ADDRESS"
    )


def test_plaintext_bootstrap_has_no_tls_and_no_token_unless_given() -> None:
    doc = render_bootstrap("m.x", parse_cp_address("grpc://127.0.0.1:1"), admin_port=0)
    assert "transport_socket" not in doc["static_resources"]["clusters"][0]
    assert "initial_metadata" not in doc["dynamic_resources"]["ads_config"]["grpc_services"][0]


def test_the_dataplane_travels_in_node_metadata_with_the_admin_port() -> None:
    meta = node_metadata(load_dataplane(DATAPLANE), 9902)
    assert meta["dataplane.admin.port"] == "9902"
    doc = json.loads(meta["dataplane.resource"])
    assert (doc["type"], doc["mesh"], doc["name"]) == ("Dataplane", "default", "gw-1")
    assert doc["networking"]["gateway"]["tags"] == {"kuma.io/service": "edge"}


def test_token_sources(tmp_path: Path) -> None:
    assert read_token(" t ", None) == "t"
    assert read_token("", None) == ""
    (tmp_path / "t").write_text("tok\n")
    assert read_token("", tmp_path / "t") == "tok"
    with pytest.raises(TokenSourceError, match="exclusive"):
        read_token("x", tmp_path / "t")
    with pytest.raises(TokenSourceError, match=r"--dataplane-token-file .*cannot read"):
        read_token("", tmp_path / "missing")
    (tmp_path / "empty").write_text("")
    with pytest.raises(TokenSourceError, match="empty"):
        read_token("", tmp_path / "empty")


def test_ca_file_is_read_and_checked(tmp_path: Path) -> None:
    assert read_ca(None, tls=False, skip_verify=False) == ("", "")
    assert read_ca(None, tls=True, skip_verify=True) == ("", "")
    (tmp_path / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\nx\n")
    assert read_ca(tmp_path / "ca.crt", tls=True, skip_verify=False)[0].startswith("-----BEGIN")
    (tmp_path / "bad").write_text("nope")
    with pytest.raises(typer.BadParameter, match="not a PEM"):
        read_ca(tmp_path / "bad", tls=True, skip_verify=False)


def test_unknown_flags_are_refused_by_name(tmp_path: Path) -> None:
    """A kuma-dp flag meshgate does not know (or the old --cp-api) is an error that names it."""
    runner = CliRunner()
    for flag in ("--cp-api", "--dataplane-var", "--dns-coredns-path"):
        result = runner.invoke(app, ["run", flag, "x", "--dataplane", DATAPLANE])
        assert result.exit_code == 2
        assert f"No such option: {flag}" in _words(result.output)


def test_proxy_types_other_than_dataplane_ingress_and_egress_are_refused() -> None:
    result = CliRunner().invoke(app, ["run", "--proxy-type", "sidecar", "--dataplane", DATAPLANE])
    assert result.exit_code == 2
    assert "--proxy-type" in _words(result.output)


ZONE_INGRESS = """\
type: ZoneIngress
name: ingress-1
networking:
  address: 10.0.0.9
  port: 10001
  advertisedAddress: 203.0.113.9
  advertisedPort: 10001
"""


def test_an_ingress_proxy_runs_a_zone_ingress_in_no_mesh() -> None:
    """kuma-dp's --proxy-type ingress registers a ZoneIngress (app/kuma-dp/cmd/run.go:73)."""
    zi = load_dataplane(ZONE_INGRESS, kind="ZoneIngress")
    assert (zi.kind, zi.meta.mesh, zi.meta.name) == ("ZoneIngress", "", "ingress-1")
    with pytest.raises(typer.BadParameter, match="type"):
        load_dataplane(DATAPLANE, kind="ZoneIngress")
    runner = CliRunner()
    result = runner.invoke(app, ["run", "--proxy-type", "ingress", "--mesh", "default", "--dataplane", ZONE_INGRESS])
    assert result.exit_code == 2
    assert "no mesh" in _words(result.output)
    result = runner.invoke(app, ["run", "--proxy-type", "ingress", "--dataplane", DATAPLANE])
    assert result.exit_code == 2
    assert "--dataplane" in _words(result.output)


ZONE_EGRESS = """\
type: ZoneEgress
name: egress-1
networking:
  address: 10.0.0.8
  port: 10002
"""


def test_an_egress_proxy_runs_a_zone_egress_in_no_mesh_and_says_so_in_its_metadata() -> None:
    """kuma-dp's --proxy-type egress registers a ZoneEgress, `.<name>` with `dataplane.proxyType: egress`."""
    ze = load_dataplane(ZONE_EGRESS, kind="ZoneEgress")
    assert (ze.kind, ze.meta.mesh, ze.meta.name) == ("ZoneEgress", "", "egress-1")
    meta = node_metadata(ze, 9901)
    assert meta["dataplane.proxyType"] == "egress"
    assert json.loads(meta["dataplane.resource"])["type"] == "ZoneEgress"
    result = CliRunner().invoke(app, ["run", "--proxy-type", "egress", "--mesh", "m", "--dataplane", ZONE_EGRESS])
    assert result.exit_code == 2
    assert "ZoneEgress is in no mesh" in _words(result.output)


def test_load_dataplane_validates_and_overrides_name_and_mesh() -> None:
    dp = load_dataplane(DATAPLANE, name="gw-2", mesh="other")
    assert (dp.meta.mesh, dp.meta.name) == ("other", "gw-2")
    with pytest.raises(typer.BadParameter, match=r"networking\.address"):
        load_dataplane(DATAPLANE.replace("  address: 10.0.0.1\n", ""))
    with pytest.raises(typer.BadParameter, match="one Dataplane"):
        load_dataplane(DATAPLANE + "---\n" + DATAPLANE)
    with pytest.raises(typer.BadParameter, match="YAML"):
        load_dataplane("a: [")


def _words(output: str) -> str:
    """The error text without the box typer draws around it, whatever the terminal width."""
    return " ".join(w for w in output.split() if w not in "│╭╮╰╯─" and set(w) - set("─╭╮╰╯│"))


def test_run_needs_exactly_one_dataplane_source(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["run", "--cp-address", "grpc://127.0.0.1:5678"])
    assert result.exit_code == 2
    assert "exactly one of --dataplane-file and --dataplane" in _words(result.output)
    (tmp_path / "dp.yaml").write_text("type: Dataplane\nmesh: default\nname: x\n")
    result = runner.invoke(app, ["run", "--cp-address", "grpc://h", "--dataplane-file", str(tmp_path / "dp.yaml")])
    assert result.exit_code == 2
    assert "invalid Dataplane" in _words(result.output)


def test_an_explicit_binary_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(EnvoyNotFoundError, match="--binary-path"):
        find_envoy(str(tmp_path / "nope"))
    assert find_envoy().name == "envoy"


def test_envoy_command_line_disables_hot_restart_with_a_unique_base_id(tmp_path: Path) -> None:
    ids = {unique_base_id() for _ in range(8)}
    assert len(ids) == 8
    argv = envoy_argv(Path("/bin/envoy"), tmp_path / "b.json", base_id=42, admin_address_path=tmp_path / "a")
    assert "--disable-hot-restart" in argv
    assert argv[argv.index("--base-id") + 1] == "42"
    assert argv[argv.index("-c") + 1] == str(tmp_path / "b.json")
    assert json.dumps(argv)
