"""`tmpfs-secrets iam-policy`: the least-privilege IAM policies for the stores and ExternalSecrets
given, and a forecast of their AWS calls and list-price cost.

It reads manifests (files, or `kubectl get ... -o yaml` on standard input: Lists are unpacked)
with the operator's own parsers, so what it names is what the operator will ask for. Each identity
gets its own policy: the operator's role (stores without `auth` and `role`), and every `role` a
store assumes (the operator's policy then allows `sts:AssumeRole` on it). Stores with
`auth.serviceAccountRef` or static keys use identities this command can't see; they are listed,
with the resources their policies need. The forecast counts calls the way the scheduler batches
them: per identity, service and region, Secrets Manager reads 20 secrets a call and Parameter
Store 10 names a call, once per refresh interval of each key (the shortest of its users).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tmpfs_secrets.api.external_secret import Extract, Find, parse_external_secret
from tmpfs_secrets.api.store import StoreSpec, parse_store
from tmpfs_secrets.errors import SpecError

SECONDS_PER_MONTH = 30 * 86400
# List prices (USD): Secrets Manager API calls; Parameter Store standard throughput is free,
# higher throughput costs the same per 10,000 calls.
PRICE_PER_10K = {"SecretsManager": 0.05, "ParameterStore": 0.0}
BATCH = {"SecretsManager": 20, "ParameterStore": 10}
OPERATOR = "the operator's role"


@dataclass
class Usage:
    """What one identity reads, per (service, region)."""

    keys: dict[tuple[str, str, str], float] = field(
        default_factory=dict
    )  # (service, region, key) -> interval
    paths: dict[tuple[str, str, str], float] = field(default_factory=dict)  # SSM find paths
    lists_secrets: set[str] = field(default_factory=set)  # regions where Secrets Manager find lists
    # (region, name prefix) of the secrets a Secrets Manager find reads ("" when it has no path)
    found_secrets: set[tuple[str, str]] = field(default_factory=set)
    # ("SecretsManager", region, name prefix) -> interval of the finds: a ListSecrets each time
    finds: dict[tuple[str, str, str], float] = field(default_factory=dict)
    roles: set[str] = field(default_factory=set)  # roles this identity assumes

    def read(
        self, table: dict[tuple[str, str, str], float], key: tuple[str, str, str], interval: float
    ) -> None:
        current = table.get(key)
        if (interval > 0 and (current is None or current == 0 or interval < current)) or current is None:
            table[key] = interval


def _documents(docs: Iterable[Mapping[str, Any]]) -> Iterable[Mapping[str, Any]]:
    for doc in docs:
        if not isinstance(doc, Mapping):
            continue
        if doc.get("kind") == "List" or str(doc.get("kind", "")).endswith("List"):
            yield from _documents(doc.get("items") or [])
        else:
            yield doc


def _in_namespace(doc: Mapping[str, Any], namespace: str) -> Mapping[str, Any]:
    """Manifests written for `kubectl apply -n` carry no namespace: give them the default one."""
    meta = doc.get("metadata") or {}
    if doc.get("kind") in ("SecretStore", "ExternalSecret") and not meta.get("namespace"):
        return {**doc, "metadata": {**meta, "namespace": namespace}}
    return doc


def usage(
    docs: Iterable[Mapping[str, Any]], namespace: str = "default"
) -> tuple[dict[str, Usage], list[str]]:
    """Reads per identity (OPERATOR or a role ARN), and problems found (objects skipped, and why)."""
    stores: dict[tuple[str, str, str], StoreSpec] = {}
    externals = []
    problems: list[str] = []
    for doc in (_in_namespace(d, namespace) for d in _documents(docs)):
        kind = doc.get("kind")
        meta = doc.get("metadata") or {}
        where = f"{kind} {meta.get('namespace', '')}/{meta.get('name', '')}".replace(" /", " ")
        try:
            if kind in ("SecretStore", "ClusterSecretStore"):
                spec = parse_store(doc, allow_operator_identity=True)
                stores[(spec.kind, spec.namespace or "", spec.name)] = spec
            elif kind == "ExternalSecret":
                externals.append(parse_external_secret(doc, min_refresh_interval=0))
        except SpecError as e:
            problems.append(f"{where}: skipped: {e.message}")
    out: dict[str, Usage] = {}
    for es in externals:
        ref = es.store_ref
        namespace = (es.namespace or "") if ref.kind == "SecretStore" else ""
        store = stores.get((ref.kind, namespace, ref.name))
        if store is None:
            problems.append(
                f"ExternalSecret {es.namespace}/{es.name}: its {ref.kind} {ref.name} is not given"
            )
            continue
        if store.auth is not None:
            who = (
                f"ServiceAccount {store.auth.service_account[0]}/{store.auth.service_account[1]}'s role"
                if store.auth.service_account
                else f"the static keys of {store.kind} {store.name}"
            )
        else:
            who = store.role or OPERATOR
        if store.role and store.auth is None:
            out.setdefault(OPERATOR, Usage()).roles.add(store.role)
        use = out.setdefault(who, Usage())
        interval = es.refresh_interval
        items = [*es.data_from, *es.data]
        for item in items:
            if isinstance(item, Find):
                if store.service == "ParameterStore" and item.path:
                    use.read(use.paths, (store.service, store.region, item.path), interval)
                else:
                    use.lists_secrets.add(store.region)
                    use.found_secrets.add((store.region, item.path or ""))
                    use.read(use.finds, ("SecretsManager", store.region, item.path or ""), interval)
            else:
                key = item.key if isinstance(item, Extract) else item.remote.key
                use.read(use.keys, (store.service, store.region, key), interval)
    return out, problems


def _secret_arn(region: str, account: str, key: str) -> str:
    if key.startswith("arn:"):
        return key
    # Secrets Manager appends "-" and 6 random characters to every secret's ARN.
    return f"arn:aws:secretsmanager:{region}:{account}:secret:{key}-??????"


def _parameter_arn(region: str, account: str, name: str, prefix: bool = False) -> str:
    if name.startswith("arn:"):
        return name
    path = name if name.startswith("/") else "/" + name
    if prefix:
        path = path.rstrip("/") + "/*"
    return f"arn:aws:ssm:{region}:{account}:parameter{path}"


def policy(use: Usage, account: str = "*") -> dict[str, Any]:
    """The least-privilege policy document for one identity's reads."""
    statements: list[dict[str, Any]] = []
    # What a find reads is known only when it runs: every secret whose name starts with its path.
    secrets = sorted(
        {_secret_arn(r, account, k) for (s, r, k) in use.keys if s == "SecretsManager"}
        | {f"arn:aws:secretsmanager:{r}:{account}:secret:{p}*" for (r, p) in use.found_secrets}
    )
    parameters = sorted({_parameter_arn(r, account, k) for (s, r, k) in use.keys if s == "ParameterStore"})
    # GetParametersByPath is authorized on the path itself; the parameters under it by the prefix.
    parameters += sorted({_parameter_arn(r, account, p.rstrip("/") or "/") for (_, r, p) in use.paths})
    parameters += sorted({_parameter_arn(r, account, p, prefix=True) for (_, r, p) in use.paths})
    regions = sorted({r for (_, r, _) in [*use.keys, *use.paths]} | use.lists_secrets)
    if secrets or use.lists_secrets:
        # BatchGetSecretValue is authorized on "*"; AWS then checks GetSecretValue on each secret.
        statements.append(
            {
                "Sid": "BatchReads",
                "Effect": "Allow",
                "Action": "secretsmanager:BatchGetSecretValue",
                "Resource": "*",
            }
        )
    if use.lists_secrets:
        statements.append(
            {"Sid": "FindSecrets", "Effect": "Allow", "Action": "secretsmanager:ListSecrets", "Resource": "*"}
        )
    if secrets:
        statements.append(
            {
                "Sid": "Secrets",
                "Effect": "Allow",
                "Action": ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
                "Resource": secrets,
            }
        )
    if parameters:
        statements.append(
            {
                "Sid": "Parameters",
                "Effect": "Allow",
                "Action": ["ssm:GetParameter", "ssm:GetParameters", "ssm:GetParametersByPath"],
                "Resource": sorted(set(parameters)),
            }
        )
    if regions:
        via = sorted(
            {
                f"{'secretsmanager' if s == 'SecretsManager' else 'ssm'}.{r}.amazonaws.com"
                for (s, r, _) in [*use.keys, *use.paths]
            }
            | {f"secretsmanager.{r}.amazonaws.com" for r in use.lists_secrets}
        )
        statements.append(
            {
                "Sid": "DecryptThroughTheseServices",
                "Effect": "Allow",
                "Action": "kms:Decrypt",
                "Resource": f"arn:aws:kms:*:{account}:key/*",
                "Condition": {"StringEquals": {"kms:ViaService": via}},
            }
        )
    if use.roles:
        statements.append(
            {
                "Sid": "StoreRoles",
                "Effect": "Allow",
                "Action": ["sts:AssumeRole", "sts:TagSession"],
                "Resource": sorted(use.roles),
            }
        )
    return {"Version": "2012-10-17", "Statement": statements}


@dataclass(frozen=True)
class Forecast:
    service: str
    region: str
    calls_per_month: int
    usd_per_month: float
    finds: bool = False  # Secrets Manager finds: plus the reads of what they find

    def plus(self, other: Forecast) -> Forecast:
        return Forecast(
            self.service,
            self.region,
            self.calls_per_month + other.calls_per_month,
            self.usd_per_month + other.usd_per_month,
            self.finds or other.finds,
        )


def forecast(use: Usage) -> list[Forecast]:
    """Calls per month per (service, region), batched as the scheduler batches them."""
    groups: dict[tuple[str, str], dict[float, int]] = {}
    for (service, region, _), interval in use.keys.items():
        if interval > 0:
            bucket = groups.setdefault((service, region), {})
            bucket[interval] = bucket.get(interval, 0) + 1
    out = []
    for (service, region), by_interval in sorted(groups.items()):
        calls = sum(
            math.ceil(n / BATCH[service]) * SECONDS_PER_MONTH / interval
            for interval, n in by_interval.items()
        )
        paths = [i for (s, r, _), i in use.paths.items() if (s, r) == (service, region) and i > 0]
        calls += sum(SECONDS_PER_MONTH / i for i in paths)
        out.append(Forecast(service, region, round(calls), calls / 10_000 * PRICE_PER_10K[service]))
    for (service, region, _), interval in use.paths.items():
        if interval > 0 and (service, region) not in groups:
            calls = SECONDS_PER_MONTH / interval
            out.append(Forecast(service, region, round(calls), calls / 10_000 * PRICE_PER_10K[service]))
    # A Secrets Manager find lists at each refresh (one page per 100 secrets; one is counted),
    # then reads what it found in batches; how many it finds is known only in AWS.
    for (service, region, _), interval in use.finds.items():
        if interval > 0:
            calls = SECONDS_PER_MONTH / interval
            out.append(
                Forecast(service, region, round(calls), calls / 10_000 * PRICE_PER_10K[service], finds=True)
            )
    merged: dict[tuple[str, str], Forecast] = {}
    for f in out:
        seen = merged.get((f.service, f.region))
        merged[(f.service, f.region)] = f if seen is None else seen.plus(f)
    return list(merged.values())


def report(
    docs: Iterable[Mapping[str, Any]], account: str = "*", namespace: str = "default"
) -> tuple[str, str]:
    """(policies as JSON for standard output, forecast and problems for standard error)."""
    uses, problems = usage(docs, namespace)
    policies = {who: policy(use, account) for who, use in sorted(uses.items())}
    lines = []
    for who, use in sorted(uses.items()):
        for f in forecast(use):
            more = " plus the reads of what its finds find" if f.finds else ""
            lines.append(
                f"{who}: {f.service} in {f.region}: about {f.calls_per_month:,} calls a month{more}, "
                f"${f.usd_per_month:,.2f} at list price"
            )
    lines.extend(problems)
    return json.dumps(policies, indent=2) + "\n", "\n".join(lines) + ("\n" if lines else "")
