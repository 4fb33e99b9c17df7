"""PostgreSQL crashes during ingest and comes back: senders get NAKs or silence while it is down,
never an AA for a message that was not committed, and every AA'd message is delivered once."""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.django_db(transaction=True)

DOWN_S = 3


def test_postgres_crash_during_ingest(fault_hub, own_postgres):
    cluster, url = own_postgres
    hub = fault_hub("PostgreSQL crash during ingest", database_url=url).start(workers=1)
    traffic = hub.send(300, rate=100, patience_s=60)
    time.sleep(1)
    cluster.stop()  # immediate: a crash, recovered from WAL on start
    time.sleep(DOWN_S)
    cluster.start()
    back_at = time.monotonic()
    sent = traffic.wait()

    figures = hub.drain(since=back_at, notes=f"down {DOWN_S} s")
    figures.assert_exactly_once(ingest_touched=True)
    assert sent.naks + sent.silences, "the outage was not felt by the sender"
