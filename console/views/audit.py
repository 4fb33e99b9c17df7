"""The audit log, for admins: filter by actor, action, date range and target; export as CSV."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from django import forms
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.core.validators import validate_ipv46_address
from django.http import HttpResponseBadRequest, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode
from django.views.decorators.http import require_POST

from console import audit, security
from console.access import requires
from console.models import AuditEvent
from console.roles import Role

PAGE_SIZE = 50
EXPORT_ACTION = "audit.export"
CSV_COLUMNS = ["id", "at", "actor", "ip", "user_agent", "action", "target", "detail"]


class AuditFilter(forms.Form):
    actor = forms.CharField(required=False, max_length=150)
    action = forms.CharField(required=False, max_length=64)
    start = forms.DateField(required=False, label="From", widget=forms.DateInput({"type": "date"}))
    end = forms.DateField(required=False, label="To", widget=forms.DateInput({"type": "date"}))
    target = forms.CharField(required=False, max_length=255, label="Target contains")

    def clean(self):
        data = super().clean()
        if data.get("start") and data.get("end") and data["start"] > data["end"]:
            raise forms.ValidationError("The start date is after the end date.")
        return data

    def apply(self, events):
        """``events`` narrowed by the valid filters (an invalid form filters nothing)."""
        if not self.is_valid():
            return events.none()
        data = self.cleaned_data
        if data["actor"]:
            events = events.filter(actor_name__iexact=data["actor"].strip())
        if data["action"]:
            events = events.filter(action=data["action"].strip())
        # Dates are whole days in the console's time zone, both ends included.
        if data["start"]:
            events = events.filter(at__gte=_day_start(data["start"]))
        if data["end"]:
            events = events.filter(at__lt=_day_start(data["end"] + timedelta(days=1)))
        if data["target"]:
            events = events.filter(target__icontains=data["target"].strip())
        return events

    def as_params(self) -> dict[str, str]:
        return (
            {k: str(v) for k, v in (self.cleaned_data or {}).items() if v} if self.is_bound else {}
        )


@dataclass(frozen=True)
class DetailLine:
    """One line of an entry's detail: ``key: value``, or for a change ``key: before → after``."""

    key: str
    value: str = ""
    before: str | None = None
    after: str | None = None

    @property
    def is_change(self) -> bool:
        return self.before is not None


def detail_lines(detail: dict | None) -> list[DetailLine]:
    lines = []
    for key, value in (detail or {}).items():
        if key == "changes" and isinstance(value, dict):
            lines += [_change(field, pair) for field, pair in value.items()]
        else:
            lines.append(DetailLine(str(key), _readable(value)))
    return lines


def _change(field: str, pair) -> DetailLine:
    if isinstance(pair, list | tuple) and len(pair) == 2:
        return DetailLine(str(field), before=_readable(pair[0]), after=_readable(pair[1]))
    return DetailLine(str(field), _readable(pair))


def _readable(value) -> str:
    if value is None or value == "" or value == [] or value == {}:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_readable(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(_readable(v) for v in value)
    return str(value)


def _day_start(day) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


@requires(Role.ADMIN)
def audit_list(request):
    form = AuditFilter(request.GET or None)
    events = form.apply(AuditEvent.objects.all()) if form.is_bound else AuditEvent.objects.all()
    page = Paginator(events, PAGE_SIZE).get_page(request.GET.get("page"))
    for event in page:
        event.detail_lines = detail_lines(event.detail)
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "form": form,
        "page": page,
        "query": query.urlencode(),
        "actions": AuditEvent.objects.order_by("action")
        .values_list("action", flat=True)
        .distinct(),
    }
    template = "audit/_rows.html" if request.htmx else "audit/list.html"
    return render(request, template, context)


@requires(Role.ADMIN)
def audit_export(request):
    form = AuditFilter(request.GET or None)
    events = form.apply(AuditEvent.objects.all()) if form.is_bound else AuditEvent.objects.all()
    # The export is itself an audited act, written before the first row leaves.
    audit.record(
        request,
        EXPORT_ACTION,
        target="audit",
        detail={"filters": form.as_params() if form.is_bound else {}, "rows": events.count()},
    )
    stamp = timezone.localtime().strftime("%Y%m%d-%H%M%S")
    response = StreamingHttpResponse(_csv_rows(events), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="audit-{stamp}.csv"'
    return response


@requires(Role.ADMIN)
@require_POST
def audit_unlock(request):
    """Lift a sign-in lock (username + IP) before its window ends; shown on login.locked rows."""
    username = request.POST.get("username", "").strip()
    ip = request.POST.get("ip", "").strip() or None
    try:
        if ip:
            validate_ipv46_address(ip)
    except ValidationError:
        return HttpResponseBadRequest("not an IP address")
    if not username:
        return HttpResponseBadRequest("a username is needed")
    security.unlock(request, username, ip)
    return redirect(f"{reverse('audit')}?{urlencode({'target': username})}")


class _Echo:
    def write(self, value: str) -> str:
        return value


def _csv_rows(events):
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_COLUMNS)
    fields = ["id", "at", "actor_name", "ip", "user_agent", "action", "target", "detail"]
    for pk, at, actor, ip, agent, action, target, detail in events.values_list(*fields).iterator(
        chunk_size=2000
    ):
        detail_text = json.dumps(detail, ensure_ascii=False, sort_keys=True) if detail else ""
        cells = [pk, at.isoformat(), actor, ip or "", agent, action, target, detail_text]
        yield writer.writerow([_cell(c) for c in cells])


def _cell(value) -> str:
    # A spreadsheet runs a cell that starts with = + - @ (or a tab/CR) as a formula; usernames,
    # targets and user agents are typed by strangers, so such cells are quoted with a leading '.
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
