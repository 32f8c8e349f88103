"""`merge_clusters`: kuma-dp's rewrite of Envoy's Prometheus text (merge.go's MergeClustersForPrometheus)."""

from __future__ import annotations

from meshgate.dp.exposition import merge_clusters

ENVOY = """\
# TYPE envoy_cluster_upstream_rq_total counter
envoy_cluster_upstream_rq_total{envoy_cluster_name="echo-5fb50345cfb50345"} 10
envoy_cluster_upstream_rq_total{envoy_cluster_name="echo-cfb50345409aedd1"} 20
envoy_cluster_upstream_rq_total{envoy_cluster_name="web-409aedd15fb50345"} 3
envoy_cluster_upstream_rq_total{envoy_cluster_name="xds_cluster"} 4
envoy_cluster_upstream_rq_total{envoy_cluster_name="kuma_metrics_hijacker"} 5
# TYPE envoy_cluster_upstream_rq_time histogram
envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="echo-5fb50345cfb50345",le="0.5"} 1
envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="echo-cfb50345409aedd1",le="0.5"} 2
envoy_cluster_upstream_rq_time_sum{envoy_cluster_name="echo-5fb50345cfb50345"} 1.5
envoy_cluster_upstream_rq_time_sum{envoy_cluster_name="echo-cfb50345409aedd1"} 2.25
# TYPE envoy_http_downstream_rq_total counter
envoy_http_downstream_rq_total{envoy_http_conn_manager_prefix="edge"} 7
envoy_http_downstream_rq_total{envoy_http_conn_manager_prefix="admin"} 1
envoy_http_downstream_rq_total{envoy_http_conn_manager_prefix="kuma_metrics_prometheus"} 2
# TYPE envoy_server_live gauge
envoy_server_live{} 1
envoy_server_uptime 12
"""


def test_a_services_clusters_are_counted_under_the_service_and_marked_as_mesh_traffic() -> None:
    out = merge_clusters(ENVOY).splitlines()
    assert 'envoy_cluster_upstream_rq_total{envoy_cluster_name="echo",kuma_io_mesh_traffic="true"} 30' in out
    assert 'envoy_cluster_upstream_rq_total{envoy_cluster_name="web",kuma_io_mesh_traffic="true"} 3' in out
    assert not any("echo-5fb50345cfb50345" in line for line in out)


def test_envoys_own_clusters_and_connection_managers_are_not_mesh_traffic() -> None:
    out = merge_clusters(ENVOY).splitlines()
    assert 'envoy_cluster_upstream_rq_total{envoy_cluster_name="xds_cluster"} 4' in out
    assert 'envoy_cluster_upstream_rq_total{envoy_cluster_name="kuma_metrics_hijacker"} 5' in out
    assert 'envoy_http_downstream_rq_total{envoy_http_conn_manager_prefix="edge",kuma_io_mesh_traffic="true"} 7' in out
    assert 'envoy_http_downstream_rq_total{envoy_http_conn_manager_prefix="admin"} 1' in out
    assert 'envoy_http_downstream_rq_total{envoy_http_conn_manager_prefix="kuma_metrics_prometheus"} 2' in out


def test_histograms_merge_per_bucket_and_sum() -> None:
    out = merge_clusters(ENVOY).splitlines()
    bucket = 'envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="echo",le="0.5",kuma_io_mesh_traffic="true"} 3'
    assert bucket in out
    assert 'envoy_cluster_upstream_rq_time_sum{envoy_cluster_name="echo",kuma_io_mesh_traffic="true"} 3.75' in out


def test_family_lines_stay_in_order_and_other_samples_pass_through() -> None:
    out = merge_clusters(ENVOY).splitlines()
    types = [line for line in out if line.startswith("# TYPE")]
    assert types == [line for line in ENVOY.splitlines() if line.startswith("# TYPE")]
    assert "envoy_server_uptime 12" in out
    assert "envoy_server_live{} 1" in out  # an empty label set is left as Envoy wrote it


def test_what_does_not_parse_passes_through() -> None:
    odd = 'weird line\nenvoy_x{envoy_cluster_name="a-5fb50345cfb50345",broken} 1\n'
    assert merge_clusters(odd) == odd
    assert merge_clusters("") == ""
