"""Envoy config dumps across KDS: `GlobalKDSService/StreamXDSConfigs`, both ends, and the zone's admin fetch.

    global API GET /meshes/{mesh}/dataplanes/{name}/xds
        -> XDSConfigBroker.request(zone, ...)            one request, a uuid, a deadline
        -> the zone's open StreamXDSConfigs stream       (the zone opened it; the global writes requests)
    zone: ConfigDumpAnswerer.run(channel)                reads XDSConfigRequest, answers XDSConfigResponse
        -> ConfigDumper.dump(mesh, name)                 the zone's Envoy admin client (zone_cp/envoy_admin.py):
                                                         GET /config_dump of the proxy's admin, found through
                                                         its live authenticated xDS stream

The same stream also answers "which VIP does this zone give `.mesh` name N?" for the global's
`kds trace name`: a request with `resource_type` `VIRTUAL_IPS` ("VirtualIPs") and the name in `resource_name`,
answered with the zone's `GET /vips` entry as JSON; with an empty `resource_name`, the zone's whole `GET /vips`
body (of `resource_mesh`, or every mesh), which the global's `GET /vips` (its GUI's names page) gathers.
Kuma leaves `resource_type` open ("Dataplane, ZoneIngress or ZoneEgress"), so a Kuma zone answers it with an
error, which the global shows as "unknown".

Everything is bounded: the zone answers at most `MAX_CONCURRENT` requests at once, each admin fetch has a
timeout, and a global request waits at most its timeout; a stream that closes fails its pending requests at once.

Error tree (what a config-dump request may fail with, on either side)::

    ConfigDumpError          the zone answered with an error (the proxy's admin unreachable, ...)
    ├── DataplaneNotFound    no such Dataplane in the zone
    ├── ProxyNotConnected    the Dataplane exists, but no proxy holds a live authenticated xDS stream for it
    └── ZoneOffline          the zone has no config-dump stream open to the global, or it closed
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio
import grpc
import structlog
from anyio.streams.memory import MemoryObjectSendStream

from meshgate.api.mesh.v1alpha1 import kds_pb2, kds_pb2_grpc
from meshgate.resources import kinds

__all__ = [
    "MAX_CONFIG_BYTES",
    "VIRTUAL_IPS",
    "ConfigDumpAnswerer",
    "ConfigDumpError",
    "ConfigDumper",
    "DataplaneNotFound",
    "ProxyNotConnected",
    "XDSConfigBroker",
    "ZoneOffline",
]

log = structlog.get_logger(__name__)

MAX_CONCURRENT = 8
# What fits in one XDSConfigResponse under the 10 MiB KDS message limit, with room for the envelope.
MAX_CONFIG_BYTES = 10 * 1024 * 1024 - 64 * 1024
# Requests queued per zone stream before `request` waits for room.
QUEUE = 64
# `resource_type` of a request for a `.mesh` name's VIP entry rather than a config dump.
VIRTUAL_IPS = "VirtualIPs"
# Looks up a `.mesh` name in the zone (mesh may be ""): its VIP entry as JSON-ready data, or None when unknown.
NameLookup = Callable[[str, str], dict[str, Any] | None]
# Every `.mesh` name of the zone in a mesh ("" for all): its `GET /vips` body.
NameListing = Callable[[str], dict[str, Any]]


class ConfigDumpError(Exception):
    """The zone answered with an error (the proxy's admin is unreachable, ...)."""


class DataplaneNotFound(ConfigDumpError):
    pass


class ZoneOffline(ConfigDumpError):
    pass


class ProxyNotConnected(ConfigDumpError):
    """The Dataplane exists but no proxy holds a live (authenticated) xDS stream for it."""


class ConfigDumper(Protocol):
    """What answers a config-dump request in a zone: its Envoy admin client (zone_cp/envoy_admin.py)."""

    async def dump(self, mesh: str, name: str, include_eds: bool = False) -> bytes:
        """The proxy's config dump; raises ConfigDumpError (DataplaneNotFound, ProxyNotConnected) when none."""
        ...


class ConfigDumpAnswerer:
    """Zone side of StreamXDSConfigs, run inside the KDS session on its channel; reopens the stream if it ends."""

    def __init__(
        self,
        dumper: ConfigDumper,
        zone: str = "",
        names: NameLookup | None = None,
        listing: NameListing | None = None,
    ) -> None:
        self._dumper = dumper
        self._zone = zone
        # Set by the zone once its DNS exists: answer VIRTUAL_IPS requests (one name, or all of them).
        self.names = names
        self.listing = listing

    def _answer_name(self, req: kds_pb2.XDSConfigRequest) -> kds_pb2.XDSConfigResponse:
        if not req.resource_name:
            if self.listing is None:
                return kds_pb2.XDSConfigResponse(request_id=req.request_id, error=f"zone {self._zone!r} has no DNS")
            body = json.dumps(self.listing(req.resource_mesh)).encode()
            if len(body) > MAX_CONFIG_BYTES:
                error = f"the VIP listing is {len(body)} bytes, over the {MAX_CONFIG_BYTES}-byte KDS limit"
                return kds_pb2.XDSConfigResponse(request_id=req.request_id, error=error)
            return kds_pb2.XDSConfigResponse(request_id=req.request_id, config=body)
        entry = self.names(req.resource_mesh, req.resource_name) if self.names is not None else None
        if entry is None:
            error = f"{req.resource_name} has no VIP in zone {self._zone!r}"
            return kds_pb2.XDSConfigResponse(request_id=req.request_id, error=error)
        return kds_pb2.XDSConfigResponse(request_id=req.request_id, config=json.dumps(entry).encode())

    async def answer(self, req: kds_pb2.XDSConfigRequest) -> kds_pb2.XDSConfigResponse:
        if req.resource_type == VIRTUAL_IPS:
            return self._answer_name(req)
        if req.resource_type != kinds.DATAPLANE:
            return kds_pb2.XDSConfigResponse(
                request_id=req.request_id, error=f"unsupported resource type {req.resource_type!r}"
            )
        try:
            config = await self._dumper.dump(req.resource_mesh, req.resource_name, req.include_eds)
        except ConfigDumpError as exc:
            return kds_pb2.XDSConfigResponse(request_id=req.request_id, error=str(exc))
        except Exception as exc:  # a bug: answer it, log it, never end the KDS session over it
            log.exception("kds.xds_configs.answer_failed", zone=self._zone)
            return kds_pb2.XDSConfigResponse(request_id=req.request_id, error=f"internal error: {exc}")
        if len(config) > MAX_CONFIG_BYTES:
            # Over the KDS message limit, the write would kill the stream: name the problem instead.
            error = f"config dump is {len(config)} bytes, over the {MAX_CONFIG_BYTES}-byte KDS limit"
            return kds_pb2.XDSConfigResponse(request_id=req.request_id, error=error)
        return kds_pb2.XDSConfigResponse(request_id=req.request_id, config=config)

    async def run(self, channel: grpc.aio.Channel, metadata: Any) -> None:
        stub = kds_pb2_grpc.GlobalKDSServiceStub(channel)
        while True:
            try:
                await self._stream(stub, metadata)
                log.info("kds.xds_configs.closed", zone=self._zone)
            except* grpc.aio.AioRpcError as group:
                codes = {e.code() for e in group.exceptions if isinstance(e, grpc.aio.AioRpcError)}
                if codes == {grpc.StatusCode.UNIMPLEMENTED}:
                    log.info("kds.xds_configs.unsupported", zone=self._zone)
                    await anyio.sleep_forever()
                log.info("kds.xds_configs.failed", zone=self._zone, error=str(sorted(c.name for c in codes)))
            except* Exception:  # config dumps are a side service: a failure here must not end the sync session
                log.exception("kds.xds_configs.unexpected_error", zone=self._zone)
            # The sync stream decides when the session ends; this one only reopens, not too eagerly.
            await anyio.sleep(1.0)

    async def _stream(self, stub: kds_pb2_grpc.GlobalKDSServiceStub, metadata: Any) -> None:
        call = stub.StreamXDSConfigs(metadata=metadata)
        slots = anyio.Semaphore(MAX_CONCURRENT)
        write_lock = anyio.Lock()  # one write at a time on a grpc.aio call

        async def handle(req: kds_pb2.XDSConfigRequest) -> None:
            try:
                resp = await self.answer(req)
            finally:
                slots.release()
            async with write_lock:
                await call.write(resp)

        async with anyio.create_task_group() as tg:
            async for req in call:
                await slots.acquire()
                tg.start_soon(handle, req)
            tg.cancel_scope.cancel()


@dataclass(slots=True)
class _ZoneStream:
    send: MemoryObjectSendStream[kds_pb2.XDSConfigRequest]
    pending: dict[str, _Pending] = field(default_factory=dict)


@dataclass(slots=True)
class _Pending:
    done: anyio.Event = field(default_factory=anyio.Event)
    response: kds_pb2.XDSConfigResponse | None = None
    error: str = ""


class XDSConfigBroker:
    """Global side: the open StreamXDSConfigs stream per zone, and requests correlated by request_id."""

    def __init__(self, timeout: float = 10.0) -> None:
        self.timeout = timeout
        self._zones: dict[str, _ZoneStream] = {}

    def connected(self, zone: str) -> bool:
        return zone in self._zones

    async def serve(
        self,
        zone: str,
        responses: AsyncIterator[kds_pb2.XDSConfigResponse],
        write: Callable[[kds_pb2.XDSConfigRequest], Awaitable[None]],
    ) -> None:
        """Runs one zone's stream: writes queued requests, resolves pending ones from the responses."""
        send, receive = anyio.create_memory_object_stream[kds_pb2.XDSConfigRequest](QUEUE)
        stream = _ZoneStream(send)
        self._zones[zone] = stream  # a reconnect replaces the old stream, which then ends by itself
        log.info("kds.xds_configs.open", zone=zone)
        try:
            async with anyio.create_task_group() as tg, receive:

                async def read() -> None:
                    async for resp in responses:
                        pending = stream.pending.get(resp.request_id)
                        if pending is not None:
                            pending.response = resp
                            pending.done.set()
                    tg.cancel_scope.cancel()

                tg.start_soon(read)
                async for req in receive:
                    await write(req)
        finally:
            if self._zones.get(zone) is stream:
                del self._zones[zone]
            send.close()
            for pending in stream.pending.values():
                pending.error = f'zone "{zone}" disconnected before answering'
                pending.done.set()
            log.info("kds.xds_configs.closed", zone=zone)

    async def request(
        self,
        zone: str,
        mesh: str,
        name: str,
        *,
        include_eds: bool = False,
        resource_type: str = kinds.DATAPLANE,
        wait: float | None = None,
    ) -> bytes:
        """The config dump of Dataplane `name` in `zone` (or, with `resource_type=VIRTUAL_IPS`, the JSON VIP entry
        of `.mesh` name `name`), waiting at most `wait` (default: the broker's timeout). Raises ZoneOffline,
        ConfigDumpError or TimeoutError."""
        stream = self._zones.get(zone)
        if stream is None:
            raise ZoneOffline(f'zone "{zone}" is offline: it has no config-dump stream open to this global')
        request_id = str(uuid.uuid4())
        req = kds_pb2.XDSConfigRequest(
            request_id=request_id,
            resource_type=resource_type,
            resource_name=name,
            resource_mesh=mesh,
            include_eds=include_eds,
        )
        pending = stream.pending[request_id] = _Pending()
        limit = self.timeout if wait is None else wait
        try:
            with anyio.fail_after(limit if math.isfinite(limit) else None):
                try:
                    await stream.send.send(req)
                except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                    raise ZoneOffline(f'zone "{zone}" disconnected') from None
                await pending.done.wait()
        except TimeoutError:
            raise TimeoutError(f'zone "{zone}" did not answer within {limit:g}s') from None
        finally:
            stream.pending.pop(request_id, None)
        if pending.error:
            raise ZoneOffline(pending.error)
        resp = pending.response
        assert resp is not None
        if resp.WhichOneof("result") == "error":
            raise ConfigDumpError(resp.error)
        return bytes(resp.config)
