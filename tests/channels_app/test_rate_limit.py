"""Rate limit: a token bucket in Redis shared by every worker; deliveries over the limit wait
(no attempt counted) and go as soon as the bucket allows, and every one of them arrives."""

from __future__ import annotations

import threading
import time

import pytest

from channels_app.models import Attempt, Delivery
from channels_app.pipeline import ratelimit
from tests import factories
from tests.support import FhirSink, send, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

N, RATE = 20, 5.0


def test_n_messages_at_rate_r_take_at_least_n_minus_burst_over_r(
    mllp_port, listener, celery_worker, fhir_sink
):
    unlimited = FhirSink().start()
    try:
        channel = factories.channel(mllp_port)
        factories.fhir_destination(channel, fhir_sink.url, rate_limit_per_s=RATE)
        factories.fhir_destination(channel, unlimited.url, name="unlimited")
        listener(channel)
        started = time.monotonic()
        for i in range(N):
            assert b"MSA|AA" in send(mllp_port, factories.adt_a01(f"RATE-{i}"))
        finished: dict[str, float] = {}  # destination -> seconds until its last effect

        def both_finished() -> bool:
            for name, sink in (("unlimited", unlimited), ("limited", fhir_sink)):
                if name not in finished and len(sink.effects) == N:
                    finished[name] = time.monotonic() - started
            return len(finished) == 2

        # Deferred deliveries come back on their own; the timeout only bounds a hang.
        wait_for(both_finished, timeout=60, what="every message at both destinations")
    finally:
        unlimited.stop()

    floor = (N - ratelimit.burst(RATE)) / RATE
    limited_s = finished["limited"]
    assert limited_s >= floor, f"{N} sends in {limited_s:.2f}s at {RATE}/s"
    # The limited destination cannot finish before ``floor``; the unlimited one, not held to it,
    # finishes no later however slow the machine is, unless the limit held it back too.
    assert finished["unlimited"] <= limited_s, "a rate limit on one destination slowed another"
    time.sleep(0.5)  # a duplicate send, if any, would land now
    assert len(fhir_sink.requests) == N and set(fhir_sink.effects.values()) == {1}
    limited = Delivery.objects.filter(destination__rate_limit_per_s=RATE)
    assert set(limited.values_list("status", "attempt_count")) == {("DELIVERED", 1)}
    assert Attempt.objects.filter(delivery__in=limited).count() == N  # waiting is not an attempt


def test_the_bucket_holds_across_concurrent_takers(redis_client):
    """Eight threads (as eight workers) asking at once never get more than burst + rate × time."""
    rate, granted, lock = 20.0, [], threading.Lock()
    deadline = time.monotonic() + 1.0

    def worker():
        while time.monotonic() < deadline:
            got = ratelimit.take({4242: (rate, 3)})[4242].granted
            with lock:
                granted.append(got)
            time.sleep(0.005)

    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    assert sum(granted) <= ratelimit.burst(rate) + rate * elapsed + 1
    assert sum(granted) >= rate * 0.8  # and the bucket does refill


def test_a_refused_take_says_when_to_come_back(redis_client):
    # A slow rate: the moments between the two calls (however long a loaded machine makes them)
    # refill next to nothing.
    first = ratelimit.take({77: (0.1, 5)})[77]
    assert first.granted == 1  # the burst: at least one token
    again = ratelimit.take({77: (0.1, 3)})[77]
    assert again.granted == 0 and 9.0 <= again.wait_s <= 10.0  # a token's worth at 0.1/s
