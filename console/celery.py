import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")

app = Celery("console")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["channels_app"])


@signals.worker_ready.connect
def _report_worker(sender=None, **_):
    from channels_app import process_heartbeat

    # The runner names the workers process@ and deliver@ (console/run.py).
    name = getattr(sender, "hostname", "") or ""
    process_heartbeat.start("deliver" if name.startswith("deliver@") else "worker")


@signals.beat_init.connect
def _report_beat(**_):
    from channels_app import process_heartbeat

    process_heartbeat.start("beat")
