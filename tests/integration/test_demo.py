"""`make demo`'s main flow runs end to end, so the README's first command cannot rot."""

from __future__ import annotations

import io
import re
from pathlib import Path

from tests.cluster.aws import MotoServer
from tests.cluster.control_plane import ControlPlane
from tests.cluster.demo import STEPS, Demo, Steps


def test_demo_shows_a_rotation_in_place(
    control_plane: ControlPlane, aws: MotoServer, namespace: str, tmp_path: Path
) -> None:
    out = io.StringIO()
    steps = Steps(out)
    steps.number = 1  # step 1, starting the cluster, is the session's control plane here
    demo = Demo(control_plane, aws, tmp_path, namespace=namespace, interval="3s", out=out, steps=steps)
    try:
        outcome = demo.run()
    finally:
        demo.stop()
    text = out.getvalue()

    assert re.findall(r"^\[(\d+)/\d+\]", text, re.MULTILINE) == [str(n) for n in range(2, STEPS + 1)]
    assert outcome.before.data == {
        "RDS_PASSWORD": outcome.values["RDS_PASSWORD"],
        "SUPABASE_SERVICE_ROLE_KEY": outcome.values["SUPABASE_SERVICE_ROLE_KEY"],
    }
    assert outcome.after.data["RDS_PASSWORD"] == outcome.rotated_password != outcome.values["RDS_PASSWORD"]
    assert outcome.after.uid == outcome.before.uid
    assert int(outcome.after.resource_version) > int(outcome.before.resource_version)
    assert "changed: RDS_PASSWORD" in outcome.rotated_event
    assert outcome.leaked == []
    assert "same uid: updated in place" in text
    # The demo prints the fake values on purpose; the operator must not have logged any.
    log = (tmp_path / "operator.log").read_text()
    assert outcome.rotated_password not in log and outcome.values["RDS_PASSWORD"] not in log
