"""A worker SIGKILLed in the middle of a send: another one finishes it, with a single effect."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from adapters.transports.mllp import MLLPClient
from channels_app import tasks
from channels_app.models import Attempt, Delivery
from tests import factories
from tests.support import REPO, database_url_for_processes, threaded_worker, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def start_worker_process() -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": database_url_for_processes(), "CLAIM_MARGIN_S": "1"}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "console",
            "worker",
            "-P",
            "prefork",
            "-c",
            "1",
            "-Q",
            "default,process,deliver",
            "-l",
            "WARNING",
            "--without-mingle",
            "--without-gossip",
        ],
        cwd=REPO,
        env=env,
        start_new_session=True,
    )


def test_worker_killed_mid_delivery_is_delivered_once(mllp_port, listener, fhir_sink, redis_client):
    channel = factories.channel(mllp_port)
    factories.fhir_destination(channel, fhir_sink.url, timeout_s=2)
    listener(channel)
    fhir_sink.hold_s = 3  # the first send hangs at the server: the worker is mid-send
    worker = start_worker_process()
    try:
        with MLLPClient("127.0.0.1", mllp_port) as client:
            client.send(factories.adt_a01("KILL-1"))
        wait_for(lambda: fhir_sink.requests, timeout=60, what="the first send to reach the sink")
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
    delivery = Delivery.objects.get()
    assert delivery.status == Delivery.Status.SENDING  # claimed by the dead worker
    fhir_sink.hold_s = 0

    with threaded_worker(concurrency=2):

        def swept_and_delivered():
            tasks.sweep()
            delivery.refresh_from_db()
            return delivery.status == Delivery.Status.DELIVERED

        wait_for(
            swept_and_delivered, timeout=30, interval=0.5, what="redelivery after the claim lapsed"
        )
    assert sum(fhir_sink.effects.values()) == 1  # two requests, one effect (same idempotency key)
    assert {r["key"] for r in fhir_sink.requests} == {delivery.idempotency_key}
    outcomes = list(Attempt.objects.filter(delivery=delivery).values_list("outcome", flat=True))
    assert outcomes == ["TRANSIENT", "SUCCESS"]
    assert "worker stopped" in Attempt.objects.filter(delivery=delivery).first().error
