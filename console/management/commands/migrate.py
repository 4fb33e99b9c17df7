"""`manage.py migrate`, run as the database's owner when DATABASE_OWNER_URL is set.

The app's own role (DATABASE_URL) cannot create or alter tables; the owner migrates and then
grants the app role its rows (console/db_roles.py). Without DATABASE_OWNER_URL this is Django's
migrate, as the one configured role.
"""

from __future__ import annotations

import contextlib

from django.conf import settings
from django.core.management.commands import migrate
from django.db import connections

from console.db_roles import grant_app_role
from console.env import database_from_url

# The database stays the connection's (a test database while the suite creates one); only who
# connects, and through which server address, comes from DATABASE_OWNER_URL.
CREDENTIALS = ("USER", "PASSWORD", "HOST", "PORT")


class Command(migrate.Command):
    help = migrate.Command.help + " As DATABASE_OWNER_URL's role when set, then grants the app's."

    def handle(self, *args, **options):
        owner_url = getattr(settings, "DATABASE_OWNER_URL", "")
        if not owner_url or options["database"] != "default":
            return super().handle(*args, **options)
        connection = connections["default"]
        app_role = connection.settings_dict["USER"]
        owner = database_from_url(owner_url)
        if owner["USER"] == app_role:  # one role for both: nothing to grant
            return super().handle(*args, **options)
        with _connected_as(connection, owner):
            super().handle(*args, **options)
            with connection.cursor() as cursor:
                grant_app_role(cursor, app_role)
        if options["verbosity"] >= 1:
            self.stdout.write(f"Granted the app role {app_role!r} its rows.")


@contextlib.contextmanager
def _connected_as(connection, owner: dict):
    app = {key: connection.settings_dict[key] for key in CREDENTIALS}
    connection.close()
    connection.settings_dict.update({key: owner[key] for key in CREDENTIALS})
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict.update(app)
