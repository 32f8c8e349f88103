"""meshgate-dp: registers a Dataplane with its zone and runs Envoy against the zone's delta ADS server."""

from __future__ import annotations

from meshgate.dp.app import DpConfig, run_dp
from meshgate.dp.bootstrap import ControlPlaneAddress, parse_cp_address, render_bootstrap
from meshgate.dp.envoy import EnvoyNotFoundError, envoy_argv, find_envoy, unique_base_id
from meshgate.dp.registration import RegistrationError, deregister, register

__all__ = [
    "ControlPlaneAddress",
    "DpConfig",
    "EnvoyNotFoundError",
    "RegistrationError",
    "deregister",
    "envoy_argv",
    "find_envoy",
    "parse_cp_address",
    "register",
    "render_bootstrap",
    "run_dp",
    "unique_base_id",
]
