"""The metrics hijacker (kuma-dp's `app/kuma-dp/pkg/dataplane/metrics`): what a scraper of the proxy's Prometheus
endpoint gets, Envoy's stats merged with meshgate-dp's own, served on a Unix socket.

    scraper --GET :5670/metrics--> Envoy listener `kuma:metrics:prometheus` (meshgate.xds.prometheus)
            --prefix rewrite `/?filter=..&usedonly`--> cluster `kuma:metrics:hijacker` = this Unix socket
            --> Envoy admin `/stats?<that query>&format=prometheus&text_readouts` (127.0.0.1:<admin port>)
                + each application of the Mesh's `aggregate` (`x-meshgate-aggregate`, set by that route)
                + meshgate-dp's own registry (`dp_registry`: `meshgate_dp_*`, process_*, python_*)
            <-- one text exposition (`text/plain; version=0.0.4`): Envoy's, the applications', then its own

The socket's path is Kuma's `kuma-mh-<name>-<mesh>.sock` in the config directory, sent to the zone in the node
metadata (`metricsSocketPath`), so Envoy's cluster names it. Only Envoy (and this host's users allowed into
the config directory) can reach it; the scraper-facing port, its path and its TLS are Envoy's, set by the zone
from `Mesh.metrics`: with no prometheus backend there is no listener, and this socket stays idle.

Envoy's part gets kuma-dp's rewrite (meshgate.dp.exposition: a service's `<service>-<hash>` clusters counted
under the service, `kuma_io_mesh_traffic="true"` on the mesh's clusters and HCMs); an application's is as it
wrote it, fetched with no query (Kuma's `RemoveQueryParameters`). One that cannot be reached (or answers other
than 200) leaves its part out, is logged and counted (`meshgate_dp_metrics_scrape_errors_total{application}`),
and the rest is still served, as kuma-dp serves what it could scrape.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import anyio
import anyio.abc
import prometheus_client
import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from meshgate.dp.access_logs import AccessLogStreamer
from meshgate.dp.exposition import merge_clusters

__all__ = ["AGGREGATE_HEADER", "Application", "MetricsHijacker", "applications", "dp_registry"]

log = structlog.get_logger(__name__)

# Envoy's stats can be large (thousands of series per gateway with many clusters): a scrape may take a while,
# but never longer than a Prometheus scrape timeout would wait anyway.
_ENVOY_TIMEOUT = 10.0
# kuma-dp forwards these scraper headers to each application (Prometheus's own scrape request headers). Not
# `accept`: kuma-dp negotiates OpenMetrics across the parts; this answer is always the classic text format, so
# each application is asked for that.
_FORWARDED_HEADERS = ("user-agent", "x-prometheus-scrape-timeout-seconds")
_ACCEPT = "text/plain;version=0.0.4;q=1,*/*;q=0.1"
# meshgate.xds.prometheus.AGGREGATE_HEADER (the dp does not import the xDS generator): what the route hands over.
AGGREGATE_HEADER = "x-meshgate-aggregate"
_MAX_APPLICATIONS = 32  # a Mesh lists a few; more in one header is not a conf anyone wrote


@dataclass(frozen=True, slots=True)
class Application:
    """An `aggregate` entry: an application's own Prometheus endpoint."""

    name: str
    url: str


def applications(header: str) -> list[Application]:
    """The applications `x-meshgate-aggregate` lists; malformed entries are skipped (the zone wrote it, so a
    malformed one is a bug there, not a scraper's doing: the route overwrites what a scraper sends)."""
    if not header:
        return []
    try:
        entries = json.loads(header)
    except ValueError:
        log.warning("dp.metrics.aggregate_malformed", header=header[:200])
        return []
    out = []
    for entry in entries[:_MAX_APPLICATIONS] if isinstance(entries, list) else []:
        try:
            name, address, port, path = (entry["name"], entry["address"], int(entry["port"]), entry["path"])
        except (TypeError, KeyError, ValueError):
            continue
        if not (isinstance(name, str) and isinstance(address, str) and isinstance(path, str) and 0 < port < 65536):
            continue
        host = f"[{address}]" if ":" in address else address
        out.append(Application(name, f"http://{host}:{port}/{path.lstrip('/')}"))
    return out


class _AccessLogCollector:
    """The access log streamer's counters, read at scrape time."""

    def __init__(self, streamer: AccessLogStreamer | None) -> None:
        self.streamer = streamer

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        sent = CounterMetricFamily(
            "meshgate_dp_access_log_lines_sent", "TrafficLog lines sent to a tcp collector", labels=["address"]
        )
        dropped = CounterMetricFamily(
            "meshgate_dp_access_log_lines_dropped",
            "TrafficLog lines dropped for a tcp collector (outbox full or connection broken)",
            labels=["address"],
        )
        connected = GaugeMetricFamily(
            "meshgate_dp_access_log_connected", "1 while connected to a tcp collector", labels=["address"]
        )
        senders = self.streamer.senders if self.streamer is not None else {}
        for address, sender in sorted(senders.items()):
            sent.add_metric([address], sender.stats.sent)
            dropped.add_metric([address], sender.stats.dropped)
            connected.add_metric([address], 1 if sender.stats.connected else 0)
        yield sent
        yield dropped
        yield connected


class _ScrapeErrors:
    def __init__(self) -> None:
        self.counts: dict[str, int] = {"envoy": 0}

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "meshgate_dp_metrics_scrape_errors",
            "Scrapes of an application's metrics that failed (the merged answer left its part out)",
            labels=["application"],
        )
        for name, count in sorted(self.counts.items()):
            family.add_metric([name], count)
        yield family


def dp_registry(streamer: AccessLogStreamer | None = None) -> tuple[CollectorRegistry, _ScrapeErrors]:
    """meshgate-dp's own metrics: its process (CPU, memory, open files: `process_*`, `python_*`) and the access
    log streamer's counters. A registry of its own, not the global one, so nothing imported registers into it."""
    registry = CollectorRegistry(auto_describe=True)
    prometheus_client.ProcessCollector(registry=registry)
    prometheus_client.PlatformCollector(registry=registry)
    registry.register(_AccessLogCollector(streamer))
    errors = _ScrapeErrors()
    registry.register(errors)
    return registry, errors


class MetricsHijacker:
    def __init__(
        self, path: Path, admin_port: int, registry: CollectorRegistry, errors: _ScrapeErrors | None = None
    ) -> None:
        self.path = path
        self.admin_port = admin_port
        self.registry = registry
        self._errors = errors if errors is not None else _ScrapeErrors()
        self._session: aiohttp.ClientSession | None = None

    def _envoy_url(self, query: str) -> str:
        """Kuma's `AddPrometheusFormat`: the query the listener's rewrite carried (filter, usedonly), plus the
        Prometheus format and text readouts."""
        extra = "format=prometheus&text_readouts"
        return f"http://127.0.0.1:{self.admin_port}/stats?{query + '&' if query else ''}{extra}"

    async def _get(self, name: str, url: str, request: web.Request) -> bytes:
        """One application's metrics, b"" (logged and counted) when it fails."""
        assert self._session is not None
        headers = {h: request.headers[h] for h in _FORWARDED_HEADERS if h in request.headers}
        headers["accept"] = _ACCEPT
        try:
            async with self._session.get(url, headers=headers) as resp:
                body = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            return self._failed(name, url, str(exc) or type(exc).__name__)
        if status != 200:  # a bad filter regex, for one: Envoy says why in the body
            return self._failed(name, url, f"HTTP {status}: {body[:200].decode(errors='replace').strip()}")
        return body if not body or body.endswith(b"\n") else body + b"\n"

    def _failed(self, name: str, url: str, error: str) -> bytes:
        self._errors.counts[name] = self._errors.counts.get(name, 0) + 1
        log.warning("dp.metrics.scrape_failed", application=name, url=url, error=error)
        return b""

    async def _handle(self, request: web.Request) -> web.Response:
        targets = [("envoy", self._envoy_url(request.query_string))]
        targets += [(app.name, app.url) for app in applications(request.headers.get(AGGREGATE_HEADER, ""))]
        parts: list[bytes] = [b""] * len(targets)

        async def fetch(i: int, name: str, url: str) -> None:
            parts[i] = await self._get(name, url, request)
            if i == 0 and parts[i]:  # Envoy's
                parts[i] = merge_clusters(parts[i].decode(errors="replace")).encode()

        async with anyio.create_task_group() as tg:
            for i, (name, url) in enumerate(targets):
                tg.start_soon(fetch, i, name, url)
        # Kuma's processMetrics drops OpenMetrics' `# EOF` from each part: the merged answer is one text exposition.
        body = b"".join(p.replace(b"# EOF\n", b"") for p in parts)
        response = web.Response(body=body + prometheus_client.generate_latest(self.registry))
        response.headers["Content-Type"] = prometheus_client.CONTENT_TYPE_LATEST
        return response

    @contextlib.asynccontextmanager
    async def _client(self) -> AsyncIterator[None]:
        timeout = aiohttp.ClientTimeout(total=_ENVOY_TIMEOUT)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            self._session = session
            try:
                yield
            finally:
                self._session = None

    async def serve(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Serves until cancelled; the socket is removed on the way out. A stale socket left by a killed
        meshgate-dp is replaced (the path is this Dataplane's own, in this process's config directory). A socket
        that cannot be made (a --config-dir too long for a Unix socket path, say) is logged and the proxy runs
        without it: Envoy then answers a scrape with 503, and traffic is untouched."""
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            async with self._client():
                self.path.unlink(missing_ok=True)
                site = web.UnixSite(runner, str(self.path))
                try:
                    await site.start()
                except OSError as exc:
                    log.error("dp.metrics.failed", socket=str(self.path), error=exc.strerror or str(exc))
                    task_status.started()
                    return
                log.info("dp.metrics.started", socket=str(self.path))
                task_status.started()
                await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await runner.cleanup()
            self.path.unlink(missing_ok=True)
