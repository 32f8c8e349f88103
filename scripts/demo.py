"""`make demo`: a global and two zones on the embedded sqlite store, the examples applied on the global,
shown arriving in both zones. Runs until Ctrl-C, then stops every process it started."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rdatatype
import yaml

from meshgate.kds.naming import hashed_name

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "demo"
BIN = Path(sys.executable).parent

GLOBAL = {"api": 5681, "kds": 5685, "diagnostics": 5680}
ZONES = {
    "zone-1": {"api": 5691, "diagnostics": 5690, "xds": 5678, "dns": 5653},
    "zone-2": {"api": 5693, "diagnostics": 5692, "xds": 5679, "dns": 5654},
}


def start(name: str, argv: list[str]) -> subprocess.Popen[bytes]:
    log = (DATA / f"{name}.log").open("ab")
    print(f"  starting {name}: logs in {DATA.relative_to(ROOT) / (name + '.log')}")
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)


def wait_ready(name: str, diagnostics_port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{name} exited with {proc.returncode}; see {DATA / (name + '.log')}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{diagnostics_port}/ready", timeout=1) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    sys.exit(f"{name} not ready after 30s; see {DATA / (name + '.log')}")


def ctl(api_port: int, *args: str) -> str:
    out = subprocess.run(
        [str(BIN / "meshgatectl"), "--api", f"http://127.0.0.1:{api_port}", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        sys.exit(f"meshgatectl {' '.join(args)} failed:\n{out.stdout}{out.stderr}")
    return out.stdout


EXAMPLE_PATHS = (
    "/meshes/default",
    "/meshes/default/meshgateways/edge-gateway",
    "/meshes/default/meshgatewayroutes/edge-gateway-routes",
)
ROUTE_PATH = EXAMPLE_PATHS[2]


def in_zone(path: str) -> str:
    """`path` on the global as a zone serves it: a mesh-scoped resource is hash-suffixed there, as a Kuma 2.7
    global names it for a zone (meshgate/kds/ownership.py); its `kuma.io/display-name` label keeps the name."""
    parts = path.split("/")
    if len(parts) != 5:  # /meshes/<mesh>: a Mesh keeps its name
        return path
    _, _, mesh, plural, name = parts
    return f"/meshes/{mesh}/{plural}/{hashed_name(mesh, name)}"


def get_json(api_port: int, path: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{api_port}{path}", timeout=2) as r:
            return dict(json.loads(r.read()))
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise


def put_json(api_port: int, path: str, doc: dict[str, Any]) -> None:
    req = urllib.request.Request(
        f"http://127.0.0.1:{api_port}{path}",
        data=json.dumps(doc).encode(),
        method="PUT",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=5) as r:
        r.read()


def dataplane_token_file(zone: str, mesh: str, name: str, proxy_type: str | None = None) -> Path:
    """`POST /tokens/dataplane` on the zone (as `meshgatectl generate dataplane-token` does), into a 0600 file;
    asked again while the zone waits for the mesh's signing key from the global. `proxy_type` "ingress": a
    zone ingress's token."""
    api = ZONES[zone]["api"]
    deadline = time.monotonic() + 30
    body = {"mesh": mesh, "name": name, **({"type": proxy_type} if proxy_type else {})}
    while True:
        req = urllib.request.Request(
            f"http://127.0.0.1:{api}/tokens/dataplane",
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                token = r.read().decode()
            break
        except urllib.error.HTTPError as exc:
            if exc.code != 503 or time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    path = DATA / f"{name}.token"
    path.write_text(token)
    path.chmod(0o600)
    return path


def dp_security(zone: str, mesh: str, name: str, proxy_type: str | None = None) -> list[str]:
    """meshgate-dp flags for a zone with the secure defaults: TLS with the CA the zone wrote, and a token."""
    ports = ZONES[zone]
    return [
        "--cp-address",
        f"https://127.0.0.1:{ports['xds']}",
        "--ca-cert-file",
        str(DATA / zone / "xds-ca.crt"),
        "--dataplane-token-file",
        str(dataplane_token_file(zone, mesh, name, proxy_type)),
    ]


def zone_ingress(procs: list[subprocess.Popen[bytes]], zone: str) -> None:
    """The zone's ingress (meshgate-dp --proxy-type ingress): other zones reach its services through it, the
    mesh's mTLS session passing through by SNI. Here every zone is on 127.0.0.1, so that is its advertised
    address too."""
    port = free_port()
    networking = {"address": "127.0.0.1", "port": port, "advertisedAddress": "127.0.0.1", "advertisedPort": port}
    doc = {"type": "ZoneIngress", "name": f"{zone}-ingress", "networking": networking}
    argv = [str(BIN / "meshgate-dp"), "run", *dp_security(zone, "default", doc["name"], "ingress")]
    argv += ["--proxy-type", "ingress", "--dataplane", json.dumps(doc), "--admin-port", str(free_port())]
    procs.append(start(f"{zone}-ingress", argv))


def wait_for(api_port: int, path: str, done: Callable[[dict[str, Any] | None], bool]) -> None:
    deadline = time.monotonic() + 15
    while not done(get_json(api_port, path)):
        if time.monotonic() > deadline:
            sys.exit(f"{path} did not reach the zone on port {api_port} within 15s")
        time.sleep(0.001)


GATEWAY_PORT = 8080  # the HTTP listener of deploy/examples/meshgateway.yaml
EDGE = {
    "type": "Dataplane",
    "mesh": "default",
    "name": "edge-gateway-1",
    "networking": {"address": "127.0.0.1", "gateway": {"type": "BUILTIN", "tags": {"kuma.io/service": "edge-gateway"}}},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def curl(path: str) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{GATEWAY_PORT}{path}", timeout=2) as r:
            return str(r.read().decode().strip())
    except (urllib.error.URLError, OSError) as exc:
        return f"error: {exc}"


def tally(path: str, n: int = 20) -> Counter[str]:
    return Counter(curl(path) for _ in range(n))


def sidecar(procs: list[subprocess.Popen[bytes]], zone: str, dataplane: dict[str, Any]) -> None:
    """Runs meshgate-dp for an ordinary Dataplane: it registers it and serves its mTLS inbound (Kuma's sidecar)."""
    name = str(dataplane["name"])
    argv = [str(BIN / "meshgate-dp"), "run", *dp_security(zone, "default", name)]
    argv += ["--dataplane", json.dumps(dataplane), "--admin-port", str(free_port())]
    procs.append(start(f"{name}-sidecar", argv))


def gateway_demo(procs: list[subprocess.Popen[bytes]], route: dict[str, Any]) -> None:
    """Backends registered as Dataplanes in zone-1, a gateway Envoy (meshgate-dp), traffic, a route change."""
    print(
        "\nGateway in zone-1: three tiny HTTP backends, each behind its sidecar (meshgate-dp: mTLS inbound on `port`,"
        " the app on `servicePort`), and a builtin gateway Envoy."
    )
    for name, tags in (
        ("backend-v1", {"kuma.io/service": "backend", "version": "v1"}),
        ("backend-v2", {"kuma.io/service": "backend", "version": "v2"}),
        ("frontend", {"kuma.io/service": "frontend"}),
    ):
        app = free_port()
        procs.append(start(name, [sys.executable, str(ROOT / "scripts" / "echo_backend.py"), name, str(app)]))
        inbound = {"port": free_port(), "servicePort": app, "tags": tags}
        sidecar(procs, "zone-1", {"type": "Dataplane", "mesh": "default", "name": name,
                                  "networking": {"address": "127.0.0.1", "inbound": [inbound]}})  # fmt: skip
    dp = start(
        "edge-gateway-1",
        [
            str(BIN / "meshgate-dp"),
            "run",
            *dp_security("zone-1", "default", str(EDGE["name"])),
            "--dataplane",
            json.dumps(EDGE),
            "--admin-port",
            "9901",
        ],
    )
    procs.append(dp)
    deadline = time.monotonic() + 30
    while curl("/") != "frontend":
        if time.monotonic() > deadline or dp.poll() is not None:
            sys.exit(f"the gateway did not come up; see {DATA / 'edge-gateway-1.log'}")
        time.sleep(0.05)
    print(f"\n$ curl http://127.0.0.1:{GATEWAY_PORT}/        -> {curl('/')}")
    print(f"$ curl http://127.0.0.1:{GATEWAY_PORT}/api  x20 -> {dict(tally('/api'))}   (route: 50/50 v1/v2)")

    backends = route["conf"]["http"]["rules"][0]["backends"]
    route["conf"]["http"]["rules"][0]["backends"] = [b for b in backends if b["destination"].get("version") == "v2"]
    print(f"\n$ PUT {ROUTE_PATH} on the global (/api -> backend v2 only)")
    put_json(GLOBAL["api"], ROUTE_PATH, route)
    t0 = time.monotonic()
    while tally("/api", 5) != Counter({"backend-v2": 5}):
        time.sleep(0.01)
    print(f"  traffic moved after {(time.monotonic() - t0) * 1000:.0f} ms (global -> zone-1 -> Envoy)")
    print(f"$ curl http://127.0.0.1:{GATEWAY_PORT}/api  x20 -> {dict(tally('/api'))}")


VIP_CIDR = "127.100.0.0/16"


def resolve(name: str, port: int) -> str | None:
    query = dns.message.make_query(name, "A")
    answer = dns.query.udp(query, "127.0.0.1", port=port, timeout=2)
    for rrset in answer.answer:
        for item in rrset:
            if item.rdtype == dns.rdatatype.A:
                return str(item)
    return None


ECHO_NAME = "echo.default.svc.80.mesh"
ECHO_PORT = 9191  # the servicePort of deploy/examples/delegated/echo.yaml: the app behind echo's sidecar
DELEGATED = ROOT / "deploy" / "examples" / "delegated"


def dns_demo(procs: list[subprocess.Popen[bytes]]) -> None:
    """echo runs in zone-2; zone-1's DNS resolves its .mesh name (the global relays zone-2's Dataplane), a
    delegated gateway's Envoy in zone-1 routes the VIP to it, and `kds trace name` on the global explains why."""
    zone1 = ZONES["zone-1"]
    procs.append(start("echo", [sys.executable, str(ROOT / "scripts" / "echo_backend.py"), "echo", str(ECHO_PORT)]))
    print("\n$ meshgate-dp run --dataplane-file deploy/examples/delegated/echo.yaml ...   (echo's sidecar, zone-2)")
    echo = yaml.safe_load((DELEGATED / "echo.yaml").read_text())
    sidecar(procs, "zone-2", echo)
    print("$ meshgate-dp run --proxy-type ingress ...   (zone-2's ingress: the mesh has mTLS, so zone-1 reaches")
    print("  echo through it, never at echo's own address)")
    zone_ingress(procs, "zone-2")
    t0 = time.monotonic()
    deadline = t0 + 15
    vip = None
    while vip is None:
        vip = resolve(ECHO_NAME, zone1["dns"])
        if vip is None and time.monotonic() > deadline:
            sys.exit(f"{ECHO_NAME} did not resolve in zone-1")
        time.sleep(0.002)
    elapsed = (time.monotonic() - t0) * 1000
    print(f"$ dig @127.0.0.1 -p {zone1['dns']} {ECHO_NAME} +short   (zone-1's DNS, {elapsed:.0f} ms later)\n{vip}")
    print(f"\n$ meshgatectl kds trace name {ECHO_NAME}   (on the global)")
    print(ctl(GLOBAL["api"], "kds", "trace", "name", ECHO_NAME), end="")
    if os.geteuid() != 0:
        print(f"  (not root: Envoy cannot bind {vip}:80 here, so the request through the delegated gateway is skipped)")
        return
    dp = start(
        "kong-1",
        [
            str(BIN / "meshgate-dp"),
            "run",
            *dp_security("zone-1", "default", "kong-1"),
            "--dataplane-file",
            str(DELEGATED / "kong.yaml"),
            "--admin-port",
            "9902",
        ],
    )
    procs.append(dp)
    deadline = time.monotonic() + 30
    while True:
        try:
            req = urllib.request.Request(f"http://{vip}/", headers={"Host": ECHO_NAME})
            with urllib.request.urlopen(req, timeout=2) as r:
                body = r.read().decode().strip()
                break
        except (urllib.error.URLError, OSError):
            if time.monotonic() > deadline or dp.poll() is not None:
                sys.exit(f"no answer through the delegated gateway; see {DATA / 'kong-1.log'}")
            time.sleep(0.05)
    print(
        f"\n$ curl http://{ECHO_NAME}/   (zone-1: delegated gateway kong-1's Envoy on {vip}:80 -> zone-2's ingress"
        " -> echo's sidecar)"
        f" -> {body}"
    )


def main() -> None:
    # Every run starts from an empty store, so what it prints is what this run did.
    shutil.rmtree(DATA, ignore_errors=True)
    DATA.mkdir(parents=True, exist_ok=True)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        print("meshgate demo: one global, two zones, embedded sqlite store under data/demo/")
        g = start(
            "global",
            [
                str(BIN / "meshgate-global"),
                "run",
                "--data-dir",
                str(DATA / "global"),
                "--api-port",
                str(GLOBAL["api"]),
                "--kds-port",
                str(GLOBAL["kds"]),
                "--diagnostics-port",
                str(GLOBAL["diagnostics"]),
                "--bind-address",
                "127.0.0.1",
            ],
        )
        procs.append(g)
        wait_ready("global", GLOBAL["diagnostics"], g)
        # KDS is TLS from the global's own CA, and zones prove their name with a token: as an operator would,
        # take the CA file the global wrote and a token per zone from its API.
        ca_file = DATA / "global" / "kds-ca.crt"
        print(f"\n$ meshgatectl generate zone-token --zone ZONE   (trusting the global's KDS CA {ca_file})")
        for zone, ports in ZONES.items():
            token_file = DATA / f"{zone}.token"
            token_file.write_text(ctl(GLOBAL["api"], "generate", "zone-token", "--zone", zone, "--valid-for", "24h"))
            z = start(
                zone,
                [
                    str(BIN / "meshgate-zone"),
                    "run",
                    "--zone",
                    zone,
                    "--global-address",
                    f"grpcs://127.0.0.1:{GLOBAL['kds']}",
                    "--kds-ca-cert-file",
                    str(ca_file),
                    "--cp-token-path",
                    str(token_file),
                    "--data-dir",
                    str(DATA / zone),
                    "--api-port",
                    str(ports["api"]),
                    "--diagnostics-port",
                    str(ports["diagnostics"]),
                    "--xds-port",
                    str(ports["xds"]),
                    "--dns-port",
                    str(ports["dns"]),
                    # VIPs on loopback, so the demo's Envoy can bind them without any network setup.
                    "--vip-cidr",
                    VIP_CIDR,
                    "--bind-address",
                    "127.0.0.1",
                ],
            )
            procs.append(z)
            wait_ready(zone, ports["diagnostics"], z)

        print("\n$ meshgatectl apply -f deploy/examples/   (on the global)")
        for example in sorted((ROOT / "deploy" / "examples").glob("*.yaml")):
            print(ctl(GLOBAL["api"], "apply", "-f", str(example)), end="")

        for ports in ZONES.values():
            for path in EXAMPLE_PATHS:
                wait_for(ports["api"], in_zone(path), lambda doc: doc is not None)
        print("\nBoth zones hold every example.")

        # A live change, timed from the global's 200 to the resource arriving in each zone's API.
        route = get_json(GLOBAL["api"], ROUTE_PATH)
        assert route is not None
        for key in ("creationTime", "modificationTime"):
            route.pop(key, None)
        backends = route["conf"]["http"]["rules"][0]["backends"]
        backends[0]["weight"], backends[1]["weight"] = 50, 50
        print(f"\n$ PUT {ROUTE_PATH} on the global (/api split 90/10 -> 50/50)")
        put_json(GLOBAL["api"], ROUTE_PATH, route)
        t0 = time.monotonic()
        for zone, ports in ZONES.items():
            wait_for(
                ports["api"], in_zone(ROUTE_PATH), lambda doc: doc is not None and '"weight": 50' in json.dumps(doc)
            )
            print(f"  arrived in {zone} after {(time.monotonic() - t0) * 1000:.1f} ms")

        gateway_demo(procs, route)
        dns_demo(procs)
        for zone, ports in ZONES.items():
            for kind in ("meshes", "meshgateways", "meshgatewayroutes"):
                print(f"\n$ meshgatectl --api http://127.0.0.1:{ports['api']} get {kind}   ({zone})")
                print(ctl(ports["api"], "get", kind), end="")
        print(
            f"\nGlobal API http://127.0.0.1:{GLOBAL['api']}  zone-1 http://127.0.0.1:{ZONES['zone-1']['api']}"
            f"  zone-2 http://127.0.0.1:{ZONES['zone-2']['api']}"
        )
        print(
            f"GUI: http://127.0.0.1:{GLOBAL['api']}/gui/ (the global: zones, gateways, routes, trace, watch)"
            f"  and http://127.0.0.1:{ZONES['zone-1']['api']}/gui/ (zone-1's own view); from this machine no"
            " token is needed."
        )
        print("Try: .venv/bin/meshgatectl inspect zones, then the README's 'Break a resource on purpose'.")
        print("Running until Ctrl-C.")
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in reversed(procs):
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        print("\nstopped global and zones")


if __name__ == "__main__":

    def _interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _interrupt)
    main()
