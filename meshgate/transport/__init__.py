"""The gRPC adapters: thin async shells around the sans-IO engines.

- `kds_server.py`: the global's KDS service (GlobalToZoneSync sends, ZoneToGlobalSync receives), with
  admission (`kds_admission.py`: zone tokens, one instance per zone, bounded peers);
- `kds_client.py`, `kds_upstream.py`: the zone's KDS client, receiving from the global and sending up;
- `ads_server.py`: Envoy's delta ADS for a zone's proxies;
- `stream_loop.py`: the one reader/writer loop all three run; `observer.py`: stream events to logs, metrics
  and `kds watch` events;
- `xds_configs.py`: config dumps over KDS's StreamXDSConfigs, both ends; `grpc_server.py`, `tls.py`: servers
  and credentials.

Nothing is re-exported here: importing the package must not load gRPC servers into a process that needs
one module (meshgate-dp reads `tls.py` only). Import the adapters from their modules.
"""

from __future__ import annotations

__all__: list[str] = []
