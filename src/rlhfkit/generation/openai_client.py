"""A small client for OpenAI-compatible HTTP APIs (`rlhfkit serve`, vLLM, llama.cpp, Ollama), on
the standard library's urllib: JSON POST/GET with a per-request timeout and retries with
exponential back-off on timeouts, connection errors, 408/409/425/429 and 5xx (honouring
Retry-After). Other 4xx replies fail at once with the server's message. Thread-safe: callers run
requests from a thread pool to keep several in flight.

Torch-free: `rlhfkit.cli` may import it to turn `EndpointError` into a one-line error.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request

RETRIED_STATUSES = (408, 409, 425, 429)


class EndpointError(RuntimeError):
    """The endpoint could not answer (down, timed out, refused the request, bad reply); the message says which."""


def error_message(body: str) -> str:
    """The `error.message` of an OpenAI-style error body, else the body's start."""
    try:
        message = json.loads(body)["error"]["message"]
        return str(message)
    except (ValueError, KeyError, TypeError):
        return body[:200]


class OpenAIClient:
    """POST/GET JSON to `base_url` (e.g. http://127.0.0.1:8000/v1). `requests_sent` counts every
    attempt, retries included."""

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 60.0, retries: int = 3,
                 backoff: float = 0.5):
        self.base_url = base_url.rstrip("/")
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self.headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {api_key}"} if api_key else {})}
        self.requests_sent = 0
        self._lock = threading.Lock()

    def _once(self, url: str, payload: dict | None) -> tuple[int, str, dict]:
        """One attempt: (status, body, headers); raises OSError subclasses on transport failures."""
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(url, data=data, headers=self.headers, method="GET" if data is None else "POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as reply:
                return reply.status, reply.read().decode("utf-8", "replace"), dict(reply.headers)
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode("utf-8", "replace"), dict(err.headers or {})

    def request(self, path: str, payload: dict | None = None) -> dict:
        """The JSON reply of POST (payload given) or GET `path` under the base URL."""
        url = f"{self.base_url}/{path.lstrip('/')}"
        last = ""
        for attempt in range(self.retries + 1):
            wait = min(self.backoff * 2**attempt, 10.0)
            with self._lock:
                self.requests_sent += 1
            try:
                status, body, headers = self._once(url, payload)
            except (socket.timeout, TimeoutError):
                last = f"timed out after {self.timeout:g}s"
            except (urllib.error.URLError, ConnectionError, OSError) as err:
                reason = getattr(err, "reason", err)
                last = "timed out after {:g}s".format(self.timeout) if isinstance(reason, socket.timeout) \
                    else f"{type(reason).__name__}: {reason}"
            else:
                if status == 200:
                    try:
                        return json.loads(body)
                    except ValueError:
                        raise EndpointError(f"{url}: the reply is not JSON: {body[:200]!r}") from None
                last = f"HTTP {status}: {error_message(body)}"
                if status not in RETRIED_STATUSES and status < 500:
                    raise EndpointError(f"{url}: {last}")
                retry_after = str(headers.get("Retry-After", headers.get("retry-after", "")))
                if retry_after.replace(".", "", 1).isdigit():
                    wait = min(float(retry_after), 30.0)
            if attempt < self.retries:
                time.sleep(wait)
        raise EndpointError(f"{url}: no answer after {self.retries + 1} attempts (last: {last})")
