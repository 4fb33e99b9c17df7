"""A log filter that keeps message bodies and secrets out of every log line.

Installed on the root handlers (settings.LOGGING). It rewrites the record in place, message and
traceback, so every handler after it, and every formatter, sees only the scrubbed text:

- HL7 v2 segments (``MSH|...``, ``PID|...``: three capitals or a capital and digits, then a field
  separator) are cut to their name: ``PID|[redacted]``; the rest of that line goes with them, and
  segments joined by ``\\r`` (or a repr's literal ``\\r``) count as one line;
- HL7 composite values (``DOE^JANE^Q``), which name a patient even without their segment;
- string literals and parameters of logged SQL (Django logs queries with DEBUG on);
- bearer and token authorization values, ``password=``/``secret=``/``token=``/``api_key=`` pairs
  (query strings, JSON, key=value), and passwords inside URLs (``scheme://user:pw@host``);
- the hub's own API tokens wherever they appear (``hub_<prefix>_<secret>``: the prefix, which
  names the token, stays).

The filter never drops a record: a log line that lost its detail still says that something happened.
"""

from __future__ import annotations

import logging
import re

REDACTED = "[redacted]"

# A segment is a line that starts (or, in a repr or a joined string, continues) with a segment id
# and a field separator. MSH's separator follows directly; its encoding chars come next.
_SEGMENT = re.compile(r"\b([A-Z][A-Z0-9]{2})\|[^\n]*")
# Composite HL7 values: components joined by ^ (names, addresses, coded values with text).
# Message types such as ADT^A01 or ADT^A01^ADT_A01 are kept: they are what the log is about.
_MESSAGE_TYPE = re.compile(r"[A-Z]{3}\^[A-Z0-9]{3}(\^[A-Z0-9_]{3,7})?")
_COMPOSITE = re.compile(r"[^\s^|'\"(),;=]*\^[^\s|'\",;]*")
_AUTHORIZATION = re.compile(r"(?i)\b(bearer|basic|token)(\s+)[A-Za-z0-9._~+/=-]{6,}")
_SECRET_PAIR = re.compile(
    r"(?i)\b((?:password|passwd|pwd|secret|client_secret|token|access_token|api[_-]?key|"
    r"authorization)[\"']?\s*[=:]\s*[\"']?)([^\s&\"',;}]+)"
)
_HUB_TOKEN = re.compile(r"(?<![A-Za-z0-9])(hub_[A-Za-z0-9]{12}_)[A-Za-z0-9_-]{20,}")
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s/:@]*:)[^\s/@]+@")


# SQL string literals ('...', with '' escapes; E'...' too): with DEBUG on, Django logs every query
# with its parameters interpolated, and those are message bodies and canonical resources.
_SQL_LITERAL = re.compile(r"'(?:[^']|'')*'")


def scrub_sql(sql: str) -> str:
    """``sql`` with every string literal replaced: the query's shape stays, its values go."""
    return _SQL_LITERAL.sub(f"'{REDACTED}'", str(sql))


def _composite(match: re.Match) -> str:
    text = match.group(0)
    return text if _MESSAGE_TYPE.fullmatch(text) else REDACTED


def scrub(text: str) -> str:
    """``text`` with HL7 content, tokens and passwords replaced by ``[redacted]``."""
    if not text:
        return text
    if "|" in text:
        text = _SEGMENT.sub(lambda m: f"{m.group(1)}|{REDACTED}", text)
    if "^" in text:
        text = _COMPOSITE.sub(_composite, text)
    text = _AUTHORIZATION.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    text = _SECRET_PAIR.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
    if "hub_" in text:
        text = _HUB_TOKEN.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
    return _URL_PASSWORD.sub(lambda m: f"{m.group(1)}{REDACTED}@", text)


_formatter = logging.Formatter()


class ScrubFilter(logging.Filter):
    """Scrubs a record's message, arguments and traceback text in place; never drops it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_scrubbed", False):
            return True
        if record.name.startswith("django.db.backends") and hasattr(record, "sql"):
            self._scrub_query(record)
        try:
            message = record.getMessage()
        except Exception:  # a broken format string is logged as its template, not lost
            message = str(record.msg)
        record.msg, record.args = scrub(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = _formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        record._scrubbed = True
        return True

    @staticmethod
    def _scrub_query(record: logging.LogRecord) -> None:
        # Django's query log: "(%.3f) %s; args=%s; alias=%s" plus the same values as attributes.
        record.sql = scrub_sql(record.sql)
        record.params = REDACTED
        duration = getattr(record, "duration", None)
        timing = f"({duration:.3f}) " if isinstance(duration, float) else ""
        record.msg = f"{timing}{record.sql}; args={REDACTED}; alias={getattr(record, 'alias', '')}"
        record.args = None


def scrub_handlers(logger: logging.Logger) -> None:
    """Put the scrubber on every handler of ``logger`` that lacks it."""
    for handler in logger.handlers:
        if not any(isinstance(f, ScrubFilter) for f in handler.filters):
            handler.addFilter(ScrubFilter())


def _celery_logger_ready(sender=None, logger=None, **kwargs) -> None:
    if logger is not None:
        scrub_handlers(logger)


# A Celery worker sets up its own handlers (the task logger's, and the root's unless
# CELERY_WORKER_HIJACK_ROOT_LOGGER is off); these receivers put the scrubber on them as well.
# Django imports this module while it configures LOGGING, before the worker sets up logging.
try:
    from celery.signals import after_setup_logger, after_setup_task_logger
except ImportError:  # pragma: no cover - celery is a dependency; adapters-only use has no worker
    pass
else:
    after_setup_logger.connect(_celery_logger_ready, weak=False, dispatch_uid="hub-scrub-root")
    after_setup_task_logger.connect(_celery_logger_ready, weak=False, dispatch_uid="hub-scrub-task")
