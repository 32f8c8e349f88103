"""Small programs the transparent proxy tests run inside a network namespace (`ip netns exec`), as a given uid.

`python -m tests.support.netns_programs PROGRAM ARGS...`, run by `tests.support.netns.Netns` (as another uid
through `setpriv`).

    orig-dst-server HOST PORT    accept connections; answer each with its SO_ORIGINAL_DST as "IP:PORT\\n"
    echo-server HOST PORT TEXT   accept connections; answer each with TEXT
    http-server HOST PORT TEXT   an HTTP/1.1 server answering every GET with 200 "TEXT PATH"
    connect HOST PORT            connect, print the first line the server sends (exit 3: no connection)
    dig SERVER NAME              one UDP A query to SERVER:53, print the addresses (or the rcode name)
    dp-dns PORT MESH_DNS [ALT]   meshgate-dp's DNS server (meshgate.dp.dns_proxy) on 127.0.0.1:PORT
    zone-dns HOST PORT DOMAIN NAME=IP...   a DNS server for DOMAIN (meshgate.dns.server), as the zone's
    http-get HOST PORT PATH      resolve HOST (getaddrinfo: resolv.conf), GET PATH; print "ADDRESS STATUS BODY"
    meshgatectl ARGS...          meshgatectl, as this uid

A server prints "ready" once it listens.
"""

from __future__ import annotations

import argparse
import http.client
import ipaddress
import socket
import struct
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import anyio
import dns.message
import dns.rcode
import dns.rdatatype

from meshgate.cli.meshgatectl import main as meshgatectl_main
from meshgate.dns.responder import Table
from meshgate.dns.server import DnsServer
from meshgate.dns.upstream import Upstream
from meshgate.dp.dns_proxy import DnsProxy

_SO_ORIGINAL_DST = 80  # linux/netfilter_ipv4.h


def _listen(host: str, port: int) -> socket.socket:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((host, port))
    server.listen(16)
    print("ready", flush=True)
    return server


def _orig_dst_server(host: str, port: int) -> None:
    server = _listen(host, port)
    while True:
        conn, _ = server.accept()
        with conn:
            raw = conn.getsockopt(socket.SOL_IP, _SO_ORIGINAL_DST, 16)
            dst_port, dst_ip = struct.unpack("!2xH4s8x", raw)
            conn.sendall(f"{ipaddress.IPv4Address(dst_ip)}:{dst_port}\n".encode())


def _echo_server(host: str, port: int, text: str) -> None:
    server = _listen(host, port)
    while True:
        conn, _ = server.accept()
        with conn:
            conn.sendall(f"{text}\n".encode())


def _http_server(host: str, port: int, text: str) -> None:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            body = f"{text} {self.path}".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    print("ready", flush=True)
    server.serve_forever()


def _connect(host: str, port: int) -> int:
    try:
        with socket.create_connection((host, port), timeout=5) as conn:
            print(conn.makefile().readline().strip(), flush=True)
    except OSError as exc:
        print(f"no connection: {exc}", flush=True)
        return 3
    return 0


def _http_get(host: str, port: int, path: str) -> int:
    try:
        address = socket.gethostbyname(host)
        conn = http.client.HTTPConnection(host, port, timeout=5)
        conn.request("GET", path)
        reply = conn.getresponse()
        print(f"{address} {reply.status} {reply.read().decode(errors='replace')}", flush=True)
    except OSError as exc:
        print(f"failed: {exc!r}", flush=True)
        return 3
    return 0


def _dig(server: str, name: str) -> int:
    query = dns.message.make_query(name, dns.rdatatype.A)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(query.to_wire(), (server, 53))
        try:
            data, _ = sock.recvfrom(4096)
        except TimeoutError:
            print("timeout", flush=True)
            return 3
    reply = dns.message.from_wire(data)
    addresses = [item.address for rrset in reply.answer for item in rrset]
    print(" ".join(addresses) if addresses else dns.rcode.to_text(reply.rcode()), flush=True)
    return 0


async def _dp_dns(port: int, mesh: str, alternates: list[str]) -> None:
    proxy = DnsProxy(Upstream.parse(mesh), [Upstream.parse(a) for a in alternates])
    async with anyio.create_task_group() as tg:
        await tg.start(proxy.serve, "127.0.0.1", port)
        print("ready", flush=True)


async def _zone_dns(host: str, port: int, domain: str, records: list[str]) -> None:
    table = Table(domain, {n: ipaddress.IPv4Address(ip) for n, ip in (r.split("=") for r in records)})
    server = DnsServer(table)
    async with anyio.create_task_group() as tg:
        await tg.start(server.serve, host, port)
        print("ready", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("program")
    parser.add_argument("args", nargs=argparse.REMAINDER)
    ns = parser.parse_args()
    args: list[str] = ns.args
    match ns.program:
        case "orig-dst-server":
            _orig_dst_server(args[0], int(args[1]))
        case "echo-server":
            _echo_server(args[0], int(args[1]), args[2])
        case "http-server":
            _http_server(args[0], int(args[1]), args[2])
        case "connect":
            return _connect(args[0], int(args[1]))
        case "http-get":
            return _http_get(args[0], int(args[1]), args[2])
        case "dig":
            return _dig(args[0], args[1])
        case "dp-dns":
            anyio.run(_dp_dns, int(args[0]), args[1], args[2:])
        case "zone-dns":
            anyio.run(_zone_dns, args[0], int(args[1]), args[2], args[3:])
        case "meshgatectl":
            sys.argv = ["meshgatectl", *args]
            meshgatectl_main()
        case other:
            parser.error(f"unknown program {other}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
