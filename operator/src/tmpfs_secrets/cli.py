"""Command line entry point: `tmpfs-secrets` and its subcommands."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

from tmpfs_secrets import __version__
from tmpfs_secrets.config import Settings


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _seconds(text: str) -> float:
    value = float(text.rstrip("s"))
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tmpfs-secrets",
        description=(
            "Sync AWS Secrets Manager and SSM Parameter Store values into Kubernetes, "
            "delivered to pods as in-memory files that change in place on rotation."
        ),
    )
    parser.add_argument("--version", action="version", version=f"tmpfs-secrets {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="run the operator",
        description=(
            "Run the operator: watch SecretStores, ClusterSecretStores and ExternalSecrets, fetch "
            "their values from AWS and write the target Secrets. It talks to the cluster of "
            "$KUBECONFIG (or ~/.kube/config), or, inside a pod, to its own cluster with its "
            "ServiceAccount. AWS credentials come from botocore's chain (IRSA, EKS Pod Identity, "
            "environment) unless a store says otherwise."
        ),
    )
    run.add_argument(
        "--namespace",
        "-n",
        dest="namespaces",
        action="append",
        default=[],
        metavar="NAME",
        help="watch ExternalSecrets and SecretStores only in this namespace; repeat for several "
        "(default: all namespaces; ClusterSecretStores are always watched)",
    )
    run.add_argument(
        "--workers",
        type=_positive_int,
        default=Settings.workers,
        help="how many Kubernetes writes (Secrets, status, events) may run at once (default: %(default)s)",
    )
    run.add_argument(
        "--aws-threads",
        type=_positive_int,
        default=Settings.aws_threads,
        help="size of the thread pool that runs AWS calls, and how many AWS batches may run at once "
        "(default: %(default)s)",
    )
    run.add_argument(
        "--cache-ttl",
        type=_seconds,
        default=Settings.cache_ttl,
        metavar="SECONDS",
        help="how long a fetched value stays in memory for reuse after its last ExternalSecret stops "
        "using it (at least twice its refresh interval); every ExternalSecret still gets values no "
        "older than its own refreshInterval (default: %(default)s)",
    )
    run.add_argument(
        "--backoff-cap",
        type=_seconds,
        default=Settings.backoff_cap,
        metavar="SECONDS",
        help="the longest wait before retrying a key that keeps failing, or a store whose calls AWS "
        "throttles or fails; backoff grows past the refresh interval up to this (default: %(default)s)",
    )
    run.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=Settings.log_format,
        help="log lines as text for people or JSON objects for log pipelines (default: %(default)s)",
    )
    run.add_argument(
        "--liveness",
        metavar="URL",
        default=None,
        help="serve a liveness probe at this URL, e.g. http://0.0.0.0:8080/healthz (default: none)",
    )
    run.add_argument(
        "--allow-operator-identity-for-secretstores",
        dest="allow_operator_identity",
        action="store_true",
        help="let a SecretStore without auth and role read AWS with the operator's own identity "
        "(IRSA, Pod Identity); off by default, because any namespace that may create a SecretStore "
        "could then read whatever the operator may read. ClusterSecretStores always may",
    )
    run.add_argument(
        "--min-refresh-interval",
        type=_seconds,
        default=Settings.min_refresh_interval,
        metavar="SECONDS",
        help="the smallest refreshInterval an ExternalSecret may ask for; 0 (fetch once) is always "
        "allowed (default: %(default)s)",
    )
    run.add_argument(
        "--webhook-cert-dir",
        metavar="DIR",
        default=None,
        help="serve the admission webhooks (pod injection, ExternalSecret and store validation) over "
        "HTTPS with DIR/tls.crt and DIR/tls.key, reloaded when they change (default: no webhooks)",
    )
    run.add_argument(
        "--webhook-address",
        metavar="HOST:PORT",
        default=Settings.webhook_address,
        help="where the webhooks listen (default: %(default)s)",
    )
    run.add_argument(
        "--health-address",
        metavar="HOST:PORT",
        default=None,
        help="serve /healthz (liveness: the refresh loop runs), /readyz (readiness: every store and "
        "ExternalSecret read, webhooks serving) and /metrics over HTTP here, e.g. 0.0.0.0:8081 "
        "(default: none)",
    )
    run.add_argument(
        "--stuck-after",
        type=_seconds,
        default=Settings.stuck_after,
        metavar="SECONDS",
        help="/healthz fails when a due refresh has not started for this long (default: %(default)s)",
    )
    run.add_argument(
        "--direct-address",
        metavar="HOST:PORT",
        default=None,
        help="serve Direct delivery agents over HTTPS here, e.g. 0.0.0.0:8443, with the certificate of "
        "--webhook-cert-dir (default: not served; Direct ExternalSecrets then report that no pod "
        "receives them)",
    )
    run.add_argument(
        "--direct-url",
        metavar="URL",
        default=None,
        help="the address injected agents dial, e.g. https://tmpfs-secrets-direct.tmpfs-secrets.svc:8443 "
        "(a Service in front of --direct-address; its certificate is --webhook-cert-dir's, its CA "
        "that folder's ca.crt)",
    )
    run.add_argument(
        "--agent-image",
        metavar="IMAGE",
        default=None,
        help="the image of the injected Direct delivery agent (the operator's own image); with "
        "--direct-url, pods that name a Direct ExternalSecret get the agent as a native sidecar",
    )
    run.add_argument("--verbose", "-v", action="store_true", help="debug logging, kopf's included")
    election = run.add_argument_group(
        "leader election",
        "With several replicas, only the holder of a coordination.k8s.io Lease refreshes values and "
        "writes to Kubernetes; the others keep their watches warm and take over when it stops.",
    )
    election.add_argument(
        "--leader-elect",
        action="store_true",
        help="elect a leader among replicas (default: off, one replica)",
    )
    election.add_argument(
        "--leader-election-namespace",
        default="",
        metavar="NAMESPACE",
        help="the Lease's namespace (default: $POD_NAMESPACE, or the pod's own namespace)",
    )
    election.add_argument(
        "--leader-election-lease",
        default=Settings.lease_name,
        metavar="NAME",
        help="the Lease's name (default: %(default)s)",
    )
    election.add_argument(
        "--leader-election-identity",
        default="",
        metavar="ID",
        help="this replica's name in the Lease (default: $POD_NAME, or the host name)",
    )
    election.add_argument(
        "--lease-duration",
        type=_seconds,
        default=Settings.lease_duration,
        metavar="SECONDS",
        help="how long a Lease holds without renewal; a follower takes over after it (default: %(default)s)",
    )
    election.add_argument(
        "--renew-deadline",
        type=_seconds,
        default=Settings.renew_deadline,
        metavar="SECONDS",
        help="the leader steps down when it could not renew for this long (default: %(default)s)",
    )
    election.add_argument(
        "--retry-period",
        type=_seconds,
        default=Settings.retry_period,
        metavar="SECONDS",
        help="how often to try to acquire or renew the Lease (default: %(default)s)",
    )

    agent = commands.add_parser(
        "agent",
        help="run the Direct delivery agent (the sidecar the webhook injects)",
        description=(
            "Receive the values of Direct ExternalSecrets from the operator over one HTTPS stream, "
            "authenticated with the pod's projected ServiceAccount token, and write them into "
            "memory-backed folders the way kubelet's atomic writer does. Keeps the files when the "
            "operator is unreachable and reconnects with backoff."
        ),
    )
    from tmpfs_secrets.agent.main import USAGE

    agent.epilog = USAGE
    agent.formatter_class = argparse.RawDescriptionHelpFormatter

    migrate = commands.add_parser(
        "migrate",
        help="convert External Secrets Operator manifests for AWS",
        description=(
            "Convert External Secrets Operator (external-secrets.io) SecretStores, "
            "ClusterSecretStores and ExternalSecrets for AWS into tmpfs-secrets manifests. The "
            "converted YAML goes to standard output; every field that could not be converted, or "
            "whose meaning differs, is listed on standard error. Other documents pass through "
            "unchanged. Exit status 1 if anything could not be converted."
        ),
    )
    migrate.add_argument(
        "files", nargs="*", metavar="FILE", help="YAML files (default or '-': standard input)"
    )
    policy = commands.add_parser(
        "iam-policy",
        help="print the least-privilege IAM policies for stores and ExternalSecrets",
        description=(
            "Print, as JSON, the IAM policy each AWS identity needs for the SecretStores, "
            "ClusterSecretStores and ExternalSecrets given (the operator's role, and every role a "
            "store assumes), resource ARNs included; on standard error, a forecast of AWS calls a "
            "month and their list-price cost at the ExternalSecrets' refresh intervals. For a "
            "cluster: kubectl get secretstores,clustersecretstores,externalsecrets -A -o yaml | "
            "tmpfs-secrets iam-policy -"
        ),
    )
    policy.add_argument(
        "files", nargs="*", metavar="FILE", help="YAML files (default or '-': standard input)"
    )
    policy.add_argument(
        "--account",
        default="*",
        metavar="ID",
        help="the AWS account id for the ARNs (default: *, any account)",
    )
    policy.add_argument(
        "--namespace",
        "-n",
        default="default",
        metavar="NAME",
        help="the namespace of SecretStores and ExternalSecrets that name none (default: %(default)s)",
    )
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    return Settings(
        namespaces=tuple(dict.fromkeys(args.namespaces)),
        workers=args.workers,
        aws_threads=args.aws_threads,
        cache_ttl=args.cache_ttl,
        backoff_cap=args.backoff_cap,
        log_format=args.log_format,
        liveness=args.liveness,
        verbose=args.verbose,
        allow_operator_identity=args.allow_operator_identity,
        min_refresh_interval=args.min_refresh_interval,
        webhook_cert_dir=args.webhook_cert_dir,
        webhook_address=args.webhook_address,
        health_address=args.health_address,
        stuck_after=args.stuck_after,
        leader_election=args.leader_elect,
        lease_namespace=args.leader_election_namespace,
        lease_name=args.leader_election_lease,
        identity=args.leader_election_identity,
        lease_duration=args.lease_duration,
        renew_deadline=args.renew_deadline,
        retry_period=args.retry_period,
        direct_address=args.direct_address,
        direct_url=args.direct_url,
        agent_image=args.agent_image,
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["agent"] and not set(argv[1:2]) & {"-h", "--help"}:
        # The agent parses its own few arguments: it runs in every pod and stays small.
        from tmpfs_secrets.agent.main import entry

        return entry(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "iam-policy":
        return print_iam_policy(args.files, args.account, args.namespace)
    if args.command == "run":
        from tmpfs_secrets.health import parse_address

        for flag, value in (
            ("--webhook-address", args.webhook_address),
            ("--health-address", args.health_address),
        ):
            try:
                if value is not None:
                    parse_address(value)
            except ValueError as e:
                parser.error(f"{flag}: {e}")
        if args.webhook_cert_dir is not None:
            missing = [
                f
                for f in ("tls.crt", "tls.key")
                if not os.path.isfile(os.path.join(args.webhook_cert_dir, f))
            ]
            if missing:
                parser.error(f"--webhook-cert-dir {args.webhook_cert_dir} has no {' or '.join(missing)}")
        return run_operator(settings_from(args))
    if args.command == "migrate":
        return migrate_files(args.files)

    parser.print_help()
    return 0


def run_operator(settings: Settings) -> int:
    from tmpfs_secrets import logs

    logs.configure(settings.log_format, verbose=settings.verbose)
    # Imported here: kopf and boto3 are heavy and not needed for --help.
    from tmpfs_secrets.handlers.run import run
    from tmpfs_secrets.kube.kubeconfig import KubeconfigError

    try:
        asyncio.run(run(settings))
    except KubeconfigError as e:
        print(f"tmpfs-secrets: cannot connect to Kubernetes: {e}", file=sys.stderr)
        return 2
    return 0


def migrate_files(files: Sequence[str]) -> int:
    import sys

    import yaml

    from tmpfs_secrets.migrate import migrate
    from tmpfs_secrets.vocabulary import API_VERSION

    documents: list[object] = []
    for name in files or ["-"]:
        if name == "-":
            documents += list(yaml.safe_load_all(sys.stdin))
        else:
            with open(name, encoding="utf-8") as stream:
                documents += list(yaml.safe_load_all(stream))
    result = migrate(documents)
    sys.stdout.write(yaml.safe_dump_all(result.documents, sort_keys=False, width=10000))
    for note in result.notes:
        print(note, file=sys.stderr)
    converted = sum(1 for d in result.documents if isinstance(d, dict) and d.get("apiVersion") == API_VERSION)
    print(
        f"converted {converted} object(s); {sum(n.dropped for n in result.notes)} field(s) not converted, "
        f"{sum(not n.dropped for n in result.notes)} to review",
        file=sys.stderr,
    )
    return 0 if result.complete else 1


def print_iam_policy(files: Sequence[str], account: str, namespace: str) -> int:
    import sys
    from pathlib import Path
    from typing import Any

    import yaml

    from tmpfs_secrets import iam

    docs: list[Any] = []
    for name in files or ["-"]:
        text = sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    policies, notes = iam.report(docs, account, namespace)
    sys.stdout.write(policies)
    sys.stderr.write(notes)
    return 0
