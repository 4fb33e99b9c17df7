"""The web process: daphne, with its access log scrubbed.

daphne writes its access log straight to a stream, not through Python logging, so the scrubber
on the log handlers (console/logging.py) never sees it, and a request line carries the whole
query string: a token or password someone put in a URL would be written in full. This runs
daphne's own command line (same options: ``python -m console.web -b 0.0.0.0 -p 8000
console.asgi:application``) with every access-log entry's path scrubbed first.
"""

from __future__ import annotations

from daphne.cli import CommandLineInterface
from daphne.server import Server

from console.logging import scrub


class ScrubbedAccessLog:
    """Wraps daphne's action logger: the same entries, with their paths scrubbed."""

    def __init__(self, write_entry) -> None:
        self.write_entry = write_entry

    def __call__(self, protocol, action, details):
        if isinstance(details.get("path"), str):
            details = {**details, "path": scrub(details["path"])}
        self.write_entry(protocol, action, details)


class ScrubbedServer(Server):
    def __init__(self, *args, action_logger=None, **kwargs):
        if action_logger is not None:
            action_logger = ScrubbedAccessLog(action_logger)
        super().__init__(*args, action_logger=action_logger, **kwargs)


class WebCommandLine(CommandLineInterface):
    server_class = ScrubbedServer


if __name__ == "__main__":
    WebCommandLine.entrypoint()
