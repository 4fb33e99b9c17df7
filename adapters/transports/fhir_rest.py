"""FHIR REST destination: the canonical Bundle as one transaction, as batches, or resource by
resource.

``mode: "transaction"`` POSTs the Bundle as stored to the server's base URL (byte for byte): the
server applies it all or nothing. Servers cap transactions (Medplum refuses one that holds
conditional entries beyond 8 entries, or more than 50 updates). With ``if_too_large: "batch"``
(the default) the same attempt then sends the Bundle as ``batch`` mode does, and its summary says
so: delivered, but not all or nothing. The refused size is remembered for an hour, so a later
Bundle at least as large (in entries, conditional entries and updates) goes as batches without
the refused round trip first; a smaller one still tries the transaction. With ``"fail"`` the
refusal fails the attempt permanently with an error that names the limit and the mode that fits
(``ServerLimit``).

``mode: "batch"`` and ``mode: "per_resource"`` send the entries in an order where a resource comes
after the resources it refers to. ``batch`` POSTs one batch Bundle per dependency level (the
entries that refer to nothing else in the Bundle, then those that refer only to the first level,
...): a batch's entries must not depend on each other, and no transaction limit applies.
``per_resource`` (servers without batch or transaction) sends each entry on its own. In both:

- an entry that carries a ``request`` is sent as written: ``PUT Patient?identifier=sys|val`` is a
  conditional update, ``POST`` with ``ifNoneExist`` a conditional create (``If-None-Exist``);
  the canonical maps always write one;
- otherwise a resource with an identifier is PUT to ``[type]?identifier=system|value``; one with
  an ``id`` is PUT to ``[type]/[id]``; anything else is a plain POST (not idempotent);
- ``urn:uuid:`` references to earlier entries are rewritten to the ids the server answered with
  (``Location``, else the returned resource's id), or, when it named none, to the entry's own
  conditional search (``Patient?identifier=sys|val``, a conditional reference);
- a failure stops the send before the next level (batch) or entry (per_resource). The entries
  already applied stay applied and the retry sends the whole message again, which the
  conditional requests make harmless (no duplicate). A batch answers entry by entry: the attempt
  fails if any entry failed, permanently when one of the failed entries can never succeed (a
  4xx), else transiently (every failure was a 5xx, 408 or 429), and its error lists them.
  Retrying only the failed entries would need state kept across attempts; resending the message
  costs conditional no-ops on the server instead. The delivery timeout covers the whole send.

A query's answer (RSP^K22, ADR^A19: a ``searchset`` Bundle of Patients) is no Bundle a server
stores: every mode sends it as the transaction of the resources it found, each a conditional
update (``PUT Patient?identifier=sys|val``), so the patients land on the server and a repeated
answer updates them; an answer that found nobody sends nothing and succeeds.

Auth: a static ``bearer_token``, or OAuth2 client credentials (``oauth2``): the token is fetched
once and shared by all threads, reused until shortly before ``expires_in`` runs out (five minutes
when the server does not say), and fetched again once if the server answers 401.

OperationOutcome issues in any answer (an error, a success, each transaction-response entry's
``response.outcome``) are returned as ``issues``: severity, code, diagnostics, expression.
"""

from __future__ import annotations

import base64
import copy
import re
import threading
import time
from dataclasses import replace
from typing import Any, Literal, NamedTuple
from urllib.parse import quote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, SecretStr, model_validator

from adapters.codecs import bounded_json, exact_json
from adapters.registry import register_transport
from adapters.transports.base import Encoded, Payload, SendResult, TransportError
from adapters.transports.webhook import (
    headers_field,
    is_permanent,
    origin,
    request,
    secret,
    short,
    split_userinfo,
    url_field,
)

# A cached token is replaced this long before it expires (at most), so no request carries a token
# that expires in flight.
EARLY_REFRESH_S = 60.0
DEFAULT_TOKEN_LIFETIME_S = 300.0


class OAuth2(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token_url: HttpUrl = url_field()
    client_id: str
    client_secret: SecretStr = secret()
    scope: str = ""
    # How the client authenticates to the token endpoint (RFC 6749 2.3.1): HTTP Basic, or the
    # id and secret in the form body.
    client_auth: Literal["basic", "post"] = "basic"


@register_transport("fhir_rest")
class FhirRestTransport:
    needs_source = False

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")

        base_url: HttpUrl = url_field(
            description="The FHIR server's base, e.g. https://ehr/fhir/R4."
        )
        mode: Literal["transaction", "batch", "per_resource"] = Field(
            "transaction",
            description="transaction: the Bundle in one request, applied all or nothing (some "
            "servers cap its size, e.g. Medplum at 8 entries with conditional requests: see "
            "if_too_large). batch: "
            "one batch Bundle per dependency level, no size cap, references resolved from the "
            "server's answers. per_resource: one request per resource, for servers without "
            "batch. Entries go as conditional create/update, so a retried message updates what "
            "it stored before rather than duplicating it.",
        )
        if_too_large: Literal["batch", "fail"] = Field(
            "batch",
            description="In transaction mode, when the server refuses the transaction for its "
            "size limit. batch: the same attempt sends the Bundle again as batches, so the "
            "message is delivered but its entries are not applied all or nothing (the attempt "
            "says so); for an hour after, a Bundle at least that large goes as batches straight "
            "away. fail: the attempt fails permanently, naming the limit.",
        )
        bearer_token: SecretStr | None = secret(
            None, "A static token; or use OAuth2 client credentials instead."
        )
        oauth2: OAuth2 | None = None
        headers: dict[str, str] = headers_field()

        @model_validator(mode="after")
        def _one_auth(self):
            if self.bearer_token and self.oauth2:
                raise ValueError("give bearer_token or oauth2, not both")
            return self

    def __init__(self, config: Config) -> None:
        self.config = config
        self.url, url_auth = split_userinfo(str(config.base_url).rstrip("/") + "/")
        self.where = origin(self.url, path=True)  # for messages: no user info, no query
        self.tokens = TokenSource(config.oauth2) if config.oauth2 else None
        self.refusals = Refusals()
        self.headers = {"Accept": "application/fhir+json", **config.headers}
        if url_auth:
            self.headers["Authorization"] = url_auth
        if config.bearer_token:
            self.headers["Authorization"] = f"Bearer {config.bearer_token.get_secret_value()}"

    def encode(self, payload: Payload) -> Encoded:
        """The transaction Bundle as stored (batch and per_resource modes send its entries); a
        query's answer as the transaction of its resources."""
        found = searchset_entries(payload)
        if found:
            payload = transaction_of(payload, found)
        how = {"transaction": "POST", "batch": "batches to", "per_resource": "each entry to"}
        return Encoded(payload.body, payload.content_type, f"{how[self.config.mode]} {self.where}")

    def send(self, payload: Payload, *, timeout: float) -> SendResult:
        found = searchset_entries(payload)
        if found == []:
            return SendResult(200, "the query's answer holds no patients: nothing to send")
        if found:
            payload = transaction_of(payload, found)
        if self.config.mode == "per_resource":
            return self._send_each(payload, timeout)
        if self.config.mode == "batch":
            return self._send_batches(payload, timeout)
        return self._send_transaction(payload, timeout)

    def _send_transaction(self, payload: Payload, timeout: float) -> SendResult:
        """The Bundle as one transaction; with ``if_too_large: batch``, as batches when the
        server refuses it for its size (or refused one no larger within the hour)."""
        deadline = time.monotonic() + timeout
        fallback = self.config.if_too_large == "batch"
        known = self.refusals.covering(payload) if fallback else None
        if known:
            return self._batches_instead(payload, deadline, known.note(payload), "")
        try:
            return self._post_transaction(payload, timeout)
        except ServerLimit as refused:
            if not fallback or refused.size is None:  # no Bundle to split: batches cannot help
                raise
            self.refusals.add(refused)
            note = (
                f"server refused a transaction of {refused.size} for its size limit "
                f"({refused.said}); sent as a batch instead: {NOT_ATOMIC}"
            )
            first = f"POST {self.where} (a transaction, refused for its size limit), then "
            return self._batches_instead(payload, deadline, note, first)

    def _post_transaction(self, payload: Payload, timeout: float) -> SendResult:
        headers = {
            "Content-Type": payload.content_type,
            # Servers that honour it make a retried POST single-effect; conditional creates in the
            # Bundle do the same for servers that don't.
            "Idempotency-Key": payload.idempotency_key,
            "X-Request-Id": payload.idempotency_key,
        }
        sent = f"POST {self.where} ({payload.content_type}, {len(payload.body)} bytes)"
        code, reason, data = self._exchange("POST", self.url, payload.body, headers, timeout)
        answer = _json(data)
        if 200 <= code < 300:
            return SendResult(code, summarize(answer, data), sent, issues_of(answer))
        what = f"{self.where} answered"
        raise self._refusal("transaction", what, code, reason, answer, data, payload)

    def _batches_instead(self, payload, deadline, note, sent_first) -> SendResult:
        """The transaction's Bundle sent as batches, the attempt saying why (``note``) in its
        summary, its issues and, should the batches fail, its error."""
        warning = {
            "severity": "warning",
            "code": "too-costly",
            "diagnostics": note,
            "expression": [],
        }
        try:
            result = self._send_batches(payload, max(0.001, deadline - time.monotonic()))
        except TransportError as exc:
            exc.args = (f"{note}; then {exc}",)
            exc.issues = (warning, *exc.issues)
            raise
        summary = f"{note}; {result.summary}"
        request_ = sent_first + result.request
        return SendResult(result.status_code, summary, request_, (warning, *result.issues))

    def _refusal(self, mode, what, code, reason, answer, data, payload=None, issues=()):
        """The error for a non-2xx answer: a ServerLimit when the server says the request was
        too big for it, else a TransportError classified by the status."""
        summary = summarize(answer, data)
        issues = (*issues, *issues_of(answer))
        if is_limit(code, issues):
            return ServerLimit(mode, what, code, summary, issues, payload)
        return TransportError(
            f"{what} {code} {reason}: {summary}",
            permanent=is_permanent(code),
            status_code=code,
            response=summary,
            issues=issues,
        )

    def _send_each(self, payload: Payload, timeout: float) -> SendResult:
        deadline = time.monotonic() + timeout
        sender = References(bundle_entries(payload))
        issues: list[dict] = []
        answers: list[str] = []
        code = 200
        ordered = sender.ordered
        for step, (index, entry) in enumerate(ordered, 1):
            where = f"entry {step}/{len(ordered)}"
            code = self._send_entry(
                sender, entry, f"{payload.idempotency_key}-{index}", where, deadline, issues
            )
            answers.append(str(code))
        completions = sender.completions()
        for step, (index, entry) in enumerate(completions, 1):
            where = f"completing entry {step}/{len(completions)}"
            code = self._send_entry(
                sender, entry, f"{payload.idempotency_key}-{index}-c", where, deadline, issues
            )
            answers.append(str(code))
        count = len(ordered) + len(completions)
        sent = f"{count} requests to {self.where} ({len(payload.body)} bytes of Bundle)"
        return SendResult(code, f"per_resource: {', '.join(answers)}", sent, tuple(issues))

    def _send_entry(self, sender, entry, key, where, deadline, issues) -> int:
        """One entry on its own; its answer's issues are added to ``issues``."""
        resource, method, path, extra = sender.prepared(entry)
        # The type, not the URL: a conditional URL carries identifiers (an MRN) into the log.
        where = f"{where} ({method} {resource_type(path)})"
        headers = {"Idempotency-Key": key, "X-Request-Id": key, **extra}
        body = None
        if resource is not None and method in ("POST", "PUT"):
            body = exact_json.dumps(resource, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/fhir+json"
        left = max(0.001, deadline - time.monotonic())
        try:
            code, reason, data, location = self._exchange(
                method, self.url + path, body, headers, left, want_location=True
            )
        except TransportError as exc:
            exc.args = (f"{where}: {exc}",)
            exc.issues = tuple(issues)
            raise
        answer = _json(data)
        if not 200 <= code < 300:
            what = f"{where}: {self.where} answered"
            raise self._refusal(
                "per_resource", what, code, reason, answer, data, issues=tuple(issues)
            )
        issues += issues_of(answer)
        sender.answered(entry, resource, location, answer)
        return code

    def _send_batches(self, payload: Payload, timeout: float) -> SendResult:
        deadline = time.monotonic() + timeout
        sender = References(bundle_entries(payload))
        issues: list[dict] = []
        statuses: list[str] = []
        number = 0
        for number, level in enumerate(sender.with_completions(sender.levels()), 1):
            where = f"batch {number} ({len(level)} entries)"
            prepared = [(entry, *sender.prepared(entry)) for _, entry in level]
            key = f"{payload.idempotency_key}-b{number}"
            replies = self._post_batch(where, prepared, key, deadline, issues)
            failed = []
            for (entry, resource, method, path, _), reply in zip(prepared, replies, strict=True):
                status = reply_status(reply)
                statuses.append(str(status))
                if 200 <= status < 300:
                    sender.answered(entry, resource, reply.get("location"), reply.get("resource"))
                else:
                    failed.append((status, f"{method} {resource_type(path)}", reply))
            if failed:
                raise batch_failure(where, self.where, failed, len(prepared), tuple(issues))
        sent = f"{number} batch Bundles to {self.where} ({len(sender.ordered)} entries)"
        return SendResult(200, f"batch: {', '.join(statuses)}", sent, tuple(issues))

    def _post_batch(self, where, prepared, key, deadline, issues) -> list[dict]:
        """One batch Bundle of the prepared entries; each entry's reply, in their order. The
        answer's issues are added to ``issues``."""
        bundle = {"resourceType": "Bundle", "type": "batch"}
        bundle["entry"] = [batch_entry(*p) for p in prepared]
        body = exact_json.dumps(bundle, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/fhir+json", "Idempotency-Key": key}
        headers["X-Request-Id"] = key
        left = max(0.001, deadline - time.monotonic())
        try:
            code, reason, data = self._exchange("POST", self.url, body, headers, left)
        except TransportError as exc:
            exc.args = (f"{where}: {exc}",)
            exc.issues = tuple(issues)
            raise
        answer = _json(data)
        what = f"{where}: {self.where} answered"
        if not 200 <= code < 300:
            raise self._refusal("batch", what, code, reason, answer, data, issues=tuple(issues))
        issues += issues_of(answer)
        replies = batch_replies(answer, len(prepared))
        if replies is None:
            summary = summarize(answer, data)
            raise TransportError(
                f"{what} {code} without a batch-response Bundle of {len(prepared)} entries: "
                f"{summary}",
                status_code=code,
                response=summary,
                issues=tuple(issues),
            )
        return replies

    def _exchange(self, method, url, body, headers, timeout, *, want_location=False):
        """One request with the auth header; with OAuth2, a 401 refetches the token once."""
        headers = {**self.headers, **headers}
        deadline = time.monotonic() + timeout
        for last_try in (False, True):
            if self.tokens:
                token = self.tokens.get(max(0.001, deadline - time.monotonic()))
                headers["Authorization"] = f"Bearer {token}"
            left = max(0.001, deadline - time.monotonic())
            response = request(method, url, body=body, headers=headers, timeout=left)
            if response.status == 401 and self.tokens and not last_try:
                self.tokens.forget(token)
                continue
            break
        answer = (response.status, response.reason or "", response.data)
        if want_location:
            location = response.headers.get("Location") or response.headers.get("Content-Location")
            return (*answer, location)
        return answer


class TokenSource:
    """OAuth2 client-credentials tokens, cached and shared by the sending threads.

    One lock: the first thread that finds the token missing or about to expire fetches it; the
    others wait for that fetch instead of starting their own.
    """

    def __init__(self, config: OAuth2) -> None:
        self.config = config
        self.url = str(config.token_url)
        self.lock = threading.Lock()
        self.token: str | None = None
        self.refresh_at = 0.0
        self.fetches = 0

    def get(self, timeout: float) -> str:
        started = time.monotonic()
        if not self.lock.acquire(timeout=timeout):
            raise TransportError(f"no OAuth2 token: {self.url} did not answer within the timeout")
        try:
            if self.token is None or time.monotonic() >= self.refresh_at:
                left = max(0.001, timeout - (time.monotonic() - started))
                self.token, lifetime = self._fetch(left)
                self.refresh_at = time.monotonic() + lifetime - min(EARLY_REFRESH_S, lifetime / 10)
            return self.token
        finally:
            self.lock.release()

    def forget(self, token: str) -> None:
        """The server refused ``token``: the next get() fetches a new one (unless another
        thread already has)."""
        with self.lock:
            if self.token == token:
                self.token = None

    def _fetch(self, timeout: float) -> tuple[str, float]:
        cfg = self.config
        form = {"grant_type": "client_credentials"}
        if cfg.scope:
            form["scope"] = cfg.scope
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
        }
        secret_value = cfg.client_secret.get_secret_value()
        if cfg.client_auth == "basic":
            pair = f"{quote(cfg.client_id, safe='')}:{quote(secret_value, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        else:
            form |= {"client_id": cfg.client_id, "client_secret": secret_value}
        body = "&".join(f"{k}={quote(v, safe='')}" for k, v in form.items()).encode()
        self.fetches += 1
        try:
            response = request("POST", self.url, body=body, headers=headers, timeout=timeout)
        except TransportError as exc:
            raise TransportError(f"no OAuth2 token: {exc}")
        text = short(response.data).replace(secret_value, "***")
        try:
            answer = bounded_json.loads(text)
        except ValueError:
            answer = {}
        if not isinstance(answer, dict):
            answer = {}
        if response.status != 200 or not answer.get("access_token"):
            # RFC 6749 5.2: error and error_description say why (invalid_client, invalid_scope).
            why = " ".join(str(answer.get(k, "")) for k in ("error", "error_description")).strip()
            raise TransportError(
                f"no OAuth2 token from {self.url}: {response.status} {why or text[:200]}",
                permanent=is_permanent(response.status),  # a 200 without a token too
                status_code=response.status,
            )
        try:
            lifetime = float(answer.get("expires_in") or DEFAULT_TOKEN_LIFETIME_S)
        except (TypeError, ValueError):
            lifetime = DEFAULT_TOKEN_LIFETIME_S
        return str(answer["access_token"]), max(1.0, lifetime)


# ------------------------------------------------------------------------ query answers


def searchset_entries(payload: Payload) -> list[dict] | None:
    """The entries of a query's answer (RSP^K22, ADR^A19: a ``searchset`` Bundle), or None when
    the payload is some other Bundle."""
    if b'"searchset"' not in payload.body:  # cheap: most Bundles are never parsed here
        return None
    try:
        bundle = exact_json.loads(payload.body)
    except ValueError:
        return None
    if not isinstance(bundle, dict) or bundle.get("type") != "searchset":
        return None
    return [e for e in bundle.get("entry") or [] if isinstance(e, dict) and e.get("resource")]


def transaction_of(payload: Payload, found: list[dict]) -> Payload:
    """A query's answer as the transaction of what it found. A server stores no searchset, and
    what an integration wants of the answer is its patients on the server: each match (and each
    resource it includes, which the matches refer to) becomes the conditional update or create
    ``entry_request`` works out, so a repeated answer updates the same patients. Every mode
    then sends it as it sends any transaction Bundle."""
    entries = []
    for entry in found:
        method, path, _ = entry_request({}, entry["resource"])
        item = {"fullUrl": entry["fullUrl"]} if entry.get("fullUrl") else {}
        item |= {"resource": entry["resource"], "request": {"method": method, "url": path}}
        entries.append(item)
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    return replace(payload, body=exact_json.dumps(bundle, separators=(",", ":")).encode())


# ------------------------------------------------------------------------ server limits

# How a refusal for size reads: Medplum says "has too many entries" and "more update operations
# than allowed"; the other words are the ones such messages commonly use. A 413 always is one.
LIMIT_WORDS = re.compile(r"too many|too large|than allowed|exceed|maximum|limit", re.IGNORECASE)
# Said on every attempt that sends a transaction's Bundle as batches: the trade-off it made.
NOT_ATOMIC = "entries are not applied atomically"
# A transaction at least as large as one the server refused for its size goes straight to batches
# for this long. A refusal is no cheap no once the server holds data: Medplum resolves the
# conditional entries first (refusing a 46-entry ORU took 4 ms on an empty server, 78 ms when it
# held the resources; an 83-update one 18 ms and 6 s). The shared corpus's 48 Bundles sent in turn
# to one server: 51.5 s asking each time, 37.2 s remembering (8 refused, 24 sent as batches at
# once, 16 transactions). Servers change their limits rarely; an hour forgets a raised one soon.
REMEMBER_REFUSAL_S = 3600.0
SMALLER_MODES = {
    "transaction": "use mode batch (one batch per dependency level) or per_resource",
    "batch": "use mode per_resource",
}


def is_limit(code: int, issues: tuple[dict, ...]) -> bool:
    """Whether a permanent refusal says the request was too big for the server."""
    if code == 413:
        return True
    return is_permanent(code) and any(
        i["code"] == "too-costly" or LIMIT_WORDS.search(i["diagnostics"]) for i in issues
    )


class ServerLimit(TransportError):
    """The server refused a request for its size (entries, updates, isolation): permanent, as the
    same request would be refused again; the message names the limit and the mode that fits.
    ``said`` is the server's reason; ``size`` the refused transaction's, when it was one."""

    def __init__(self, mode, what, code, summary, issues, payload=None) -> None:
        self.said = "; ".join(i["diagnostics"] for i in issues if i["diagnostics"]) or summary
        self.size = transaction_size(payload) if payload is not None else None
        refused = what
        if payload is not None:
            shown = self.size or f"{len(payload.body)} bytes"
            refused = f"the server refused a transaction of {shown}"
        fix = SMALLER_MODES.get(mode, "the request cannot be split further")
        message = f"server limit: {refused} ({code}): its limit: {self.said}; {fix}"
        note = {"severity": "error", "code": "too-costly", "diagnostics": message, "expression": []}
        super().__init__(
            message,
            permanent=True,
            status_code=code,
            response=summary,
            issues=(*issues, note),
        )


class TransactionSize(NamedTuple):
    """A transaction's size as server limits count it."""

    entries: int
    conditional: int
    updates: int

    def __str__(self) -> str:
        return f"{self.entries} entries ({self.conditional} conditional, {self.updates} updates)"

    def covers(self, other: TransactionSize) -> bool:
        """At least as large as ``other`` in every count: refused wherever ``other`` was."""
        return all(mine >= theirs for mine, theirs in zip(self, other, strict=True))


def transaction_size(payload: Payload) -> TransactionSize | None:
    """The Bundle's size; None when the payload is no Bundle with entries."""
    try:
        entries = [e for e in exact_json.loads(payload.body)["entry"] if isinstance(e, dict)]
    except (ValueError, KeyError, TypeError):
        return None
    requests = [e.get("request") or {} for e in entries]
    conditional = sum(1 for r in requests if "?" in str(r.get("url", "")) or r.get("ifNoneExist"))
    updates = sum(1 for r in requests if r.get("method") == "PUT")
    return TransactionSize(len(entries), conditional, updates)


class Refusal(NamedTuple):
    size: TransactionSize
    said: str
    at: float  # time.monotonic()

    def note(self, payload: Payload) -> str:
        minutes = int((time.monotonic() - self.at) // 60)
        ago = f"{minutes} min ago" if minutes else "under a minute ago"
        return (
            f"server refused a transaction of {self.size} for its size limit ({self.said}) "
            f"{ago}; this one, of {transaction_size(payload)}, is no smaller: sent "
            f"as a batch instead without asking again: {NOT_ATOMIC}"
        )


class Refusals:
    """The transactions a server refused for its size in the last ``REMEMBER_REFUSAL_S``, the
    smallest ones only (a larger one adds nothing: whatever covers it covers the smaller)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.smallest: list[Refusal] = []

    def add(self, refused: ServerLimit) -> None:
        if refused.size is None:
            return
        with self.lock:
            kept = [r for r in self._current() if not r.size.covers(refused.size)]
            self.smallest = [*kept, Refusal(refused.size, refused.said, time.monotonic())]

    def covering(self, payload: Payload) -> Refusal | None:
        """A refusal of a transaction no larger than the payload's, if one is remembered."""
        if not self.smallest:  # the usual case, without parsing the Bundle
            return None
        size = transaction_size(payload)
        with self.lock:
            return next((r for r in self._current() if size and size.covers(r.size)), None)

    def _current(self) -> list[Refusal]:
        since = time.monotonic() - REMEMBER_REFUSAL_S
        return [r for r in self.smallest if r.at > since]


# ------------------------------------------------------------------------ batch answers


def batch_entry(entry: dict, resource: dict | None, method: str, path: str, _headers) -> dict:
    """One entry of a batch Bundle: the request as written (or as worked out), references
    rewritten. No fullUrl: nothing in a batch may refer to it, and a server that rewrites every
    occurrence of a fullUrl (Medplum does) would change identifiers that hold the same urn:uuid,
    so the conditional create would no longer find the resource on a retry."""
    written = entry.get("request") or {}
    request_ = dict(written) if written.get("method") and written.get("url") else {}
    request_ = request_ or {"method": method, "url": path}
    return {"resource": resource, "request": request_} if resource else {"request": request_}


def batch_replies(answer: Any, count: int) -> list[dict] | None:
    """Each entry's ``response`` (with the entry's ``resource``) from a batch-response Bundle,
    in the batch's order; None when the answer is not one for ``count`` entries."""
    if not isinstance(answer, dict) or answer.get("resourceType") != "Bundle":
        return None
    entries = answer.get("entry")
    if not isinstance(entries, list) or len(entries) != count:
        return None
    if not all(isinstance(e, dict) and isinstance(e.get("response"), dict) for e in entries):
        return None
    return [{**e["response"], "resource": e.get("resource")} for e in entries]


def reply_status(reply: dict) -> int:
    """The code of a batch entry's ``response.status`` ("201 Created"); 0 when there is none."""
    match = re.match(r"\s*(\d{3})", str(reply.get("status", "")))
    return int(match.group(1)) if match else 0


def batch_failure(where, origin_, failed, count, issues) -> TransportError:
    """A batch whose answer has failed entries: permanent when one of them can never succeed."""
    said = []
    for status, what, reply in failed[:5]:
        why = "; ".join(i["diagnostics"] for i in issues_of(reply.get("outcome"))) or "no detail"
        said.append(f"{what} {status or 'without a status'}: {why}")
    more = f"; and {len(failed) - 5} more" if len(failed) > 5 else ""
    statuses = ", ".join(str(status) for status, _, _ in failed)
    return TransportError(
        f"{where}: {origin_} refused {len(failed)} of {count} entries ({'; '.join(said)}{more}); "
        "the rest of this batch was applied and no later batch was sent; the retry sends the "
        "whole message again (its conditional requests do not duplicate what was applied)",
        permanent=any(is_permanent(status) for status, _, _ in failed),
        status_code=failed[0][0] or None,
        response=f"batch-response with failed entries: {statuses}"[:1000],
        issues=issues,
    )


# ------------------------------------------------------------------------ per-entry requests


def bundle_entries(payload: Payload) -> list[tuple[int, dict]]:
    try:
        entries = list(enumerate(exact_json.loads(payload.body)["entry"]))
        if not all(isinstance(e, dict) for _, e in entries):
            raise TypeError("an entry is not an object")
    except (ValueError, KeyError, TypeError) as exc:
        raise TransportError(f"not a Bundle with entries: {exc}", permanent=True)
    return entries


class References:
    """A Bundle's entries in dependency order, each prepared with its ``urn:uuid:`` references
    rewritten to where the server stored the entries sent before it."""

    def __init__(self, entries: list[tuple[int, dict]]) -> None:
        self.ordered = dependency_order(entries)
        self.in_bundle = {e.get("fullUrl") for _, e in entries} - {None}
        self.stored: dict[str, str] = {}  # fullUrl -> "Type/id" (or a conditional reference)
        self.incomplete: list[dict] = []  # entries sent without some of their references

    def prepared(self, entry: dict) -> tuple[dict | None, str, str, dict[str, str]]:
        """The resource to send, the method, the path and the extra headers.

        A reference to an entry not stored yet (a cycle: Condition.encounter and
        Encounter.diagnosis) is left out for now, with the list item or element that holds it;
        ``completions()`` then updates the resource in full once everything is stored."""
        resource = entry.get("resource")
        waiting = {r for r in _references(resource) if r in self.in_bundle} - self.stored.keys()
        if waiting:
            resource = _without(resource, waiting)
            self.incomplete.append(entry)
        resource = _with_server_ids(resource, self.stored)
        return (resource, *entry_request(entry, resource))

    def completions(self) -> list[tuple[int, dict]]:
        """Updates of the entries sent with references left out, now that all are stored."""
        done = []
        for entry in self.incomplete:
            targets = {entry.get("fullUrl")} | set(_references(entry["resource"])) & self.in_bundle
            missing = sorted(targets - self.stored.keys(), key=str)
            if missing:
                raise TransportError(
                    f"cannot refer to {missing[0] or 'an entry without fullUrl'}: the server did "
                    "not say where it stored it",
                    permanent=True,
                )
            where = self.stored[entry["fullUrl"]]
            resource = dict(entry["resource"])
            if "?" not in where:  # an update by id carries that id in its body too
                resource["id"] = where.split("/")[1]
            update = {**entry, "resource": resource, "request": {"method": "PUT", "url": where}}
            done.append((len(done), update))
        self.incomplete = []
        return done

    def with_completions(self, levels: list[list[tuple[int, dict]]]):
        """The levels, then (once they are sent) the completions, when there are any."""
        yield from levels
        completions = self.completions()
        if completions:
            yield completions

    def answered(self, entry: dict, resource: dict | None, location: str | None, body) -> None:
        """Note where the server stored ``entry``: its answer's id, else the entry's own
        conditional search, a reference the server resolves itself."""
        if not entry.get("fullUrl") or not isinstance(resource, dict):
            return
        found = _server_id(location, body, resource.get("resourceType", ""))
        found = found or conditional_reference(entry, resource)
        if found:
            self.stored[entry["fullUrl"]] = found

    def levels(self) -> list[list[tuple[int, dict]]]:
        """The ordered entries grouped so that each group refers only to earlier groups."""
        by_url = {e["fullUrl"]: i for i, e in self.ordered if e.get("fullUrl")}
        level: dict[int, int] = {}
        for index, entry in self.ordered:
            targets = (by_url.get(ref) for ref in _references(entry.get("resource")))
            level[index] = 1 + max((level[t] for t in targets if t in level), default=-1)
        groups: list[list[tuple[int, dict]]] = [
            [] for _ in range(max(level.values(), default=-1) + 1)
        ]
        for index, entry in self.ordered:
            groups[level[index]].append((index, entry))
        return groups


def resource_type(path: str) -> str:
    """The type a request path names: for messages, as the rest may carry an identifier."""
    return path.split("?")[0].split("/")[0]


def conditional_reference(entry: dict, resource: dict) -> str | None:
    """``Type?search`` for an entry sent as a conditional create or update, else None."""
    _, path, headers = entry_request(entry, resource)
    if "?" in path:
        return path
    if headers.get("If-None-Exist"):
        return f"{path}?{headers['If-None-Exist']}"
    return None


def entry_request(entry: dict, resource: dict | None) -> tuple[str, str, dict[str, str]]:
    """Method, path relative to the base URL and extra headers for one Bundle entry."""
    request_ = entry.get("request") or {}
    if request_.get("method") and request_.get("url"):
        headers = {}
        for field, header in (
            ("ifNoneExist", "If-None-Exist"),
            ("ifMatch", "If-Match"),
            ("ifNoneMatch", "If-None-Match"),
            ("ifModifiedSince", "If-Modified-Since"),
        ):
            if request_.get(field):
                headers[header] = request_[field]
        return request_["method"].upper(), request_["url"].lstrip("/"), headers
    if not isinstance(resource, dict) or not resource.get("resourceType"):
        raise TransportError("a Bundle entry with neither request nor resource", permanent=True)
    rtype = resource["resourceType"]
    for identifier in resource.get("identifier") or []:
        value = identifier.get("value")
        if value:
            token = f"{identifier['system']}|{value}" if identifier.get("system") else value
            return "PUT", f"{rtype}?identifier={quote(token, safe='|:/')}", {}
    if resource.get("id"):
        return "PUT", f"{rtype}/{quote(resource['id'], safe='')}", {}
    return "POST", rtype, {}


def dependency_order(entries: list[tuple[int, dict]]) -> list[tuple[int, dict]]:
    """Entries ordered so that one comes after the entries its urn:uuid references point to
    (the Bundle's order otherwise; a cycle keeps the Bundle's order)."""
    by_url = {e.get("fullUrl"): (i, e) for i, e in entries if e.get("fullUrl")}
    done: set[int] = set()
    visiting: set[int] = set()
    ordered: list[tuple[int, dict]] = []

    def visit(index: int, entry: dict) -> None:
        if index in done or index in visiting:
            return
        visiting.add(index)
        for ref in _references(entry.get("resource")):
            if ref in by_url:
                visit(*by_url[ref])
        visiting.discard(index)
        done.add(index)
        ordered.append((index, entry))

    for index, entry in entries:
        visit(index, entry)
    return ordered


def _references(node: Any):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                yield value
            else:
                yield from _references(value)
    elif isinstance(node, list):
        for item in node:
            yield from _references(item)


def _with_server_ids(node: Any, ids: dict[str, str]) -> Any:
    """A copy of ``node`` whose references to sent entries name where the server stored them."""
    if isinstance(node, dict):
        return {
            key: ids.get(value, value)
            if key == "reference" and isinstance(value, str)
            else _with_server_ids(value, ids)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_with_server_ids(item, ids) for item in node]
    return node


def _without(resource: dict, refs: set[str]) -> dict:
    """A copy of ``resource`` without its references to ``refs``: each goes with the list item
    that holds it (a diagnosis, a link), else with the resource's element."""
    out = copy.deepcopy(resource)
    cuts = sorted(set(_cuts(out, refs, ())), reverse=True)  # later list items first: indexes hold
    for path in cuts:
        parent = out
        for step in path[:-1]:
            parent = parent[step]
        del parent[path[-1]]
    for key in [k for k, v in out.items() if v in ([], {})]:
        del out[key]
    return out


def _cuts(node: Any, refs: set[str], path: tuple):
    """Paths to cut: the innermost list item above each reference to ``refs``, else the
    top-level element."""
    if isinstance(node, dict):
        if node.get("reference") in refs:
            items = [i for i, step in enumerate(path) if isinstance(step, int)]
            yield path[: items[-1] + 1] if items else path[:1]
            return
        for key, value in node.items():
            yield from _cuts(value, refs, (*path, key))
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from _cuts(item, refs, (*path, index))


def _server_id(location: str | None, body: Any, rtype: str) -> str | None:
    """``Type/id`` from a Location such as ``.../Patient/12/_history/1``, else from the body."""
    if location:
        parts = [p for p in urlsplit(location).path.split("/") if p]
        if "_history" in parts:
            parts = parts[: parts.index("_history")]
        if len(parts) >= 2:
            return f"{parts[-2]}/{parts[-1]}"
    if isinstance(body, dict) and body.get("id") and body.get("resourceType") == rtype:
        return f"{rtype}/{body['id']}"
    return None


# ------------------------------------------------------------------------------ answers


def _json(data: bytes) -> Any:
    """The answer's JSON, or None when it is not JSON (an HTML error page, an empty body)."""
    if data[:64].lstrip()[:1] != b"{":
        return None
    try:
        return bounded_json.loads(data)  # a destination's answer is input too: bounded
    except ValueError:
        return None


def issues_of(body: Any) -> tuple[dict, ...]:
    """The OperationOutcome issues in an answer: the answer itself, or a transaction-response
    Bundle's entries' ``response.outcome``."""
    if not isinstance(body, dict):
        return ()
    outcomes = [body]
    if body.get("resourceType") == "Bundle":
        outcomes = [
            (e.get("response") or {}).get("outcome") or {}
            for e in body.get("entry") or []
            if isinstance(e, dict)
        ]
    return tuple(
        _issue(issue)
        for outcome in outcomes
        if isinstance(outcome, dict) and outcome.get("resourceType") == "OperationOutcome"
        for issue in outcome.get("issue") or []
        if isinstance(issue, dict)
    )


def _issue(issue: dict) -> dict:
    details = issue.get("details") if isinstance(issue.get("details"), dict) else {}
    expression = issue.get("expression") or issue.get("location") or []
    return {
        "severity": str(issue.get("severity", "")),
        "code": str(issue.get("code", "")),
        "diagnostics": str(issue.get("diagnostics") or details.get("text") or ""),
        "expression": [str(e) for e in expression] if isinstance(expression, list) else [],
    }


def summarize(body: Any, data: bytes, limit: int = 1000) -> str:
    """Short text for the attempt log; OperationOutcome issues are spelled out when present."""
    if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
        issues = [
            f"{i.get('severity', '?')}: {i.get('diagnostics') or (i.get('details') or {}).get('text', '')}"
            for i in body.get("issue", [])
            if isinstance(i, dict)
        ]
        return ("OperationOutcome: " + "; ".join(issues))[:limit]
    if isinstance(body, dict) and body.get("resourceType") == "Bundle":
        statuses = [
            (e.get("response") or {}).get("status", "?")
            for e in body.get("entry", [])
            if isinstance(e, dict)
        ]
        return f"Bundle {body.get('type', '')}: {', '.join(statuses)}"[:limit]
    return short(data, limit)
