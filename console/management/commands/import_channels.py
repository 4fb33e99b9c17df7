"""Import channels from a YAML file made by export_channels (config as code).

    python manage.py import_channels channels.yaml --dry-run     # the changes, nothing applied
    python manage.py import_channels channels.yaml --publish     # apply, record new versions
    python manage.py import_channels - < channels.yaml           # from standard input

The whole file is checked first: an unknown key, a bad setting, a routing condition or field
rule that does not compile refuses it, each problem on standard error with its channel and key
path, and the exit status is 1; nothing is applied. Otherwise the changes are printed, then
applied in one transaction. Without --publish each existing channel's settings become its draft
(what runs changes when the draft is published); with --publish each changed channel is
published as a new version. Audited as shell:import_channels.
"""

from __future__ import annotations

import sys

from django.core.management.base import BaseCommand, CommandError

from console import config_code


class Command(BaseCommand):
    help = "Import channels from a YAML file (check it whole, show the changes, then apply)."

    def add_arguments(self, parser):
        parser.add_argument("file", help="the YAML file, or - for standard input")
        parser.add_argument(
            "--dry-run", action="store_true", help="show the changes; apply nothing"
        )
        parser.add_argument(
            "--publish", action="store_true", help="publish each changed channel as a new version"
        )

    def handle(self, *args, file: str, dry_run: bool, publish: bool, **options):
        text = self._read(file)
        try:
            plans = config_code.preview(text)
        except config_code.Refused as exc:
            for problem in exc.problems:
                self.stderr.write(f"refused: {problem}")
            raise CommandError(f"{file}: refused ({len(exc.problems)} problem(s)); nothing applied")
        for plan in plans:
            self._show(plan)
        if dry_run:
            self.stdout.write("dry run: nothing applied")
            return
        try:
            applied = config_code.imported(
                None, text, publish=publish, via="shell", actor_name="shell:import_channels"
            )
        except config_code.Refused as exc:  # changed since it was checked
            for problem in exc.problems:
                self.stderr.write(f"refused: {problem}")
            raise CommandError(f"{file}: refused; nothing applied")
        for result in applied:
            self.stdout.write(f"applied {result.channel.name}: {_outcome(result, publish)}")

    def _read(self, file: str) -> str:
        try:
            if file == "-":
                return sys.stdin.read()
            with open(file, encoding="utf-8") as handle:
                return handle.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"{file}: cannot be read ({exc})")

    def _show(self, plan) -> None:
        if not plan.changes:
            self.stdout.write(f"{plan.name}: no changes")
            return
        self.stdout.write(f"{plan.name}: {'new channel' if plan.new else 'changes'}")
        for change in plan.changes:
            self.stdout.write(f"  {change}")


def _outcome(result, publish: bool) -> str:
    if result.version:
        return f"published as version {result.version.number}"
    if publish:
        return "nothing new to publish"
    if result.plan.new:
        return "created, not published (no version yet)"
    return "saved as its draft: review and publish it to put it live"
