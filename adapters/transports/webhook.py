"""HTTP webhook destination: POST (or PUT) JSON to a URL, with headers, auth and an idempotency key.

The body is the canonical FHIR Bundle as stored (``body: "canonical"``, sent byte for byte), or a
JSON template (``body: "template"``) filled from the Bundle with FHIRPath:

- a string value that starts with ``=`` is a FHIRPath expression evaluated against the Bundle;
  it becomes the first result, or ``null`` when there is none;
- a list holding exactly one such string, ``["=expr"]``, becomes every result, as a list;
- ``==text`` is the literal string ``=text``; every other value (numbers, booleans, null, other
  strings) is copied as is; objects and lists are filled recursively.

For example ``{"mrn": "=Bundle.entry.resource.ofType(Patient).identifier.value",
"codes": ["=Bundle.entry.resource.ofType(Observation).code.coding.code"], "source": "hub"}``.
Expressions are compiled when the config is loaded, so a bad one is a config error naming its
path. FHIRPath only reads the Bundle: a template cannot run code or reach anything else.

This module also holds the HTTP plumbing the FHIR REST destination shares (one urllib3 pool,
the status classification, the auth schemes).
"""

from __future__ import annotations

import base64
from decimal import Decimal
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlsplit, urlunsplit

import fhirpathpy
import urllib3
from fhirpathpy.models import models
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, SecretStr, model_validator

from adapters.codecs import exact_json
from adapters.mapping.field_rules import fhirpath_syntax_error
from adapters.registry import register_transport
from adapters.transports.base import Encoded, Payload, SendResult, TransportError

# "Later", not "never": every other 4xx means the request itself is wrong.
RETRYABLE_4XX = frozenset({408, 425, 429})

# One keep-alive pool per process, shared by the sending threads (urllib3 pools are thread-safe):
# a new TCP connection per delivery would dominate the cost. (urllib3 over httpx here: measured
# 0.48 vs 0.78 ms a request.)
pool = urllib3.PoolManager(num_pools=64, maxsize=16, retries=False)


def is_permanent(status: int) -> bool:
    """2xx is not an error; 408/425/429 and 5xx are transient; 3xx and other 4xx are permanent
    (redirects are not followed: a destination that moved needs its URL fixed)."""
    return status < 500 and status not in RETRYABLE_4XX


def request(
    method: str,
    url: str,
    *,
    body: bytes | None,
    headers: dict[str, str],
    timeout: float,
    where: str | None = None,
) -> urllib3.BaseHTTPResponse:
    """One HTTP exchange on the shared pool; network failures become transient TransportErrors
    that name ``where`` (the URL without credentials by default) and the cause, never the
    headers, which may carry credentials."""
    try:
        # urlopen, not request: the body is bytes already, so request's encoding step only
        # copied the headers (about 40 us of a 300 us exchange here).
        return pool.urlopen(
            method,
            url,
            body=body,
            headers=headers,
            timeout=urllib3.Timeout(connect=min(timeout, 10.0), read=timeout),
            redirect=False,
            preload_content=True,
        )
    except urllib3.exceptions.NewConnectionError as exc:  # (a TimeoutError subclass in urllib3)
        raise TransportError(f"cannot reach {where or origin(url, path=True)}: {reason(exc)}")
    except urllib3.exceptions.TimeoutError as exc:
        raise TransportError(
            f"no answer from {where or origin(url, path=True)} within {timeout:.3g} s"
            f" ({type(exc).__name__})"
        )
    except urllib3.exceptions.HTTPError as exc:
        raise TransportError(f"cannot reach {where or origin(url, path=True)}: {reason(exc)}")


def split_userinfo(url: str) -> tuple[str, str | None]:
    """``url`` without its ``user:password@`` and the Basic Authorization header that stands for
    it (None without one): urllib3 drops user info from a URL, so it is sent as a header."""
    parts = urlsplit(url)
    if parts.username is None:
        return url, None
    host = parts.netloc.rpartition("@")[2]
    pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
    header = "Basic " + base64.b64encode(pair).decode("ascii")
    return urlunsplit(parts._replace(netloc=host)), header


def origin(url: str, *, path: bool = False) -> str:
    """``scheme://host:port`` (and the path, if asked) without user info or query."""
    parts = urlsplit(url)
    shown = f"{parts.scheme}://{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")
    return shown + parts.path if path else shown


def _plain(value: Any) -> Any:
    """JSON for what FHIRPath returns beyond JSON's types (exact_json writes decimals as they are)."""
    if isinstance(value, Decimal):
        return float(value) if value.as_tuple().exponent < 0 else int(value)
    return str(value)


def reason(exc: Exception) -> str:
    """The innermost cause, e.g. 'Connection refused' rather than urllib3's wrapper text."""
    while getattr(exc, "reason", None) is not None and isinstance(exc.reason, Exception):
        exc = exc.reason
    return str(exc) or type(exc).__name__


def short(data: bytes, limit: int = 1000) -> str:
    return data[:limit].decode("utf-8", errors="replace")


def secret(default: Any = ..., description: str | None = None) -> Any:
    """A config field holding a secret (a SecretStr: hidden in repr/str), marked for the UI form."""
    return Field(default, description=description, json_schema_extra={"secret": True})


def url_field(default: Any = ..., description: str | None = None) -> Any:
    """A URL whose ``user:password@``, if it has one, is a secret (sealed, shown as a marker)."""
    return Field(default, description=description, json_schema_extra={"secret": "userinfo"})


def headers_field() -> Any:
    """Extra HTTP headers: their values are secrets (API keys travel there), their names not."""
    return Field(
        {},
        description="Extra HTTP headers, as a JSON object. Values are write-only: stored ones "
        "show as ••••, and sending •••• back keeps them.",
        json_schema_extra={"secret": "values"},
    )


class NoAuth(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["none"] = "none"

    def header(self) -> str | None:
        return None


class BearerAuth(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["bearer"]
    token: SecretStr = secret()

    def header(self) -> str | None:
        return f"Bearer {self.token.get_secret_value()}"


class BasicAuth(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["basic"]
    username: str
    password: SecretStr = secret()

    def header(self) -> str | None:
        pair = f"{self.username}:{self.password.get_secret_value()}".encode()
        return "Basic " + base64.b64encode(pair).decode("ascii")


Auth = Annotated[NoAuth | BearerAuth | BasicAuth, Field(discriminator="type")]


class Template:
    """A JSON template whose ``=expr`` strings are FHIRPath, compiled once (see the module doc)."""

    def __init__(self, spec: Any) -> None:
        self.fill = self._compile(spec, "template")

    def _compile(self, node: Any, where: str):
        if isinstance(node, dict):
            parts = {k: self._compile(v, f"{where}.{k}") for k, v in node.items()}
            return lambda bundle: {k: fill(bundle) for k, fill in parts.items()}
        if isinstance(node, list):
            if len(node) == 1 and _is_expression(node[0]):
                return _expression(node[0][1:], f"{where}[0]")
            items = [self._compile(v, f"{where}[{i}]") for i, v in enumerate(node)]
            return lambda bundle: [fill(bundle) for fill in items]
        if _is_expression(node):
            first = _expression(node[1:], where)
            return lambda bundle: next(iter(first(bundle)), None)
        if isinstance(node, str) and node.startswith("=="):
            node = node[1:]
        return lambda bundle: node


def _is_expression(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("=") and not value.startswith("==")


def _expression(text: str, where: str):
    problem = fhirpath_syntax_error(text)
    if problem:
        raise ValueError(f"{where}: FHIRPath syntax error {problem}")
    compiled = fhirpathpy.compile(text, models["r4"])
    try:  # unknown functions only surface when evaluated
        compiled({"resourceType": "Bundle"})
    except Exception as exc:  # fhirpathpy raises bare Exceptions
        raise ValueError(f"{where}: FHIRPath cannot be evaluated: {exc}") from None
    return compiled


@register_transport("webhook")
class WebhookTransport:
    needs_source = False

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")

        url: HttpUrl = url_field(description="Where each message is sent.")
        method: Literal["POST", "PUT"] = "POST"
        body: Literal["canonical", "template"] = Field(
            "canonical",
            description="The canonical FHIR Bundle as stored, or the JSON template filled in.",
        )
        template: dict[str, Any] | None = Field(
            None,
            description='JSON whose "=expr" strings are FHIRPath on the Bundle, e.g. '
            '{"mrn": "=Bundle.entry.resource.ofType(Patient).identifier.value"}.',
        )
        headers: dict[str, str] = headers_field()
        auth: Auth = NoAuth()

        @model_validator(mode="after")
        def _template_compiles(self):
            if self.body == "template" and self.template is None:
                raise ValueError("body 'template' needs a template")
            if self.template is not None:
                Template(self.template)
            return self

    def __init__(self, config: Config) -> None:
        self.config = config
        self.url, url_auth = split_userinfo(str(config.url))
        # Webhook URLs often carry a secret in their path or query: messages name the origin.
        self.where = origin(self.url)
        self.template = Template(config.template) if config.body == "template" else None
        self.headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            **config.headers,
        }
        if auth := config.auth.header() or url_auth:
            self.headers["Authorization"] = auth

    def encode(self, payload: Payload) -> Encoded:
        """The body this webhook sends for ``payload``: the stored JSON, or the template filled in
        (TransportError, permanent, when the data cannot fill it)."""
        if self.template is None:
            body = payload.body  # the stored JSON, never re-encoded
            content_type = payload.content_type
        else:
            try:
                bundle = exact_json.loads(payload.body)  # 1.50 stays 1.50 in the filled body
                filled = self.template.fill(bundle)
                body = exact_json.dumps(filled, separators=(",", ":"), default=_plain).encode()
            except Exception as exc:  # the data cannot fill the template: retrying cannot help
                raise TransportError(
                    f"cannot fill the webhook template: {type(exc).__name__}: {str(exc)[:200]}",
                    permanent=True,
                )
            content_type = "application/json"
        content_type = self.config.headers.get("Content-Type", content_type)
        return Encoded(body, content_type, f"{self.config.method} {self.where}")

    def send(self, payload: Payload, *, timeout: float) -> SendResult:
        encoded = self.encode(payload)
        body = encoded.body
        headers = {
            **self.headers,
            "Content-Type": encoded.content_type,
            "Idempotency-Key": payload.idempotency_key,
        }
        method = self.config.method
        summary = f"{method} {self.where} ({len(body)} bytes)"
        response = request(
            method, self.url, body=body, headers=headers, timeout=timeout, where=self.where
        )
        code = response.status
        text = short(response.data)
        if 200 <= code < 300:
            return SendResult(code, text or f"{code} {response.reason or ''}".strip(), summary)
        raise TransportError(
            f"{self.where} answered {code} {response.reason or ''}: {text[:300]}",
            permanent=is_permanent(code),
            status_code=code,
            response=text,
        )
