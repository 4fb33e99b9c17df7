"""FHIR REST destination: POST a transaction Bundle to the server's base URL."""

from __future__ import annotations

import json
import threading

import httpx
from pydantic import BaseModel, Field, HttpUrl, SecretStr

from adapters.registry import register_transport
from adapters.transports.base import Payload, SendResult, TransportError

# 408 and 429 say "later", not "never"; every other 4xx means the request itself is wrong.
RETRYABLE_4XX = {408, 425, 429}

_local = threading.local()


def _client() -> httpx.Client:
    """One keep-alive client per thread: a new TCP connection per delivery would dominate cost."""
    client = getattr(_local, "client", None)
    if client is None:
        client = _local.client = httpx.Client(follow_redirects=False)
    return client


@register_transport("fhir_rest")
class FhirRestTransport:
    class Config(BaseModel):
        base_url: HttpUrl
        bearer_token: SecretStr | None = Field(default=None, json_schema_extra={"secret": True})
        headers: dict[str, str] = {}

    def __init__(self, config: Config) -> None:
        self.config = config
        self.url = str(config.base_url).rstrip("/") + "/"

    def send(self, payload: Payload, *, timeout: float) -> SendResult:
        headers = {
            "Content-Type": payload.content_type,
            "Accept": "application/fhir+json",
            # Servers that honour it make a retried POST single-effect; conditional creates in the
            # Bundle do the same for servers that don't.
            "Idempotency-Key": payload.idempotency_key,
            "X-Request-Id": payload.idempotency_key,
            **self.config.headers,
        }
        if self.config.bearer_token:
            headers["Authorization"] = f"Bearer {self.config.bearer_token.get_secret_value()}"
        request = f"POST {self.url} ({payload.content_type}, {len(payload.body)} bytes)"
        try:
            response = _client().post(self.url, content=payload.body, headers=headers, timeout=timeout)
        except httpx.TimeoutException as exc:
            raise TransportError(f"no answer from {self.url} within {timeout:g} s ({type(exc).__name__})")
        except httpx.TransportError as exc:
            raise TransportError(f"cannot reach {self.url}: {exc or type(exc).__name__}")
        summary = summarize_response(response)
        code = response.status_code
        if 200 <= code < 300:
            return SendResult(code, summary, request)
        permanent = 400 <= code < 500 and code not in RETRYABLE_4XX
        raise TransportError(
            f"{self.url} answered {code} {response.reason_phrase}: {summary}",
            permanent=permanent,
            status_code=code,
            response=summary,
        )


def summarize_response(response: httpx.Response, limit: int = 1000) -> str:
    """Short text for the attempt log; OperationOutcome issues are spelled out when present."""
    text = response.text
    try:
        body = json.loads(text) if text else None
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
        issues = [
            f"{i.get('severity', '?')}: {i.get('diagnostics') or i.get('details', {}).get('text', '')}"
            for i in body.get("issue", [])
        ]
        return ("OperationOutcome: " + "; ".join(issues))[:limit]
    if isinstance(body, dict) and body.get("resourceType") == "Bundle":
        statuses = [e.get("response", {}).get("status", "?") for e in body.get("entry", [])]
        return f"Bundle {body.get('type', '')}: {', '.join(statuses)}"[:limit]
    return text[:limit]
