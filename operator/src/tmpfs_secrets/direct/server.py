"""The HTTPS endpoint agents stream from: `GET /v1/stream` and `POST /v1/ack`.

Each stream is one task that drains its own hub subscriber; a write that the agent does not read
within `write_timeout` ends that connection only, so a stuck or slow agent never holds up other
agents or the refresh loop (which only offers lines, never waits). A stream ends at its token's
expiry: the agent reconnects with the token kubelet refreshed meanwhile. Refusals are logged with
the peer and the pod when known, never the token.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections import Counter
from collections.abc import Callable

from aiohttp import web

from tmpfs_secrets.agent import protocol
from tmpfs_secrets.direct.auth import Caller, PodNames, Refusal, TokenVerifier, authorize
from tmpfs_secrets.direct.hub import Hub
from tmpfs_secrets.kube.index import ObjectIndex
from tmpfs_secrets.ports import ObjectRef

log = logging.getLogger(__name__)

MAX_ACK_BODY = 4096


class DirectServer:
    def __init__(
        self,
        hub: Hub,
        verifier: TokenVerifier,
        pods: PodNames,
        index: ObjectIndex,
        context: ssl.SSLContext | None,
        host: str = "0.0.0.0",
        port: int = 8443,
        *,
        write_timeout: float = 10.0,
        ping_interval: float = protocol.PING_INTERVAL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.hub = hub
        self.verifier = verifier
        self.pods = pods
        self.index = index
        self.context = context
        self.host = host
        self.port = port
        self.write_timeout = write_timeout
        self.ping_interval = ping_interval
        self.clock = clock
        self.refusals: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()  # streams ended by the server: slow, gone, expired
        self._runner: web.AppRunner | None = None
        self._streams: set[asyncio.Task[object]] = set()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_ACK_BODY)
        app.router.add_get(protocol.STREAM_PATH, self._stream)
        app.router.add_post(protocol.ACK_PATH, self._ack)
        return app

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self.context)
        await site.start()
        if self.port == 0:  # tests: the port the system picked
            self.port = int(self._runner.addresses[0][1])
        log.info("direct delivery serving HTTPS on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        for task in list(self._streams):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _caller(self, http: web.Request) -> Caller:
        header = http.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Refusal(
                401, "NoToken", "send the pod's projected ServiceAccount token as 'Authorization: Bearer'"
            )
        return await self.verifier.verify(token.strip())

    def _refuse(self, http: web.Request, what: str, refusal: Refusal, caller: Caller | None) -> web.Response:
        self.refusals[refusal.reason] += 1
        log.warning(
            "refused %s from %s (%s): %s: %s",
            what,
            http.remote or "unknown peer",
            caller if caller is not None else "unverified",
            refusal.reason,
            refusal.message,
        )
        return web.json_response(
            {"reason": refusal.reason, "message": refusal.message}, status=refusal.status
        )

    async def _stream(self, http: web.Request) -> web.StreamResponse:
        caller: Caller | None = None
        try:
            caller = await self._caller(http)
            requested = [n for n in http.query.get("secrets", "").split(",") if n]
            refs = authorize(caller, requested, await self.pods.names(caller), self.index)
        except Refusal as refusal:
            return self._refuse(http, "an agent stream", refusal, caller)
        response = web.StreamResponse(
            headers={"Content-Type": protocol.CONTENT_TYPE, "Cache-Control": "no-store"}
        )
        response.enable_chunked_encoding()
        await response.prepare(http)
        subscriber = self.hub.subscribe(caller.pod_uid, refs)
        task = asyncio.current_task()
        if task is not None:
            self._streams.add(task)
        log.info("%s streams %s", caller, ", ".join(r.name for r in refs))
        ended = "closed by the agent"
        try:
            while True:
                remaining = caller.expires_at - self.clock()
                if remaining <= 0:
                    ended = "token expired; the agent reconnects with its refreshed token"
                    break
                try:
                    await asyncio.wait_for(
                        subscriber.wakeup.wait(), timeout=min(self.ping_interval, remaining)
                    )
                    lines = subscriber.take()
                except TimeoutError:
                    lines = [protocol.PING]
                for line in lines:
                    await asyncio.wait_for(response.write(line), timeout=self.write_timeout)
        except TimeoutError:
            ended = f"the agent read nothing for {self.write_timeout:g} s"
            self.dropped["slow"] += 1
            if http.transport is not None:
                http.transport.abort()
        except (ConnectionError, asyncio.CancelledError) as e:
            ended = "closed by the agent" if isinstance(e, ConnectionError) else "operator stopping"
            if isinstance(e, asyncio.CancelledError):
                raise
        finally:
            self.hub.unsubscribe(subscriber)
            if task is not None:
                self._streams.discard(task)
            log.info("stream of %s ended: %s", caller, ended)
        with contextlib.suppress(ConnectionError):
            await response.write_eof()
        return response

    async def _ack(self, http: web.Request) -> web.Response:
        caller: Caller | None = None
        try:
            caller = await self._caller(http)
            try:
                name, content_hash = protocol.decode_ack(await http.read())
            except protocol.ProtocolError as e:
                raise Refusal(400, "InvalidAck", str(e)) from None
        except Refusal as refusal:
            return self._refuse(http, "an acknowledgement", refusal, caller)
        if not self.hub.ack(caller.pod_uid, ObjectRef(caller.namespace, name), content_hash):
            return web.json_response(
                {"reason": "NotStreaming", "message": f"{caller} has no stream of {name!r}"}, status=409
            )
        return web.Response(status=204)
