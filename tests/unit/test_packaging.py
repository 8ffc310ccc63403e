"""The installed project is sane: the stdlib is not shadowed, the pins hold, the CLI answers."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import requires, version
from pathlib import Path

import tmpfs_secrets


def test_import_operator_is_still_the_standard_library() -> None:
    # `operator/` holds the sources but is never a package; if it were, it would shadow the stdlib module.
    out = subprocess.run(
        [sys.executable, "-c", "import operator, sys; print(operator.__file__); print(operator.itemgetter)"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmpfs_secrets.__file__.rsplit("/operator/", 1)[0],
    ).stdout.splitlines()
    assert "/operator/" not in out[0], out[0]
    assert out[0].endswith("operator.py")
    assert "itemgetter" in out[1]


def _release(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version(name).split(".")[:3] if part.isdigit())


def test_boto3_is_recent_not_a_resolver_backtrack() -> None:
    # A python-dateutil conflict makes pip fall back to boto3 0.0.3; EKS Pod Identity needs 1.34.41+.
    assert _release("boto3") >= (1, 34, 41)
    assert _release("botocore") >= (1, 34, 41)


def test_the_operator_needs_no_kubernetes_client() -> None:
    # kopf imports `kubernetes` whenever it is installed (18 MiB): the image must not have it.
    required = [r for r in requires("tmpfs-secrets") or [] if "extra ==" not in r]
    assert not [r for r in required if r.lower().startswith("kubernetes")], required
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.modules['kubernetes'] = None; import tmpfs_secrets.handlers.run",
        ],
        check=True,
    )
    assert _release("kubernetes") != (37, 0, 2)  # the tests' own client; see pyproject.toml


def test_without_a_cluster_to_talk_to_run_says_what_to_set(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBE", "AWS_"))}
    env["HOME"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "tmpfs_secrets", "run"], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 2
    assert "set $KUBECONFIG" in done.stderr
    assert "Traceback" not in done.stderr


def test_console_script_reports_its_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tmpfs_secrets", "--version"], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == f"tmpfs-secrets {tmpfs_secrets.__version__}"
    assert tmpfs_secrets.__version__ == version("tmpfs-secrets")


def test_console_script_help_names_the_project() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tmpfs_secrets", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "usage: tmpfs-secrets" in out
    assert "tmpfs" in out.lower()
