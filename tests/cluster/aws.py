"""Emulated AWS for tests, benchmarks and the demo: moto's server on a loopback port.

moto runs as `ThreadedMotoServer` on 127.0.0.1 with its request recorder on, so callers can count
AWS calls by operation. A small WSGI layer in front of moto can make chosen operations fail (for
example with `ThrottlingException`) to exercise the operator's error paths over real HTTP. The same
layer notes the time of every AWS request, so benchmarks can see how calls spread over time.
"""

from __future__ import annotations

import atexit
import base64
import collections
import json
import os
import random
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote_plus

# The recorder reads its settings when moto is imported; set them first.
_RECORDING = Path(tempfile.mkdtemp(prefix="tmpfs-secrets-moto-")) / "recording.jsonl"
os.environ.setdefault("MOTO_RECORDER_FILEPATH", str(_RECORDING))
# The recording holds request bodies (seeded values among them): it never outlives the process.
atexit.register(shutil.rmtree, _RECORDING.parent, True)

from moto.moto_api import recorder  # noqa: E402
from moto.moto_server.threaded_moto_server import ThreadedMotoServer  # noqa: E402
from moto.moto_server.werkzeug_app import (  # noqa: E402
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server  # noqa: E402

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

REGION = "us-east-1"
FAKE_ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"  # moto accepts any key; this is AWS's documented example
FAKE_SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def operation_of(headers: Mapping[str, str], body: bytes) -> str:
    """The AWS operation name of a request: JSON protocols name it in X-Amz-Target, query ones in Action."""
    target = headers.get("X-Amz-Target") or headers.get("x-amz-target")
    if target:
        return target.rsplit(".", 1)[-1]
    action = parse_qs(body.decode("utf-8", "replace")).get("Action")
    return action[0] if action else "Unknown"


@dataclass
class Fault:
    """An injected failure: `operation` answers `code` with HTTP `status`, `remaining` more times,
    to a `fraction` of its requests (chosen at random)."""

    operation: str
    code: str = "ThrottlingException"
    message: str = "Rate exceeded"
    status: int = 400
    remaining: int | None = None  # None: until cleared
    fraction: float = 1.0


@dataclass
class _FaultLayer:
    app: WSGIApp
    faults: dict[str, Fault] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # (time.monotonic(), operation) of every AWS request, in arrival order.
    timeline: list[tuple[float, str]] = field(default_factory=list)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if str(environ.get("PATH_INFO", "")).startswith("/moto-api"):
            return self.app(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        headers = {k[5:].replace("_", "-").title(): v for k, v in environ.items() if k.startswith("HTTP_")}
        operation = operation_of(headers, body)
        with self.lock:
            self.timeline.append((time.monotonic(), operation))
        fault = self._take(operation) if self.faults else None
        if fault is None:
            if length:
                import io

                environ["wsgi.input"] = io.BytesIO(body)
            return self.app(environ, start_response)
        if not fault.code:  # a bare HTTP status, as a proxy or a load balancer might answer
            payload, content_type = b"", "text/plain"
        elif "X-Amz-Target" in headers:  # JSON protocols (Secrets Manager, SSM)
            payload = json.dumps({"__type": fault.code, "message": fault.message}).encode()
            content_type = "application/x-amz-json-1.1"
        else:  # query protocols (STS) answer in XML
            payload = (
                f"<ErrorResponse><Error><Type>Sender</Type><Code>{fault.code}</Code>"
                f"<Message>{fault.message}</Message></Error><RequestId>0</RequestId></ErrorResponse>"
            ).encode()
            content_type = "text/xml"
        start_response(
            f"{fault.status} Injected",
            [("Content-Type", content_type), ("Content-Length", str(len(payload)))],
        )
        return [payload]

    def _take(self, operation: str) -> Fault | None:
        with self.lock:
            fault = self.faults.get(operation)
            if fault is None or (fault.fraction < 1.0 and random.random() >= fault.fraction):
                return None
            if fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    del self.faults[operation]
            return fault


class _QuietHandler(MotoRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Keep moto's per-request lines out of test output; calls are counted from the recording."""


class _Server(ThreadedMotoServer):
    def __init__(self, layer_factory: Callable[[WSGIApp], _FaultLayer], host: str) -> None:
        super().__init__(ip_address=host, port=0, verbose=False)
        self._layer_factory = layer_factory

    def _server_entry(self) -> None:
        app = self._layer_factory(DomainDispatcherApplication(create_backend_app))
        self._server = make_server(self._ip_address, self._port, app, True, request_handler=_QuietHandler)
        self._server_ready_event.set()
        self._server.serve_forever()


# The recording is moto's, shared by every server of the process: the first to start begins it,
# the last to stop ends it.
_RUNNING: list[MotoServer] = []


class MotoServer:
    """moto on a free loopback port, with call counting and fault injection.

    `host` may be the bubble's node address (`bubble.NODE_IP`) so pods reach it; every server of
    one process shares moto's state and its recording, so a test can seed through either.
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.layer: _FaultLayer | None = None
        self._server = _Server(self._make_layer, host)
        self.endpoint = ""

    def _make_layer(self, app: WSGIApp) -> _FaultLayer:
        self.layer = _FaultLayer(app)
        return self.layer

    def start(self) -> MotoServer:
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        _RUNNING.append(self)
        if len(_RUNNING) == 1:
            recorder.reset_recording()
            recorder.start_recording()
        return self

    def stop(self) -> None:
        _RUNNING.remove(self)
        if not _RUNNING:
            recorder.stop_recording()
        self._server.stop()

    def env(self) -> dict[str, str]:
        """Environment that points botocore (and so the operator) at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": FAKE_ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": FAKE_SECRET_KEY,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def client(self, service: str) -> Any:
        """A boto3 client for `service` on this server, whatever this process's own environment says."""
        import boto3

        return boto3.client(
            service,  # type: ignore[call-overload]
            region_name=REGION,
            endpoint_url=self.endpoint,
            aws_access_key_id=FAKE_ACCESS_KEY,
            aws_secret_access_key=FAKE_SECRET_KEY,
        )

    def reset(self) -> None:
        """Forget every resource and recorded call, so a test starts from an empty AWS."""
        import requests

        requests.post(f"{self.endpoint}/moto-api/reset", timeout=10).raise_for_status()
        self.clear_faults()
        self.reset_calls()

    # --- calls -----------------------------------------------------------------------------------

    def reset_calls(self) -> None:
        recorder.reset_recording()
        if self.layer is not None:
            with self.layer.lock:
                self.layer.timeline.clear()

    def timed_calls(self, since: float = 0.0) -> list[tuple[float, str]]:
        """(time.monotonic(), operation) of every AWS request since `since`, oldest first."""
        assert self.layer is not None, "the server is not started"
        with self.layer.lock:
            return [entry for entry in self.layer.timeline if entry[0] >= since]

    def requests(self) -> list[tuple[str, dict[str, str], bytes]]:
        """Every recorded request as (operation, headers, body), in order; bodies may hold values."""
        out = []
        for line in recorder.download_recording().splitlines():
            if not line.strip():
                continue
            entry = json.loads(line)
            body = entry.get("body") or ""
            raw = base64.b64decode(body) if entry.get("body_encoded") else body.encode()
            headers = dict(entry.get("headers", {}))
            out.append((operation_of(headers, raw), headers, raw))
        return out

    def calls(self) -> list[str]:
        """Every recorded call's operation name, in order."""
        return [operation for operation, _, _ in self.requests()]

    def request_bodies(self, operation: str) -> list[str]:
        """The bodies of the recorded (answered by moto, not faulted) calls of one operation."""
        return [
            unquote_plus(raw.decode("utf-8", "replace")) for op, _, raw in self.requests() if op == operation
        ]

    def call_counts(self) -> collections.Counter[str]:
        return collections.Counter(self.calls())

    # --- faults ----------------------------------------------------------------------------------

    def inject(self, fault: Fault) -> None:
        assert self.layer is not None
        with self.layer.lock:
            self.layer.faults[fault.operation] = fault

    def clear_faults(self) -> None:
        if self.layer is not None:
            with self.layer.lock:
                self.layer.faults.clear()


@contextmanager
def moto_server() -> Iterator[MotoServer]:
    server = MotoServer().start()
    try:
        yield server
    finally:
        server.stop()
