"""The audit page: admins only, filters, pagination, and a CSV export that is itself audited."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from console.models import AuditEvent
from console.roles import Role, set_role

pytestmark = pytest.mark.django_db


@pytest.fixture
def people(django_user_model):
    cast = {}
    for role in Role:
        user = django_user_model.objects.create_user(role.label, password="x" * 16)
        set_role(user, role)
        cast[role] = user
    return cast


@pytest.fixture
def admin(client, people):
    client.force_login(people[Role.ADMIN])
    return client


def add(action, actor="", target="", detail=None, days_ago=0, ip="10.0.0.1"):
    """An event as it would have been written by ``actor`` ``days_ago`` days ago."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO console_auditevent (at, actor_name, ip, user_agent, action, target,"
            " detail) VALUES (%s, %s, %s, '', %s, %s, %s) RETURNING id",
            [
                timezone.now() - timedelta(days=days_ago),
                actor,
                ip,
                action,
                target,
                json.dumps(detail or {}),
            ],
        )
        return AuditEvent.objects.get(pk=cursor.fetchone()[0])


@pytest.mark.parametrize("role", [Role.VIEWER, Role.OPERATOR, Role.ANALYST])
def test_only_admins_open_the_audit_log(client, people, role):
    client.force_login(people[role])
    assert client.get("/audit/").status_code == 403
    assert client.get("/audit/export.csv").status_code == 403
    assert not AuditEvent.objects.filter(action="audit.export").exists()


def test_anonymous_is_sent_to_sign_in(client):
    response = client.get("/audit/")
    assert response.status_code == 302 and response.url.startswith("/login/")


def test_admin_sees_events_newest_first(admin):
    add("phi.reveal", actor="olga", target="message:42", detail={"field": "PID-5"})
    add("channel.update", actor="anna", target="channel:ADT in", days_ago=1)
    response = admin.get("/audit/")
    assert response.status_code == 200
    html = response.content.decode()
    assert html.index("message:42") < html.index("channel:ADT in")
    assert "phi.reveal" in html and "PID-5" in html and "olga" in html
    assert 'href="/audit/"' in html  # the nav shows Audit to admins


def test_nav_hides_audit_from_others(client, people):
    client.force_login(people[Role.ANALYST])
    assert 'href="/audit/"' not in client.get("/messages/").content.decode()


def test_filters_by_actor_action_dates_and_target(admin):
    add("phi.reveal", actor="olga", target="message:42")
    add("phi.reveal", actor="anna", target="message:43")
    add("replay", actor="olga", target="message:44", days_ago=3)
    add("replay", actor="olga", target="delivery:9", days_ago=10)

    def targets(**query):
        response = admin.get("/audit/", query, HTTP_HX_REQUEST="true")
        assert response.status_code == 200
        html = response.content.decode()
        return {t for t in ("message:42", "message:43", "message:44", "delivery:9") if t in html}

    assert targets(actor="OLGA") == {"message:42", "message:44", "delivery:9"}
    assert targets(action="replay") == {"message:44", "delivery:9"}
    today = timezone.localdate()
    assert targets(start=str(today - timedelta(days=4)), end=str(today - timedelta(days=2))) == {
        "message:44"
    }
    assert targets(start=str(today)) == {"message:42", "message:43"}
    assert targets(target="message:4", actor="olga", action="replay") == {"message:44"}


def test_a_backwards_date_range_says_so(admin):
    response = admin.get("/audit/", {"start": "2026-02-01", "end": "2026-01-01"})
    assert b"The start date is after the end date." in response.content


def test_pages_of_fifty_keep_the_filters(admin):
    for n in range(60):
        add("replay", actor="olga", target=f"message:{n}")
    html = admin.get("/audit/", {"action": "replay"}).content.decode()
    assert "Page 1 of 2" in html and "60 entries" in html
    assert "?page=2&action=replay" in html
    html = admin.get("/audit/", {"action": "replay", "page": 2}).content.decode()
    assert "message:0<" in html and "Page 2 of 2" in html


def test_csv_export_has_the_filtered_rows_and_is_audited(admin, people):
    add("phi.reveal", actor="olga", target="message:42", detail={"field": "PID-5"})
    add("replay", actor="anna", target="message:43")
    response = admin.get("/audit/export.csv", {"actor": "olga"}, REMOTE_ADDR="10.2.2.2")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith('attachment; filename="audit-')
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == ["id", "at", "actor", "ip", "user_agent", "action", "target", "detail"]
    assert [(r[2], r[5], r[6], r[7]) for r in rows[1:]] == [
        ("olga", "phi.reveal", "message:42", '{"field": "PID-5"}')
    ]
    export = AuditEvent.objects.get(action="audit.export")
    assert export.actor == people[Role.ADMIN] and str(export.ip) == "10.2.2.2"
    assert export.detail == {"filters": {"actor": "olga"}, "rows": 1}


def test_csv_cells_cannot_become_spreadsheet_formulas(admin):
    add("login.failed", target='=HYPERLINK("http://evil.example","x")')
    response = admin.get("/audit/export.csv", {"action": "login.failed"})
    [row] = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))[1:]
    assert row[6].startswith("'=HYPERLINK")


def test_deleted_users_keep_their_name_on_the_page(admin, django_user_model):
    gone = django_user_model.objects.create_user("gone")
    admin_client = admin
    admin_client.force_login(gone)
    admin_client.logout()
    django_user_model.objects.filter(pk=gone.pk).delete()
    admin_client.force_login(django_user_model.objects.get(username="admin"))
    html = admin_client.get("/audit/", {"actor": "gone"}).content.decode()
    assert "gone" in html and "deleted" in html


def test_detail_reads_as_key_value_and_changes_as_before_to_after(admin):
    add(
        "destination.updated",
        actor="ana",
        target="destination:7",
        detail={"changes": {"timeout_s": [30.0, 5.0], "enabled": [True, False]}, "note": None},
    )
    add("audit.export", actor="ana", target="audit", detail={"filters": {"actor": "bo"}, "rows": 3})
    page = admin.get("/audit/").content.decode()
    detail = page.split('class="small audit-detail"')
    export, change = detail[1], detail[2]  # newest first
    assert "filters:</span> actor=bo" in export and "rows:</span> 3" in export
    assert '<span class="audit-before">30.0</span>' in change
    assert '<span class="audit-after">5.0</span>' in change and "→" in change
    assert 'enabled:</span> <span class="audit-before">yes</span>' in change
    assert "note:</span> —" in change
    assert "{&#x27;" not in page  # no dict dumped as Python
    assert '<td class="audit-target">destination:7</td>' in page
