"""The slim index of target Secrets: no values kept, our own writes are not news, others' are."""

from __future__ import annotations

import base64
from typing import Any

from tmpfs_secrets.kube.targets import TargetIndex, digest, slim


def secret(rv: str, value: str = "s3cr3t-value", uid: str = "u1") -> dict[str, Any]:
    encoded = base64.b64encode(value.encode()).decode()
    return {
        "metadata": {
            "name": "app",
            "namespace": "shop",
            "uid": uid,
            "resourceVersion": rv,
            "labels": {"tmpfs-secrets.io/target": "true"},
            "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": f'{{"data":{{"V":"{encoded}"}}}}',
                "tmpfs-secrets.io/content-hash": "sha256:abc",
            },
            "managedFields": [{"manager": "kubectl"}],
        },
        "data": {"V": encoded},
    }


def test_slim_keeps_digests_not_values() -> None:
    body = secret("5")
    view = slim(body)
    text = repr(view)
    assert "s3cr3t" not in text and body["data"]["V"] not in text
    assert view["data"] == {"V": digest(body["data"]["V"])}
    assert "managedFields" not in view["metadata"]
    assert view["metadata"]["annotations"] == {"tmpfs-secrets.io/content-hash": "sha256:abc"}


def test_own_writes_and_older_events_are_not_news_others_are() -> None:
    index = TargetIndex()
    assert index.observe(secret("5")) is False  # first sight (the listing)
    assert index.observe(secret("7")) is True  # someone wrote it after we saw 5
    assert index.observe(secret("7")) is False  # the same version again (e.g. our answer, then its event)
    assert index.observe(secret("6")) is False  # an older event arriving late
    assert (
        index.get("shop", "app") is not None
        and index.get("shop", "app")["metadata"]["resourceVersion"] == "7"
    )  # type: ignore[index]
    assert index.observe(secret("3", uid="u2")) is True  # deleted and recreated by someone
    assert index.forget("shop", "app") is not None and index.get("shop", "app") is None


async def test_writers_wait_for_the_first_listing_but_not_forever() -> None:
    index = TargetIndex()
    assert not index.listed and await index.wait_listed(0.01) is False
    index.observe(secret("5"))
    assert index.keys("shop") == {("shop", "app")} and index.keys("other") == set()
    index.mark_listed()
    assert index.listed and await index.wait_listed(0.01) is True
