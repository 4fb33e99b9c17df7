"""Write channels as YAML to standard output, for git-based workflows (config as code).

    python manage.py export_channels > channels.yaml                # every listed channel
    python manage.py export_channels --channel "ADT demo" > adt.yaml

Secrets show as ••••; samples and their accepted outputs are included (they hold PHI: keep the
file where PHI may be kept). The export is audited (channels.exported, actor shell:export_channels).
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from channels_app.models import Channel
from console import config_code


class Command(BaseCommand):
    help = "Write channels (settings, destinations, samples) as YAML to standard output."

    def add_arguments(self, parser):
        parser.add_argument(
            "--channel",
            metavar="NAME",
            action="append",
            help="export this channel only (repeat for several); default: every channel not archived",
        )

    def handle(self, *args, channel: list[str] | None = None, **options):
        if channel:
            found = list(Channel.objects.filter(name__in=channel))
            missing = sorted(set(channel) - {c.name for c in found})
            if missing:
                raise CommandError(f"no channel named {', '.join(map(repr, missing))}")
        else:
            found = config_code.listed_channels()
        text = config_code.exported(None, found, via="shell", actor_name="shell:export_channels")
        self.stdout.write(text, ending="")
