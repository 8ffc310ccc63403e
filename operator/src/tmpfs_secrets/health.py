"""Liveness, readiness and request counts over plain HTTP, for kubelet's probes and Prometheus.

- `/healthz` (liveness) fails when the refresh loop has stopped or is stuck: a refresh that was
  due a while ago has not started. kubelet then restarts the operator, which is the cure for a
  wedged loop. An overloaded event loop fails it too, by not answering in time.
- `/readyz` (readiness) turns true once the first list of stores and ExternalSecrets has been
  read (so the pod webhook knows every ExternalSecret's mount) and, when the webhook is enabled,
  while it serves. A Service sends admission requests only to a ready operator.
- `/metrics`: admission requests and refusals per webhook route, the median and 99th
  percentile of recent answer times, and every metric of `tmpfs_secrets.metrics`, in
  Prometheus' text format.

Every check is a callable that returns a problem (what is wrong, for a person) or None.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from aiohttp import web

from tmpfs_secrets import metrics

log = logging.getLogger(__name__)

Check = Callable[[], str | None]
Counts = Callable[[], Mapping[str, Mapping[str, float]]]


@dataclass
class HealthServer:
    liveness: list[Check] = field(default_factory=list)
    readiness: list[Check] = field(default_factory=list)
    counts: Counts | None = None  # metric name -> route -> value
    _runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        return app

    async def start(self, host: str, port: int) -> None:
        # Short: the API server keeps connections alive, and shutdown would wait for them.
        self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        log.info("health probes at http://%s:%d/healthz and /readyz", host, port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @staticmethod
    def _report(checks: list[Check]) -> web.Response:
        problems = [p for p in (check() for check in checks) if p]
        if problems:
            return web.Response(status=503, text="\n".join(problems) + "\n")
        return web.Response(text="ok\n")

    async def _healthz(self, _: web.Request) -> web.Response:
        return self._report(self.liveness)

    async def _readyz(self, _: web.Request) -> web.Response:
        return self._report(self.readiness)

    async def _metrics(self, _: web.Request) -> web.Response:
        lines = []
        for metric, by_label in (self.counts() if self.counts else {}).items():
            kind = "counter" if metric.endswith("_total") else "gauge"
            lines.append(f"# TYPE {metric} {kind}")
            for labels, value in sorted(by_label.items()):
                selector = labels if "=" in labels else f'route="{labels}"'
                lines.append(f"{metric}{{{selector}}} {value:g}")
        body = ("\n".join(lines) + "\n" if lines else "").encode() + metrics.render()
        return web.Response(body=body, headers={"Content-Type": metrics.CONTENT_TYPE})


def parse_address(text: str, default_host: str = "0.0.0.0") -> tuple[str, int]:
    """`host:port` or `:port` or `port`; raises ValueError saying what to write."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "", text
    try:
        number = int(port)
    except ValueError:
        raise ValueError(f"{text!r} is not an address; write host:port, e.g. 0.0.0.0:8081") from None
    if not 0 <= number <= 65535:
        raise ValueError(f"port {number} is out of range")
    return (host.strip("[]") or default_host), number
