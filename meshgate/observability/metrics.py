"""KDS and xDS metrics under Kuma's names, rendered exactly as Kuma's Go exporter writes them.

prometheus_client insists on a `_total` suffix for counters; Kuma's dashboards query
`kds_delta_responses_sent` and `kds_delta_requests_received{confirmation}` without it. So these
families are plain counters kept here and rendered by hand, next to the client library's registry.

`XdsMetrics` is the zone's side of Envoy's streams: Kuma's `xds_requests_received{type_url,confirmation}`,
`xds_responses_sent{type_url}` and `xds_streams_active` (`pkg/util/xds/stats_callbacks.go`), with two labels
Kuma does not have, `mesh` and `dataplane`: a zone's counters per proxy (sum them away for Kuma's series). A
proxy's series stay while the zone remembers the proxy (`ProxyRegistry` keeps every proxy's last stream), so
they are as many as the Dataplanes the zone has served since it started.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

__all__ = ["KDSMetrics", "XdsMetrics"]


def _labels(pairs: tuple[tuple[str, str], ...]) -> str:
    inner = ",".join(f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"' for k, v in pairs)
    return "{" + inner + "}" if inner else ""


class KDSMetrics:
    def __init__(self, prefix: str = "kds_delta") -> None:
        self.prefix = prefix
        self.responses_sent: Counter[str] = Counter()  # by type_url
        self.requests_received: Counter[tuple[str, str]] = Counter()  # by (type_url, ACK|NACK)
        self.stalls: Counter[tuple[str, str]] = Counter()  # by (zone, type_url)
        self.protocol_errors: Counter[str] = Counter()  # by zone
        self.rejected: Counter[tuple[str, str]] = Counter()  # resources NACKed from a zone, by (zone, type_url)
        # KDS calls refused by --kds-auth, by (claimed zone, reason code of meshgate.auth.AUTH_REASONS).
        self.auth_failures: Counter[tuple[str, str]] = Counter()
        self.streams_active: Callable[[], int] = lambda: 0
        # Global-to-zone streams waiting for an admission slot, and those holding one (--kds-max-concurrent-admissions).
        self.admissions_waiting: Callable[[], int] = lambda: 0
        self.admissions_in_progress: Callable[[], int] = lambda: 0

    def render(self) -> str:
        p = self.prefix
        lines = [
            f"# HELP {p}_responses_sent Number of responses sent by the server to a client",
            f"# TYPE {p}_responses_sent counter",
        ]
        lines += [
            f"{p}_responses_sent{_labels((('type_url', t),))} {n}" for t, n in sorted(self.responses_sent.items())
        ]
        lines += [
            f"# HELP {p}_requests_received Number of confirmations requests from a client",
            f"# TYPE {p}_requests_received counter",
        ]
        lines += [
            f"{p}_requests_received{_labels((('type_url', t), ('confirmation', c)))} {n}"
            for (t, c), n in sorted(self.requests_received.items())
        ]
        lines += [
            f"# HELP {p}_streams_active Number of active connections between a server and a client",
            f"# TYPE {p}_streams_active gauge",
            f"{p}_streams_active {self.streams_active()}",
            "# HELP meshgate_kds_admissions_waiting KDS streams waiting for a slot to run their initial sync",
            "# TYPE meshgate_kds_admissions_waiting gauge",
            f"meshgate_kds_admissions_waiting {self.admissions_waiting()}",
            "# HELP meshgate_kds_admissions_in_progress KDS streams running their initial sync (holding a slot)",
            "# TYPE meshgate_kds_admissions_in_progress gauge",
            f"meshgate_kds_admissions_in_progress {self.admissions_in_progress()}",
            "# HELP meshgate_kds_stalls Responses left un-ACKed past the stall threshold",
            "# TYPE meshgate_kds_stalls counter",
        ]
        lines += [
            f"meshgate_kds_stalls{_labels((('zone', z), ('type_url', t)))} {n}"
            for (z, t), n in sorted(self.stalls.items())
        ]
        lines += [
            "# HELP meshgate_kds_protocol_errors Streams closed for breaking the KDS protocol",
            "# TYPE meshgate_kds_protocol_errors counter",
        ]
        lines += [
            f"meshgate_kds_protocol_errors{_labels((('zone', z),))} {n}"
            for z, n in sorted(self.protocol_errors.items())
        ]
        lines += [
            "# HELP meshgate_kds_rejected_resources Resources a zone sent up that the global refused (NACKed)",
            "# TYPE meshgate_kds_rejected_resources counter",
        ]
        lines += [
            f"meshgate_kds_rejected_resources{_labels((('zone', z), ('type_url', t)))} {n}"
            for (z, t), n in sorted(self.rejected.items())
        ]
        lines += [
            "# HELP meshgate_kds_auth_failures KDS calls refused because the zone token did not prove the zone",
            "# TYPE meshgate_kds_auth_failures counter",
        ]
        lines += [
            f"meshgate_kds_auth_failures{_labels((('zone', z), ('reason', r)))} {n}"
            for (z, r), n in sorted(self.auth_failures.items())
        ]
        return "\n".join(lines) + "\n"


class XdsMetrics:
    def __init__(self) -> None:
        self.responses_sent: Counter[tuple[str, str, str]] = Counter()  # by (mesh, dataplane, type_url)
        # by (mesh, dataplane, type_url, ACK|NACK)
        self.requests_received: Counter[tuple[str, str, str, str]] = Counter()
        self.streams_active: Callable[[], int] = lambda: 0

    def render(self) -> str:
        lines = [
            "# HELP xds_responses_sent Number of responses sent by the server to a client",
            "# TYPE xds_responses_sent counter",
        ]
        lines += [
            f"xds_responses_sent{_labels((('mesh', m), ('dataplane', d), ('type_url', t)))} {n}"
            for (m, d, t), n in sorted(self.responses_sent.items())
        ]
        lines += [
            "# HELP xds_requests_received Number of confirmations requests from a client",
            "# TYPE xds_requests_received counter",
        ]
        lines += [
            f"xds_requests_received{_labels((('mesh', m), ('dataplane', d), ('type_url', t), ('confirmation', c)))} {n}"
            for (m, d, t, c), n in sorted(self.requests_received.items())
        ]
        lines += [
            "# HELP xds_streams_active Number of active connections between a server and a client",
            "# TYPE xds_streams_active gauge",
            f"xds_streams_active {self.streams_active()}",
        ]
        return "\n".join(lines) + "\n"
