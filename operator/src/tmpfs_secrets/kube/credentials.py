"""The bearer token and TLS settings of a `Connection`, kept fresh while the operator runs.

A pod's projected ServiceAccount token is rotated by kubelet (hourly), so a token file is read
again a minute after it was last read, as client-go does. An exec plugin (`aws eks get-token`)
is run when no token is cached or the cached one is about to expire, never on the event loop's
thread (an async subprocess), and again after the API server answered 401.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import ssl
import tempfile
import time
from pathlib import Path

from tmpfs_secrets.kube.kubeconfig import Connection, ExecPlugin, KubeconfigError

FILE_TOKEN_TTL = 60.0  # seconds before a token file is read again
EXPIRY_MARGIN = 60.0  # an exec token this close to its expiry is renewed before use
EXEC_TIMEOUT = 60.0


class BearerToken:
    """The token for the Authorization header: static, from a file, or from an exec plugin."""

    def __init__(self, connection: Connection, *, file_ttl: float = FILE_TOKEN_TTL) -> None:
        self.connection = connection
        self._file_ttl = file_ttl
        self._token: str | None = connection.token
        self._valid_until = float("inf") if connection.token else 0.0
        self.expiration: datetime.datetime | None = None  # of an exec token, when it says
        self._lock = asyncio.Lock()

    @property
    def renewable(self) -> bool:
        """Whether a 401 is worth a retry with a renewed token."""
        return self.connection.token_file is not None or self.connection.exec is not None

    async def get(self) -> str | None:
        if time.monotonic() < self._valid_until:
            return self._token
        async with self._lock:
            if time.monotonic() >= self._valid_until:
                await self._renew()
        return self._token

    async def fresh(self) -> str | None:
        """The token, with a token file read again first (kopf asks for one after a 401)."""
        if self.connection.token_file is not None:
            self._valid_until = 0.0
        return await self.get()

    def expire(self) -> None:
        """The API server refused the token: get a new one before the next request."""
        if self.renewable:
            self._valid_until = 0.0

    async def _renew(self) -> None:
        now = time.monotonic()
        if self.connection.exec is not None:
            self._token, lifetime, self.expiration = await run_exec(self.connection.exec)
            self._valid_until = now + max(0.0, lifetime - EXPIRY_MARGIN)
        elif self.connection.token_file is not None:
            try:
                self._token = (await asyncio.to_thread(Path(self.connection.token_file).read_text)).strip()
            except OSError as e:
                raise KubeconfigError(
                    f"cannot read token file {self.connection.token_file}: {e.strerror}"
                ) from e
            self._valid_until = now + self._file_ttl
        else:
            self._valid_until = float("inf")


async def run_exec(plugin: ExecPlugin) -> tuple[str, float, datetime.datetime | None]:
    """Run an exec credential plugin: (token, seconds it stays valid, its expiry if given)."""
    info = {"apiVersion": plugin.api_version, "kind": "ExecCredential", "spec": {"interactive": False}}
    env = {**os.environ, **dict(plugin.env), "KUBERNETES_EXEC_INFO": json.dumps(info)}
    try:
        process = await asyncio.create_subprocess_exec(
            plugin.command,
            *plugin.args,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as e:
        raise KubeconfigError(
            f"cannot run the exec credential plugin {plugin.command!r}: {e.strerror}"
        ) from e
    try:
        out, err = await asyncio.wait_for(process.communicate(), EXEC_TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise KubeconfigError(
            f"the exec credential plugin {plugin.command!r} did not answer within {EXEC_TIMEOUT:g}s"
        ) from None
    if process.returncode != 0:
        # Its stderr says why (not logged in, no such cluster); it never holds the token.
        raise KubeconfigError(
            f"the exec credential plugin {plugin.command!r} exited with {process.returncode}: "
            + err.decode(errors="replace").strip()[-500:]
        )
    try:
        status = json.loads(out)["status"]
        token = str(status["token"])
    except (ValueError, KeyError, TypeError):
        raise KubeconfigError(
            f"the exec credential plugin {plugin.command!r} did not print an ExecCredential with "
            "status.token (client certificates from a plugin are not supported)"
        ) from None
    expiry = _timestamp(status.get("expirationTimestamp"))
    if expiry is None:
        return token, float("inf"), None
    lifetime = (expiry - datetime.datetime.now(datetime.UTC)).total_seconds()
    return token, lifetime, expiry


def ssl_context(connection: Connection) -> ssl.SSLContext:
    """Verifies the API server with the connection's CA (or the system's); presents its client
    certificate, if it has one."""
    context = ssl.create_default_context(cafile=connection.ca_file, cadata=connection.ca_data)
    if connection.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    cert, key = connection.cert_file or connection.cert_data, connection.key_file or connection.key_data
    if cert and key:
        # ssl loads a certificate chain from files only: PEM data goes through a private
        # temporary folder that is removed as soon as it is loaded.
        with tempfile.TemporaryDirectory() as folder:
            cert_file = connection.cert_file or _write(Path(folder) / "tls.crt", connection.cert_data)
            key_file = connection.key_file or _write(Path(folder) / "tls.key", connection.key_data)
            context.load_cert_chain(cert_file, key_file)
    elif cert or key:
        raise KubeconfigError("a client certificate needs its key and a key its certificate; set both")
    return context


def _write(path: Path, data: str | None) -> str:
    path.touch(mode=0o600)
    path.write_text(data or "")
    return str(path)


def _timestamp(value: object) -> datetime.datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)
