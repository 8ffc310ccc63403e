"""No secret value appears in anything the operator emits: its (debug) log, Events, status."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.cluster.aws import Fault, MotoServer
from tests.integration.conftest import (
    EXAMPLES,
    Emitted,
    Kube,
    Operator,
    Shop,
    sync_shop_examples,
    wait_until,
    with_interval,
)


@pytest.mark.parametrize("operator", [["--verbose"]], indirect=True)
def test_no_value_in_logs_events_or_status(
    operator: Operator,
    shop: Shop,
    aws: MotoServer,
    namespace: str,
    kube: Kube,
    apply_yaml: Callable[..., str],
    emitted: Emitted,
) -> None:
    sync_shop_examples(apply_yaml, namespace, kube)

    # A rotation (Rotated event), a typo in a property (InvalidProperty: the message names the
    # property, the value's JSON is right there), and throttling (SyncFailed).
    new = shop.rotate_password()
    wait_until("the rotation", lambda: kube.secret_data("shop-db", namespace)["RDS_PASSWORD"] == new)  # type: ignore[index]
    typo = with_interval(EXAMPLES / "externalsecret-shop-db.yaml", "2s")
    apply_yaml(typo.replace("property: password", "property: pasword"), namespace=namespace)
    cond = kube.wait_ready("shop-db", namespace, status="False", reason="InvalidProperty")
    assert "pasword" in cond["message"]
    aws.inject(Fault("GetParametersByPath"))
    kube.wait_ready("shop-config", namespace, status="False", reason="Throttled", timeout=90)

    assert "DEBUG" in operator.log_text().upper()  # the debug log is part of what was searched
    emitted.assert_free_of({**shop.searchable, "RDS_PASSWORD_ROTATED": new})
