"""HTTP calls to a local server for tests: (status, decoded JSON), never raising for HTTP errors."""
from __future__ import annotations

import json
import urllib.error
import urllib.request


def call(url, body=None, method=None, raw=None, timeout: float = 120):
    """(status, decoded JSON) of one request: POST with a body (JSON or raw bytes), else GET."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(url, data=data, method=method or ("POST" if data else "GET"),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
