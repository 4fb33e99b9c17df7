"""The listener tells the workers about stored messages at once for a sparse feed, and in
fuller tasks when messages come faster than one publish each."""

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

    def record(ids):
        with lock:
            published.append(list(ids))

    monkeypatch.setattr(run_listeners.events, "enqueue_processing", record)
    dispatch = run_listeners.Dispatcher(linger_s=1.5)

    dispatch([1])  # one sender waiting for each ACK: no linger for it
    assert published_by(published, 1, within_s=0.5), "a lone message waited for company"
    dispatch([2])
    assert published_by(published, 2, within_s=0.5), "a sparse feed waited for company"

    dispatch([3, 4])  # several per commit: messages come faster than they are published
    assert published_by(published, 3, within_s=0.5)
    dispatch([5])
    dispatch([6])
    assert not published_by(published, 4, within_s=0.7), "a crowd was published message by message"
    assert published_by(published, 4, within_s=3.0)
    assert published == [[1], [2], [3, 4], [5, 6]]
