"""`make demo`'s main flow runs end to end, so the README's first command cannot rot.

Inside the bubble (`make test`) the session has a node, and the demo runs its pod: the test then
checks the pod printed the value before and after the rotation without a restart. Elsewhere it
runs the control-plane-only demo.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from tests.cluster import bubble
from tests.cluster.aws import MotoServer
from tests.cluster.cluster import Cluster
from tests.cluster.control_plane import ControlPlane
from tests.cluster.demo import MOUNT, POD_STEPS, STEPS, Demo, Steps


def test_demo_shows_a_rotation_in_place(
    control_plane: ControlPlane,
    aws: MotoServer,
    namespace: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    whole: Cluster | None = request.getfixturevalue("cluster") if bubble.inside() else None
    out = io.StringIO()
    demo = Demo(control_plane, aws, tmp_path, namespace=namespace, interval="3s", out=out)
    pod_aws: MotoServer | None = None
    if whole is not None:
        assert whole.node is not None
        demo.image, demo.sync_frequency = whole.image, whole.node.sync_frequency
        # The chart's operator pod reaches moto on the node's address (same state as `aws`).
        pod_aws = MotoServer(host=bubble.NODE_IP).start()
        demo.import_image, demo.pod_aws = whole.node.import_images, pod_aws
    steps = Steps(out, total=demo.total)
    steps.number = 1  # step 1, starting the cluster, is the session's cluster here
    demo.steps = steps
    try:
        outcome = demo.run()
    finally:
        demo.stop()
        if pod_aws is not None:
            pod_aws.stop()
    text = out.getvalue()

    total = POD_STEPS if whole is not None else STEPS
    assert re.findall(r"^\[(\d+)/(\d+)\]", text, re.MULTILINE) == [
        (str(n), str(total)) for n in range(2, total + 1)
    ]
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

    if whole is None:
        assert outcome.pod is None and outcome.restart is None
        return
    pod = outcome.pod
    assert pod is not None
    assert pod.mount.startswith(f"mount {MOUNT} type tmpfs (ro")
    assert pod.before.text == f"RDS_PASSWORD={outcome.values['RDS_PASSWORD']}"
    assert pod.after.text == f"RDS_PASSWORD={outcome.rotated_password}"
    assert pod.after.at > pod.before.at
    assert pod.restart_count == 0
    assert pod.container_after == pod.container_before
    # The pod's own log, read here rather than through the demo, holds both values in order.
    logs = control_plane.kubectl("logs", pod.name, "-n", namespace).stdout.splitlines()
    assert logs.index(pod.before.text) < logs.index(pod.after.text)

    # The second Deployment read shop-config only at start; restartWorkloads restarted it once.
    restart = outcome.restart
    assert restart is not None
    assert restart.pod_after != restart.pod_before
    assert restart.printed_before == f"RDS_HOST={outcome.values['RDS_HOST']}"
    assert (
        restart.printed_after.startswith("RDS_HOST=shop-moved-")
        and restart.printed_after != restart.printed_before
    )
    assert restart.generation_after == restart.generation_before + 1
    assert len(restart.events) == 1 and "Deployment/shop-worker" in restart.events[0]
    assert "Deployment/shop-app" not in restart.events[0]

    # Direct delivery: the pod printed the value rotated again, from no Secret, without a restart.
    direct = outcome.direct
    assert direct is not None
    assert direct.printed_before == f"RDS_PASSWORD={outcome.rotated_password}"
    assert direct.printed_after == f"RDS_PASSWORD={direct.rotated}" != direct.printed_before
    assert direct.restart_count == 0
    assert not direct.secret_exists
    assert direct.status == {"podsCurrent": 1, "podsStale": 0}
    assert direct.fetch_to_file >= 0
    assert direct.rotated not in log
