"""A sans-IO sender and receiver joined back to back: a stream's state, built without sockets.

Tests of insights, the watchdog and `kds trace` need StreamSessions whose Sender has really sent, been
ACKed and been NACKed; driving the real state machines (with the receiver's real NACK, BadRequest details
included) keeps those tests honest about what the adapters would record.
"""

from __future__ import annotations

from dataclasses import dataclass

from envoy.service.discovery.v3 import discovery_pb2

from meshgate.delta import KindSnapshot
from meshgate.kds.receiver import Receiver
from meshgate.kds.sender import Sender
from tests.support.thing import THING, no_bad


@dataclass
class Link:
    sender: Sender
    receiver: Receiver

    @classmethod
    def of(cls, sender: Sender) -> Link:
        return cls(sender, Receiver([THING], no_bad))

    def subscribe(self, now: float = 0.0) -> None:
        for req in self.receiver.subscribe({}):
            self.sender.receive(req, now)

    def send(self, snapshot: KindSnapshot, now: float) -> discovery_pb2.DeltaDiscoveryResponse:
        resp = self.sender.next_response(snapshot, now)
        assert resp is not None, "nothing to send"
        return resp

    def answer(self, resp: discovery_pb2.DeltaDiscoveryResponse, now: float) -> bool:
        """The receiver validates and answers (ACK or NACK); returns whether it ACKed."""
        req = self.receiver.applied(self.receiver.receive(resp))
        self.sender.receive(req, now)
        return not req.error_detail.message
