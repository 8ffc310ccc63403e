"""The operator as a child process (`python -m tmpfs_secrets run`), the way a user runs it.

Shared by the integration tests, the demo and the benchmarks, so all three exercise the same
entry point with the same environment: the cluster's kubeconfig and moto's endpoint, nothing
inherited from the caller's own AWS or Kubernetes settings.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from tests.cluster.processes import Process

REPO = Path(__file__).resolve().parents[2]
STARTED_MARK = "operator started"
# `python -m tmpfs_secrets`, as in the image, where the `kubernetes` package is not installed: the
# tests' environment has it for their own client, and kopf would import it (18 MiB) if it could.
WITHOUT_KUBERNETES_CLIENT = (
    "import runpy, sys; sys.modules['kubernetes'] = None; "
    "runpy.run_module('tmpfs_secrets', run_name='__main__')"
)


class HasEnv(Protocol):
    def env(self) -> dict[str, str]: ...


def operator_env(cluster: HasEnv, aws: HasEnv, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The caller's environment without its AWS_* and KUBECONFIG, pointed at `cluster` and `aws`."""
    source = os.environ if base is None else base
    env = {k: v for k, v in source.items() if not k.startswith(("AWS_", "KUBECONFIG"))}
    env.update(aws.env())
    env.update(cluster.env())
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class Operator:
    """`tmpfs-secrets run` as a child process; restartable, its whole log kept in one file."""

    env: dict[str, str]
    log: Path
    args: list[str] = field(default_factory=list)
    # The examples read AWS with the operator's identity through SecretStores, and tests use
    # short intervals: settings a real install leaves at their defaults.
    base_args: list[str] = field(
        default_factory=lambda: ["--allow-operator-identity-for-secretstores", "--min-refresh-interval=1s"]
    )
    log_format: str = "json"
    process: Process | None = None
    starts: int = 0

    def start(self, timeout: float = 60.0) -> Operator:
        assert self.process is None or not self.process.alive(), "the operator is already running"
        begin = self._log_size()
        argv = [
            sys.executable,
            "-c",
            WITHOUT_KUBERNETES_CLIENT,
            "run",
            "--log-format",
            self.log_format,
            *self.base_args,
            *self.args,
        ]
        self.process = Process("operator", argv, self.log, env=self.env, cwd=REPO).start()
        self.starts += 1
        deadline = time.monotonic() + timeout
        while STARTED_MARK not in self._log_text(begin):
            self.process.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"the operator did not log {STARTED_MARK!r} within {timeout:.0f}s; "
                    f"last lines of {self.log}:\n{self.process.tail()}"
                )
            time.sleep(0.1)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(timeout=20)

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def pid(self) -> int:
        assert self.process is not None, "the operator was never started"
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.alive()

    def peak_rss_mib(self) -> float:
        """The running process's peak resident set (VmHWM), in MiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmHWM in /proc/<pid>/status")

    def log_text(self) -> str:
        return self._log_text(0)

    def lines_since(self, offset: int) -> str:
        return self._log_text(offset)

    def offset(self) -> int:
        return self._log_size()

    def _log_size(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0

    def _log_text(self, offset: int) -> str:
        if not self.log.exists():
            return ""
        with self.log.open("rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")
