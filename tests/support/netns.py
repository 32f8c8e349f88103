"""Network namespaces for tests: each made with a name unique to this process, and deleted by that name in
teardown whatever happened; the processes started in one are stopped by their handles first.

`Netns.run` / `Netns.start` run `python -m tests.support.netns_programs` inside the namespace (`ip netns exec`),
optionally as another uid (`setpriv`). `ip netns exec NAME` also bind-mounts `/etc/netns/NAME/*` over `/etc`,
which is how a test gives a namespace its own resolv.conf (`Netns.resolv_conf`); that directory is removed with
the namespace.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from meshgate.testing.tools import NETNS, require

__all__ = ["Netns", "netns", "veth"]

ROOT = Path(__file__).resolve().parents[2]
_counter = itertools.count()
_START_TIMEOUT = 20.0


class Netns:
    def __init__(self, name: str, ip: Path) -> None:
        self.name = name
        self._ip = str(ip)
        self._procs: list[subprocess.Popen[str]] = []
        self._etc: Path | None = None

    def sh(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """A command inside the namespace, as root."""
        return subprocess.run(
            [self._ip, "netns", "exec", self.name, *argv], capture_output=True, text=True, check=check, timeout=60
        )

    def _argv(self, program: str, args: Sequence[str], uid: int | None) -> list[str]:
        return self.command([sys.executable, "-m", "tests.support.netns_programs", program, *args], uid)

    def command(self, argv: Sequence[str], uid: int | None = None) -> list[str]:
        """`argv` run inside the namespace, as `uid` when given (see `_argv`)."""
        head = [self._ip, "netns", "exec", self.name]
        if uid is not None:
            # util-linux's setpriv: the uid and gid N with no capability but CAP_DAC_READ_SEARCH (ambient, so it
            # survives exec), which lets the interpreter be read wherever it lives (pyenv's is under /root)
            # while the process has no root powers: no CAP_NET_ADMIN, and iptables' owner match sees N.
            head += ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
            head += ["--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search", "--"]
        return [*head, *argv]

    def run(
        self, program: str, *args: str, uid: int | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self._argv(program, args, uid), capture_output=True, text=True, cwd=ROOT, timeout=60, check=False, env=env
        )

    def start(self, program: str, *args: str, uid: int | None = None) -> subprocess.Popen[str]:
        """A server program, returned once it prints "ready"; stopped when the namespace goes."""
        proc = subprocess.Popen(
            self._argv(program, args, uid),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        self._procs.append(proc)
        assert proc.stdout is not None
        # Log lines may come first; a program that dies first gives "" at once.
        line = proc.stdout.readline()
        while line and line.strip() != "ready":
            line = proc.stdout.readline()
        if line.strip() != "ready":
            proc.kill()
            _, err = proc.communicate(timeout=_START_TIMEOUT)
            raise AssertionError(f"{program} {' '.join(args)} did not start: {line!r} {err}")
        return proc

    def spawn(self, argv: Sequence[str], *, uid: int | None = None, log: Path) -> subprocess.Popen[str]:
        """A long-running `argv` in the namespace, output to `log`; stopped (by its handle) when the namespace
        goes, or earlier by the caller."""
        with log.open("ab") as out:
            proc = subprocess.Popen(self.command(argv, uid), stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, text=True)
        self._procs.append(proc)
        return proc

    def resolv_conf(self, text: str) -> None:
        etc = Path("/etc/netns") / self.name
        etc.mkdir(parents=True)
        self._etc = etc
        (etc / "resolv.conf").write_text(text)

    def close(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=_START_TIMEOUT)
        if self._etc is not None:
            shutil.rmtree(self._etc, ignore_errors=True)
        subprocess.run([self._ip, "netns", "delete", self.name], check=False, timeout=60)


@contextmanager
def netns(tag: str) -> Iterator[Netns]:
    """A fresh namespace with lo up, named `mg-<tag>-<pid>-<n>`, deleted on exit."""
    ip = require(NETNS)
    name = f"mg-{tag}-{os.getpid()}-{next(_counter)}"
    subprocess.run([str(ip), "netns", "add", name], check=True, timeout=60)
    ns = Netns(name, ip)
    try:
        ns.sh("ip", "link", "set", "lo", "up")
        yield ns
    finally:
        ns.close()


@contextmanager
def veth(a: Netns, a_addrs: Sequence[str], b: Netns, b_addrs: Sequence[str]) -> Iterator[None]:
    """A veth pair between two namespaces with the given CIDRs; it goes when either namespace is deleted."""
    n = next(_counter)
    left, right = f"mgva{os.getpid() % 10000}x{n}", f"mgvb{os.getpid() % 10000}x{n}"
    a.sh("ip", "link", "add", left, "type", "veth", "peer", "name", right, "netns", b.name)
    for ns, dev, addrs in ((a, left, a_addrs), (b, right, b_addrs)):
        for addr in addrs:
            ns.sh("ip", "addr", "add", addr, "dev", dev)
        ns.sh("ip", "link", "set", dev, "up")
    yield
