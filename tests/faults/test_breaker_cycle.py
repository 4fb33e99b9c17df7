"""A destination fails every request: its breaker opens, holds the deliveries without trying,
lets one probe through after the cooldown (half-open), and closes when the probe succeeds."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from tests.support import IdempotentSink, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


class BreakerWatch(threading.Thread):
    """The breaker states the destination row goes through, as the console would show them."""

    def __init__(self, database_url: str) -> None:
        super().__init__(daemon=True)
        self.database_url = database_url
        self.states: list[str] = []
        self.running = True

    in_flight = -1  # deliveries claimed and being sent (SENDING)

    def run(self) -> None:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            while self.running:
                (state,) = conn.execute(
                    "SELECT breaker_state FROM channels_app_destination"
                ).fetchone()
                (self.in_flight,) = conn.execute(
                    "SELECT count(*) FROM channels_app_delivery WHERE status = 'SENDING'"
                ).fetchone()
                if not self.states or self.states[-1] != state:
                    self.states.append(state)
                time.sleep(0.02)

    @property
    def state(self) -> str:
        return self.states[-1] if self.states else ""


def test_breaker_opens_probes_and_closes(fault_hub):
    sink = IdempotentSink(error_rate=1.0)  # everything 503 until it recovers
    hub = fault_hub(
        "breaker open, half-open, closed",
        sink=sink,
        breaker_min_samples=10,
        breaker_error_rate=0.5,
        breaker_window_s=30.0,
        breaker_cooldown_s=4.0,
    ).start(workers=1)
    watch = BreakerWatch(hub.database_url)
    watch.start()
    hub.send(200, rate=100)
    wait_for(lambda: watch.state == "open", timeout=30, what="the breaker to open")
    # Sends claimed before the breaker opened may still be on their way: let them settle.
    wait_for(lambda: watch.in_flight == 0, timeout=3, what="sends claimed before to settle")
    held_from = len(sink.requests)
    time.sleep(1.0)  # within the cooldown: nothing may reach the destination
    sent_while_open = len(sink.requests) - held_from
    sink.error_rate = 0.0
    sink.hold_s = 0.3  # a slow probe: half-open lasts long enough to be seen
    recovered_at = time.monotonic()
    wait_for(lambda: watch.state == "closed", timeout=30, what="the breaker to close")
    sink.hold_s = 0

    figures = hub.drain(
        since=recovered_at,
        notes=f"states {' > '.join(watch.states)}; {sent_while_open} sent while open",
    )
    watch.running = False
    figures.assert_exactly_once()
    assert watch.states[:4] == ["closed", "open", "half_open", "closed"] or (
        "half_open" in watch.states and watch.states[-1] == "closed"
    ), watch.states
    assert sent_while_open == 0
