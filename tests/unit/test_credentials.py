"""Bearer tokens kept fresh: a token file read again once its time is up or after a 401, an exec
plugin run once per token lifetime with its environment, and its failures explained."""

from __future__ import annotations

import asyncio
import datetime
import json
import sys
from pathlib import Path

import aiohttp
import pytest

from tmpfs_secrets.kube.credentials import BearerToken, ssl_context
from tmpfs_secrets.kube.kubeconfig import Connection, ExecPlugin, KubeconfigError
from tmpfs_secrets.kube.rest import KubeApiError, Rest


def test_a_static_token_is_not_renewable() -> None:
    token = BearerToken(Connection(server="https://x", token="t"))
    assert asyncio.run(token.get()) == "t"
    assert token.renewable is False


def test_a_token_file_is_read_again_when_its_time_is_up_or_after_expire(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("one\n")

    async def scenario(ttl: float) -> list[str | None]:
        token = BearerToken(Connection(server="https://x", token_file=str(path)), file_ttl=ttl)
        seen = [await token.get()]
        path.write_text("two\n")
        seen.append(await token.get())
        token.expire()
        seen.append(await token.get())
        return seen

    assert asyncio.run(scenario(3600)) == ["one", "one", "two"]
    path.write_text("one\n")
    assert asyncio.run(scenario(0)) == ["one", "two", "two"]


def plugin(tmp_path: Path, status: dict[str, object] | None, *, exit_code: int = 0) -> ExecPlugin:
    """A plugin that counts its runs and prints `status` (or fails with `exit_code`)."""
    script = tmp_path / "plugin.py"
    script.write_text(
        "import json, os, sys\n"
        f"runs = {str(tmp_path / 'runs')!r}\n"
        "open(runs, 'a').write(os.environ['KUBERNETES_EXEC_INFO'] + ' ' + os.environ['PROFILE'] + '\\n')\n"
        f"if {exit_code}:\n"
        "    sys.stderr.write('not logged in; run aws sso login')\n"
        f"    sys.exit({exit_code})\n"
        f"print(json.dumps({{'apiVersion': 'client.authentication.k8s.io/v1', 'kind': 'ExecCredential', "
        f"'status': {status!r}}}))\n"
    )
    return ExecPlugin(
        sys.executable, (str(script),), (("PROFILE", "ops"),), "client.authentication.k8s.io/v1"
    )


def runs(tmp_path: Path) -> list[str]:
    return (tmp_path / "runs").read_text().splitlines()


def test_an_exec_token_is_reused_until_near_its_expiry(tmp_path: Path) -> None:
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
    exec_ = plugin(
        tmp_path, {"token": "from-plugin", "expirationTimestamp": later.strftime("%Y-%m-%dT%H:%M:%SZ")}
    )

    async def scenario() -> list[str | None]:
        token = BearerToken(Connection(server="https://x", exec=exec_))
        return [await token.get(), await token.get(), await token.get()]

    assert asyncio.run(scenario()) == ["from-plugin"] * 3
    (run,) = runs(tmp_path)  # once: the token is good for an hour
    info, profile = run.rsplit(" ", 1)
    assert json.loads(info) == {
        "apiVersion": "client.authentication.k8s.io/v1",
        "kind": "ExecCredential",
        "spec": {"interactive": False},
    }
    assert profile == "ops"


def test_an_exec_token_about_to_expire_is_renewed_at_each_use(tmp_path: Path) -> None:
    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=30)
    exec_ = plugin(tmp_path, {"token": "t", "expirationTimestamp": soon.isoformat()})

    async def scenario() -> None:
        token = BearerToken(Connection(server="https://x", exec=exec_))
        await token.get()
        await token.get()

    asyncio.run(scenario())
    assert len(runs(tmp_path)) == 2


def test_a_failing_plugin_says_why_and_a_silent_one_says_what_is_missing(tmp_path: Path) -> None:
    failing = plugin(tmp_path, None, exit_code=3)
    with pytest.raises(KubeconfigError, match="exited with 3: not logged in; run aws sso login"):
        asyncio.run(BearerToken(Connection(server="https://x", exec=failing)).get())
    no_token = plugin(tmp_path, {"clientCertificateData": "x"})
    with pytest.raises(KubeconfigError, match=r"status\.token"):
        asyncio.run(BearerToken(Connection(server="https://x", exec=no_token)).get())


def test_a_certificate_without_its_key_is_refused() -> None:
    with pytest.raises(KubeconfigError, match="set both"):
        ssl_context(Connection(server="https://x", cert_file="/some/tls.crt"))


def test_insecure_turns_verification_off() -> None:
    context = ssl_context(Connection(server="https://x", insecure=True))
    assert context.check_hostname is False


def test_a_failing_plugin_fails_the_request_as_a_transient_api_error(tmp_path: Path) -> None:
    failing = plugin(tmp_path, None, exit_code=3)

    async def scenario() -> KubeApiError:
        rest = Rest(
            aiohttp.ClientSession(), "https://127.0.0.1:9", BearerToken(Connection("x", exec=failing))
        )
        try:
            with pytest.raises(KubeApiError) as raised:
                await rest.get("/api/v1/namespaces")
            return raised.value
        finally:
            await rest.close()

    error = asyncio.run(scenario())
    assert error.transient and error.reason == "NoCredentials"
    assert "exited with 3" in error.message
