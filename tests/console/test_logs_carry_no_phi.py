"""No log line carries a patient's name: messages go through the real pipeline (MLLP listener,
Celery worker, FHIR server) with every logger at DEBUG and SQL logging on, and the name is looked
for in everything the root handlers write and in every record they pass on."""

from __future__ import annotations

import io
import logging

import pytest
from django.test import override_settings

from channels_app.models import Delivery, Message
from console.logging import ScrubFilter, scrub
from tests import factories
from tests.support import send, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

FAMILY = "QUIXOTEVANDERPHI"


class Records(logging.Handler):
    """What a handler after the configured ones (pytest's caplog, a log shipper) receives."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def logs():
    """Every logger at DEBUG (ask for it after the worker, whose start sets levels); yields the text the configured root handlers write, and records."""
    root = logging.getLogger()
    scrubbing = [h for h in root.handlers if any(isinstance(f, ScrubFilter) for f in h.filters)]
    assert scrubbing, "settings.LOGGING installs the scrubber on the root handlers"
    streams = [(h, h.setStream(io.StringIO())) for h in scrubbing if hasattr(h, "setStream")]
    records = Records()
    root.addHandler(records)
    levels = {
        name: logger.level
        for name, logger in logging.root.manager.loggerDict.items()
        if isinstance(logger, logging.Logger) and logger.level
    }
    for name in [*levels, "django.db.backends"]:
        logging.getLogger(name).setLevel(logging.DEBUG)
    root_level = root.level
    root.setLevel(logging.DEBUG)

    def text() -> str:
        written = "".join(h.stream.getvalue() for h, _ in streams)
        return written + "\n".join(records.lines)

    yield text
    root.setLevel(root_level)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    logging.getLogger("django.db.backends").setLevel(levels.get("django.db.backends", 0))
    root.removeHandler(records)
    for handler, stream in streams:
        handler.setStream(stream)


@override_settings(DEBUG=True)  # Django logs every query, with its parameters, at DEBUG
def test_a_patient_name_reaches_no_log_line(hub, mllp_port, fhir_sink, logs):
    # The capture works, and the scrubber is on its path: a careless line is caught and redacted.
    raw = factories.adt_a01("PHI-1", family=FAMILY, mrn="M-PHI-1")
    logging.getLogger("channels_app.careless").debug("received %r", raw)
    assert "channels_app.careless DEBUG received b'MSH|[redacted]" in logs()

    send(mllp_port, raw)
    wait_for(
        lambda: Delivery.objects.filter(
            message__control_id="PHI-1", status=Delivery.Status.DELIVERED
        ).exists(),
        what="ADT delivered",
    )
    assert FAMILY in str(fhir_sink.bundles())  # the name did travel through the hub

    # Parse errors: no MSH at all (rejected as unreadable), and content the mapping refuses.
    send(mllp_port, f"PID|1||M-PHI-2^^^HOSP^MR||{FAMILY}^ANA||19800101|F\r".encode())
    odd = f"MSH|^~\\&|A|B|C|D|20240101||ZZZ^Z01|PHI-3|P|2.5.1\rZZZ|1|{FAMILY}^ANA\r".encode()
    send(mllp_port, odd)
    wait_for(
        lambda: Message.objects.filter(control_id="PHI-3", status=Message.Status.ERROR).exists(),
        what="unmappable message in ERROR",
    )

    text = logs()
    assert "SELECT" in text or "INSERT" in text  # the SQL log was on, so bodies were offered
    assert FAMILY.lower() not in text.lower(), [
        line for line in text.splitlines() if FAMILY.lower() in line.lower()
    ][:5]


def test_scrub_keeps_what_a_log_line_is_about():
    line = "ACK AE for ADT^A01^ADT_A01 control PHI-3 on channel 4: segment PID field 5"
    assert scrub(line) == line
    assert scrub(f"bad PID|1||M1||{FAMILY}^ANA") == "bad PID|[redacted]"
    assert FAMILY not in scrub(f"value {FAMILY}^ANA^Q rejected")
    assert scrub("sent Authorization: Bearer abc.def-123456").count("abc.def") == 0
    assert (
        scrub("https://hub:s3cret-pw@fhir.example/fhir")
        == "https://hub:[redacted]@fhir.example/fhir"
    )
    assert scrub("GET /metrics?token=tok_123456&x=1") == "GET /metrics?token=[redacted]&x=1"


def test_scrub_redacts_exception_text():
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, None)
    try:
        raise ValueError(f"cannot map PID|1||M||{FAMILY}^ANA")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    ScrubFilter().filter(record)
    assert FAMILY not in logging.Formatter().format(record)


PROBE = f"""
import logging
from celery.utils.log import get_task_logger
from console.celery import app

app.Worker(pool="solo", loglevel="DEBUG", hostname="probe@logs")  # sets up the worker's logging
logging.getLogger("channels_app.probe").warning("root PID|1||M||{FAMILY}^ANA")
get_task_logger("channels_app.tasks").warning("task PID|1||M||{FAMILY}^ANA")
"""


def test_a_celery_worker_process_scrubs_its_own_handlers_too():
    # Celery replaces the root handlers and gives the task logger its own: a real worker setup,
    # in its own process, must still redact.
    import os
    import subprocess
    import sys

    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "console.settings"}
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr[-2000:]
    logged = out.stdout + out.stderr
    assert "root PID|[redacted]" in logged and "task PID|[redacted]" in logged
    assert FAMILY not in logged
