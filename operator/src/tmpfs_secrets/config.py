"""Operator settings: one immutable value built by the CLI and handed to every layer.

It lives apart from the CLI and from kopf so the engine, the Kubernetes side and tests can build
settings without parsing arguments or importing kopf.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

LogFormat = Literal["text", "json"]


@dataclass(frozen=True)
class Settings:
    """What `tmpfs-secrets run` was asked to do."""

    namespaces: tuple[str, ...] = ()  # empty: every namespace
    workers: int = 8  # concurrent per-object handlers and concurrent Kubernetes writes
    aws_threads: int = 8  # size of the thread pool that runs boto3
    cache_ttl: float = 300.0  # seconds a fetched value stays reusable after its last user is gone
    backoff_cap: float = 600.0  # the longest retry delay of a failing key or a throttled group
    log_format: LogFormat = "text"
    liveness: str | None = None  # e.g. http://0.0.0.0:8080/healthz
    verbose: bool = False
    kubeconfig: str | None = None  # None: $KUBECONFIG, ~/.kube/config, then in-cluster
    failure_event_interval: float = 300.0  # seconds between SyncFailed events of one object
    # A SecretStore without auth and role would read AWS with the operator's own identity: only
    # when an admin allows it (ClusterSecretStores, which only admins create, always may).
    allow_operator_identity: bool = False
    min_refresh_interval: float = 10.0  # the smallest refreshInterval accepted (0, fetch once, aside)
    # Admission webhooks over HTTPS: enabled with a folder holding tls.crt and tls.key.
    webhook_cert_dir: str | None = None
    webhook_address: str = "0.0.0.0:9443"
    webhook_cert_reload: float = 2.0  # seconds between checks of the certificate files
    # Plain-HTTP probes: /healthz (liveness), /readyz (readiness), /metrics. None: not served.
    health_address: str | None = None
    stuck_after: float = 60.0  # liveness fails when a refresh is overdue by this many seconds
    # Leader election (several replicas): only the holder of this Lease refreshes and writes.
    leader_election: bool = False
    lease_namespace: str = ""  # default: the pod's namespace
    lease_name: str = "tmpfs-secrets-leader"
    identity: str = ""  # default: the pod's name (its hostname)
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    # Direct delivery: the HTTPS address agents stream from (None: not served), with the
    # webhooks' certificate (the same Service names the operator).
    direct_address: str | None = None
    direct_url: str | None = None  # how agents reach it: https://<service>.<namespace>.svc:<port>
    agent_image: str | None = None  # the image of injected agents (the operator's own)
    direct_status_delay: float = 1.0  # seconds acknowledgements are gathered into one status write

    @property
    def clusterwide(self) -> bool:
        return not self.namespaces

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError("workers must be at least 1")
        if self.aws_threads < 1:
            raise ValueError("aws_threads must be at least 1")
        if self.cache_ttl < 0:
            raise ValueError("cache_ttl must not be negative")
        if self.min_refresh_interval < 0:
            raise ValueError("min_refresh_interval must not be negative")
        if self.stuck_after <= 0:
            raise ValueError("stuck_after must be positive")
        if self.backoff_cap <= 0:
            raise ValueError("backoff_cap must be positive")
        if self.log_format not in ("text", "json"):
            raise ValueError("log_format must be 'text' or 'json'")
        if self.leader_election and not self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError(
                "leader election needs --retry-period < --renew-deadline < --lease-duration, got "
                f"{self.retry_period:g} / {self.renew_deadline:g} / {self.lease_duration:g}"
            )
