"""The kopf registry every handler of the operator registers into, and the operator's login.

An explicit registry (rather than kopf's global default) keeps importing this package free of
side effects on other kopf users, e.g. tests that embed their own operator. An explicit registry
has no default login, so the one kopf would pick is registered here: the pod's ServiceAccount
inside a cluster, $KUBECONFIG or ~/.kube/config outside.
"""

from __future__ import annotations

from typing import Any

import kopf

from tmpfs_secrets.vocabulary import GROUP, VERSION

__all__ = ["GROUP", "VERSION", "registry"]

registry = kopf.OperatorRegistry()


@kopf.on.login(registry=registry)
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    return kopf.login_via_client(**kwargs)
