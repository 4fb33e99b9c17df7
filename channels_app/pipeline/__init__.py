"""The life of a message as plain functions over ids: ingest, process, deliver, sweep.

Celery tasks, listeners, views and tests all call these, so behaviour cannot drift between them.
"""
