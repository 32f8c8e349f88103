"""The KDS watchdog: streams never stall silently.

Two conditions look healthy from the outside (the stream is open) while nothing flows:

- a **stall**: a response the global sent is left un-ACKed past `stall_after` seconds (the zone is stuck
  applying it, or lost it);
- a **health lapse**: a zone with an open stream stopped pinging for `HealthPolicy.window` seconds.

Each is reported exactly once when it starts (per nonce for a stall, per lapse for health): a warning on the
stream's insight, a metric (`meshgate_kds_stalls`), a structlog WARNING and a `kds watch` event. The warning
is removed when the condition clears (the ACK arrives, the pings resume, the stream closes).

`Watchdog.scan` does one pass over the registry at the instant given by its clock and is what the tests
drive with a fake clock; `run` calls it every `check_interval` seconds. `find_stalls` and `find_lapses` are
the pure part: what is wrong now, with no memory of what was already reported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import anyio
import structlog

from global_cp.insights import HealthPolicy, Now
from meshgate.sync.streams import StreamRegistry, StreamSession

__all__ = ["HealthLapse", "Stall", "Watchdog", "find_lapses", "find_stalls"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Stall:
    session: StreamSession
    kind: str
    nonce: str
    age: float

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.session.stream_id, self.kind, self.nonce)


@dataclass(frozen=True, slots=True)
class HealthLapse:
    zone: str
    age: float
    sessions: tuple[StreamSession, ...]


def find_stalls(sessions: Iterable[StreamSession], now: Now, stall_after: float) -> list[Stall]:
    """Every response in flight for longer than `stall_after` seconds on the given streams."""
    out: list[Stall] = []
    for session in sessions:
        if session.sender is None:
            continue  # the global answers what it receives at once: only what it sends can stall
        for kind, ks in session.sender.kinds.items():
            flight = ks.in_flight
            if flight is not None and now.mono - flight.sent_at >= stall_after:
                out.append(Stall(session, kind, flight.nonce, now.mono - flight.sent_at))
    return out


def find_lapses(streams: StreamRegistry, now: Now, policy: HealthPolicy) -> list[HealthLapse]:
    """Every zone with an open stream whose last ping is older than the policy's window."""
    by_zone: dict[str, list[StreamSession]] = {}
    for session in streams.active.values():
        by_zone.setdefault(session.zone, []).append(session)
    out: list[HealthLapse] = []
    for zone, sessions in sorted(by_zone.items()):
        last = streams.last_health_check.get(zone)
        if last is not None and policy.lapsed(last, now):
            out.append(HealthLapse(zone, (now.wall - last).total_seconds(), tuple(sessions)))
    return out


class Watchdog:
    def __init__(
        self,
        streams: StreamRegistry,
        *,
        stall_after: float = 10.0,
        health: HealthPolicy | None = None,
        clock: Callable[[], Now] = Now.current,
    ) -> None:
        self._streams = streams
        self.stall_after = stall_after
        self._health = health or HealthPolicy()
        self._clock = clock
        # What is currently reported, with the exact warning text to remove when it clears.
        self._stalls: dict[tuple[str, str, str], tuple[StreamSession, str]] = {}
        self._lapses: dict[str, str] = {}

    def scan(self) -> tuple[list[Stall], list[HealthLapse]]:
        """One pass: reports what started since the last pass, clears what ended. Returns the new ones."""
        now = self._clock()
        return self._scan_stalls(now), self._scan_lapses(now)

    def _scan_stalls(self, now: Now) -> list[Stall]:
        found = {s.key: s for s in find_stalls(self._streams.active.values(), now, self.stall_after)}
        for key in [k for k in self._stalls if k not in found]:
            session, message = self._stalls.pop(key)
            if message in session.warnings:
                session.warnings.remove(message)
            log.info("kds.stall.cleared", zone=session.zone, stream=session.stream_id, type=key[1], nonce=key[2])
        new = [s for key, s in found.items() if key not in self._stalls]
        for stall in new:
            session = stall.session
            message = (
                f"{stall.kind} response nonce {stall.nonce} un-ACKed for {stall.age:.1f}s"
                f" (stall threshold {self.stall_after:g}s)"
            )
            self._stalls[stall.key] = (session, message)
            session.warn(message)
            self._streams.metrics.stalls[(session.zone, stall.kind)] += 1
            log.warning(
                "kds.stall",
                zone=session.zone,
                stream=session.stream_id,
                type=stall.kind,
                nonce=stall.nonce,
                age=round(stall.age, 3),
            )
            self._streams.events.publish(
                session.zone,
                session.stream_id,
                session.direction,
                "stall",
                kind=stall.kind,
                nonce=stall.nonce,
                error=message,
            )
        return new

    def _scan_lapses(self, now: Now) -> list[HealthLapse]:
        found = {lapse.zone: lapse for lapse in find_lapses(self._streams, now, self._health)}
        for zone in [z for z in self._lapses if z not in found]:
            message = self._lapses.pop(zone)
            for session in self._sessions_of(zone):
                if message in session.warnings:
                    session.warnings.remove(message)
            log.info("kds.health.recovered", zone=zone)
        new: list[HealthLapse] = []
        for zone, lapse in found.items():
            if zone in self._lapses:
                message = self._lapses[zone]
            else:
                message = self._lapses[zone] = (
                    f"no health check from zone {zone} for {lapse.age:.1f}s"
                    f" (pings every {self._health.interval:g}s; offline after {self._health.window:g}s)"
                )
                new.append(lapse)
                first = lapse.sessions[0]
                log.warning("kds.health.lapsed", zone=zone, stream=first.stream_id, age=round(lapse.age, 3))
                self._streams.events.publish(zone, first.stream_id, first.direction, "health", error=message)
            for session in lapse.sessions:  # also a stream that opened during the lapse
                session.warn(message)
        return new

    def _sessions_of(self, zone: str) -> list[StreamSession]:
        hist = self._streams.history.get(zone)
        return self._streams.by_zone(zone) + (list(hist.closed) if hist is not None else [])

    async def run(
        self, check_interval: float = 1.0, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        while True:
            self.scan()
            await anyio.sleep(check_interval)
