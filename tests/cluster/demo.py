"""`make demo`: the whole story on one terminal, from nothing to a rotation a running pod sees in place.

It starts the local cluster in its network bubble (control plane and a real node) and moto as the
embedded AWS, seeds the shop's values (the original problem's `RDS_PASSWORD`,
`SUPABASE_SERVICE_ROLE_KEY` and connection settings), installs the operator with its Helm chart
from the image `make image` built (CRDs, RBAC, a restricted pod with IRSA against the emulated
STS, its admission webhooks behind the chart's Service; `--no-node`: the CRDs and
`tmpfs-secrets run` as a process),
applies `examples/`, shows the Secrets, starts a Deployment whose pods opt in to `shop-db` with a
label and an annotation (the webhook injects the volume) and print the password whenever its file
changes, rotates the password in AWS, and shows the same Secret change in place and the same
container print the new value. Then a second Deployment that reads `shop-config` only at start is
restarted once by `rotation.restartWorkloads` when a parameter changes. Then a third Deployment
gets the password with `target.delivery: Direct` (no Secret: an injected agent receives it from the
operator's memory) and prints the next rotation, with the time from the operator's fetch to the
file. Then it stops all it started. The values are fake, so the demo prints them; the
operator itself never logs a value, and the last step checks that.

Started outside a bubble it runs itself again inside one (`python -m tests.cluster.bubble`), which
also checks that nothing was left behind. `--no-node` runs the control-plane-only demo (no pod);
`--keep` keeps everything running until Ctrl-C, with the API server forwarded to a host port.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, TextIO

from tests.cluster import binaries, bubble, debian_image, forward, operator_image
from tests.cluster.aws import REGION, MotoServer
from tests.cluster.certs import CertificateAuthority
from tests.cluster.chart import Release, direct_values, local_values, merge
from tests.cluster.cluster import NODE_NAME, Cluster
from tests.cluster.operator import Operator, operator_env
from tests.cluster.webhook import OperatorWebhook, wait_injecting
from tmpfs_secrets.api.duration import parse_duration

REPO = Path(__file__).resolve().parents[2]
CRDS = REPO / "crds"
EXAMPLES = REPO / "examples"
STORES = ("secretstore-secretsmanager.yaml", "secretstore-parameterstore.yaml")
EXTERNAL_SECRETS = {
    "shop-db": "externalsecret-shop-db.yaml",
    "shop-config": "externalsecret-shop-config.yaml",
}
CRD_NAMES = tuple(
    f"{plural}.tmpfs-secrets.io" for plural in ("externalsecrets", "secretstores", "clustersecretstores")
)
# Values too plain to search for: "shop" is also the namespace's name, so it is everywhere.
PLAIN = ("RDS_PORT", "RDS_USER", "RDS_DB")
PARAMETERS = ("RDS_HOST", "RDS_PORT", "RDS_USER", "RDS_DB", "COGNITO_CLIENT_ID", "COGNITO_USER_POOL_ID")
STEPS = 8  # without a node
POD_STEPS = 12  # with the pods: the app's start, its view of the rotation, a restart, Direct
POD = "shop-app"  # the Deployment; its pods are named by kube-controller-manager
WORKER = "shop-worker"
CONFIG_MOUNT = "/var/run/secrets/tmpfs-secrets.io/shop-config"
# The worker reads its settings once, at start, as many programs do.
WORKER_SCRIPT = f'echo "RDS_HOST=$(cat {CONFIG_MOUNT}/RDS_HOST)"; exec sleep 3600'
MOUNT = "/var/run/secrets/tmpfs-secrets.io/shop-db"
DIRECT = "shop-db-direct"  # the same password with target.delivery: Direct
DIRECT_APP = "shop-app-direct"
DIRECT_MOUNT = f"/var/run/secrets/tmpfs-secrets.io/{DIRECT}"
SYNC_FREQUENCY = "10s"


def watch_script(mount: str, every: str) -> str:
    """The pod's program: its mount as its own /proc/mounts shows it, then the password whenever
    the file changes (checked every `every` seconds), as an app re-reading its file would."""
    return f"""dir={mount}
while read -r dev mnt type opts rest; do
  if [ "$mnt" = "$dir" ]; then echo "mount $mnt type $type (${{opts%%,*}})"; fi
done < /proc/mounts
last=
while true; do
  now=$(cat "$dir/RDS_PASSWORD")
  if [ "$now" != "$last" ]; then echo "RDS_PASSWORD=$now"; last=$now; fi
  sleep {every}
done
"""


POD_SCRIPT = watch_script(MOUNT, "1")


class KubeApi(Protocol):
    """What the demo's steps need of a cluster: its control plane has it."""

    kubeconfig: Path
    ca: CertificateAuthority

    def env(self) -> dict[str, str]: ...

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> Any: ...


def start_cluster(with_node: bool, sync_frequency: str) -> Cluster:
    """A started cluster for the demo: the bubble's control plane, with a real node unless told not to."""
    return Cluster(with_node=with_node, sync_frequency=sync_frequency).start()


def with_interval(path: Path, interval: str) -> str:
    """An example's YAML with its `refreshInterval` replaced, so a rotation shows within seconds."""
    lines = [
        f"  refreshInterval: {interval}" if line.startswith("  refreshInterval:") else line
        for line in path.read_text().splitlines()
    ]
    return "\n".join(lines) + "\n"


def shop_values() -> dict[str, str]:
    """Fake but realistic values; a random part in each, so the log check can't pass by luck."""
    tag = secrets.token_hex(3)
    return {
        "RDS_PASSWORD": f"demo-db-password-{tag}",
        "SUPABASE_SERVICE_ROLE_KEY": f"demo-supabase-service-role-{tag}",
        "RDS_HOST": f"shop-{tag}.cluster-demo.{REGION}.rds.amazonaws.com",
        "RDS_PORT": "5432",
        "RDS_USER": "shop_app",
        "RDS_DB": "shop",
        "COGNITO_CLIENT_ID": f"democlient{tag}",
        "COGNITO_USER_POOL_ID": f"{REGION}_demo{tag}",
    }


def _restricted(name: str, image: str, script: str) -> dict[str, Any]:
    """A pod spec under the restricted Pod Security profile running `script` with busybox."""
    return {
        "terminationGracePeriodSeconds": 1,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 65534,
            "runAsGroup": 65534,
            # The injected files are mode 0440 (spec.mount.defaultMode): group-readable via fsGroup.
            "fsGroup": 65534,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": name,
                "image": image,
                "imagePullPolicy": "Never",
                "command": ["sh", "-c", script],
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "readOnlyRootFilesystem": True,
                    "capabilities": {"drop": ["ALL"]},
                },
            }
        ],
    }


def deployment_manifest(name: str, image: str, secrets: str, script: str) -> dict[str, Any]:
    """A Deployment whose pods opt in to `secrets` (label and annotation): no volume is written
    here, the webhook adds a read-only Secret volume (never subPath) per ExternalSecret."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {
                    "labels": {"app": name, "tmpfs-secrets.io/inject": "true"},
                    "annotations": {"tmpfs-secrets.io/secrets": secrets},
                },
                "spec": _restricted("app", image, script),
            },
        },
    }


def pod_manifest(image: str) -> dict[str, Any]:
    """The shop's app: a Deployment whose pods ask for `shop-db`."""
    return deployment_manifest(POD, image, "shop-db", POD_SCRIPT)


@dataclass
class SecretView:
    uid: str
    resource_version: str
    data: dict[str, str]


@dataclass
class LogLine:
    """One line the pod printed, with the time its container runtime stamped on it."""

    at: datetime
    text: str

    @classmethod
    def parse(cls, line: str) -> LogLine:
        stamp, _, text = line.partition(" ")
        return cls(datetime.fromisoformat(stamp), text)


@dataclass
class PodView:
    """What the pod showed: its mount, the values it printed, and that it was never restarted."""

    name: str
    mount: str
    before: LogLine
    after: LogLine
    container_before: str
    container_after: str
    restart_count: int
    seconds_to_file: float


@dataclass
class RestartView:
    """What the restart step showed: the worker's pods and what each printed at its start."""

    pod_before: str
    pod_after: str
    printed_before: str
    printed_after: str
    generation_before: int
    generation_after: int
    events: list[str]


@dataclass
class DirectView:
    """What the Direct step showed: one pod, its agent, and a rotation through the operator's memory."""

    pod: str
    printed_before: str
    printed_after: str
    rotated: str
    fetch_to_file: float  # the operator's last AWS read before the agent wrote -> the agent's write
    rotation_to_print: float
    restart_count: int
    secret_exists: bool
    status: dict[str, Any]


@dataclass
class Outcome:
    """What the demo showed, for its test to check."""

    values: dict[str, str]
    rotated_password: str
    before: SecretView
    after: SecretView
    rotated_event: str
    rotation_seconds: float
    leaked: list[str]
    pod: PodView | None = None
    restart: RestartView | None = None
    direct: DirectView | None = None


@dataclass
class Steps:
    """Numbered step lines with the time each took."""

    out: TextIO
    total: int = STEPS
    number: int = 0
    started: float = field(default_factory=time.monotonic)

    def begin(self, title: str) -> None:
        self.number += 1
        self.started = time.monotonic()
        self.out.write(f"\n[{self.number}/{self.total}] {title}\n")
        self.out.flush()

    def done(self, what: str = "done") -> None:
        self.say(f"{what} ({time.monotonic() - self.started:.1f}s)")

    def say(self, text: str = "") -> None:
        for line in text.splitlines() or [""]:
            self.out.write(f"      {line}\n")
        self.out.flush()


class Indented(io.TextIOBase):
    """Lines written to it go to `steps` indented, so the cluster's progress reads as part of step 1."""

    def __init__(self, steps: Steps) -> None:
        self.steps = steps
        self.pending = ""

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            self.steps.say(line)
        return len(text)


@dataclass
class Demo:
    """Steps 2 onwards on a started cluster and a started moto; step 1 is starting the cluster.

    With an `image` (the node's busybox) the demo also runs the shop's pod and follows the
    rotation into its file; without one it stops at the Secret.
    """

    cluster: KubeApi
    aws: MotoServer
    workdir: Path
    namespace: str = "shop"
    interval: str = "10s"
    out: TextIO = sys.stdout
    steps: Steps | None = None
    operator: Operator | None = None
    image: str | None = None
    sync_frequency: str = SYNC_FREQUENCY
    hook: OperatorWebhook | None = None
    # With pods: the operator is installed with the chart; its image goes into this node.
    import_image: Any = None  # Callable[[Path], None]
    pod_aws: MotoServer | None = None  # where pods reach the emulated AWS (default: aws)
    release: Release | None = None
    pod_name: str = ""
    rotated_at: float = 0.0  # wall clock, comparable with the runtime's log timestamps
    secret_seconds: float = 0.0

    @property
    def total(self) -> int:
        return POD_STEPS if self.image else STEPS

    def run(self) -> Outcome:
        steps = self.steps or Steps(self.out, total=self.total)
        self.steps = steps
        values = self.seed(steps)
        self.install_crds(steps)
        self.start_operator(steps)
        self.apply_examples(steps)
        before = self.show_secrets(steps)
        started = self.start_pod(steps, values["RDS_PASSWORD"]) if self.image else None
        rotated, after, event, seconds = self.rotate(steps, before)
        pod = self.follow_pod(steps, rotated, *started) if started else None
        restart = self.restart_workloads(steps, values) if self.image else None
        direct = self.direct_delivery(steps, rotated) if self.image else None
        searchable = {k: v for k, v in values.items() if k not in PLAIN}
        rotated_values = {"RDS_PASSWORD (rotated)": rotated}
        if restart is not None:
            rotated_values["RDS_HOST (rotated)"] = restart.printed_after.partition("=")[2]
        if direct is not None:
            rotated_values["RDS_PASSWORD (rotated again, Direct)"] = direct.rotated
        leaked = self.check_log(steps, {**searchable, **rotated_values})
        return Outcome(values, rotated, before, after, event, seconds, leaked, pod, restart, direct)

    def stop(self) -> None:
        if self.release is not None:
            self.release.helm(
                "uninstall", self.release.name, "-n", self.release.namespace, "--ignore-not-found"
            )
        if self.hook is not None:
            self.hook.uninstall()  # cluster-scoped: never leave it behind
        if self.operator is not None:
            self.operator.stop()

    # --- steps -----------------------------------------------------------------------------------

    def seed(self, steps: Steps) -> dict[str, str]:
        steps.begin(f"Seeding the emulated AWS (moto at {self.aws.endpoint}) with the shop's values")
        values = shop_values()
        sm, ssm = self.aws.client("secretsmanager"), self.aws.client("ssm")
        sm.create_secret(Name="prod/shop/db", SecretString=json.dumps({"password": values["RDS_PASSWORD"]}))
        sm.create_secret(
            Name="prod/shop/supabase",
            SecretString=json.dumps({"service_role_key": values["SUPABASE_SERVICE_ROLE_KEY"]}),
        )
        for key in PARAMETERS:
            ssm.put_parameter(Name=f"/shop/prod/{key}", Value=values[key], Type="String")
        steps.say(f"Secrets Manager  prod/shop/db        {{'password': '{values['RDS_PASSWORD']}'}}")
        steps.say(
            "Secrets Manager  prod/shop/supabase  "
            f"{{'service_role_key': '{values['SUPABASE_SERVICE_ROLE_KEY']}'}}"
        )
        for key in PARAMETERS:
            steps.say(f"Parameter Store  /shop/prod/{key:<21} {values[key]}")
        steps.done("seeded 2 secrets and 6 parameters")
        return values

    def install_crds(self, steps: Steps) -> None:
        if self.image:
            self.install_chart(steps)
            return
        steps.begin("Installing the CRDs (kubectl apply -f crds/)")
        steps.say(self.cluster.kubectl("apply", "--server-side", "-f", str(CRDS)).stdout.strip())
        self.cluster.kubectl(
            "wait", "--for=condition=Established", "--timeout=60s", *(f"crd/{n}" for n in CRD_NAMES)
        )
        steps.done("established")

    def install_chart(self, steps: Steps) -> None:
        built = debian_image.require(operator_image.recipe())
        steps.begin(
            "Installing the operator: helm install tmpfs-secrets charts/tmpfs-secrets -n tmpfs-secrets "
            f"(image {built.image})"
        )
        started = time.monotonic()
        self.import_image(built.archive)
        steps.say(f"imported {built.archive.name} into the node's containerd (nothing is pulled)")
        existing = self.cluster.kubectl("get", "namespace", self.namespace, check=False)
        if existing.returncode != 0:
            self.cluster.kubectl("create", "namespace", self.namespace)
        values = merge(
            merge(
                local_values(built.image, (self.pod_aws or self.aws).endpoint), direct_values(self.cluster)
            ),
            {
                "operator": {
                    "watchNamespaces": [self.namespace],
                    # examples/ use the operator's identity from SecretStores (one tenant here).
                    "allowOperatorIdentityForSecretStores": True,
                    "minRefreshInterval": 1,
                    "logFormat": "text",
                }
            },
        )
        self.release = Release(self.cluster, "tmpfs-secrets", "tmpfs-secrets", values)
        self.cluster.kubectl("create", "namespace", "tmpfs-secrets", check=False)
        self.cluster.kubectl(
            "label",
            "namespace",
            "tmpfs-secrets",
            "--overwrite",
            "pod-security.kubernetes.io/enforce=restricted",
        )
        self.release.adopt_crds(CRD_NAMES)
        self.release.install()
        (pod,) = self.release.ready_pods()
        steps.say(f"CRDs, RBAC (Roles in {self.namespace} only), webhooks; pod {pod} Ready in namespace")
        steps.say("tmpfs-secrets (Pod Security: restricted) as its ServiceAccount, with IRSA: a projected")
        steps.say("token exchanged with the emulated STS (AssumeRoleWithWebIdentity); no AWS key in the pod")
        steps.done(f"installed in {time.monotonic() - started:.0f}s")

    def start_operator(self, steps: Steps) -> None:
        if self.release is not None:
            steps.begin("Waiting for the operator's webhooks behind the chart's Service")
            wait_injecting(self.cluster, self.namespace)
            steps.say(
                'MutatingWebhookConfiguration: pods labelled tmpfs-secrets.io/inject: "true", '
                "failurePolicy Fail;"
            )
            steps.say("ValidatingWebhookConfiguration: ExternalSecrets and stores")
            steps.done("serving")
            return
        args = ["--namespace", self.namespace]
        if self.image:
            # Pods run: the API server can call the operator's webhooks through a Service.
            self.hook = OperatorWebhook.create(self.cluster, self.workdir)
            args = [*self.hook.operator_args(), *args]
        steps.begin(f"Starting the operator: tmpfs-secrets run {' '.join(args)}")
        existing = self.cluster.kubectl("get", "namespace", self.namespace, check=False)
        if existing.returncode != 0:
            self.cluster.kubectl("create", "namespace", self.namespace)
        self.operator = Operator(
            env=operator_env(self.cluster, self.aws),
            log=self.workdir / "operator.log",
            args=args,
            log_format="text",
        ).start()
        steps.say(f"pid {self.operator.pid}, log {self.operator.log}")
        if self.hook is not None:
            self.hook.install()
            self.hook.wait_effective(self.namespace)
            steps.say(
                f"webhooks on port {self.hook.port}, reached through service/tmpfs-secrets-webhook "
                "in namespace tmpfs-secrets (an EndpointSlice to the node address)"
            )
            steps.say(
                'MutatingWebhookConfiguration: pods labelled tmpfs-secrets.io/inject: "true", '
                "failurePolicy Fail;"
            )
            steps.say("ValidatingWebhookConfiguration: ExternalSecrets and stores")
        steps.done("running")

    def apply_examples(self, steps: Steps) -> None:
        steps.begin(
            f"Applying examples/ into namespace {self.namespace} (refreshInterval patched to {self.interval})"
        )
        for name in STORES:
            steps.say(self._apply(EXAMPLES / name))
        for name in EXTERNAL_SECRETS.values():
            steps.say(self._apply(with_interval(EXAMPLES / name, self.interval)))
        self.cluster.kubectl(
            "wait", "--for=condition=Ready", "--timeout=60s", "-n", self.namespace,
            *(f"externalsecrets.tmpfs-secrets.io/{n}" for n in EXTERNAL_SECRETS),
        )  # fmt: skip
        steps.say("$ kubectl get tss,tes -n " + self.namespace)
        steps.say(self.cluster.kubectl("get", "tss,tes", "-n", self.namespace).stdout.rstrip())
        steps.done("both ExternalSecrets Ready")

    def show_secrets(self, steps: Steps) -> SecretView:
        steps.begin("The Secrets the operator wrote (values decoded; they are the demo's fake values)")
        views = {name: self._secret(name) for name in EXTERNAL_SECRETS}
        for name, view in views.items():
            steps.say(f"secret/{name}  uid {view.uid}  resourceVersion {view.resource_version}")
            for key, value in sorted(view.data.items()):
                steps.say(f"  {key:<26} {value}")
        steps.say(
            "Pods mount them as Secret volumes: kubelet keeps those in tmpfs and updates them in place."
        )
        steps.done()
        return views["shop-db"]

    def start_pod(self, steps: Steps, password: str) -> tuple[str, LogLine]:
        """Start the shop's pod and wait until it printed the current password; its container's id."""
        assert self.image is not None
        steps.begin(
            f"Starting deployment/{POD}: its pods opt in to shop-db, the webhook mounts it at {MOUNT}"
        )
        self.cluster.kubectl(
            "label",
            "--overwrite",
            "namespace",
            self.namespace,
            "pod-security.kubernetes.io/enforce=restricted",
        )
        steps.say(f"namespace {self.namespace} enforces the restricted Pod Security profile")
        steps.say(f"image {self.image} (busybox); runAsNonRoot (uid 65534), capabilities drop ALL,")
        steps.say("read-only root filesystem, seccomp RuntimeDefault; the template has no volume at all:")
        steps.say(
            '  labels: {tmpfs-secrets.io/inject: "true"}  annotations: {tmpfs-secrets.io/secrets: shop-db}'
        )
        steps.say("it prints its mount from /proc/mounts, then RDS_PASSWORD whenever the file changes")
        self._apply(json.dumps(pod_manifest(self.image)))
        self.pod_name = self._ready_pod(POD)
        pod = self._pod()
        status = pod["status"]["containerStatuses"][0]
        steps.say(
            f"pod/{self.pod_name} (made by kube-controller-manager) {pod['status']['phase']} on node "
            f"{pod['spec']['nodeName']}, restartCount {status['restartCount']}; the webhook added:"
        )
        volume = next(v for v in pod["spec"]["volumes"] if v["name"].startswith("tmpfs-secrets-"))
        mount = next(m for m in pod["spec"]["containers"][0]["volumeMounts"] if m["name"] == volume["name"])
        steps.say(f"  volume {json.dumps(volume)}")
        steps.say(f"  mount  {json.dumps(mount)}")
        expected = f"RDS_PASSWORD={password}"
        lines = self._wait(
            "the pod to print the password",
            lambda: (found := self._logs()) and any(line.text == expected for line in found) and found,
            timeout=60,
        )
        steps.say(f"$ kubectl logs {self.pod_name} --timestamps")
        for line in lines:
            steps.say(f"{line.at:%H:%M:%S.%f}  {line.text}")
        steps.done("the pod reads the value from its tmpfs file")
        return str(status["containerID"]), next(line for line in lines if line.text == expected)

    def rotate(self, steps: Steps, before: SecretView) -> tuple[str, SecretView, str, float]:
        steps.begin("Rotating RDS_PASSWORD in AWS Secrets Manager (put-secret-value on prod/shop/db)")
        new = f"demo-db-password-rotated-{secrets.token_hex(3)}"
        self.rotated_at = time.time()
        started = time.monotonic()
        self.aws.client("secretsmanager").put_secret_value(
            SecretId="prod/shop/db", SecretString=json.dumps({"password": new})
        )
        steps.say(f"new value in AWS: {new}; nothing else is touched, the operator's refresh finds it")
        after = self._wait(
            f"secret/shop-db to carry the new password (refreshInterval {self.interval})",
            lambda: (v := self._secret("shop-db")).data.get("RDS_PASSWORD") == new and v,
            timeout=120,
        )
        seconds = time.monotonic() - started
        self.secret_seconds = seconds
        steps.say(f"secret/shop-db changed {seconds:.1f}s after the rotation:")
        same = "same uid: updated in place" if after.uid == before.uid else "NEW uid: it was recreated"
        steps.say(f"  uid              {before.uid} -> {after.uid}  ({same})")
        steps.say(f"  resourceVersion  {before.resource_version} -> {after.resource_version}")
        steps.say(f"  RDS_PASSWORD     {before.data['RDS_PASSWORD']} -> {after.data['RDS_PASSWORD']}")
        steps.say(
            "  SUPABASE_SERVICE_ROLE_KEY unchanged: "
            f"{after.data['SUPABASE_SERVICE_ROLE_KEY'] == before.data['SUPABASE_SERVICE_ROLE_KEY']}"
        )
        event = self._wait("the Rotated event", lambda: self._event("shop-db", "Rotated"), timeout=60)
        steps.say(f"event on externalsecret/shop-db: Rotated  {event}")
        steps.done("rotated in place")
        return new, after, event, seconds

    def follow_pod(self, steps: Steps, rotated: str, container: str, before: LogLine) -> PodView:
        steps.begin(
            f"Waiting for pod/{self.pod_name} to print the new value "
            f"(kubelet syncFrequency {self.sync_frequency})"
        )
        steps.say("kubelet rewrites a Secret volume at the pod's next sync; the container keeps running")
        expected = f"RDS_PASSWORD={rotated}"
        # Bounded by two kubelet syncs and two refreshes, with room for a slow machine.
        timeout = 2 * parse_duration(self.sync_frequency) + 2 * parse_duration(self.interval) + 60
        lines = self._wait(
            "the pod to print the rotated password",
            lambda: (found := self._logs()) and any(line.text == expected for line in found) and found,
            timeout=timeout,
        )
        after = next(line for line in lines if line.text == expected)
        pod = self._pod()
        status = pod["status"]["containerStatuses"][0]
        mount = next((line.text for line in lines if line.text.startswith("mount ")), "")
        steps.say(f"$ kubectl logs {self.pod_name} --timestamps")
        for line in lines:
            steps.say(f"{line.at:%H:%M:%S.%f}  {line.text}")
        to_file = after.at.timestamp() - self.rotated_at
        same = "same container" if status["containerID"] == container else "a NEW container"
        steps.say(
            f"rotation in AWS -> Secret {self.secret_seconds:.1f}s, -> printed by the pod {to_file:.1f}s "
            f"(refreshInterval {self.interval}, kubelet syncFrequency {self.sync_frequency})"
        )
        steps.say(f"restartCount {status['restartCount']}, {same} ({str(status['containerID'])[:25]}...)")
        steps.done("rotated in the running pod, no restart")
        return PodView(
            self.pod_name,
            mount,
            before,
            after,
            container,
            str(status["containerID"]),
            int(status["restartCount"]),
            to_file,
        )

    def restart_workloads(self, steps: Steps, values: Mapping[str, str]) -> RestartView:
        assert self.image is not None
        steps.begin(f"rotation.restartWorkloads: deployment/{WORKER} reads shop-config only at start")
        self.cluster.kubectl(
            "patch", "-n", self.namespace, "externalsecrets.tmpfs-secrets.io", "shop-config",
            "--type=merge", "-p", '{"spec": {"rotation": {"restartWorkloads": true}}}',
        )  # fmt: skip
        steps.say(
            "$ kubectl patch externalsecret shop-config --type=merge "
            '-p \'{"spec": {"rotation": {"restartWorkloads": true}}}\''
        )
        self._apply(json.dumps(deployment_manifest(WORKER, self.image, "shop-config", WORKER_SCRIPT)))
        first = self._ready_pod(WORKER)
        printed_before = self._wait(f"{first} to print", lambda: self._first_line(first), timeout=60)
        generation_before = self._generation(WORKER)
        steps.say(
            f"pod/{first} printed at start: {printed_before}  (deployment generation {generation_before})"
        )

        new_host = f"shop-moved-{secrets.token_hex(3)}.cluster-demo.{REGION}.rds.amazonaws.com"
        self.aws.client("ssm").put_parameter(
            Name="/shop/prod/RDS_HOST", Value=new_host, Type="String", Overwrite=True
        )
        steps.say(f"AWS: /shop/prod/RDS_HOST {values['RDS_HOST']} -> {new_host}")
        event = self._wait(
            "the WorkloadsRestarted event", lambda: self._event("shop-config", "WorkloadsRestarted"), 120
        )
        steps.say(f"event on externalsecret/shop-config: WorkloadsRestarted  {event}")
        second = self._wait(
            f"a new pod of {WORKER}",
            lambda: (name := self._ready_pod(WORKER, wait=False)) != first and name,
            180,
        )
        printed_after = self._wait(f"{second} to print", lambda: self._first_line(second), timeout=60)
        steps.say(f"pod/{second} printed at start: {printed_after}")
        # A few more refreshes of the same content restart nothing.
        seen = len(self.aws.calls())
        self._wait("three more AWS calls (refreshes)", lambda: len(self.aws.calls()) >= seen + 3, 120)
        generation_after = self._generation(WORKER)
        events = self._events("shop-config", "WorkloadsRestarted")
        steps.say(
            f"deployment generation {generation_before} -> {generation_after}; "
            f"{len(events)} WorkloadsRestarted event after further refreshes of the same content"
        )
        steps.done("restarted once, the new pod read the new value")
        return RestartView(
            first, str(second), printed_before, printed_after, generation_before, generation_after, events
        )

    def direct_delivery(self, steps: Steps, password: str) -> DirectView:
        assert self.image is not None
        steps.begin(
            f"target.delivery: Direct: deployment/{DIRECT_APP} gets the password with no Secret at all"
        )
        steps.say(self._apply(with_interval(EXAMPLES / f"externalsecret-{DIRECT}.yaml", self.interval)))
        self._apply(
            json.dumps(deployment_manifest(DIRECT_APP, self.image, DIRECT, watch_script(DIRECT_MOUNT, "0.1")))
        )
        name = self._ready_pod(DIRECT_APP)
        pod = self._get("pod", name)
        agent = pod["spec"]["initContainers"][0]
        volume = next(v for v in pod["spec"]["volumes"] if "emptyDir" in v)
        steps.say(
            f"pod/{name}: the webhook added {agent['name']} (an init container with restartPolicy "
            f"{agent['restartPolicy']}: a native sidecar, the app starts once its files exist)"
        )
        steps.say(f"  volume {json.dumps(volume)}, read-only in the app at {DIRECT_MOUNT}")
        before = f"RDS_PASSWORD={password}"
        self._wait(f"{name} to print the password", lambda: before in self._texts(name), 60)

        new = f"demo-db-password-direct-{secrets.token_hex(3)}"
        timeline = self.pod_aws or self.aws
        offset = time.time() - time.monotonic()  # the moto timeline's clock -> wall clock
        rotated_at = time.time()
        self.aws.client("secretsmanager").put_secret_value(
            SecretId="prod/shop/db", SecretString=json.dumps({"password": new})
        )
        steps.say(f"AWS: prod/shop/db password -> {new}")
        after = f"RDS_PASSWORD={new}"
        printed = self._wait(
            f"{name} to print the new password",
            lambda: next((line for line in self._lines(name) if line.text == after), None),
            2 * parse_duration(self.interval) + 60,
        )
        written = self._wait(
            "the agent's write",
            lambda: [
                line for line in self._lines(name, "tmpfs-secrets-agent") if f"of {DIRECT} " in line.text
            ],
            30,
        )[-1]
        wrote_at = written.at.timestamp()
        reads = [
            t + offset for t, op in timeline.timed_calls() if op in ("GetSecretValue", "BatchGetSecretValue")
        ]
        fetched_at = max(t for t in reads if t <= wrote_at)
        status = self._wait(
            "the status to count the pod",
            lambda: (
                (
                    found := self._get("externalsecrets.tmpfs-secrets.io", DIRECT)
                    .get("status", {})
                    .get("direct")
                )
                == {"podsCurrent": 1, "podsStale": 0}
                and found
            ),
            60,
        )
        restarts = int(self._get("pod", name)["status"]["containerStatuses"][0]["restartCount"])
        exists = (
            self.cluster.kubectl("get", "secret", DIRECT, "-n", self.namespace, check=False).returncode == 0
        )
        steps.say(f"$ kubectl logs {name} -c tmpfs-secrets-agent --timestamps (the agent's own clock)")
        steps.say(f"  {written.text}")
        steps.say(
            f"AWS rotation -> operator's fetch {fetched_at - rotated_at:.1f}s "
            f"(refreshInterval {self.interval}), fetch -> file {wrote_at - fetched_at:.3f}s, "
            f"-> printed by the app {printed.at.timestamp() - rotated_at:.1f}s; restartCount {restarts}"
        )
        steps.say(
            f"status.direct {json.dumps(status)}; secret/{DIRECT}: "
            + ("EXISTS" if exists else "none (the value is in no Secret, nowhere in etcd)")
        )
        steps.done("rotated in the pod straight from the operator's memory")
        return DirectView(
            name,
            before,
            after,
            new,
            wrote_at - fetched_at,
            printed.at.timestamp() - rotated_at,
            restarts,
            exists,
            status,
        )

    def check_log(self, steps: Steps, values: Mapping[str, str]) -> list[str]:
        steps.begin("Checking that no value reached the operator's log or the Events")
        if self.release is not None:
            log = self.release.logs()
            (self.workdir / "operator.log").write_text(log)
        else:
            assert self.operator is not None
            log = self.operator.log_text()
        events = self.cluster.kubectl("get", "events", "-n", self.namespace, "-o", "json").stdout
        leaked = [key for key, value in values.items() if value in log or value in events]
        lines = len(log.splitlines())
        if leaked:
            steps.say(f"LEAKED: the values of {', '.join(leaked)} are in the operator's log or Events")
        else:
            steps.say(f"searched {lines} log lines and the namespace's Events for {len(values)} values: none")
        steps.done()
        return leaked

    # --- helpers ---------------------------------------------------------------------------------

    def _apply(self, source: Path | str) -> str:
        if isinstance(source, Path):
            out = self.cluster.kubectl("apply", "-n", self.namespace, "-f", str(source)).stdout
        else:
            out = self.cluster.kubectl("apply", "-n", self.namespace, "-f", "-", input=source).stdout
        return str(out).strip()

    def _secret(self, name: str) -> SecretView:
        found = json.loads(
            self.cluster.kubectl("get", "secret", name, "-n", self.namespace, "-o", "json").stdout
        )
        data = {k: base64.b64decode(v).decode() for k, v in (found.get("data") or {}).items()}
        meta = found["metadata"]
        return SecretView(meta["uid"], meta["resourceVersion"], data)

    def _pod(self) -> dict[str, Any]:
        return dict(
            json.loads(
                self.cluster.kubectl("get", "pod", self.pod_name, "-n", self.namespace, "-o", "json").stdout
            )
        )

    def _ready_pod(self, app: str, wait: bool = True) -> str:
        """The name of a Ready pod of `app` that is not being deleted ("" when none and not waiting)."""

        def find() -> str:
            listed = json.loads(
                self.cluster.kubectl(
                    "get", "pods", "-n", self.namespace, "-l", f"app={app}", "-o", "json"
                ).stdout
            )
            for pod in listed["items"]:
                conditions = pod.get("status", {}).get("conditions") or []
                ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
                if ready and not pod["metadata"].get("deletionTimestamp"):
                    return str(pod["metadata"]["name"])
            return ""

        return str(self._wait(f"a Ready pod of {app}", find, timeout=180)) if wait else find()

    def _first_line(self, pod: str) -> str:
        found = self.cluster.kubectl("logs", pod, "-n", self.namespace, check=False)
        return str(found.stdout).splitlines()[0] if found.returncode == 0 and found.stdout else ""

    def _generation(self, deployment: str) -> int:
        found = self.cluster.kubectl("get", "deployment", deployment, "-n", self.namespace, "-o", "json")
        return int(json.loads(found.stdout)["metadata"]["generation"])

    def _events(self, involved: str, reason: str) -> list[str]:
        listed = json.loads(self.cluster.kubectl("get", "events", "-n", self.namespace, "-o", "json").stdout)
        return [
            str(e["message"])
            for e in listed["items"]
            if e["involvedObject"]["name"] == involved and e["reason"] == reason
        ]

    def _logs(self) -> list[LogLine]:
        return self._lines(self.pod_name)

    def _lines(self, pod: str, container: str = "") -> list[LogLine]:
        which = ["-c", container] if container else []
        found = self.cluster.kubectl("logs", pod, *which, "-n", self.namespace, "--timestamps", check=False)
        if found.returncode != 0:
            return []
        return [LogLine.parse(line) for line in str(found.stdout).splitlines() if line.strip()]

    def _texts(self, pod: str) -> list[str]:
        return [line.text for line in self._lines(pod)]

    def _get(self, kind: str, name: str) -> dict[str, Any]:
        found = self.cluster.kubectl("get", kind, name, "-n", self.namespace, "-o", "json")
        return dict(json.loads(found.stdout))

    def _event(self, involved: str, reason: str) -> str | None:
        found = self._events(involved, reason)
        return found[0] if found else None

    def _wait(self, what: str, check: Any, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.operator is not None and self.operator.process is not None:
                self.operator.process.check_alive()
            result = check()
            if result:
                return result
            time.sleep(0.5)
        raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def _wait_for_signal() -> None:
    stop = {"now": False}

    def handler(*_: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    while not stop["now"]:
        time.sleep(0.5)


def _keep(out: TextIO, cluster: Cluster, aws: MotoServer, demo: Demo) -> None:
    kubeconfig = cluster.serve_host_port()
    out.write("\nStill running. In another shell:\n")
    out.write(f"  export KUBECONFIG={kubeconfig}\n")
    if shutil.which("kubectl") is None:
        out.write(f"  alias kubectl={binaries.path('kubectl')}\n")
    out.write(f"  kubectl get tss,tes,secrets -n {demo.namespace}\n")
    if demo.image:
        out.write(f"  kubectl logs -f --timestamps -n {demo.namespace} deployment/{POD}\n")
        out.write(
            f"  kubectl logs -f --timestamps -n {demo.namespace} deployment/{DIRECT_APP} --all-containers\n"
        )
        out.write(f"  IMAGE={demo.image}   # a local image pods can run (imagePullPolicy: Never)\n")
    extra = bubble.extra_forwards()
    env = aws.env()
    if extra:
        # moto listens inside the bubble; this host port relays to it.
        fd, port = extra[0]
        host, _, moto_port = aws.endpoint.removeprefix("http://").partition(":")
        forward.serve(fd, (host, int(moto_port)))
        env["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{port}"
        out.write("Emulated AWS from the host (boto3 or the AWS CLI):\n")
    else:
        out.write(f"Emulated AWS (inside the bubble): nsenter --net=/proc/{os.getpid()}/ns/net with\n")
    for key, value in env.items():
        out.write(f"  export {key}={value}\n")
    out.write(
        "  aws secretsmanager put-secret-value --secret-id prod/shop/db "
        '--secret-string \'{"password":"new"}\'\n'
    )
    if demo.release is not None:
        out.write("Operator log: kubectl logs -n tmpfs-secrets deployment/tmpfs-secrets\n")
    else:
        out.write(f"Operator log: {demo.workdir / 'operator.log'}\n")
    out.write("Press Ctrl-C to stop everything.\n")
    out.flush()
    _wait_for_signal()


def _run_inside(args: argparse.Namespace) -> int:
    out = sys.stdout
    total = time.monotonic()
    with_node = not args.no_node
    story = "a running pod sees it" if with_node else "control plane only, no pod"
    out.write(f"tmpfs-secrets demo: AWS values synced into Kubernetes Secrets, rotated in place ({story})\n")
    # SIGTERM ends like Ctrl-C: through the finally below, which stops everything started here.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    workdir = Path(tempfile.mkdtemp(prefix="tmpfs-secrets-demo-"))
    steps = Steps(out, total=POD_STEPS if with_node else STEPS)
    cluster: Cluster | None = None
    aws: MotoServer | None = None
    demo: Demo | None = None
    ok = False
    try:
        if with_node:
            steps.begin(
                "Starting the local cluster in its network bubble: control plane and a real node "
                f"(kubelet syncFrequency {args.sync_frequency})"
            )
        else:
            steps.begin(
                "Starting a local Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager)"
            )
        with redirect_stdout(Indented(steps)):
            cluster = start_cluster(with_node, args.sync_frequency)
        steps.say(f"API server {cluster.control_plane.api_url}")
        if cluster.node is not None:
            steps.say(
                f"node {NODE_NAME} Ready (containerd, runc, kubelet, kube-proxy); image {cluster.image}"
            )
            steps.say(
                f"kubelet syncFrequency {cluster.node.sync_frequency} (kubelet's default is 1m): a Secret "
                "volume is rewritten at the pod's next sync"
            )
        steps.done("ready")
        # With a node, moto listens on the node's address inside the bubble, where pods reach it.
        aws = MotoServer(host=bubble.NODE_IP if cluster.node is not None else "127.0.0.1").start()
        node = cluster.node
        demo = Demo(
            cluster.control_plane,
            aws,
            workdir,
            interval=args.interval,
            out=out,
            steps=steps,
            image=cluster.image if cluster.node is not None else None,
            sync_frequency=args.sync_frequency,
            import_image=node.import_images if node is not None else None,
        )
        outcome = demo.run()
        ok = not outcome.leaked and outcome.after.uid == outcome.before.uid
        if outcome.pod is not None:
            pod = outcome.pod
            ok = ok and pod.restart_count == 0 and pod.container_after == pod.container_before
        if args.keep:
            _keep(out, cluster, aws, demo)
    finally:
        out.write(f"\nStopping the operator, moto{', the pod' if with_node else ''} and the cluster ...\n")
        out.flush()
        if demo is not None:
            demo.stop()
        if aws is not None:
            aws.stop()
        if cluster is not None:
            with redirect_stdout(Indented(steps)):
                kept = cluster.stop(keep_logs=not ok)
            if kept:
                out.write(f"cluster logs kept in {kept}\n")
        if ok:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            out.write(f"operator log kept in {workdir / 'operator.log'}\n")
    out.write(f"{'Done' if ok else 'FAILED'} in {time.monotonic() - total:.1f}s.\n")
    out.flush()
    return 0 if ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the cluster, moto and the operator running until Ctrl-C, the API server on a host port",
    )
    parser.add_argument(
        "--no-node", action="store_true", help="the control plane only: the Secrets, no pod (quicker)"
    )
    parser.add_argument(
        "--interval", default="10s", help="refreshInterval for the example ExternalSecrets (default: 10s)"
    )
    parser.add_argument(
        "--sync-frequency",
        default=SYNC_FREQUENCY,
        help=f"kubelet syncFrequency (default: {SYNC_FREQUENCY}; kubelet's own default is 1m)",
    )
    parser.add_argument(
        "--port", type=int, default=0, help="with --keep: host loopback port for the API server (0: any)"
    )
    args = parser.parse_args(argv)
    if bubble.inside():
        return _run_inside(args)
    print("ensuring binaries (the first run builds them from Go modules; this takes a while) ...", flush=True)
    binaries.ensure(binaries.CONTROL_PLANE if args.no_node else binaries.ALL)
    python = shutil.which(sys.executable) or sys.executable
    command = [python, "-m", "tests.cluster.demo", *(sys.argv[1:] if argv is None else argv)]
    return bubble.run(command, forward=args.port if args.keep else None, extra_forwards=1 if args.keep else 0)


if __name__ == "__main__":
    raise SystemExit(main())
