"""FHIR REST destination: POST a transaction Bundle to the server's base URL."""

from __future__ import annotations

import json

import urllib3
from pydantic import BaseModel, Field, HttpUrl, SecretStr

from adapters.registry import register_transport
from adapters.transports.base import Payload, SendResult, TransportError

# 408 and 429 say "later", not "never"; every other 4xx means the request itself is wrong.
RETRYABLE_4XX = {408, 425, 429}

# One keep-alive pool per process, shared by the sending threads: a new TCP connection per
# delivery would dominate the cost. (urllib3 over httpx here: measured 0.48 vs 0.78 ms a request.)
_pool = urllib3.PoolManager(num_pools=64, maxsize=16, retries=False)


@register_transport("fhir_rest")
class FhirRestTransport:
    needs_source = False

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
            response = _pool.request(
                "POST",
                self.url,
                body=payload.body,
                headers=headers,
                timeout=urllib3.Timeout(connect=min(timeout, 10.0), read=timeout),
                redirect=False,
                preload_content=True,
            )
        except urllib3.exceptions.NewConnectionError as exc:  # (a TimeoutError subclass in urllib3)
            raise TransportError(f"cannot reach {self.url}: {_reason(exc)}")
        except urllib3.exceptions.TimeoutError as exc:
            raise TransportError(
                f"no answer from {self.url} within {timeout:g} s ({type(exc).__name__})"
            )
        except urllib3.exceptions.HTTPError as exc:
            raise TransportError(f"cannot reach {self.url}: {_reason(exc)}")
        code = response.status
        summary = summarize_response(response.data.decode("utf-8", errors="replace"))
        if 200 <= code < 300:
            return SendResult(code, summary, request)
        permanent = 400 <= code < 500 and code not in RETRYABLE_4XX
        raise TransportError(
            f"{self.url} answered {code} {response.reason or ''}: {summary}",
            permanent=permanent,
            status_code=code,
            response=summary,
        )


def _reason(exc: Exception) -> str:
    """The innermost cause, e.g. 'Connection refused' rather than urllib3's wrapper text."""
    while getattr(exc, "reason", None) is not None and isinstance(exc.reason, Exception):
        exc = exc.reason
    return str(exc) or type(exc).__name__


def summarize_response(text: str, limit: int = 1000) -> str:
    """Short text for the attempt log; OperationOutcome issues are spelled out when present."""
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
