"""The admission webhooks over HTTPS, with a certificate that can be renewed under a running server.

The certificate and key are files (a Secret volume in the chart, written by cert-manager, Helm
or a person). Their modification times are checked every few seconds; when they change, a new
TLS context is built and every later handshake uses it (through the SNI callback, which runs for
every handshake, SNI or not), so a renewal needs no restart. A pair that fails to load (say, the
certificate written but not yet its key) is retried at the next check while the old one serves.

Routes: POST /mutate-pods (the pod webhook) and POST /validate (ExternalSecrets and stores). Each
answer is computed from memory only; the server counts requests per route for /metrics.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import ssl
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from tmpfs_secrets import metrics
from tmpfs_secrets.tasks import cancel
from tmpfs_secrets.webhook import objects, pods
from tmpfs_secrets.webhook.agent import AgentConfig
from tmpfs_secrets.webhook.review import Request, Verdict, response

log = logging.getLogger(__name__)

MUTATE_PODS = "/mutate-pods"
VALIDATE = "/validate"
MAX_BODY = 3 * 1024 * 1024  # the API server's own request size limit


class CertificateFiles:
    """A TLS server context from a certificate and key file, rebuilt when either changes."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.cert = cert
        self.key = key
        self._stamp = self._read_stamp()
        self.current = self._build()
        self.reloads = 0
        # The context the listening socket is made with; it hands each handshake the current one.
        self.listener = self._build()
        self.listener.sni_callback = self._pick

    def _read_stamp(self) -> tuple[tuple[int, int, int], ...]:
        stats = (os.stat(self.cert), os.stat(self.key))
        return tuple((s.st_ino, s.st_mtime_ns, s.st_size) for s in stats)

    def _build(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert, self.key)
        return context

    def _pick(self, sock: ssl.SSLObject | ssl.SSLSocket, _name: str | None, _ctx: ssl.SSLContext) -> None:
        sock.context = self.current

    def check(self) -> bool:
        """Reload the pair if the files changed; True when a new certificate is now served."""
        try:
            stamp = self._read_stamp()
            if stamp == self._stamp:
                return False
            self.current = self._build()
        except (OSError, ssl.SSLError) as e:
            log.warning(
                "webhook certificate %s could not be loaded, still serving the previous one: %s", self.cert, e
            )
            return False
        self._stamp = stamp
        self.reloads += 1
        log.info("webhook certificate reloaded from %s", self.cert)
        return True


@dataclass
class Admission:
    """What the routes decide with: the target lookup and whether the index is complete."""

    lookup: pods.TargetLookup
    ready: Callable[[], bool]
    # The operator's own settings, so admission refuses exactly what the operator would.
    rules: objects.Rules = field(default_factory=lambda: objects.Rules())
    # How injected Direct delivery agents reach the operator; None when it serves none.
    direct: Callable[[], AgentConfig | None] = lambda: None


class WebhookServer:
    def __init__(
        self,
        admission: Admission,
        certificates: CertificateFiles,
        host: str = "0.0.0.0",
        port: int = 9443,
        *,
        reload_interval: float = 2.0,
    ) -> None:
        self.admission = admission
        self.certificates = certificates
        self.host = host
        self.port = port
        self.reload_interval = reload_interval
        self.requests: Counter[str] = Counter()
        self.refusals: Counter[str] = Counter()
        # Seconds from the request's arrival to its answer, the last few thousand per route.
        self.durations: dict[str, deque[float]] = {
            route: deque(maxlen=4096) for route in (MUTATE_PODS, VALIDATE)
        }
        self.serving = False
        self._runner: web.AppRunner | None = None
        self._watch: asyncio.Task[None] | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_post(MUTATE_PODS, self._mutate_pods)
        app.router.add_post(VALIDATE, self._validate)
        return app

    async def start(self) -> None:
        # Short: the API server keeps connections alive, and shutdown would wait for them.
        self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self.certificates.listener)
        await site.start()
        self.serving = True
        self._watch = asyncio.create_task(self._watch_files(), name="tmpfs-secrets-webhook-certificates")
        log.info("webhook serving HTTPS on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        self.serving = False
        await cancel([self._watch])
        if self._runner is not None:
            await self._runner.cleanup()

    async def _watch_files(self) -> None:
        while True:
            await asyncio.sleep(self.reload_interval)
            self.certificates.check()

    async def _mutate_pods(self, http: web.Request) -> web.Response:
        return await self._answer(http, MUTATE_PODS, self._pod_verdict)

    async def _validate(self, http: web.Request) -> web.Response:
        return await self._answer(http, VALIDATE, self._object_verdict)

    def _pod_verdict(self, request: Request) -> Verdict:
        if request.operation != "CREATE":
            return Verdict()
        if not self.admission.ready():
            return Verdict.deny(
                "the tmpfs-secrets operator has just started and has not read the ExternalSecrets yet; "
                "retry in a few seconds (controllers retry on their own)"
            )
        return pods.mutate(request.object, request.namespace, self.admission.lookup, self.admission.direct())

    def _object_verdict(self, request: Request) -> Verdict:
        if request.operation not in ("CREATE", "UPDATE"):
            return Verdict()
        return objects.validate(request.kind, request.object, request.namespace, self.admission.rules)

    def quantiles(self, route: str, qs: tuple[float, ...] = (0.5, 0.99)) -> dict[float, float]:
        """Quantiles of the recent answer times of `route`, in seconds (empty before any request)."""
        values = sorted(self.durations[route])
        if not values:
            return {}
        return {q: values[min(len(values) - 1, int(q * len(values)))] for q in qs}

    async def _answer(
        self, http: web.Request, route: str, decide: Callable[[Request], Verdict]
    ) -> web.Response:
        started = time.perf_counter()
        self.requests[route] += 1
        try:
            return await self._answer_timed(http, route, decide)
        finally:
            seconds = time.perf_counter() - started
            self.durations[route].append(seconds)
            metrics.WEBHOOK_DURATION.labels(route).observe(seconds)

    async def _answer_timed(
        self, http: web.Request, route: str, decide: Callable[[Request], Verdict]
    ) -> web.Response:
        try:
            review: Any = await http.json()
            request = Request.parse(review)
        except (ValueError, json.JSONDecodeError) as e:
            return web.json_response({"error": f"expected an AdmissionReview: {e}"}, status=400)
        try:
            verdict = decide(request)
        except Exception:
            log.exception(
                "webhook %s failed on %s %s/%s", route, request.kind, request.namespace, request.name
            )
            verdict = Verdict.deny("the tmpfs-secrets webhook failed on this object; see the operator's log")
        if not verdict.allowed:
            self.refusals[route] += 1
            log.info(
                "webhook %s refused %s %s/%s: %s",
                route,
                request.kind,
                request.namespace,
                request.name or "(generated name)",
                verdict.message,
            )
        return web.json_response(response(request.uid, verdict))
