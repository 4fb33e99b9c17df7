"""Re-seal every stored body, destination secret and channel source secret (the channel's and each
of its versions') with the first key of HUB_ENCRYPTION_KEYS.

Rotation: put the new key first (keep the old one after it), restart, run this, then drop the old
key. Rows written before sealing was turned on are sealed too (a version recorded then may hold a
source secret in clear); canonical JSON moves from
``canonical`` to ``canonical_sealed``. Batches commit one by one, so an interrupted run is simply
run again.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction

from channels_app import sealing
from channels_app.models import Channel, ChannelVersion, Destination
from channels_app.sources import opened_source_config, sealed_source_config

SELECT_BATCH = """
SELECT id, raw, canonical::text, canonical_sealed FROM channels_app_message
WHERE id > %s ORDER BY id LIMIT %s FOR UPDATE
"""

UPDATE_BATCH = """
UPDATE channels_app_message AS m SET raw = o.raw, canonical = NULL, canonical_sealed = o.sealed
FROM unnest(%s::bigint[], %s::bytea[], %s::bytea[]) AS o(id, raw, sealed)
WHERE m.id = o.id
"""


class Command(BaseCommand):
    help = "Re-seal message bodies, destination and source secrets with the current encryption key."

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=500)

    def handle(self, *args, batch_size: int, **options):
        if not sealing.enabled():
            raise CommandError("HUB_ENCRYPTION_KEYS is not set: there is no key to seal with")
        try:
            self._destinations()
            self._sources()
            self._versions()
            self._messages(max(1, batch_size))
        except sealing.SealError as exc:
            raise CommandError(f"{exc} (put the old key back after the new one and run again)")

    def _destinations(self) -> None:
        count = 0
        for destination in Destination.objects.order_by("id"):
            opened = sealing.open_config(destination.transport, destination.config or {})
            if not sealing.secret_fields(destination.transport) and opened == destination.config:
                continue
            destination.config = opened  # save() seals it again with the current key
            destination.save(update_fields=["config"])
            count += 1
        self.stdout.write(f"destinations: {count} re-sealed")

    def _sources(self) -> None:
        count = 0
        for channel in Channel.objects.order_by("id"):
            opened = opened_source_config(channel.source_type, channel.source_config)
            resealed = sealed_source_config(channel.source_type, opened)
            if resealed == channel.source_config:
                continue  # no secret set: nothing to seal
            channel.source_config = resealed
            channel.save(update_fields=["source_config"])
            count += 1
        self.stdout.write(f"channel sources: {count} re-sealed")

    def _versions(self) -> None:
        """A version keeps its source's secrets sealed, so a rollback can restore them."""
        count = 0
        for version in ChannelVersion.objects.order_by("id"):
            snapshot = version.snapshot
            source_type, config = snapshot.get("source_type") or "", snapshot.get("source_config")
            if not config:
                continue
            resealed = sealed_source_config(source_type, opened_source_config(source_type, config))
            if resealed == config:
                continue
            version.snapshot = {**snapshot, "source_config": resealed}
            version.save(update_fields=["snapshot"])
            count += 1
        self.stdout.write(f"channel versions: {count} re-sealed")

    def _messages(self, batch_size: int) -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM channels_app_message")
            total = cursor.fetchone()[0]
        done, last_id = 0, 0
        while True:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(SELECT_BATCH, [last_id, batch_size])
                rows = cursor.fetchall()
                if not rows:
                    break
                ids, raws, sealed = [], [], []
                for message_id, raw, canonical_text, canonical_sealed in rows:
                    ids.append(message_id)
                    raw = bytes(raw)
                    raws.append(sealing.reseal(raw) if raw else raw)  # a pruned body stays empty
                    if canonical_sealed is not None:
                        sealed.append(sealing.reseal(canonical_sealed))
                    elif canonical_text is not None:
                        sealed.append(sealing.seal(canonical_text.encode()))
                    else:
                        sealed.append(None)
                cursor.execute(UPDATE_BATCH, [ids, raws, sealed])
            done += len(rows)
            last_id = ids[-1]
            self.stdout.write(f"messages: {done}/{total} re-sealed (up to #{last_id})")
        self.stdout.write(
            self.style.SUCCESS(f"done: {done} message(s) sealed with the current key")
        )
