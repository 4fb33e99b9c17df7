"""The two database roles: the owner runs migrations; the app reads and writes rows, nothing more.

The audit table's trigger refuses UPDATE, DELETE and TRUNCATE, but a superuser or the table's
owner can switch triggers off (``session_replication_role``, ``ALTER TABLE … DISABLE TRIGGER``,
``DROP TRIGGER``). So the app connects as a role that is neither: after each migration the owner
grants it rows on every table and, on the audit table, only SELECT and INSERT, plus UPDATE of
``actor_id``, which deleting a user needs (the trigger lets that one column go to NULL only).
"""

from __future__ import annotations

from dataclasses import dataclass

AUDIT_TABLE = "console_auditevent"


def grant_app_role(cursor, app_role: str) -> None:
    """Give ``app_role`` what the app needs on the current database's tables, run as their owner."""
    role, audit = _quoted(app_role), _quoted(AUDIT_TABLE)
    for statement in (
        "GRANT USAGE ON SCHEMA public TO {role}",
        "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}",
        "GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {role}",
        "REVOKE UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON {audit} FROM {role}",
        "GRANT UPDATE (actor_id) ON {audit} TO {role}",
    ):
        cursor.execute(statement.format(role=role, audit=audit))


def _quoted(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


@dataclass(frozen=True)
class ConnectedRole:
    name: str
    superuser: bool
    owns_audit_table: bool

    @property
    def can_undo_audit(self) -> bool:
        return self.superuser or self.owns_audit_table


def connected_role(connection) -> ConnectedRole:
    """Who the app's connection is, as the System page shows it."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_user, r.rolsuper,"
            " coalesce(pg_has_role(current_user, t.tableowner, 'USAGE'), false)"
            " FROM pg_roles r LEFT JOIN pg_tables t"
            " ON t.schemaname = 'public' AND t.tablename = %s"
            " WHERE r.rolname = current_user",
            [AUDIT_TABLE],
        )
        name, superuser, owns = cursor.fetchone()
    return ConnectedRole(name=name, superuser=superuser, owns_audit_table=owns)
