"""Runs a grpc.aio server inside an anyio task group, with health and reflection enabled; plaintext, or TLS
only when given server credentials (meshgate.transport.tls.server_credentials)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import anyio
import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from meshgate.kds.limits import DEFAULT_MAX_MSG_SIZE
from meshgate.observability.process import BindError

__all__ = ["serve_grpc"]

Registrar = Callable[[grpc.aio.Server], None]


async def serve_grpc(
    register: Sequence[Registrar],
    service_names: Sequence[str],
    host: str,
    port: int,
    *,
    credentials: grpc.ServerCredentials | None = None,
    grace: float = 0.5,
    max_msg_size: int = DEFAULT_MAX_MSG_SIZE,
    task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serves until cancelled; reports the bound port (port 0 picks a free one). With `credentials` the port
    speaks TLS only: a plaintext client is refused in the handshake, never served in the clear."""
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", max_msg_size),
            ("grpc.max_send_message_length", max_msg_size),
            # Zones ping every 15 s (keepalive); allow it without calls in flight.
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
            # gRPC enables SO_REUSEPORT by default, so a second process on the same port would silently
            # share the zones' connections with the first. Fail to bind instead.
            ("grpc.so_reuseport", 0),
        ]
    )
    for add in register:
        add(server)
    health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*service_names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
        server,
    )
    try:
        if credentials is None:
            bound = server.add_insecure_port(f"{host}:{port}")
        else:
            bound = server.add_secure_port(f"{host}:{port}", credentials)
    except RuntimeError as exc:  # grpc raises RuntimeError("Failed to bind ...") when the port is taken
        raise BindError("gRPC", host, port, "address already in use or not available") from exc
    if bound == 0:
        raise BindError("gRPC", host, port, "address already in use or not available")
    await server.start()
    for name in ("", *service_names):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    task_status.started(bound)
    try:
        await anyio.sleep_forever()
    finally:
        with anyio.CancelScope(shield=True):
            await health_servicer.enter_graceful_shutdown()
            await server.stop(grace)
