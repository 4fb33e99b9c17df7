"""FHIR REST destination: the canonical Bundle as one transaction, or resource by resource.

``mode: "transaction"`` POSTs the Bundle as stored to the server's base URL (byte for byte): the
server applies it all or nothing.

``mode: "per_resource"`` (for servers without transactions) sends each entry on its own, in an
order where a resource comes after the resources it refers to:

- an entry that carries a ``request`` is sent as written: ``PUT Patient?identifier=sys|val`` is a
  conditional update, ``POST`` with ``ifNoneExist`` a conditional create (``If-None-Exist``);
  the canonical maps always write one;
- otherwise a resource with an identifier is PUT to ``[type]?identifier=system|value``; one with
  an ``id`` is PUT to ``[type]/[id]``; anything else is a plain POST (not idempotent);
- ``urn:uuid:`` references to earlier entries are rewritten to the ids the server answered with
  (``Location``, else the returned resource's id);
- the first failure stops the send and is classified like a transaction's. The entries already
  applied stay applied; the retry sends them all again, which the conditional requests make
  harmless. The delivery timeout covers the whole send, not each request.

Auth: a static ``bearer_token``, or OAuth2 client credentials (``oauth2``): the token is fetched
once and shared by all threads, reused until shortly before ``expires_in`` runs out (five minutes
when the server does not say), and fetched again once if the server answers 401.

OperationOutcome issues in any answer (an error, a success, each transaction-response entry's
``response.outcome``) are returned as ``issues``: severity, code, diagnostics, expression.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from typing import Any, Literal
from urllib.parse import quote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, SecretStr, model_validator

from adapters.codecs import bounded_json
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
        mode: Literal["transaction", "per_resource"] = Field(
            "transaction",
            description="One transaction Bundle per message, or each resource on its own "
            "(conditional create/update).",
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
        self.headers = {"Accept": "application/fhir+json", **config.headers}
        if url_auth:
            self.headers["Authorization"] = url_auth
        if config.bearer_token:
            self.headers["Authorization"] = f"Bearer {config.bearer_token.get_secret_value()}"

    def encode(self, payload: Payload) -> Encoded:
        """The transaction Bundle as stored (per_resource mode sends its entries one by one)."""
        how = "each entry to" if self.config.mode == "per_resource" else "POST"
        return Encoded(payload.body, payload.content_type, f"{how} {self.where}")

    def send(self, payload: Payload, *, timeout: float) -> SendResult:
        if self.config.mode == "per_resource":
            return self._send_each(payload, timeout)
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
        summary = summarize(answer, data)
        issues = issues_of(answer)
        if 200 <= code < 300:
            return SendResult(code, summary, sent, issues)
        raise TransportError(
            f"{self.where} answered {code} {reason}: {summary}",
            permanent=is_permanent(code),
            status_code=code,
            response=summary,
            issues=issues,
        )

    def _send_each(self, payload: Payload, timeout: float) -> SendResult:
        try:
            bundle = json.loads(payload.body)
            entries = list(enumerate(bundle["entry"]))
            if not all(isinstance(e, dict) for _, e in entries):
                raise TypeError("an entry is not an object")
        except (ValueError, KeyError, TypeError) as exc:
            raise TransportError(f"not a Bundle with entries: {exc}", permanent=True)
        deadline = time.monotonic() + timeout
        ids: dict[str, str] = {}  # fullUrl -> "Type/id" on the server
        issues: list[dict] = []
        answers: list[str] = []
        code = 200
        ordered = dependency_order(entries)
        in_bundle = {e.get("fullUrl") for _, e in entries} - {None}
        for step, (index, entry) in enumerate(ordered, 1):
            resource = _with_server_ids(entry.get("resource"), ids, in_bundle)
            method, path, extra = entry_request(entry, resource)
            # The type, not the URL: a conditional URL carries identifiers (an MRN) into the log.
            where = f"entry {step}/{len(ordered)} ({method} {path.split('?')[0]})"
            headers = {
                "Idempotency-Key": f"{payload.idempotency_key}-{index}",
                "X-Request-Id": f"{payload.idempotency_key}-{index}",
                **extra,
            }
            body = None
            if resource is not None and method in ("POST", "PUT"):
                body = json.dumps(resource, separators=(",", ":")).encode()
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
            issues += issues_of(answer)
            if not 200 <= code < 300:
                summary = summarize(answer, data)
                raise TransportError(
                    f"{where}: {self.where} answered {code} {reason}: {summary}",
                    permanent=is_permanent(code),
                    status_code=code,
                    response=summary,
                    issues=tuple(issues),
                )
            answers.append(str(code))
            if entry.get("fullUrl") and resource is not None:
                found = _server_id(location, answer, resource.get("resourceType", ""))
                if found:
                    ids[entry["fullUrl"]] = found
        sent = f"{len(ordered)} requests to {self.where} ({len(payload.body)} bytes of Bundle)"
        return SendResult(code, f"per_resource: {', '.join(answers)}", sent, tuple(issues))

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


# ------------------------------------------------------------------------ per-resource requests


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


def _with_server_ids(node: Any, ids: dict[str, str], in_bundle: set[str]) -> Any:
    """A copy of ``node`` whose references to sent entries name the server's ids."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "reference" and isinstance(value, str) and value.startswith("urn:"):
                if value not in ids and value in in_bundle:
                    raise TransportError(
                        f"cannot refer to {value}: the server did not say where it stored it",
                        permanent=True,
                    )
                out[key] = ids.get(value, value)
            else:
                out[key] = _with_server_ids(value, ids, in_bundle)
        return out
    if isinstance(node, list):
        return [_with_server_ids(item, ids, in_bundle) for item in node]
    return node


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
