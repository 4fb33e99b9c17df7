"""Cursors for the pipeline's hot statements, bound on the server so they can be prepared.

Django's PostgreSQL cursors bind parameters on the client: every batch sends its statement as
new text, and PostgreSQL parses and plans it again. The stages' claims and settles are large
statements run once per batch: the delivery claim took 1.4 ms a run as text, 0.4 ms prepared
(planning is most of it), and quoting a batch's JSON into the text cost the worker too. These
cursors bind on the server, and psycopg prepares a statement the fifth time a connection runs it
(Django leaves `prepare_threshold` unset, which turns preparing off; its own cursors, binding on
the client, never prepare, so setting it here changes nothing else). The cursor is wrapped as
Django wraps its own, so transactions, error translation and query capture (the query-count
tests, `bench.counted`) see these statements as any other.

A prepared statement lives as long as its connection, which the workers replace once it is older
than CONN_MAX_AGE (60 s): a plan chosen while a table was small is made again from its current
size within a minute, even where autovacuum never analyzes it.

Behind a pooler that cannot keep prepared statements (PgBouncer before 1.21 in transaction mode)
set HUB_PREPARED_STATEMENTS=false: the same statements then go through Django's cursor.
"""

from __future__ import annotations

from django.conf import settings
from django.db import connection
from django.db.backends.postgresql.base import ServerBindingCursor
from psycopg.pq import Format

PREPARE_AFTER = 5  # runs of one statement on one connection


def cursor(*, binary: bool = False):
    """A cursor on the default connection for the pipeline's repeated raw statements; with
    ``binary`` its results come in binary form (bodies: bytea as bytes, not hex to decode)."""
    if not settings.HUB["PREPARED_STATEMENTS"]:
        return connection.cursor()
    connection.ensure_connection()
    connection.validate_thread_sharing()
    if connection.connection.prepare_threshold != PREPARE_AFTER:
        connection.connection.prepare_threshold = PREPARE_AFTER
    raw = ServerBindingCursor(connection.connection)
    if binary:
        raw.format = Format.BINARY
    if connection.queries_logged:
        return connection.make_debug_cursor(raw)
    return connection.make_cursor(raw)
