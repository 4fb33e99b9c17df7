"""Create the demo channel and admin; safe to run again (it only fills in what is missing)."""

from __future__ import annotations

import os
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.db import transaction

from channels_app.models import Channel, Destination

DEMO_CHANNEL = "ADT demo"


class Command(BaseCommand):
    help = "Seed the demo channel 'ADT demo' (MLLP in, FHIR out) and a demo admin user."

    @transaction.atomic
    def handle(self, *args, **options):
        port = int(os.environ.get("DEMO_MLLP_PORT", "2575"))
        channel, created = Channel.objects.get_or_create(
            name=DEMO_CHANNEL,
            defaults={
                "description": "Demo: HL7 v2 ADT and ORU over MLLP, converted to FHIR R4 and delivered as a transaction Bundle (as batches when the server refuses a transaction that large).",
                "source_type": Channel.SourceType.MLLP,
                "source_config": {"host": settings.HUB["LISTEN_HOST"], "port": port},
            },
        )
        if channel.source_config.get("port") != port:
            channel.source_config = {**channel.source_config, "port": port}
            channel.save(update_fields=["source_config", "updated_at"])
        fhir_url = os.environ.get("DEMO_FHIR_URL")
        # Said, not left to the default: the demo's page shows the trade-off. Validating servers
        # (Medplum) refuse most real messages' transactions for their size; they go as batches.
        fhir = {"base_url": fhir_url, "mode": "transaction", "if_too_large": "batch"}
        wanted = (
            ("FHIR server", Destination.Transport.FHIR_REST, fhir)
            if fhir_url
            else (
                "Outbox folder",
                Destination.Transport.FILE,
                {"directory": str(Path(settings.HUB["OUTBOX_DIR"]))},
            )
        )
        name, transport, config = wanted
        Destination.objects.update_or_create(
            channel=channel,
            name=name,
            defaults={"transport": transport, "config": config, "enabled": True},
        )
        # Only the wanted destination is live; the other one (from an earlier run) is paused.
        channel.destinations.exclude(name=name).update(enabled=False)
        version = channel.publish(note="seed_demo")
        self.stdout.write(
            f"channel {channel.name!r} v{version.number}: MLLP 127.0.0.1:{port} → {name} ({config})"
        )
        self._admin()

    def _admin(self):
        username = os.environ.get("DEMO_ADMIN_USER", "admin")
        password = os.environ.get("DEMO_ADMIN_PASSWORD", "hub-demo-admin-2575")
        User = get_user_model()
        user, created = User.objects.get_or_create(
            username=username, defaults={"is_staff": True, "is_superuser": True}
        )
        # The "admin" role group (console.roles; named here so channels_app does not import the
        # console). A superuser counts as admin anyway; the group makes the role visible.
        user.groups.add(Group.objects.get_or_create(name="admin")[0])
        if created:
            user.set_password(password)
            user.save()
            self.stdout.write(f"demo admin created: {username} / {password}")
        else:
            self.stdout.write(f"demo admin: {username} (password unchanged)")
