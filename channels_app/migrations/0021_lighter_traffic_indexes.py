"""Lighter indexes on the hot traffic tables: every message and delivery row written (and each
non-HOT update of it) paid for indexes that others already cover. The foreign keys on
message.channel and delivery.message are served by message_channel_recent and
delivery_once_per_destination (same leading column); the two resent_* keys, null on almost every
row, are indexed only where set. Only the indexes change in the database (Django would drop and
re-validate each foreign key constraint, a scan of the table for nothing).

The canonical bundle (a few kB, over the TOAST threshold) is compressed with lz4 where the server
has it: a fifth of pglz's CPU to write and less to read, for a slightly larger value (new values
only; a server built without lz4 keeps pglz)."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

LZ4_CANONICAL = """
DO $$ BEGIN
    ALTER TABLE channels_app_message ALTER COLUMN canonical SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN NULL;
END $$
"""


class Migration(migrations.Migration):
    dependencies = [
        ("channels_app", "0020_canonical_exact_decoder"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="delivery",
                    name="message",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="deliveries",
                        to="channels_app.message",
                    ),
                ),
                migrations.AlterField(
                    model_name="message",
                    name="channel",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="messages",
                        to="channels_app.channel",
                    ),
                ),
                migrations.AlterField(
                    model_name="message",
                    name="resent_by",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                migrations.AlterField(
                    model_name="message",
                    name="resent_from",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="resent_as",
                        to="channels_app.message",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    "DROP INDEX IF EXISTS channels_app_delivery_message_id_e3061c48;"
                    " DROP INDEX IF EXISTS channels_app_message_channel_id_ad602467;"
                    " DROP INDEX IF EXISTS channels_app_message_resent_by_id_0e6206ff;"
                    " DROP INDEX IF EXISTS channels_app_message_resent_from_id_84b4f3c9;",
                    reverse_sql=(
                        "CREATE INDEX channels_app_delivery_message_id_e3061c48"
                        " ON channels_app_delivery (message_id);"
                        " CREATE INDEX channels_app_message_channel_id_ad602467"
                        " ON channels_app_message (channel_id);"
                        " CREATE INDEX channels_app_message_resent_by_id_0e6206ff"
                        " ON channels_app_message (resent_by_id);"
                        " CREATE INDEX channels_app_message_resent_from_id_84b4f3c9"
                        " ON channels_app_message (resent_from_id);"
                    ),
                ),
            ],
        ),
        migrations.AddIndex(
            model_name="message",
            index=models.Index(
                condition=models.Q(("resent_from__isnull", False)),
                fields=["resent_from"],
                name="message_resent_from",
            ),
        ),
        migrations.AddIndex(
            model_name="message",
            index=models.Index(
                condition=models.Q(("resent_by__isnull", False)),
                fields=["resent_by"],
                name="message_resent_by",
            ),
        ),
        migrations.RunSQL(
            LZ4_CANONICAL,
            "ALTER TABLE channels_app_message ALTER COLUMN canonical SET COMPRESSION pglz",
        ),
    ]
