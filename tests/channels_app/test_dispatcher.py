"""The listener tells the workers about stored messages at once after a quiet spell, and in
fuller tasks when messages come closer together than its linger, however they were committed."""

from __future__ import annotations

import threading
import time

from channels_app.management.commands import run_listeners


def published_by(published: list, count: int, within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if len(published) >= count:
            return True
        time.sleep(0.01)
    return len(published) >= count


def test_a_lone_message_goes_at_once_and_a_crowd_waits_for_company(monkeypatch):
    published: list[list[int]] = []
    lock = threading.Lock()

    def record(ids, producer=None):
        with lock:
            published.append(list(ids))

    monkeypatch.setattr(run_listeners.events, "enqueue_processing", record)
    dispatch = run_listeners.Dispatcher(linger_s=1.0)

    dispatch([1])  # after a quiet spell: at once
    assert published_by(published, 1, within_s=0.5), "a lone message waited for company"
    # Close behind it, committed one at a time (four senders at 200 msg/s): they share a task.
    for n in (2, 3, 4):
        dispatch([n])
    assert not published_by(published, 2, within_s=0.6), "a crowd was published message by message"
    assert published_by(published, 2, within_s=2.0)
    time.sleep(1.2)  # a quiet spell longer than the linger
    started = time.monotonic()
    dispatch([5])
    assert published_by(published, 3, within_s=0.5), "a message after a quiet spell waited"
    assert time.monotonic() - started < 0.5
    assert published == [[1], [2, 3, 4], [5]]
    dispatch.close()


def test_closing_publishes_what_is_pending_and_ends_the_thread(monkeypatch):
    published: list[list[int]] = []
    monkeypatch.setattr(
        run_listeners.events, "enqueue_processing", lambda ids, _: published.append(ids)
    )
    dispatch = run_listeners.Dispatcher(linger_s=1.0)
    dispatch([1])
    assert published_by(published, 1, within_s=0.5)
    dispatch([2, 3])  # within the linger: waits for it
    dispatch.close()
    dispatch.thread.join(3)
    assert not dispatch.thread.is_alive()
    assert published == [[1], [2, 3]]
    assert dispatch.publisher.producer is None, "the producer was not given back to the pool"
