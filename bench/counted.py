"""The Celery app with a statement counter: ``celery -A bench.counted worker`` (spine's
BENCH_COUNT=1). Per task name it adds up, in Redis hash ``bench:counted``, the tasks run, the
ids they were given (their batch sizes) and the SQL statements they sent, flushed every half
second by a thread of each worker process."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter

from celery.signals import task_postrun, task_prerun
from django.db import connection

from console.celery import app

__all__ = ["app"]

KEY = "bench:counted"
_counts: Counter[str] = Counter()
_lock = threading.Lock()
_local = threading.local()


def _count_statement(execute, sql, params, many, context):
    _local.statements = getattr(_local, "statements", 0) + 1
    return execute(sql, params, many, context)


@task_prerun.connect
def _start(task=None, args=None, **_) -> None:
    _local.statements = 0
    if _count_statement not in connection.execute_wrappers:
        connection.execute_wrappers.append(_count_statement)


@task_postrun.connect
def _stop(task=None, args=None, **_) -> None:
    ids = args[0] if args and isinstance(args[0], list) else []
    with _lock:
        _counts[f"{task.name}:tasks"] += 1
        _counts[f"{task.name}:ids"] += len(ids)
        _counts[f"{task.name}:statements"] += getattr(_local, "statements", 0)
        _ensure_flushing()


def _flush_forever() -> None:
    from channels_app.pipeline.shared_state import redis_client

    while True:
        time.sleep(0.5)
        with _lock:
            taken = dict(_counts)
            _counts.clear()
        if taken:
            pipe = redis_client().pipeline(transaction=False)
            for name, n in taken.items():
                pipe.hincrby(KEY, name, n)
            pipe.execute()


def _ensure_flushing() -> None:
    # Started on first use in each process: a thread does not survive a prefork child's fork.
    if getattr(_ensure_flushing, "pid", None) != os.getpid():
        _ensure_flushing.pid = os.getpid()
        threading.Thread(target=_flush_forever, daemon=True, name="bench-counted").start()
