"""The suite's own helpers surface what goes wrong in them: a peer's failure fails the test."""

from __future__ import annotations

import asyncio
import socket

import pytest

from tests import factories
from tests.support import FhirSink, ListenerThread, end_other_sessions, send


def test_a_failing_sink_handler_fails_the_test_at_stop():
    sink = FhirSink().start()
    with socket.create_connection(("127.0.0.1", sink.port), timeout=5) as conn:
        conn.sendall(b"POST /fhir HTTP/1.1\r\nHost: x\r\nContent-Length: many\r\n\r\n")
        conn.recv(1)  # the server closes the connection once its handler has failed
    with pytest.raises(AssertionError, match="sink's handler failed"):
        sink.stop()


def test_a_listener_that_dies_while_serving_fails_the_test_at_stop(transactional_db, mllp_port):
    from channels_app.management.commands.run_listeners import database_conninfo, listener_specs

    channel = factories.channel(mllp_port)
    thread = ListenerThread(listener_specs([channel.name]), database_conninfo()).start()
    assert b"MSA|AA" in send(mllp_port, factories.adt_a01("BEFORE-CRASH"))

    def crash():
        for task in asyncio.all_tasks(thread.loop):
            task.cancel()

    thread.loop.call_soon_threadsafe(crash)
    thread.thread.join(10)
    with pytest.raises(AssertionError, match="crashed while serving"):
        thread.stop()
    end_other_sessions()  # the dead listener's connections were never closed
