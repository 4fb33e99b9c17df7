"""The Content-Security-Policy allows no inline style: templates style through console.css."""

from __future__ import annotations

from pathlib import Path

import pytest

from console.roles import Role
from tests import factories

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


def test_no_template_carries_a_style_attribute():
    offenders = [
        f"{path.relative_to(TEMPLATES)}:{n}"
        for path in TEMPLATES.rglob("*.html")
        for n, line in enumerate(path.read_text().splitlines(), start=1)
        if "style=" in line
    ]
    assert offenders == []


@pytest.mark.django_db
def test_the_policy_allows_no_inline_style(client):
    client.force_login(factories.user("csp-viewer", Role.VIEWER))
    for url in ("/login/", "/messages/"):
        csp = client.get(url).headers["Content-Security-Policy"]
        assert "'unsafe-inline'" not in csp and "style-src 'self'" in csp
        assert "style-src-attr" not in csp


@pytest.mark.django_db
def test_the_message_list_clips_long_values_with_classes(client):
    from channels_app.models import Message

    channel = factories.channel(40401)
    Message.objects.create(
        channel=channel, raw=b"MSH|x", control_id="C" * 80, error_detail="a long reason"
    )
    client.force_login(factories.user("csp-op", Role.VIEWER))
    html = client.get("/messages/").content.decode()
    assert "cell-clip" in html and "style=" not in html
    assert (
        ".cell-clip"
        in (Path(__file__).resolve().parents[2] / "static/console/console.css").read_text()
    )
