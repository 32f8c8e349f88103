"""The baseline for bench/propagation.py: raw grpc.aio streams carrying pre-serialized bytes.

Run as a process of its own (like the global), it serves two generic methods with no meshgate logic:
- `/bench.Raw/Sync`: on the first request, writes the given response frames, then echoes nothing more;
  the client parses each frame and ACKs it, exactly the round trips a KDS initial sync makes.
- `/bench.Raw/Fanout`: a stream that stays open; a unary `/bench.Raw/Trigger` writes one pre-serialized
  frame to every open Fanout stream.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import anyio
import grpc

from meshgate.kds.limits import DEFAULT_MAX_MSG_SIZE as MAX_MESSAGE_BYTES


class Raw:
    def __init__(self, sync_frames: list[bytes], change_frame: bytes) -> None:
        self.sync_frames = sync_frames
        self.change_frame = change_frame
        self.fanout: list[grpc.aio.ServicerContext] = []  # type: ignore[type-arg]

    async def sync(self, request_iterator, context):  # type: ignore[no-untyped-def]
        requests = request_iterator.__aiter__()
        await requests.__anext__()  # the subscribe
        for frame in self.sync_frames:
            await context.write(frame)
            await requests.__anext__()  # one response in flight, as in KDS
        async for _ in requests:
            pass

    async def fanout_stream(self, request_iterator, context):  # type: ignore[no-untyped-def]
        self.fanout.append(context)
        try:
            async for _ in request_iterator:
                pass
        finally:
            self.fanout.remove(context)

    async def trigger(self, request: bytes, context) -> bytes:  # type: ignore[no-untyped-def]
        for ctx in list(self.fanout):
            await ctx.write(self.change_frame)
        return b""


async def serve(frames_dir: Path, ports_file: Path, tls: tuple[Path, Path] | None = None) -> None:
    sync_frames = [p.read_bytes() for p in sorted(frames_dir.glob("sync-*.bin"))]
    raw = Raw(sync_frames, (frames_dir / "change.bin").read_bytes())
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ]
    )
    handler = grpc.method_handlers_generic_handler(
        "bench.Raw",
        {
            "Sync": grpc.stream_stream_rpc_method_handler(raw.sync),
            "Fanout": grpc.stream_stream_rpc_method_handler(raw.fanout_stream),
            "Trigger": grpc.unary_unary_rpc_method_handler(raw.trigger),
        },
    )
    server.add_generic_rpc_handlers((handler,))
    if tls is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        # TLS like the global's KDS port, so that a baseline over TLS pays the same record costs.
        cert, key = tls
        creds = grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())])
        port = server.add_secure_port("127.0.0.1:0", creds)
    await server.start()
    tmp = ports_file.with_suffix(".tmp")
    tmp.write_text(json.dumps({"raw": port}))
    os.replace(tmp, ports_file)
    await server.wait_for_termination()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=Path, required=True)
    parser.add_argument("--ports-file", type=Path, required=True)
    parser.add_argument("--tls-cert", type=Path, help="serve TLS with this certificate chain (PEM)")
    parser.add_argument("--tls-key", type=Path, help="and this key (PEM)")
    args = parser.parse_args()
    anyio.run(serve, args.frames, args.ports_file, (args.tls_cert, args.tls_key) if args.tls_cert else None)
