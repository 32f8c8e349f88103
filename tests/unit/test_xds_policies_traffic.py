"""RateLimit, FaultInjection, TrafficLog and ProxyTemplate modules on generated messages (issue 13).

Each maps Kuma's conf to Envoy's message as Kuma 2.7 does (cited in each module's docstring); the effects
through a real Envoy are in tests/adapter/test_gateway_policies_traffic.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.access_loggers.file.v3 import file_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.type.v3 import percent_pb2

from meshgate.resources import codec
from meshgate.resources.model import Resource
from meshgate.resources.selectors import Rank
from meshgate.testing import factory
from meshgate.testing.factory import resource
from meshgate.xds import CLUSTER, LISTENER, ROUTE, MeshContext, generate
from meshgate.xds.policies import LogSite, Match, PolicyModule, fault_injection, proxy_template, rate_limit, traffic_log
from meshgate.xds.policies.matching import best_for_proxy

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def test_rate_limit_maps_requests_interval_status_and_headers() -> None:
    http: dict[str, Any] = {
        "requests": 5,
        "interval": "10s",
        "onRateLimit": {"status": 503, "headers": [{"key": "a", "value": "1"}, {"key": "b", "value": "2",
                                                                                "append": True}]},
    }  # fmt: skip
    out = rate_limit.local_rate_limit(http)
    assert out is not None
    assert (out.token_bucket.max_tokens, out.token_bucket.tokens_per_fill.value) == (5, 5)
    assert out.token_bucket.fill_interval.seconds == 10
    assert out.status.code == 503
    assert out.stat_prefix == "rate_limit"
    assert out.filter_enabled.runtime_key == "local_rate_limit_enabled"
    assert out.filter_enforced.default_value.numerator == 100
    actions = [(h.header.key, h.append_action) for h in out.response_headers_to_add]
    option = base_pb2.HeaderValueOption
    assert actions == [("a", option.OVERWRITE_IF_EXISTS_OR_ADD), ("b", option.APPEND_IF_EXISTS_OR_ADD)]


def test_rate_limit_without_requests_limits_nothing() -> None:
    assert rate_limit.local_rate_limit({"interval": "1s"}) is None
    assert not rate_limit.local_rate_limit({"requests": 1, "interval": "1s"}).HasField("status")  # type: ignore[union-attr]


def test_fault_maps_delay_abort_and_bandwidth_with_kumas_percentages() -> None:
    out = fault_injection.http_fault(
        {
            "delay": {"percentage": 50.5, "value": "2s"},
            "abort": {"percentage": 100, "httpStatus": 418},
            "responseBandwidth": {"percentage": 12.345, "limit": "2Mbps"},
        }
    )
    assert out is not None
    assert out.delay.fixed_delay.seconds == 2
    assert (out.delay.percentage.numerator, out.delay.percentage.denominator) == (
        5050,
        percent_pb2.FractionalPercent.TEN_THOUSAND,
    )
    assert (out.abort.http_status, out.abort.percentage.numerator) == (418, 100)
    assert out.response_rate_limit.fixed_limit.limit_kbps == 2000
    assert out.response_rate_limit.percentage.denominator == percent_pb2.FractionalPercent.MILLION
    assert fault_injection.http_fault({}) is None
    assert (fault_injection.kbps("3Gbps"), fault_injection.kbps("3 bps")) == (3_000_000, None)


def _mesh(**logging: Any) -> Resource:
    return resource(factory.mesh(logging=logging))


SITE = LogSite(None, "default", "10.0.0.1", "edge", http=True)


def _log(mesh: Resource | None, policy: dict[str, Any], *, http: bool = True) -> Any:
    site = LogSite(mesh, "default", "10.0.0.1", "edge", http=http)
    module = traffic_log.MODULE
    assert module.access_log is not None
    return module.access_log(Match(resource(policy), Rank()), site)


def test_traffic_log_to_the_default_file_backend_in_kumas_default_format() -> None:
    mesh = _mesh(defaultBackend="f", backends=[{"name": "f", "type": "file", "conf": {"path": "/tmp/a.log"}}])
    found = _log(mesh, factory.traffic_log())
    config = file_pb2.FileAccessLog()
    found.typed_config.Unpack(config)
    assert config.path == "/tmp/a.log"
    line = config.log_format.text_format_source.inline_string
    assert line.startswith('[%START_TIME%] default "%REQ(:METHOD)%')
    assert line.endswith('"edge" "*" "10.0.0.1" "%UPSTREAM_HOST%"\n')


def test_traffic_log_custom_format_of_the_named_backend_on_tcp() -> None:
    mesh = _mesh(
        defaultBackend="f",
        backends=[
            {"name": "f", "type": "file", "conf": {"path": "/tmp/a.log"}},
            {"name": "g", "type": "file", "format": "%KUMA_SOURCE_ADDRESS% %KUMA_TRAFFIC_DIRECTION% %BYTES_SENT%",
             "conf": {"path": "/tmp/b.log"}},
        ],
    )  # fmt: skip
    found = _log(mesh, factory.traffic_log(backend="g"), http=False)
    config = file_pb2.FileAccessLog()
    found.typed_config.Unpack(config)
    assert (config.path, config.log_format.text_format_source.inline_string) == (
        "/tmp/b.log",
        "10.0.0.1:0 INBOUND %BYTES_SENT%\n",
    )


def test_traffic_log_without_a_mesh_or_a_backend_logs_nothing() -> None:
    assert _log(None, factory.traffic_log()) is None
    assert _log(_mesh(), factory.traffic_log()) is None


SOCKET = "/run/dp/kuma-al-edge-1-default.sock"


def _tcp_log(backend: dict[str, Any], *, http: bool = True, socket: str = SOCKET) -> file_pb2.FileAccessLog | None:
    mesh = _mesh(defaultBackend="t", backends=[{"name": "t", "type": "tcp", **backend}])
    site = LogSite(mesh, "default", "10.0.0.1", "edge", http=http, access_log_socket=socket)
    assert traffic_log.MODULE.access_log is not None
    found = traffic_log.MODULE.access_log(Match(resource(factory.traffic_log()), Rank()), site)
    if found is None:
        return None
    assert found.name == "envoy.access_loggers.file"
    config = file_pb2.FileAccessLog()
    found.typed_config.Unpack(config)
    return config


def test_traffic_log_to_a_tcp_backend_writes_address_semicolon_line_to_the_proxys_pipe() -> None:
    """access_log_configurer.go:73-78: the file logger at the proxy's pipe, `<address>;` before each line."""
    http = _tcp_log({"conf": {"address": "logs.example.com:5000"}})
    assert http is not None
    assert http.path == SOCKET
    line = http.log_format.text_format_source.inline_string
    assert line == "logs.example.com:5000;" + traffic_log.interpolate(traffic_log.DEFAULT_HTTP_FORMAT, SITE) + "\n"
    assert line.startswith('logs.example.com:5000;[%START_TIME%] default "%REQ(:METHOD)%')
    tcp = _tcp_log({"conf": {"address": "127.0.0.1:5000"}}, http=False)
    assert tcp is not None
    assert tcp.log_format.text_format_source.inline_string.startswith(
        "127.0.0.1:5000;[%START_TIME%] %RESPONSE_FLAGS% default 10.0.0.1(edge)->%UPSTREAM_HOST%(*) took "
    )


def test_traffic_log_tcp_backend_format_is_interpolated_and_the_address_is_not() -> None:
    """Kuma's http_access_log_configurer_test.go:158-199 ("with tcp access log"), on a gateway's site: a format
    that ends in a newline gets a second one, and only the format's %KUMA_*% commands are replaced."""
    fmt = '[%START_TIME%] "%KUMA_SOURCE_SERVICE%" "%KUMA_DESTINATION_SERVICE%" "%KUMA_SOURCE_ADDRESS%"\n'
    config = _tcp_log({"format": fmt, "conf": {"address": "127.0.0.1:1234"}})
    assert config is not None
    assert config.log_format.text_format_source.inline_string == (
        '127.0.0.1:1234;[%START_TIME%] "edge" "*" "10.0.0.1:0"\n\n'
    )


def test_traffic_log_tcp_backend_without_a_pipe_logs_nothing() -> None:
    """A site built without a pipe (generate always names one) has nowhere to send a tcp backend's lines."""
    assert _tcp_log({"conf": {"address": "127.0.0.1:5000"}}, socket="") is None


def _template(name: str, modifications: list[dict[str, Any]], *, age: int = 0, service: str = "*") -> Resource:
    doc = factory.proxy_template(name, service=service, conf={"imports": ["gateway-proxy"],
                                                                "modifications": modifications})  # fmt: skip
    return resource(doc, created=T0 + timedelta(minutes=age))


def test_proxy_template_selection_prefers_specific_then_newest() -> None:
    tags = {"kuma.io/service": "edge"}
    wild, old = _template("a", [], age=5), _template("b", [], service="edge")
    new = _template("c", [], age=1, service="edge")
    found = best_for_proxy([wild, old, new], tags)
    assert found is not None
    assert found.winner.meta.name == "c"
    assert {lo.policy.meta.name for lo in found.losers} == {"a", "b"}
    assert best_for_proxy([_template("d", [], service="other")], tags) is None


def test_proxy_template_cluster_patch_and_remove_and_virtual_host_add() -> None:
    resources: dict[str, Any] = {
        CLUSTER: {"a": cluster_pb2.Cluster(name="a"), "b": cluster_pb2.Cluster(name="b")},
        ROUTE: {"r": route_pb2.RouteConfiguration(name="r")},
    }
    template = _template("t", [
        {"cluster": {"operation": "patch", "match": {"name": "a"}, "value": "connect_timeout: 7s"}},
        {"cluster": {"operation": "remove", "match": {"name": "b"}}},
        {"virtualHost": {"operation": "add", "match": {"routeConfigurationName": "r"},
                         "value": "name: extra\ndomains: [extra.example.com]"}},
    ])  # fmt: skip
    assert proxy_template.apply(template, resources) == []
    assert list(resources[CLUSTER]) == ["a"]
    assert resources[CLUSTER]["a"].connect_timeout.seconds == 7
    assert [vh.name for vh in resources[ROUTE]["r"].virtual_hosts] == ["extra"]


def test_proxy_template_raw_resources_are_added_by_name_and_bad_ones_reported_with_kumas_path() -> None:
    resources: dict[str, Any] = {CLUSTER: {"a": cluster_pb2.Cluster(name="a", connect_timeout={"seconds": 1})}}
    doc = factory.proxy_template("raw", conf={"imports": ["gateway-proxy"], "resources": [
        {"name": "a", "version": "v1", "resource": "'@type': type.googleapis.com/envoy.config.cluster.v3.Cluster\n"
                                                   "name: a\nconnect_timeout: 9s"},
        {"name": "extra", "version": "v1", "resource": "'@type': type.googleapis.com/envoy.config.cluster.v3.Cluster\n"
                                                       "name: extra"},
        {"name": "broken", "version": "v1", "resource": "name: no-type"},
    ]})  # fmt: skip
    # Validation refuses the broken one (as Kuma's does); a template stored before that check still generates.
    problems = proxy_template.apply(codec.decode(doc), resources)
    assert sorted(resources[CLUSTER]) == ["a", "extra"]
    assert resources[CLUSTER]["a"].connect_timeout.seconds == 9  # replaced, as Kuma's ResourceSet.Add does
    assert len(problems) == 1
    assert "resources[2]{name='broken'}.resource:" in problems[0]


def test_proxy_template_without_the_gateway_profile_keeps_the_gateway_config_and_says_so() -> None:
    resources: dict[str, Any] = {CLUSTER: {"a": cluster_pb2.Cluster(name="a")}}
    for imports in ([], ["default-proxy"]):
        doc = factory.proxy_template("sidecar-style", conf={"imports": imports})
        problems = proxy_template.apply(resource(doc), resources)
        assert list(resources[CLUSTER]) == ["a"]
        assert len(problems) == 1
        assert "gateway-proxy" in problems[0]


def test_proxy_template_module_is_a_selector_policy_on_the_whole_proxy() -> None:
    module: PolicyModule = proxy_template.MODULE
    assert module.proxy is not None
    assert module.matcher.value == "selectors"


def _generated_log_paths(access_log_socket: str = "") -> set[str]:
    """The paths of the access logs on every gateway listener of a generated snapshot with a tcp default backend."""
    logging = {"defaultBackend": "t", "backends": [{"name": "t", "type": "tcp", "conf": {"address": "c:1"}}]}
    proxy = resource(factory.gateway_dataplane("edge-1", "edge"))
    ctx = MeshContext.build(
        "default",
        zone="zone-1",
        mesh_resource=resource(factory.mesh(logging=logging)),
        gateways=[resource(factory.gateway("edge", service="edge"))],
        routes=[resource(factory.http_route("web", prefix="/", backends=[factory.backend("a")]))],
        dataplanes=[proxy, resource(factory.dataplane("a-1", "a"))],
        policies={"TrafficLog": [resource(factory.traffic_log())]},
    )
    snap = generate(proxy, ctx, access_log_socket=access_log_socket)
    paths = set()
    for listener in snap[LISTENER].values():
        for chain in listener.filter_chains:  # type: ignore[attr-defined]
            hcm = hcm_pb2.HttpConnectionManager()
            chain.filters[0].typed_config.Unpack(hcm)
            for log in hcm.access_log:
                config = file_pb2.FileAccessLog()
                log.typed_config.Unpack(config)
                paths.add(config.path)
    return paths


def test_generate_writes_tcp_lines_to_the_pipe_the_proxy_declared_else_kumas_name_for_it() -> None:
    """metadata.go:207-214: the proxy's accessLogSocketPath, else AccessLogSocketName(tmp, name, mesh)."""
    assert _generated_log_paths("/run/dp-1/kuma-al-edge-1-default.sock") == {"/run/dp-1/kuma-al-edge-1-default.sock"}
    assert _generated_log_paths() == {"/tmp/kuma-al-edge-1-default.sock"}
