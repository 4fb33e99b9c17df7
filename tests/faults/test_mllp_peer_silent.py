"""A downstream MLLP system stores what it reads but sends no ACK for a while: no delivery counts
as done without its AA, the resend carries the same MSH-10, and the receiver applies it once."""

from __future__ import annotations

import time

import pytest

from tests.faults.peers import SilentMLLPPeer

pytestmark = pytest.mark.django_db(transaction=True)

SILENT_S = 5


def test_mllp_peer_that_never_acks(fault_hub):
    peer = SilentMLLPPeer()
    peer.silent = True
    hub = fault_hub(
        f"MLLP peer silent {SILENT_S} s",
        sink=peer,
        transport="mllp",
        config={"host": "127.0.0.1", "port": peer.port, "connections": 4},
        timeout_s=1.0,  # the ACK timeout
    ).start(workers=1)
    hub.send(200, rate=100)
    time.sleep(SILENT_S)
    delivered_while_silent = hub.open_work()[2]
    unanswered = peer.unanswered
    peer.silent = False
    back_at = time.monotonic()

    figures = hub.drain(since=back_at, notes=f"{unanswered} frames left without an ACK")
    figures.assert_exactly_once()
    assert unanswered, "the silence was not felt"
    assert delivered_while_silent == 0, "a delivery was marked done without its ACK"
