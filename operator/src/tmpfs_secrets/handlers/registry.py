"""The kopf registry every handler of the operator registers into, and the operator's login.

An explicit registry (rather than kopf's global default) keeps importing this package free of
side effects on other kopf users, e.g. tests that embed their own operator. An explicit registry
has no default login: kopf connects with what the operator's own client uses (`kube.kubeconfig`:
$KUBECONFIG, ~/.kube/config, or the pod's ServiceAccount), so both reach the same cluster as the
same user, and kopf needs no client library to log in.
"""

from __future__ import annotations

from typing import Any

import kopf

from tmpfs_secrets.handlers.state import runtime
from tmpfs_secrets.vocabulary import GROUP, VERSION

__all__ = ["GROUP", "VERSION", "registry"]

registry = kopf.OperatorRegistry()


@kopf.on.login(registry=registry)
async def login(memo: Any, **_: Any) -> kopf.ConnectionInfo:
    """Called at start, and again when the API server refused kopf's token (a rotated one)."""
    rest = runtime(memo).kube.rest
    connection = rest.token.connection
    return kopf.ConnectionInfo(
        server=connection.server,
        ca_path=connection.ca_file,
        ca_data=connection.ca_data,
        insecure=connection.insecure,
        token=await rest.token.fresh(),
        certificate_path=connection.cert_file,
        certificate_data=connection.cert_data,
        private_key_path=connection.key_file,
        private_key_data=connection.key_data,
        default_namespace=connection.namespace,
        proxy_url=rest.proxy,
        expiration=rest.token.expiration,
    )
