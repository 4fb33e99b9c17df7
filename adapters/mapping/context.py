"""The state of one conversion: the message, the entries built so far, the issues met.

Segment maps read fields through the context so that every failure is reported with its place
(``OBX(3)-5``), and add resources through it so that every entry gets a stable id and an
identifier-based conditional request:

- the resources a message is about (Patient, Encounter, Observation, ...) are sent as a
  conditional update, ``PUT Patient?identifier=system|value``: re-delivery updates, never
  duplicates, and an A08 replaces what an A01 created;
- the resources they point at (Practitioner, Organization, Location) are sent as a conditional
  create, ``POST`` with ``ifNoneExist``: the hub never overwrites a richer record it only
  references.

A resource with no business identifier gets one derived from the message
(``urn:ietf:rfc:3986`` | ``urn:uuid:<uuid5>``), so the conditional request still makes
re-delivery idempotent. Its ``fullUrl`` is another UUID derived from that one: a server that
rewrites every occurrence of a fullUrl in a transaction (Medplum does) must not rewrite the
identifier too, or a retry's conditional request would find nothing and duplicate.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Callable
from datetime import datetime
from functools import lru_cache
from typing import TypeVar
from urllib.parse import quote
from zoneinfo import ZoneInfo

from adapters.codecs import hl7v2
from adapters.mapping import codesystems as cs
from adapters.mapping.datatypes import BadValue, Comps, Dtm, clean, parse_dtm
from adapters.mapping.result import ConversionIssue, MappingError, Origin, Severity

# All ids derive from this namespace: the same input gives the same UUIDs on every host.
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:hl7hub:v2-to-fhir")
DEFAULT_TZ = "+00:00"

T = TypeVar("T")


_NS_BYTES = NAMESPACE.bytes


# The RFC 4122 variant bits (10xx) set on the first hex digit of the fourth group.
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


@lru_cache(maxsize=8192)  # the same practitioners and locations come in message after message
def stable_uuid(*parts: str) -> str:
    """uuid5(NAMESPACE, "|".join(parts)) as text, without building UUID objects (hot path):
    the version (5) and variant are written over the SHA-1's hex digits."""
    h = hashlib.sha1(_NS_BYTES + "|".join(parts).encode("utf-8")).hexdigest()
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


_URL_SAFE = re.compile(r"[A-Za-z0-9:/._~@-]*")


def _url_part(text: str) -> str:
    return text if _URL_SAFE.fullmatch(text) else quote(text, safe=":/.-_~@")


def search_value(identifier: dict) -> str:
    """``system|value`` for a search URL, each side escaped so '|', '&' or '#' cannot break it;
    ``|value`` for an identifier without a system (FHIR's "no system"), so it cannot match the
    same value under some other system."""
    value = _url_part(identifier["value"])
    system = identifier.get("system")
    return f"{_url_part(system)}|{value}" if system else f"|{value}"


class Context:
    def __init__(
        self,
        message: hl7v2.Message,
        *,
        default_tz: str | None = None,
        profile: str | None = None,
        timezone: str | None = None,
    ) -> None:
        self.message = message
        self.profile = profile  # "us-core": US Core's extensions too (see us_core.py)
        self.enc = message.enc
        self.issues: list[ConversionIssue] = []
        self.entries: list[dict] = []
        # "searchset" for a query's answer (RSP^K22): the entries are matches, not requests
        self.bundle_type = "transaction"
        self._keys: dict[tuple[str, str], str] = {}
        self._urls: dict[str, dict] = {}
        self.memo: dict[tuple, object] = {}  # per-message memo of repeated fields (actors)
        self._occurrence: dict[int, int] = {}
        self._tz_reported = False
        msh = message.msh
        msh7 = msh.get(7)
        self._zone_source = "MSH-7"
        zone = _zone_of(msh7)
        if not zone:
            zone, self._zone_source = _default_zone(msh7, default_tz, timezone)
        self.default_tz = zone
        # Message-scoped keys: sending application/facility + control id; with no control id, a
        # digest of the message text keeps them stable for the same bytes.
        control = message.control_id.strip()
        if control:
            self.message_key = "|".join((msh.get(3), msh.get(4), control))
        else:
            digest = hashlib.sha1(message.encode().encode("utf-8", "replace")).hexdigest()
            self.message_key = "sha1:" + digest
        self.patient: str | None = None  # fullUrl of the message's Patient
        self.encounter: str | None = None
        # Business keys of the Patient / Encounter, for resources identified by what they are
        # about (an allergy of this patient to this substance); fullUrls when none was sent.
        self.patient_key: str | None = None
        self.encounter_key: str | None = None
        self.segment: hl7v2.Segment | None = None  # the segment being mapped, for errors

    # ------------------------------------------------------------------------------ reading

    def occurrence(self, seg: hl7v2.Segment) -> int:
        occ = self._occurrence.get(id(seg))
        if occ is None:
            for i, s in enumerate(self.message.all(seg.name), start=1):
                self._occurrence[id(s)] = i
            occ = self._occurrence.get(id(seg), 1)
        return occ

    def path(self, seg: hl7v2.Segment, n: int, rep: int = 1, comp: int | None = None) -> str:
        return str(hl7v2.Path(seg.name, n, self.occurrence(seg), rep, comp))

    def reps(self, seg: hl7v2.Segment, n: int) -> list[Comps]:
        """Non-empty repetitions of field n."""
        fields = seg.fields  # seg[n], without a method call: the maps read ~150 fields a message
        raw = fields[n] if 0 <= n < len(fields) else ""
        if not raw:
            return []
        enc = self.enc
        if enc.repetition not in raw:
            stripped = raw.strip()
            return [Comps(raw, enc)] if stripped and stripped != '""' else []
        out = []
        for r in raw.split(enc.repetition):
            if r and r.strip() and r.strip() != '""':
                out.append(Comps(r, enc))
        return out

    def comps(self, seg: hl7v2.Segment, n: int) -> Comps:
        """The first repetition of field n (possibly empty)."""
        fields = seg.fields
        raw = fields[n] if 0 <= n < len(fields) else ""
        if self.enc.repetition in raw:
            raw = raw.split(self.enc.repetition, 1)[0]
        return Comps(raw, self.enc)

    def value(self, seg: hl7v2.Segment, n: int, comp: int = 1) -> str:
        """Component ``comp`` of the first repetition, unescaped and trimmed."""
        fields = seg.fields
        raw = fields[n] if 0 <= n < len(fields) else ""
        if not raw:
            return ""
        enc = self.enc
        if enc.repetition in raw:
            raw = raw.split(enc.repetition, 1)[0]
        if enc.component in raw:
            parts = raw.split(enc.component)
            raw = parts[comp - 1] if comp <= len(parts) else ""
        elif comp != 1:
            return ""
        if enc.subcomponent in raw:
            raw = raw.split(enc.subcomponent, 1)[0]
        if enc.escape in raw:
            raw = hl7v2.unescape(raw, enc)
        return clean(raw)

    def text(self, seg: hl7v2.Segment, n: int) -> str:
        """Field n (first repetition) as plain text, separators inside it kept as sent."""
        raw = seg[n]
        if self.enc.repetition in raw:
            raw = raw.split(self.enc.repetition, 1)[0]
        return clean(hl7v2.unescape(raw, self.enc))

    # ------------------------------------------------------------------------------- issues

    def issue(
        self,
        seg: hl7v2.Segment | None,
        n: int | None,
        value: str,
        target: str,
        reason: str,
        *,
        origin: Origin = "sender",
        severity: Severity = "warning",
        rep: int = 1,
        comp: int | None = None,
    ) -> None:
        name = seg.name if seg is not None else ""
        where = self.path(seg, n, rep, comp) if seg is not None and n else name
        self.issues.append(ConversionIssue(name, where, value, target, reason, origin, severity))

    def fail(
        self,
        seg: hl7v2.Segment | None,
        n: int | None,
        value: str,
        target: str,
        reason: str,
        *,
        origin: Origin = "sender",
        segment_name: str = "",
    ) -> MappingError:
        name = seg.name if seg is not None else segment_name
        where = self.path(seg, n) if seg is not None and n else name
        return MappingError(
            reason, segment=name, field=where, value=value, target=target, origin=origin
        )

    def require_segment(self, name: str, target: str) -> hl7v2.Segment:
        seg = self.message.first(name)
        if seg is None:
            raise self.fail(
                None,
                None,
                "",
                target,
                f"the message has no {name} segment, which the {self.message.message_type} map"
                f" requires",
                segment_name=name,
            )
        return seg

    def attempt(
        self,
        seg: hl7v2.Segment,
        n: int,
        target: str,
        fn: Callable[[Comps], T],
        *,
        rep: int = 1,
        required: bool = False,
    ) -> T | None:
        """Run a datatype map on field n; a BadValue becomes an issue (or, when the map requires
        the field, a MappingError)."""
        reps = self.reps(seg, n)
        field = reps[rep - 1] if rep <= len(reps) else Comps("", self.enc)
        try:
            return fn(field)
        except BadValue as exc:
            raw = hl7v2.unescape(field.enc.component.join(field.parts), self.enc)
            if required:
                raise MappingError(
                    str(exc),
                    segment=seg.name,
                    field=self.path(seg, n, rep, exc.component),
                    value=raw,
                    target=target,
                )
            self.issue(seg, n, raw, target, f"{exc}; left out", rep=rep, comp=exc.component)
            return None

    # ----------------------------------------------------------------------- dates and times

    def dtm(self, seg: hl7v2.Segment, n: int, target: str, comp: int = 1) -> Dtm | None:
        return self.attempt(seg, n, target, lambda f: parse_dtm(f.c(comp)))

    def datetime(self, seg: hl7v2.Segment, n: int, target: str, comp: int = 1) -> str | None:
        """A TS/DTM field as a FHIR dateTime (partial precision kept)."""
        parsed = self.dtm(seg, n, target, comp)
        return self.datetime_text(parsed) if parsed else None

    def quiet_datetime(self, seg: hl7v2.Segment, n: int) -> str | None:
        """Like `datetime`, for a field another map already reports: no second issue."""
        try:
            parsed = parse_dtm(self.value(seg, n))
        except BadValue:
            return None
        return self.datetime_text(parsed) if parsed else None

    def datetime_text(self, parsed: Dtm) -> str:
        if parsed.has_time and not parsed.tz:
            self._note_zone()
        return parsed.datetime_text(self.default_tz)

    def instant_text(self, parsed: Dtm) -> str:
        if not parsed.tz:
            self._note_zone()
        return parsed.instant_text(self.default_tz)

    def date(self, seg: hl7v2.Segment, n: int, target: str) -> str | None:
        parsed = self.dtm(seg, n, target)
        return parsed.date_text() if parsed else None

    def _note_zone(self) -> None:
        if not self._tz_reported:
            self._tz_reported = True
            self.issues.append(
                ConversionIssue(
                    "MSH",
                    "MSH-7",
                    self.message.msh.get(7),
                    "dateTime/instant",
                    f"times without a zone were read in {self.default_tz}, the zone of"
                    f" {self._zone_source}",
                    "sender",
                    "information",
                )
            )

    # ---------------------------------------------------------------------------- resources

    def add(
        self,
        resource: dict,
        *,
        identity: dict | None = None,
        key: str | None = None,
        global_key: bool = False,
        update: bool = True,
    ) -> str:
        """Add a resource; returns its fullUrl.

        ``identity`` is the business identifier the conditional request uses. Without one, an
        identifier ``urn:ietf:rfc:3986|urn:uuid:<fullUrl uuid>`` is derived from ``key``
        (default: the segment being mapped) within this message, or from ``key`` alone when
        ``global_key`` (the same test of the same order is the same Observation in any
        message). A second resource with the same identity returns the first one's fullUrl."""
        rtype = resource["resourceType"]
        if identity is not None and identity.get("value"):
            dedupe = search_value(identity)
        else:
            identity = None
            dedupe = key or self.segment_key()
            if not global_key:
                dedupe = self.message_key + "|" + dedupe
        known = self._keys.get((rtype, dedupe))
        if known:
            return known
        searched = dedupe  # the identity's search value, when it has one
        rid = stable_uuid(rtype, dedupe)
        full_url = "urn:uuid:" + stable_uuid("entry", rid)
        if identity is None:
            identity = {"system": cs.URI_SYSTEM, "value": "urn:uuid:" + rid}
            identifiers = resource.get("identifier")
            if isinstance(identifiers, list):
                identifiers.append(identity)
            else:
                resource["identifier"] = [identity]
            searched = search_value(identity)
        condition = "identifier=" + searched
        if update:
            request = {"method": "PUT", "url": f"{rtype}?{condition}"}
        else:
            request = {"method": "POST", "url": rtype, "ifNoneExist": condition}
        self.entries.append({"fullUrl": full_url, "resource": resource, "request": request})
        self._keys[(rtype, dedupe)] = full_url
        self._urls[full_url] = resource
        return full_url

    def segment_key(self) -> str:
        seg = self.segment
        if seg is None:
            return "message"
        return f"{seg.name}({self.occurrence(seg)})"

    def resource(self, full_url: str) -> dict | None:
        return self._urls.get(full_url)

    def sender_system(self) -> str | None:
        """The sending facility (MSH-4), else application (MSH-3), as a system URI."""
        if not hasattr(self, "_sender"):
            msh = self.message.msh
            self._sender = None
            for n in (4, 3):
                comps = self.comps(msh, n)
                system = cs.hd_system(comps.c(1), comps.c(2), comps.c(3))
                if system:
                    self._sender = system
                    break
        return self._sender

    def scoped(self, identifier: dict | None) -> dict | None:
        """An identifier without system is only unique at its sender: scope it there (order
        and appointment numbers without a namespace would otherwise collide across senders)."""
        if identifier is not None and "system" not in identifier:
            system = self.sender_system()
            if system:
                # keep "system" before "value", as every identifier here is written
                value = identifier.pop("value")
                identifier["system"] = system
                identifier["value"] = value
        return identifier

    def key_of(self, full_url: str | None) -> str:
        """The identity a resource was added under (its identifier search value)."""
        resource = self._urls.get(full_url or "")
        if resource is None:
            return ""
        identifiers = resource.get("identifier")
        if isinstance(identifiers, list) and identifiers:
            return search_value(identifiers[0])
        return full_url or ""

    def about(self, *parts: str) -> str:
        """A global key for a resource identified by its patient (and encounter) and content."""
        return "|".join((self.patient_key or self.message_key, *parts))

    def known(self, resource_type: str, key: str) -> bool:
        """Whether a resource was added under ``key`` (a global key, see `add`)."""
        return (resource_type, key) in self._keys


def _default_zone(msh7: str, default_tz: str | None, timezone: str | None) -> tuple[str, str]:
    """The zone for times written without one, and where it came from: the channel's IANA zone
    at the message's own time (so a summer message gets summer time), else the fixed default."""
    if timezone:
        return _offset_in(ZoneInfo(timezone), msh7), f"the channel's time zone ({timezone})"
    return default_tz or DEFAULT_TZ, "the converter default"


def _offset_in(zone: ZoneInfo, msh7: str) -> str:
    try:
        sent = parse_dtm(msh7.split("^", 1)[0])
    except BadValue:
        sent = None
    if sent and sent.month and sent.day:
        at = datetime(sent.year, sent.month, sent.day, sent.hour or 12, sent.minute or 0)
    else:  # no usable MSH-7: the offset in force now
        at = datetime.now()
    minutes = int(at.replace(tzinfo=zone).utcoffset().total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _zone_of(text: str) -> str | None:
    try:
        parsed = parse_dtm(text.split("^", 1)[0])
    except BadValue:
        return None
    return parsed.tz if parsed else None


def ref(full_url: str | None, display: str | None = None) -> dict | None:
    if not full_url:
        return None
    out = {"reference": full_url}
    if display:
        out["display"] = display
    return out
