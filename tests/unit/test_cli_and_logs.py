"""`tmpfs-secrets run` options become Settings; log lines are one JSON object each in JSON mode."""

from __future__ import annotations

import json
import logging

import pytest

from tmpfs_secrets import cli, logs
from tmpfs_secrets.config import Settings


def test_run_options_become_settings() -> None:
    args = cli.build_parser().parse_args(
        [
            "run",
            "-n",
            "shop",
            "--namespace",
            "pay",
            "-n",
            "shop",
            "--workers",
            "3",
            "--aws-threads",
            "5",
            "--cache-ttl",
            "90s",
            "--log-format",
            "json",
            "--liveness",
            "http://0.0.0.0:8080/healthz",
            "-v",
            "--allow-operator-identity-for-secretstores",
            "--min-refresh-interval",
            "30s",
        ]
    )
    settings = cli.settings_from(args)
    assert settings == Settings(
        namespaces=("shop", "pay"),
        workers=3,
        aws_threads=5,
        cache_ttl=90.0,
        log_format="json",
        liveness="http://0.0.0.0:8080/healthz",
        verbose=True,
        allow_operator_identity=True,
        min_refresh_interval=30.0,
    )
    assert not settings.clusterwide
    defaults = cli.settings_from(cli.build_parser().parse_args(["run"]))
    assert not defaults.allow_operator_identity and defaults.min_refresh_interval == 10.0
    assert cli.settings_from(cli.build_parser().parse_args(["run"])).clusterwide


@pytest.mark.parametrize(
    "bad", [["run", "--workers", "0"], ["run", "--log-format", "xml"], ["run", "--cache-ttl", "-1"]]
)
def test_bad_options_are_refused(bad: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(bad)
    assert "error" in capsys.readouterr().err


def test_run_help_names_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    out = capsys.readouterr().out
    for option in (
        "--namespace",
        "--workers",
        "--aws-threads",
        "--cache-ttl",
        "--log-format",
        "--liveness",
        "--verbose",
    ):
        assert option in out


def test_json_lines_carry_the_object_and_extra_fields() -> None:
    record = logging.makeLogRecord(
        {
            "name": "kopf.objects",
            "levelno": logging.INFO,
            "levelname": "INFO",
            "msg": "synced %s",
            "args": ("db",),
            "k8s_ref": {"kind": "ExternalSecret", "namespace": "shop", "name": "db"},
            "keys": 2,
        }
    )
    line = json.loads(logs.JsonFormatter().format(record))
    assert line["message"] == "synced db"
    assert (line["kind"], line["namespace"], line["name"], line["keys"]) == (
        "ExternalSecret",
        "shop",
        "db",
        2,
    )
    assert line["level"] == "info" and line["time"].endswith("+00:00")
    text = logs.TextFormatter().format(record)
    assert "[shop/db] synced db" in text


def test_botocore_debug_never_reaches_the_log() -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    kopf_levels = {n: logging.getLogger(n).level for n in ("kopf", "kopf.objects", "botocore")}
    try:
        logs.configure("json", verbose=True)
        assert not logging.getLogger("botocore").isEnabledFor(logging.DEBUG)
        assert logging.getLogger("kopf.objects").isEnabledFor(logging.DEBUG)
        logs.configure("text", verbose=False)
        assert not logging.getLogger("kopf.objects").isEnabledFor(logging.INFO)
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        for name, level in kopf_levels.items():
            logging.getLogger(name).setLevel(level)
