"""A thin JSON client of the Kubernetes API on aiohttp.

Generated API classes validate and deserialise every body into models, which costs CPU and memory
at thousands of objects and hides the raw JSON we compare and patch. This client speaks plain
dicts over one aiohttp connection pool, authenticated as `kube.kubeconfig` and `kube.credentials`
say, and asks again once with a renewed token when the API server answers 401.
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
import urllib.request
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from typing import Any

import aiohttp

from tmpfs_secrets.kube import kubeconfig
from tmpfs_secrets.kube.credentials import BearerToken, ssl_context
from tmpfs_secrets.kube.kubeconfig import KubeconfigError
from tmpfs_secrets.ports import ReadError

JSON = dict[str, Any]
MERGE_PATCH = "application/merge-patch+json"
METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
LIST_PAGE = 500  # objects per LIST page: client-go's pager uses the same
TRANSPORT_ERRORS = (TimeoutError, aiohttp.ClientError, OSError)
CLOSE_PAUSE = 0.25  # seconds


class KubeApiError(ReadError):
    """A non-2xx answer from the API server, with the server's own explanation."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409

    @property
    def forbidden(self) -> bool:
        return self.status == 403

    @property
    def transient(self) -> bool:
        """Worth retrying as is: throttling, timeouts and server-side failures."""
        return self.status in (0, 429) or self.status >= 500


async def connect(path: str | None = None, *, pool_size: int = 16, request_timeout: float = 30.0) -> Rest:
    """A client from an explicit kubeconfig, $KUBECONFIG / ~/.kube/config, or the pod's account."""
    connection = kubeconfig.load(path)
    # aiohttp's trust_env would re-read ~/.netrc and the proxy variables on every request, a
    # measurable share of the operator's CPU at scale; the environment is read once here instead.
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=pool_size, ssl=ssl_context(connection)), trust_env=False
    )
    return Rest(
        session,
        connection.server,
        BearerToken(connection),
        proxy=connection.proxy or env_proxy(connection.server),
        timeout=request_timeout,
    )


def env_proxy(url: str) -> str | None:
    """The proxy $HTTPS_PROXY / $HTTP_PROXY names for `url`, unless $NO_PROXY exempts its host."""
    parsed = urllib.parse.urlsplit(url)
    proxy = urllib.request.getproxies().get(parsed.scheme)
    if not proxy or not parsed.hostname or urllib.request.proxy_bypass(parsed.hostname):
        return None
    return proxy


class Rest:
    """GET/POST/PATCH/DELETE of JSON documents at API paths, and watches."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        server: str,
        token: BearerToken,
        *,
        proxy: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.session = session
        self.server = server
        self.token = token
        self.proxy = proxy
        self.timeout = timeout

    async def close(self) -> None:
        await self.session.close()
        # A TLS connection closes only after its close_notify exchange, a few loop turns later;
        # aiohttp's advice for a graceful shutdown is a short pause, so none is left half closed
        # (and reported unclosed) when the event loop ends right after.
        await asyncio.sleep(CLOSE_PAUSE)

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: object = None,
        content_type: str = "application/json",
        query: Sequence[tuple[str, str]] = (),
        accept: str = "application/json",
    ) -> JSON:
        headers = {"Accept": accept}
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = json.dumps(body).encode()
        for attempt in (1, 2):
            try:
                async with await self._send(method, path, query, headers, data, self.timeout) as response:
                    raw = await response.read()
            except TRANSPORT_ERRORS as e:
                raise _unreachable(method, path, e) from e
            if response.status == 401 and attempt == 1 and self.token.renewable:
                self.token.expire()  # a rotated token or an expired exec token: renew, ask again
                continue
            if response.status >= 400:
                raise _error(response.status, response.reason or "", raw)
            return json.loads(raw) if raw else {}
        raise AssertionError("unreachable")

    async def stream(
        self, method: str, path: str, *, query: Sequence[tuple[str, str]] = (), deadline: float = 360.0
    ) -> AsyncGenerator[JSON, None]:
        """A watch: the JSON documents of a streamed answer, one per line, as they arrive."""
        headers = {"Accept": "application/json"}
        try:
            response = await self._send(method, path, query, headers, None, deadline)
        except TRANSPORT_ERRORS as e:
            raise _unreachable(method, path, e) from e
        try:
            if response.status >= 400:
                if response.status == 401:
                    self.token.expire()  # the watch is started again, with a renewed token
                raise _error(response.status, response.reason or "", await response.read())
            buffer = b""
            try:
                async for chunk in response.content.iter_any():
                    buffer += chunk
                    while (end := buffer.find(b"\n")) >= 0:
                        line, buffer = buffer[:end], buffer[end + 1 :]
                        if line.strip():
                            yield json.loads(line)
            except TRANSPORT_ERRORS as e:
                raise _unreachable(method, path, e) from e
        finally:
            response.release()

    async def _send(
        self,
        method: str,
        path: str,
        query: Sequence[tuple[str, str]],
        headers: dict[str, str],
        data: bytes | None,
        seconds: float,
    ) -> aiohttp.ClientResponse:
        try:
            token = await self.token.get()
        except KubeconfigError as e:
            # E.g. the exec plugin failed (AWS unreachable): a failed request, retried as any other.
            raise KubeApiError(0, "NoCredentials", str(e)) from e
        if token:
            headers = {**headers, "Authorization": f"Bearer {token}"}
        url = self.server + path + ("?" + urllib.parse.urlencode(list(query)) if query else "")
        return await self.session.request(
            method,
            url,
            data=data,
            headers=headers,
            proxy=self.proxy,
            timeout=aiohttp.ClientTimeout(total=seconds),
        )

    async def get(self, path: str) -> JSON:
        return await self.request("GET", path)

    async def list_pages(
        self,
        path: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        metadata_only: bool = False,
        limit: int = LIST_PAGE,
    ) -> AsyncIterator[tuple[list[JSON], str]]:
        """A LIST in pages of `limit` items: (items, the list's resourceVersion) for each page.

        Thousands of objects in one answer would be parsed into memory all at once; a page at a
        time keeps the peak to one page. `metadata_only` asks for PartialObjectMetadata, for
        callers that need names and versions only (no spec, status or data is sent at all).
        """
        accept = METADATA_LIST if metadata_only else "application/json"
        token = ""
        while True:
            page_query = [*query, ("limit", str(limit))] + ([("continue", token)] if token else [])
            body = await self.request("GET", path, query=page_query, accept=accept)
            meta = body.get("metadata") or {}
            yield list(body.get("items") or []), str(meta.get("resourceVersion") or "")
            token = str(meta.get("continue") or "")
            if not token:
                return

    async def post(self, path: str, body: Mapping[str, Any]) -> JSON:
        return await self.request("POST", path, body=dict(body))

    async def merge_patch(self, path: str, body: Mapping[str, Any]) -> JSON:
        return await self.request("PATCH", path, body=dict(body), content_type=MERGE_PATCH)

    async def delete(self, path: str) -> JSON:
        return await self.request("DELETE", path)


def _unreachable(method: str, path: str, error: BaseException) -> KubeApiError:
    """A transport failure, shaped like any other API error for callers: status 0, transient."""
    return KubeApiError(0, "Unreachable", f"{method} {path}: {type(error).__name__}: {error}")


def _error(status: int, reason: str, raw: bytes) -> KubeApiError:
    message = raw.decode("utf-8", "replace")[:500]
    try:
        decoded = json.loads(raw)
    except ValueError:
        decoded = None
    if isinstance(decoded, dict):
        message = str(decoded.get("message") or message)
        reason = str(decoded.get("reason") or reason)
    return KubeApiError(status, reason, message)


def core_path(kind_plural: str, namespace: str | None = None, name: str | None = None, sub: str = "") -> str:
    """Path of a core (`/api/v1`) object or collection."""
    path = "/api/v1"
    if namespace is not None:
        path += f"/namespaces/{namespace}"
    path += f"/{kind_plural}"
    if name is not None:
        path += f"/{name}"
    if sub:
        path += f"/{sub}"
    return path


def group_path(
    group: str,
    version: str,
    plural: str,
    namespace: str | None = None,
    name: str | None = None,
    sub: str = "",
) -> str:
    """Path of an object or collection in an API group (`/apis/<group>/<version>`)."""
    path = f"/apis/{group}/{version}"
    if namespace is not None:
        path += f"/namespaces/{namespace}"
    path += f"/{plural}"
    if name is not None:
        path += f"/{name}"
    if sub:
        path += f"/{sub}"
    return path
