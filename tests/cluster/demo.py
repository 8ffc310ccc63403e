"""`make demo`: the whole story on one terminal, from nothing to a rotation delivered in place.

It starts a local control plane and moto as the embedded AWS, seeds the shop's values (the
original problem's `RDS_PASSWORD`, `SUPABASE_SERVICE_ROLE_KEY` and connection settings), installs
the CRDs, runs the operator as `tmpfs-secrets run`, applies `examples/`, shows the Secrets, rotates
the password in AWS and shows the same Secret change in place, then stops all it started. The
values are fake, so the demo prints them decoded; the operator itself never logs a value, and the
last step checks that.

`start_cluster()` is the one place that decides which cluster the demo runs on, so a cluster with
a real node can take its place without touching the steps.
"""

from __future__ import annotations

import argparse
import base64
import json
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO

from tests.cluster import binaries
from tests.cluster.aws import REGION, MotoServer
from tests.cluster.control_plane import ControlPlane
from tests.cluster.operator import Operator, operator_env

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
STEPS = 8


class Cluster(Protocol):
    """What the demo needs of a cluster: the local control plane has it, and so will a bubble."""

    kubeconfig: Path

    def env(self) -> dict[str, str]: ...

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> Any: ...


def start_cluster() -> ControlPlane:
    """A started cluster for the demo: today the loopback control plane."""
    return ControlPlane().start()


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


@dataclass
class SecretView:
    uid: str
    resource_version: str
    data: dict[str, str]


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


@dataclass
class Demo:
    """Steps 2 to 8 on a started cluster and a started moto; step 1 is starting the cluster."""

    cluster: Cluster
    aws: MotoServer
    workdir: Path
    namespace: str = "shop"
    interval: str = "10s"
    out: TextIO = sys.stdout
    steps: Steps | None = None
    operator: Operator | None = None

    def run(self) -> Outcome:
        steps = self.steps or Steps(self.out)
        self.steps = steps
        values = self.seed(steps)
        self.install_crds(steps)
        self.start_operator(steps)
        self.apply_examples(steps)
        before = self.show_secrets(steps)
        rotated, after, event, seconds = self.rotate(steps, before)
        searchable = {k: v for k, v in values.items() if k not in PLAIN}
        leaked = self.check_log(steps, {**searchable, "RDS_PASSWORD (rotated)": rotated})
        return Outcome(values, rotated, before, after, event, seconds, leaked)

    def stop(self) -> None:
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
        steps.begin("Installing the CRDs (kubectl apply -f crds/)")
        steps.say(self.cluster.kubectl("apply", "--server-side", "-f", str(CRDS)).stdout.strip())
        self.cluster.kubectl(
            "wait", "--for=condition=Established", "--timeout=60s", *(f"crd/{n}" for n in CRD_NAMES)
        )
        steps.done("established")

    def start_operator(self, steps: Steps) -> None:
        steps.begin(f"Starting the operator: tmpfs-secrets run --namespace {self.namespace}")
        self.operator = Operator(
            env=operator_env(self.cluster, self.aws),
            log=self.workdir / "operator.log",
            args=["--namespace", self.namespace],
            log_format="text",
        ).start()
        steps.say(f"pid {self.operator.pid}, log {self.operator.log}")
        steps.done("running")

    def apply_examples(self, steps: Steps) -> None:
        steps.begin(
            f"Applying examples/ into namespace {self.namespace} (refreshInterval patched to {self.interval})"
        )
        existing = self.cluster.kubectl("get", "namespace", self.namespace, check=False)
        if existing.returncode != 0:
            self.cluster.kubectl("create", "namespace", self.namespace)
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

    def rotate(self, steps: Steps, before: SecretView) -> tuple[str, SecretView, str, float]:
        steps.begin("Rotating RDS_PASSWORD in AWS Secrets Manager (put-secret-value on prod/shop/db)")
        new = f"demo-db-password-rotated-{secrets.token_hex(3)}"
        self.aws.client("secretsmanager").put_secret_value(
            SecretId="prod/shop/db", SecretString=json.dumps({"password": new})
        )
        started = time.monotonic()
        steps.say(f"new value in AWS: {new}; nothing else is touched, the operator's refresh finds it")
        after = self._wait(
            f"secret/shop-db to carry the new password (refreshInterval {self.interval})",
            lambda: (v := self._secret("shop-db")).data.get("RDS_PASSWORD") == new and v,
            timeout=120,
        )
        seconds = time.monotonic() - started
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

    def check_log(self, steps: Steps, values: Mapping[str, str]) -> list[str]:
        steps.begin("Checking that no value reached the operator's log or the Events")
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

    def _event(self, involved: str, reason: str) -> str | None:
        listed = json.loads(self.cluster.kubectl("get", "events", "-n", self.namespace, "-o", "json").stdout)
        for event in listed["items"]:
            if event["involvedObject"]["name"] == involved and event["reason"] == reason:
                return str(event["message"])
        return None

    def _wait(self, what: str, check: Any, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.operator is not None:
                self.operator.process.check_alive()  # type: ignore[union-attr]
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--keep", action="store_true", help="keep the cluster, moto and the operator running until Ctrl-C"
    )
    parser.add_argument(
        "--interval", default="10s", help="refreshInterval for the example ExternalSecrets (default: 10s)"
    )
    args = parser.parse_args(argv)
    out = sys.stdout
    total = time.monotonic()
    out.write("tmpfs-secrets demo: AWS values synced into Kubernetes Secrets, rotated in place\n")
    binaries.ensure(binaries.CONTROL_PLANE)
    # SIGTERM ends like Ctrl-C: through the finally below, which stops everything started here.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    workdir = Path(tempfile.mkdtemp(prefix="tmpfs-secrets-demo-"))
    steps = Steps(out)
    plane: ControlPlane | None = None
    aws: MotoServer | None = None
    demo: Demo | None = None
    ok = False
    try:
        steps.begin(
            "Starting a local Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager)"
        )
        plane = start_cluster()
        steps.say(f"API server {plane.api_url}")
        steps.done("ready")
        aws = MotoServer().start()
        demo = Demo(plane, aws, workdir, interval=args.interval, out=out, steps=steps)
        outcome = demo.run()
        ok = not outcome.leaked and outcome.after.uid == outcome.before.uid
        if args.keep:
            out.write("\nStill running. In another shell:\n")
            out.write(f"  export KUBECONFIG={plane.kubeconfig}\n")
            if shutil.which("kubectl") is None:
                out.write(f"  alias kubectl={binaries.path('kubectl')}\n")
            out.write(f"  kubectl get tss,tes,secrets -n {demo.namespace}\n")
            for key, value in aws.env().items():
                out.write(f"  export {key}={value}\n")
            out.write(f"Operator log: {workdir / 'operator.log'}\nPress Ctrl-C to stop everything.\n")
            out.flush()
            _wait_for_signal()
    finally:
        out.write("\nStopping the operator, moto and the control plane ...\n")
        out.flush()
        if demo is not None:
            demo.stop()
        if aws is not None:
            aws.stop()
        if plane is not None:
            kept = plane.stop(keep_logs=not ok)
            if kept:
                out.write(f"control plane logs kept in {kept}\n")
        if ok:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            out.write(f"operator log kept in {workdir / 'operator.log'}\n")
    out.write(f"{'Done' if ok else 'FAILED'} in {time.monotonic() - total:.1f}s.\n")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
