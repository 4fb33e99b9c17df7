"""The Celery broker transport: kombu's Redis transport, with a channel that closes cleanly when
Redis went away while a BRPOP was in flight.

Why: a worker whose consumer connection breaks calls ``Connection.collect()`` and then
``Connection.close()``. kombu's ``Channel.close()`` first reads the reply of a BRPOP still in
flight (so a task Redis already popped is not lost at shutdown, kombu#1733). With Redis gone
that read raises, so ``collect()`` leaves the channel half closed: its unacknowledged messages are
not restored, yet ``collect()`` releases the transport (``Transport.client = None``). The
``close()`` that follows closes the channel again, restores the unacknowledged messages on the
released transport, and fails with ``AttributeError: 'NoneType' object has no attribute
'hostname'``: not a connection error, so Celery takes it as unrecoverable and the worker exits.
Whether a BRPOP is in flight when the failure is seen is a race (the pub/sub socket of remote
control often notices first), hence a crash in about one Redis restart out of three.
"""

from __future__ import annotations

import contextlib
from queue import Empty

from kombu.transport import redis


class Channel(redis.Channel):
    def close(self) -> None:
        # The reply of a BRPOP whose connection failed cannot be read any more (what Redis popped
        # for it, the sweeper re-enqueues): finish closing now, while the transport is still
        # there to restore the unacknowledged messages.
        if self._in_poll:
            with contextlib.suppress(Empty, *self.connection_errors):
                self._brpop_read()
        super().close()


class Transport(redis.Transport):
    Channel = Channel
