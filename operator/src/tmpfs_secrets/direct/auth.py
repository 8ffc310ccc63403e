"""Who is calling: an agent's token verified with TokenReview, its pod, and what it may read.

A token is checked cheaply first (it must look like a ServiceAccount JWT whose unverified claims
name our audience and an expiry in the future), then by the API server with a TokenReview for
the audience `tmpfs-secrets.io`. A verified token is cached until its expiry, so an agent's
reconnections and acknowledgements cost no further review; a rejected one is remembered briefly,
so garbage can't turn into a TokenReview storm. The pod comes from the token's pod claim (the
kubelet binds projected tokens to their pod); it may read the ExternalSecrets of its namespace
that its `tmpfs-secrets.io/secrets` annotation names and that use Direct delivery. No message or
log line ever contains the token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from tmpfs_secrets.agent.protocol import AUDIENCE
from tmpfs_secrets.kube.index import ObjectIndex
from tmpfs_secrets.kube.rest import KubeApiError, Rest, core_path
from tmpfs_secrets.ports import ObjectRef

POD_NAME_EXTRA = "authentication.kubernetes.io/pod-name"
POD_UID_EXTRA = "authentication.kubernetes.io/pod-uid"
SECRETS_ANNOTATION = "tmpfs-secrets.io/secrets"
TOKEN_REVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"


class Refusal(Exception):
    """An HTTP refusal: status, a reason word and a message that says what to change."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Caller:
    namespace: str
    service_account: str
    pod_name: str
    pod_uid: str
    expires_at: float

    def __str__(self) -> str:
        return f"pod {self.namespace}/{self.pod_name}"


def claims(token: str) -> dict[str, Any]:
    """The unverified claims of a JWT, only to refuse early and to know the expiry."""
    parts = token.split(".")
    if len(parts) != 3:
        raise Refusal(401, "InvalidToken", "expected a projected ServiceAccount token (a JWT)")
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        decoded: Any = json.loads(base64.urlsafe_b64decode(payload))
    except (binascii.Error, ValueError):
        raise Refusal(401, "InvalidToken", "expected a projected ServiceAccount token (a JWT)") from None
    if not isinstance(decoded, dict):
        raise Refusal(401, "InvalidToken", "expected a projected ServiceAccount token (a JWT)")
    return decoded


class TokenVerifier:
    def __init__(
        self,
        rest: Rest,
        *,
        audience: str = AUDIENCE,
        clock: Callable[[], float] = time.time,
        max_entries: int = 20000,
        rejected_ttl: float = 10.0,
    ) -> None:
        self.rest = rest
        self.audience = audience
        self.clock = clock
        self.max_entries = max_entries
        self.rejected_ttl = rejected_ttl
        self._cache: OrderedDict[bytes, tuple[Caller | Refusal, float]] = OrderedDict()
        self.reviews = 0  # TokenReviews sent (a benchmark and the tests count them)

    async def verify(self, token: str) -> Caller:
        now = self.clock()
        key = hashlib.sha256(token.encode()).digest()
        cached = self._cache.get(key)
        if cached is not None and cached[1] > now:
            if isinstance(cached[0], Refusal):
                raise cached[0]
            return cached[0]
        claimed = claims(token)
        audiences = claimed.get("aud")
        audiences = [audiences] if isinstance(audiences, str) else audiences
        if not isinstance(audiences, list) or self.audience not in audiences:
            raise Refusal(
                401,
                "WrongAudience",
                f"the token's audience must be {self.audience!r}: project the ServiceAccount token "
                f"with audience {self.audience}",
            )
        expiry = claimed.get("exp")
        if not isinstance(expiry, int | float) or expiry <= now:
            raise Refusal(
                401, "TokenExpired", "the token has expired; the agent re-reads kubelet's refreshed token"
            )
        try:
            caller = await self._review(token, float(expiry))
        except Refusal as refusal:
            if refusal.status in (401, 403):
                self._remember(key, refusal, now + self.rejected_ttl)
            raise
        self._remember(key, caller, float(expiry))
        return caller

    def _remember(self, key: bytes, value: Caller | Refusal, until: float) -> None:
        self._cache[key] = (value, until)
        self._cache.move_to_end(key)
        while len(self._cache) > self.max_entries:
            self._cache.popitem(last=False)

    async def _review(self, token: str, expiry: float) -> Caller:
        self.reviews += 1
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token, "audiences": [self.audience]},
        }
        try:
            review = await self.rest.post(TOKEN_REVIEWS, body)
        except KubeApiError as e:
            raise Refusal(
                503, "TokenReviewFailed", f"the API server could not review the token: {e.status} {e.reason}"
            ) from None
        status = review.get("status") or {}
        if status.get("authenticated") is not True:
            raise Refusal(
                401,
                "TokenRejected",
                "the API server did not accept the token (expired, revoked, its pod gone, or not "
                "a ServiceAccount token)",
            )
        if self.audience not in (status.get("audiences") or []):
            raise Refusal(401, "WrongAudience", f"the token is not valid for the audience {self.audience!r}")
        user = status.get("user") or {}
        parts = str(user.get("username") or "").split(":")
        if len(parts) != 4 or parts[:2] != ["system", "serviceaccount"]:
            raise Refusal(403, "NotAServiceAccount", "only pods' ServiceAccount tokens may stream values")
        extra = user.get("extra") or {}
        pod_names, pod_uids = extra.get(POD_NAME_EXTRA) or [], extra.get(POD_UID_EXTRA) or []
        if len(pod_names) != 1 or len(pod_uids) != 1:
            raise Refusal(
                403,
                "NotBoundToPod",
                "the token is not bound to a pod: use a projected ServiceAccount token volume",
            )
        return Caller(parts[2], parts[3], str(pod_names[0]), str(pod_uids[0]), expiry)


class PodNames:
    """The ExternalSecrets a pod names in its annotation, read once per pod and kept briefly."""

    def __init__(self, rest: Rest, *, ttl: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.rest = rest
        self.ttl = ttl
        self.clock = clock
        self._cache: dict[str, tuple[frozenset[str], float]] = {}
        self.reads = 0

    async def names(self, caller: Caller) -> frozenset[str]:
        now = self.clock()
        cached = self._cache.get(caller.pod_uid)
        if cached is not None and cached[1] > now:
            return cached[0]
        self.reads += 1
        try:
            pod = await self.rest.get(core_path("pods", caller.namespace, caller.pod_name))
        except KubeApiError as e:
            if e.not_found:
                raise Refusal(403, "PodNotFound", f"{caller} no longer exists") from None
            raise Refusal(503, "PodReadFailed", f"could not read {caller}: {e.status} {e.reason}") from None
        meta = pod.get("metadata") or {}
        if meta.get("uid") != caller.pod_uid:
            raise Refusal(403, "PodNotFound", f"{caller} was replaced by another pod of the same name")
        annotation = str((meta.get("annotations") or {}).get(SECRETS_ANNOTATION) or "")
        names = frozenset(n.strip() for n in annotation.split(",") if n.strip())
        if len(self._cache) > 20000:
            self._cache = {k: v for k, v in self._cache.items() if v[1] > now}
        self._cache[caller.pod_uid] = (names, now + self.ttl)
        return names


def authorize(
    caller: Caller, requested: Iterable[str], named: frozenset[str], index: ObjectIndex
) -> list[ObjectRef]:
    """The ExternalSecrets `caller` may stream, or the first refusal."""
    refs = []
    wanted = sorted(set(requested))
    if not wanted:
        raise Refusal(400, "NothingRequested", "name the ExternalSecrets to stream: ?secrets=a,b")
    for name in wanted:
        if name not in named:
            raise Refusal(
                403,
                "NotNamed",
                f"{caller} does not name ExternalSecret {name!r} in its {SECRETS_ANNOTATION} annotation",
            )
        ref = ObjectRef(caller.namespace, name)
        es = index.external_secret(ref)
        if es is None:
            raise Refusal(
                404, "NotFound", f"there is no ExternalSecret {name!r} in namespace {caller.namespace}"
            )
        if es.target is None or es.target.delivery != "Direct":
            raise Refusal(
                403,
                "NotDirect",
                f"ExternalSecret {caller.namespace}/{name} uses Secret delivery: mount its Secret instead",
            )
        refs.append(ref)
    return refs
