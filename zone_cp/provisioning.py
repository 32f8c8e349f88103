"""MeshGatewayInstance on a Universal zone: the zone runs and supervises the gateway data planes itself.

Kuma provisions a MeshGatewayInstance only on Kubernetes (a Deployment and a Service). On a Universal zone,
meshgate runs `replicas` builtin gateway data planes as child processes of the zone:

    sys.executable -m meshgate.dp run --cp-address https://HOST:XDS --ca-cert-file <data-dir>/xds-ca.crt
                                      --dataplane-token-file TOKEN --dataplane JSON --admin-port FREE ...

The zone issues each replica's data plane token itself (bound to the replica's name, mesh, gateway tags and
type `gateway`), with the mesh's signing key that the global made and KDS brought: until that key has
arrived the replica waits, logging why (`zone.gateway.replica.waiting_for_token`), and retries. The token
goes to a 0600 file beside the replica's log; the CA is the zone's own xDS CA (zone_cp/dp_tls.py).

Each replica `i` (0-based) registers the Dataplane `<instance>-<i>` in the instance's mesh: a BUILTIN gateway
with the instance's tags (`kuma.io/service` defaults to the instance's name), address 127.0.0.1. Every replica
gets its own free Envoy admin port; all of them bind the same listener ports, which the generated listeners
allow with `enable_reuse_port` (SO_REUSEPORT: the kernel spreads connections over the Envoys).

Design (level-triggered, one anyio task group owned by the zone app):
- `desired_replicas(instances)` and `plan(desired, running)` are pure: what should run, and which replicas to
  stop (highest index first) and start. A replica whose Dataplane document changed (tags, mesh) is stopped and
  started again.
- The reconcile loop (meshgate.store.watch) re-reads the store's MeshGatewayInstances on every change batch
  touching them or a Mesh (and every `resync_interval` seconds), and applies the plan: stops concurrently,
  then starts.
- Each replica is one task (`_Replica.run`): spawn the child in its own session (process group), wait for it,
  and when it exits by itself restart it after an exponential backoff (reset once a run lasted
  `_STABLE_AFTER` seconds). The task is stopped by cancelling its scope; its shielded cleanup sends SIGTERM
  through the child's own handle (meshgate-dp then stops Envoy; its xDS stream closes and the zone removes
  the Dataplane it registered), waits
  `stop_timeout`, sends SIGKILL if needed, kills what is left in the child's process group (an Envoy orphaned
  by a SIGKILLed meshgate-dp), and deletes the Dataplane from the store if it is still there.
- The zone shutting down cancels the task group: every replica is stopped the same way.

Status: `GET /meshes/{mesh}/meshgatewayinstances/{name}/_status` on the zone API (an extra route; the
resource's own GET body stays Kuma's Universal form). It carries Kuma's `Ready` condition, computed on read:
False/NoGatewayMatched when no MeshGateway of the mesh selects the instance's tags (Kuma's `SelectGateway`,
meshgate/resources/selectors.py), False/DeploymentNotAvailable while fewer than `replicas` children are running,
True/Ready otherwise. It also lists each replica's pid, admin port, state and restart count.

State is bounded: one `_Replica` per desired replica (at most `MAX_REPLICAS` per instance), each keeping only
its current process and counters; each replica's output goes to `<data_dir>/<mesh>.<dataplane>.log`,
replaced at every start (the previous run is kept as `.log.1`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import structlog
from aiohttp import web

from meshgate.dp.app import with_parent_death_signal
from meshgate.k8s.status import (
    CONDITION_READY,
    REASON_DEPLOYMENT_NOT_AVAILABLE,
    REASON_NO_GATEWAY_MATCHED,
    REASON_READY,
)
from meshgate.resources import kinds
from meshgate.resources.kinds import meshgatewayinstance
from meshgate.resources.model import Resource, ResourceKey
from meshgate.resources.selectors import select_gateway
from meshgate.rest.app import ExtraRoute
from meshgate.store.protocol import NotFoundError, ResourceStore
from meshgate.store.watch import Started, WatchLog, reconcile_forever
from meshgate.tokens import DataplaneTokens, SigningKeyMissing

__all__ = [
    "MAX_REPLICAS",
    "DesiredReplica",
    "Plan",
    "Provisioner",
    "ReplicaKey",
    "dataplane_name",
    "desired_replicas",
    "plan",
    "ready_condition",
]

log = structlog.get_logger(__name__)

_WATCHED_KINDS = frozenset({kinds.MESH_GATEWAY_INSTANCE, kinds.MESH})
# A guard against a typo like `replicas: 10000` forking the zone host to death; reported in the status.
MAX_REPLICAS = 32
# Restart backoff after a replica exits by itself.
_FIRST_BACKOFF = 0.2
_MAX_BACKOFF = 10.0
_STABLE_AFTER = 30.0
# A replica's token lives a year: a replica is restarted long before (any change, any zone restart), and a
# stolen one can be revoked (POST /tokens/revocations on the global).
TOKEN_VALID_FOR = 365 * 24 * 3600.0
# While the mesh's signing key has not synced from the global, ask again this often.
_TOKEN_RETRY = 1.0


@dataclass(frozen=True, slots=True, order=True)
class ReplicaKey:
    mesh: str
    instance: str
    index: int


@dataclass(frozen=True, slots=True)
class DesiredReplica:
    key: ReplicaKey
    dataplane: str  # the Dataplane's Universal form as JSON, for `--dataplane`; also its fingerprint

    @property
    def dataplane_name(self) -> str:
        return dataplane_name(self.key)


@dataclass(frozen=True, slots=True)
class Plan:
    stop: tuple[ReplicaKey, ...] = ()
    start: tuple[ReplicaKey, ...] = ()


def dataplane_name(key: ReplicaKey) -> str:
    return f"{key.instance}-{key.index}"


def _dataplane_doc(instance: Resource, index: int) -> str:
    doc = {
        "type": kinds.DATAPLANE,
        "mesh": instance.meta.mesh,
        "name": dataplane_name(ReplicaKey(instance.meta.mesh, instance.meta.name, index)),
        "networking": {
            "address": "127.0.0.1",
            "gateway": {"type": "BUILTIN", "tags": dict(sorted(meshgatewayinstance.proxy_tags(instance).items()))},
        },
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


def desired_replicas(instances: Iterable[Resource]) -> dict[ReplicaKey, DesiredReplica]:
    """Every replica that should run: `replicas` (capped at MAX_REPLICAS) per instance, indexes 0..n-1."""
    out: dict[ReplicaKey, DesiredReplica] = {}
    for instance in instances:
        count = min(meshgatewayinstance.replicas(instance.spec), MAX_REPLICAS)
        for index in range(max(count, 0)):
            key = ReplicaKey(instance.meta.mesh, instance.meta.name, index)
            out[key] = DesiredReplica(key, _dataplane_doc(instance, index))
    return out


def plan(desired: Mapping[ReplicaKey, str], running: Mapping[ReplicaKey, str]) -> Plan:
    """Both maps take a replica to its Dataplane document. Stops come highest index first (a scale-down
    removes the newest replicas); starts lowest index first. A changed document is a stop and a start."""
    stop = [key for key, doc in running.items() if desired.get(key) != doc]
    start = [key for key, doc in desired.items() if running.get(key) != doc]
    stop.sort(key=lambda k: (k.mesh, k.instance, -k.index))
    start.sort()
    return Plan(tuple(stop), tuple(start))


def ready_condition(
    instance: Resource, gateways: Sequence[Resource], running: int, *, wanted: int | None = None
) -> dict[str, str]:
    """Kuma's `Ready` condition for a Universal instance (see the module docstring)."""
    desired = meshgatewayinstance.replicas(instance.spec) if wanted is None else wanted
    tags = meshgatewayinstance.proxy_tags(instance)
    if select_gateway(gateways, tags) is None:
        return {
            "type": CONDITION_READY,
            "status": "False",
            "reason": REASON_NO_GATEWAY_MATCHED,
            "message": f"no MeshGateway in mesh {instance.meta.mesh!r} selects the tags {tags}",
        }
    capped = min(desired, MAX_REPLICAS)
    if running < capped:
        return {
            "type": CONDITION_READY,
            "status": "False",
            "reason": REASON_DEPLOYMENT_NOT_AVAILABLE,
            "message": f"{running} of {capped} gateway data planes running",
        }
    message = f"{running} gateway data planes running"
    if desired > MAX_REPLICAS:
        message += f" (replicas capped at {MAX_REPLICAS})"
    return {"type": CONDITION_READY, "status": "True", "reason": REASON_READY, "message": message}


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _connect_host(bind_address: str) -> str:
    return "127.0.0.1" if bind_address in ("", "0.0.0.0", "::") else bind_address


class _Replica:
    """One replica's task: its child process, restarted with backoff until the task is cancelled."""

    def __init__(self, owner: Provisioner, desired: DesiredReplica) -> None:
        self.owner = owner
        self.key = desired.key
        self.dataplane = desired.dataplane
        self.scope = anyio.CancelScope()
        self.done = anyio.Event()
        self.proc: anyio.abc.Process | None = None
        self.admin_port = 0
        self.restarts = 0
        self.last_exit: int | None = None
        self.log = log.bind(mesh=self.key.mesh, dataplane=dataplane_name(self.key))

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def describe(self) -> dict[str, Any]:
        return {
            "index": self.key.index,
            "dataplane": dataplane_name(self.key),
            "state": "running" if self.running else "restarting",
            "pid": self.proc.pid if self.running and self.proc is not None else None,
            "adminPort": self.admin_port or None,
            "restarts": self.restarts,
            "lastExitCode": self.last_exit,
        }

    async def run(self) -> None:
        backoff = _FIRST_BACKOFF
        try:
            with self.scope:
                while True:
                    started = anyio.current_time()
                    try:
                        await self._spawn()
                    except OSError as exc:  # no log dir, no executable, no fork: retry like a crash
                        self.log.error("zone.gateway.replica.spawn_failed", error=str(exc))
                        code = None
                    else:
                        assert self.proc is not None
                        code = await self.proc.wait()
                        await self._reap()
                    self.last_exit = code
                    if anyio.current_time() - started >= _STABLE_AFTER:
                        backoff = _FIRST_BACKOFF
                    self.log.warning("zone.gateway.replica.exited", returncode=code, restart_in=backoff)
                    await anyio.sleep(backoff)
                    backoff = min(backoff * 2, _MAX_BACKOFF)
                    self.restarts += 1
        finally:
            with anyio.CancelScope(shield=True):
                await self._stop()
                self.done.set()

    async def _token_args(self) -> list[str]:
        """`--dataplane-token-file` with a fresh token (waiting for the mesh's key), or nothing without authn."""
        owner = self.owner
        if owner.tokens is None:
            return []
        tags = {k: [v] for k, v in json.loads(self.dataplane)["networking"]["gateway"]["tags"].items()}
        while True:
            try:
                token = await owner.tokens.issue(
                    self.key.mesh,
                    name=dataplane_name(self.key),
                    tags=tags,
                    proxy_type="gateway",
                    valid_for=TOKEN_VALID_FOR,
                )
                break
            except SigningKeyMissing as exc:
                self.log.warning("zone.gateway.replica.waiting_for_token", reason=str(exc), retry_in=_TOKEN_RETRY)
                await anyio.sleep(_TOKEN_RETRY)
        path = owner.log_dir / f"{self.key.mesh}.{dataplane_name(self.key)}.token"
        owner.log_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(token)
        return ["--dataplane-token-file", str(path)]

    async def _spawn(self) -> None:
        owner = self.owner
        token_args = await self._token_args()
        self.admin_port = _free_port("127.0.0.1")
        if owner.ca_cert_file is not None:
            cp = ["--cp-address", f"https://{owner.host}:{owner.xds_port}", "--ca-cert-file", str(owner.ca_cert_file)]
        else:
            cp = ["--cp-address", f"grpc://{owner.host}:{owner.xds_port}"]
        argv = [
            sys.executable,
            "-m",
            "meshgate.dp",
            "run",
            *cp,
            *token_args,
            "--dataplane",
            self.dataplane,
            "--admin-port",
            str(self.admin_port),
            "--drain-timeout",
            str(max(owner.stop_timeout / 2, 1.0)),
            "--concurrency",
            "1",
            "--log-format",
            "json",
        ]
        path = owner.log_dir / f"{self.key.mesh}.{dataplane_name(self.key)}.log"
        owner.log_dir.mkdir(parents=True, exist_ok=True)
        if path.exists():
            path.replace(path.with_name(path.name + ".1"))
        with path.open("wb") as output:
            # Its own session: the child and its Envoy form one process group, cleaned up together. And a
            # parent-death signal: if this zone is killed outright, the replica stops (and its Envoy with it).
            self.proc = await anyio.open_process(
                with_parent_death_signal(argv),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.log.info("zone.gateway.replica.started", pid=self.proc.pid, admin_port=self.admin_port)

    async def _reap(self) -> None:
        """After the child exited: kill whatever is left of its process group (an orphaned Envoy)."""
        proc = self.proc
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.aclose()
        self.proc = None  # never signal a reaped pid's group twice

    async def _stop(self) -> None:
        proc = self.proc
        if proc is not None and proc.returncode is None:
            proc.terminate()  # meshgate-dp stops Envoy; the zone removes the Dataplane when the stream closes
            with anyio.move_on_after(self.owner.stop_timeout):
                await proc.wait()
            if proc.returncode is None:
                self.log.warning("zone.gateway.replica.kill", reason=f"still running after {self.owner.stop_timeout}s")
                proc.kill()
                await proc.wait()
            self.last_exit = proc.returncode
        await self._reap()
        await self.owner.forget_dataplane(self.key)
        self.log.info("zone.gateway.replica.stopped", returncode=self.last_exit)


class Provisioner:
    """The zone's MeshGatewayInstance supervisor. `run` after the API and xDS servers are listening."""

    def __init__(
        self,
        store: ResourceStore,
        log_dir: Path,
        *,
        stop_timeout: float = 10.0,
        resync_interval: float = 30.0,
        tokens: DataplaneTokens | None = None,
        ca_cert_file: Path | None = None,
    ) -> None:
        """`tokens`: issues each replica's data plane token (None: the zone runs `--dp-server-authn none`).
        `ca_cert_file`: the zone's xDS CA, and the replicas connect over TLS (None: plaintext)."""
        self.store = store
        self.tokens = tokens
        self.ca_cert_file = ca_cert_file
        self.log_dir = log_dir
        self.stop_timeout = stop_timeout
        self.resync_interval = resync_interval
        self.host = "127.0.0.1"
        self.api_port = 0
        self.xds_port = 0
        self._replicas: dict[ReplicaKey, _Replica] = {}
        self._tg: anyio.abc.TaskGroup | None = None

    async def run(
        self,
        bind_address: str,
        api_port: int,
        xds_port: int,
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        self.host, self.api_port, self.xds_port = _connect_host(bind_address), api_port, xds_port
        async with anyio.create_task_group() as tg:
            self._tg = tg
            try:
                await reconcile_forever(
                    self.store,
                    _WATCHED_KINDS,
                    lambda _: self.reconcile(),
                    resync=self.resync_interval,
                    log=WatchLog(log, "zone.gateway.reconcile.failed"),
                    started=Started.RECONCILED,
                    task_status=task_status,
                )
            finally:
                self._tg = None
                # Cancelling the group stops every replica through its shielded cleanup.
                tg.cancel_scope.cancel()

    async def _instances(self) -> list[Resource]:
        return list((await self.store.list(kinds.MESH_GATEWAY_INSTANCE)).items)

    async def reconcile(self) -> None:
        desired = desired_replicas(await self._instances())
        running = {key: replica.dataplane for key, replica in self._replicas.items()}
        actions = plan({k: d.dataplane for k, d in desired.items()}, running)
        if actions.stop:
            async with anyio.create_task_group() as stops:
                for key in actions.stop:
                    stops.start_soon(self._stop_replica, key)
        assert self._tg is not None
        for key in actions.start:
            replica = _Replica(self, desired[key])
            self._replicas[key] = replica
            self._tg.start_soon(replica.run)
        if actions.stop or actions.start:
            log.info("zone.gateway.reconciled", stopped=len(actions.stop), started=len(actions.start))

    async def _stop_replica(self, key: ReplicaKey) -> None:
        replica = self._replicas.get(key)
        if replica is None:
            return
        replica.scope.cancel()
        await replica.done.wait()
        if self._replicas.get(key) is replica:
            del self._replicas[key]

    async def forget_dataplane(self, key: ReplicaKey) -> None:
        """A replica SIGKILLed (or whose zone API was already down) could not deregister: do it for it."""
        try:
            await self.store.delete(ResourceKey(kinds.DATAPLANE, key.mesh, dataplane_name(key)))
        except NotFoundError:
            pass
        except Exception as exc:  # the store may be failing; the next registration overwrites it anyway
            log.warning("zone.gateway.deregister.failed", mesh=key.mesh, dataplane=dataplane_name(key), error=str(exc))

    # -- status ------------------------------------------------------------------------------------------

    async def status(self, mesh: str, name: str) -> dict[str, Any]:
        instance = await self.store.get(ResourceKey(kinds.MESH_GATEWAY_INSTANCE, mesh, name))
        gateways = list((await self.store.list(kinds.MESH_GATEWAY, mesh)).items)
        replicas = sorted(
            (r for k, r in self._replicas.items() if (k.mesh, k.instance) == (mesh, name)), key=lambda r: r.key.index
        )
        running = sum(1 for r in replicas if r.running)
        wanted = meshgatewayinstance.replicas(instance.spec)
        return {
            "mesh": mesh,
            "name": name,
            "replicas": {"desired": wanted, "running": running},
            "tags": meshgatewayinstance.proxy_tags(instance),
            "conditions": [ready_condition(instance, gateways, running, wanted=wanted)],
            "proxies": [r.describe() for r in replicas],
        }

    def status_route(self) -> ExtraRoute:
        async def handler(request: web.Request) -> web.Response:
            # NotFoundError becomes Kuma's 404 in the API's error middleware.
            body = await self.status(request.match_info["mesh"], request.match_info["name"])
            return web.json_response(body)

        return ExtraRoute(
            "GET",
            "/meshes/{mesh}/meshgatewayinstances/{name}/_status",
            handler,
            "A MeshGatewayInstance's Ready condition and its gateway data planes (Universal zones)",
        )
