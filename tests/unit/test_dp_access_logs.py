"""The access log pipe's name (Kuma's `AccessLogSocketName`), the node metadata that carries it, and how the
streamer reads a line (meshgate.dp.access_logs): pure functions only. The streamer itself, with a FIFO and
collectors that stop and come back, is in tests/adapter/test_dp_access_logs.py."""

from __future__ import annotations

import pytest

from meshgate.dp.access_logs import parse_address, split_line
from meshgate.dp.cli import load_dataplane
from meshgate.dp.registration import node_metadata
from meshgate.sockets import FIELD_ACCESS_LOG_SOCKET_PATH, access_log_socket_name

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


@pytest.mark.parametrize(
    ("directory", "name", "mesh", "expected"),
    [
        # Kuma's goldens: pkg/xds/bootstrap/testdata/bootstrap.gateway.golden.yaml:53, bootstrap.universal:44,
        # pkg/core/xds/metadata_test.go:40.
        ("/tmp", "gateway-1.default", "default", "/tmp/kuma-al-gateway-1.default-default.sock"),
        ("/tmp", "dp-1", "default", "/tmp/kuma-al-dp-1-default.sock"),
        ("/tmp", "dp-1", "mesh", "/tmp/kuma-al-dp-1-mesh.sock"),
        # filepath.Join cleans: a trailing slash, doubled slashes, dot segments.
        ("/tmp/", "a", "m", "/tmp/kuma-al-a-m.sock"),
        ("/var//run/./dp", "a", "m", "/var/run/dp/kuma-al-a-m.sock"),
        ("", "a", "m", "kuma-al-a-m.sock"),
    ],
)
def test_access_log_socket_name_is_kumas(directory: str, name: str, mesh: str, expected: str) -> None:
    assert access_log_socket_name(directory, name, mesh) == expected


def test_access_log_socket_name_is_cut_to_98_bytes_before_sock() -> None:
    """sockets.go:29-35: a Unix socket path must fit in 104 bytes."""
    name = "n" * 200
    path = access_log_socket_name("/tmp", name, "default")
    assert path == ("/tmp/kuma-al-" + name)[:98] + ".sock"
    assert len(path.encode()) == 103


def test_the_pipe_travels_in_node_metadata_under_kumas_field() -> None:
    dataplane = load_dataplane(DATAPLANE)
    meta = node_metadata(dataplane, 9902, "/run/dp/kuma-al-gw-1-default.sock")
    assert FIELD_ACCESS_LOG_SOCKET_PATH == "accessLogSocketPath"  # pkg/core/xds/metadata.go:34
    assert meta[FIELD_ACCESS_LOG_SOCKET_PATH] == "/run/dp/kuma-al-gw-1-default.sock"
    assert FIELD_ACCESS_LOG_SOCKET_PATH not in node_metadata(dataplane, 9902)


def test_a_line_is_split_at_its_first_semicolon() -> None:
    """streamer.go:118: the address is what comes before the first ';', the rest is the line, ';'s and all."""
    assert split_line(b"127.0.0.1:5000;[t] GET /a;b 200") == ("127.0.0.1:5000", b"[t] GET /a;b 200")
    assert split_line(b"logs:1;") == ("logs:1", b"")
    assert split_line(b"no address here") is None
    assert split_line(b";no address") is None
    assert split_line("h\u00e9:1;x".encode()) is None  # an address is ASCII


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1:5000", ("127.0.0.1", 5000)),
        ("logs.example.com:514", ("logs.example.com", 514)),
        ("[::1]:9000", ("::1", 9000)),
        ("::1:9000", None),  # IPv6 needs brackets (net.SplitHostPort)
        ("127.0.0.1", None),
        ("127.0.0.1:0", None),
        ("127.0.0.1:65536", None),
        ("127.0.0.1:http", None),
        (":5000", None),
        ("[]:5000", None),
    ],
)
def test_a_collector_address_is_host_colon_port(address: str, expected: tuple[str, int] | None) -> None:
    assert parse_address(address) == expected
