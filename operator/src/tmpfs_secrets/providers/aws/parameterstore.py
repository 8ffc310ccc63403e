"""Parameter Store: GetParameters (10 names a call) and GetParametersByPath for `find`.

A `version` is sent as SSM's own selector, `name:<version>` or `name:<label>`. The response names
parameters without their selector, so one call never asks for the same parameter twice; such
refs go into separate calls. SecureStrings are always decrypted. A StringList is delivered as
AWS stores it (comma-separated). A call refused as a whole because of one name (malformed, or not
readable by the identity) is asked again name by name, so only that name fails.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from botocore.exceptions import ClientError

from tmpfs_secrets.errors import SyncError
from tmpfs_secrets.providers.aws.clients import AwsRuntime
from tmpfs_secrets.providers.aws.credentials import Auth
from tmpfs_secrets.providers.aws.errors import error_code, for_code, from_exception
from tmpfs_secrets.providers.base import PARAMETER_STORE, Fetched, Found, SourceRef

BATCH_SIZE = 10
ACTION = "ssm:GetParameters"


def is_version_number(version: str | None) -> bool:
    """A numeric version pins an immutable value; a label can move."""
    return version is not None and version.isdigit()


def _name(ref: SourceRef) -> str:
    return f"{ref.key}:{ref.version}" if ref.version else ref.key


def _what(ref: SourceRef) -> str:
    return f"parameter {ref.key}" + (f" (version {ref.version})" if ref.version else "")


def pack(refs: Sequence[SourceRef], size: int = BATCH_SIZE) -> list[list[SourceRef]]:
    """Chunks of at most `size` refs in which no parameter name appears twice."""
    chunks: list[list[SourceRef]] = []
    for ref in dict.fromkeys(refs):
        for chunk in chunks:
            if len(chunk) < size and all(r.key != ref.key for r in chunk):
                chunk.append(ref)
                break
        else:
            chunks.append([ref])
    return chunks


class ParameterStoreProvider:
    batch_size = BATCH_SIZE

    def __init__(self, aws: AwsRuntime, auth: Auth, region: str) -> None:
        self._aws = aws
        self._auth = auth
        self._region = region

    async def fetch(self, refs: Sequence[SourceRef]) -> dict[SourceRef, Fetched | SyncError]:
        out: dict[SourceRef, Fetched | SyncError] = {}
        try:
            client = await self._aws.client(self._auth, PARAMETER_STORE, self._region)
        except SyncError as exc:
            return dict.fromkeys(refs, exc)
        for chunk in pack(refs):
            await self._chunk(client, chunk, out)
        return out

    async def _chunk(
        self, client: Any, chunk: list[SourceRef], out: dict[SourceRef, Fetched | SyncError]
    ) -> None:
        try:
            response = await self._aws.call(
                client.get_parameters, Names=[_name(r) for r in chunk], WithDecryption=True
            )
        except ClientError as exc:
            if len(chunk) > 1 and error_code(exc).startswith(("ValidationException", "AccessDenied")):
                # One malformed name fails the whole call, and so does one name the identity may not
                # read (IAM authorizes GetParameters on every name; expired or unknown credentials
                # have other codes and fail every name anyway): ask again one by one so it fails
                # alone and the other ExternalSecrets of the call keep syncing.
                for ref in chunk:
                    await self._chunk(client, [ref], out)
                return
            _chunk_failed(exc, chunk, out, self._region)
            return
        except Exception as exc:
            _chunk_failed(exc, chunk, out, self._region)
            return
        by_name: dict[str, Fetched] = {}
        for param in response.get("Parameters", []):
            fetched = Fetched(_utf8(param.get("Value", "")), str(param.get("Version", "")))
            for name in (param.get("Name"), param.get("ARN")):
                if name:
                    by_name[name] = fetched
        invalid = set(response.get("InvalidParameters", []))
        for ref in chunk:
            if _name(ref) in invalid or ref.key not in by_name:
                out[ref] = for_code("ParameterNotFound", _what(ref), ACTION, self._region)
            else:
                out[ref] = by_name[ref.key]

    async def find(self, query: str) -> Found:
        path = query
        try:
            client = await self._aws.client(self._auth, PARAMETER_STORE, self._region)
            params = await self._aws.call(_all_by_path, client, path)
        except Exception as exc:
            raise from_exception(
                exc, f"parameters under {path}", "ssm:GetParametersByPath", self._region
            ) from None
        return Found(path, params)


def _utf8(value: object) -> bytes:
    """An unpaired surrogate (possible in JSON) keeps its bytes instead of raising."""
    return str(value).encode("utf-8", "surrogatepass")


def _chunk_failed(
    exc: Exception, chunk: list[SourceRef], out: dict[SourceRef, Fetched | SyncError], region: str
) -> None:
    """Each parameter gets its own message, naming it: a message naming the call (how many
    parameters it carried) would change with every retry's batch composition and rewrite every
    status."""
    for ref in chunk:
        out[ref] = from_exception(exc, _what(ref), ACTION, region)


def _all_by_path(client: Any, path: str) -> dict[str, Fetched]:
    """Every page, in the pool thread: pages are sequential anyway, so one hop to the loop suffices."""
    out: dict[str, Fetched] = {}
    paginator = client.get_paginator("get_parameters_by_path")
    for page in paginator.paginate(Path=path, Recursive=True, WithDecryption=True):
        for param in page.get("Parameters", []):
            out[param["Name"]] = Fetched(_utf8(param.get("Value", "")), str(param.get("Version", "")))
    return out
