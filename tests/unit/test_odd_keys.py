"""Keys Kubernetes refuses: refused in `data`, skipped and reported from `extract` and `find`, while
the other keys are still delivered. Text of a value never reaches a message."""

from __future__ import annotations

import json

import pytest

from tmpfs_secrets.api import parse_external_secret
from tmpfs_secrets.api.external_secret import valid_secret_key
from tmpfs_secrets.engine.keys import extract, found_keys, lookup_property
from tmpfs_secrets.errors import PropertyError, SpecError
from tmpfs_secrets.providers.base import Fetched, Found

# Every kind of key the API server refuses in a Secret (IsConfigMapKey).
REFUSED = [".", "..", "..x", "...", "..data", "", "k" * 254, "clé", "a b", "a/b", "😀"]
ACCEPTED = ["a", ".env", "a..b", "x.", "k" * 253, "A-B_c.d", "-"]


@pytest.mark.parametrize("key", REFUSED)
def test_refused_keys(key: str) -> None:
    assert not valid_secret_key(key)


@pytest.mark.parametrize("key", ACCEPTED)
def test_accepted_keys(key: str) -> None:
    assert valid_secret_key(key)


@pytest.mark.parametrize("key", REFUSED)
def test_data_refuses_what_kubernetes_refuses(key: str) -> None:
    body = {
        "metadata": {"name": "es", "namespace": "shop"},
        "spec": {"secretStoreRef": {"name": "aws"}, "data": [{"secretKey": key, "remoteRef": {"key": "k"}}]},
    }
    with pytest.raises(SpecError) as err:
        parse_external_secret(body)
    assert "spec.data[0].secretKey" in err.value.message


def test_extract_delivers_the_good_keys_and_counts_the_bad_ones() -> None:
    doc = {key: f"value-of-{i}" for i, key in enumerate(REFUSED)} | {"good": "ok", ".env": "e"}
    got, (problem,) = extract(Fetched(json.dumps(doc).encode(), "v1"), "secret app/json")
    assert got == {"good": b"ok", ".env": b"e"}
    assert f"{len(REFUSED)} top-level keys" in problem.message
    for key in REFUSED:
        if key:
            assert key not in problem.message.split("(")[0]
    assert "value-of" not in problem.message and "clé" not in problem.message


def test_find_skips_every_kind_of_refused_key() -> None:
    # Parameter names that give ".", "..", "..x", "...", "" (the path itself), 254 characters and
    # non-ASCII keys; SSM refuses some of these names itself, the operator must not rely on it.
    names = ["/app/.", "/app/..", "/app/..x", "/app/...", "/app/", "/app/" + "k" * 254, "/app/clé", "/app/ok"]
    data, _, (problem,) = found_keys(Found("/app/", {n: Fetched(b"v", "1") for n in names}))
    assert data == {"ok": b"v"}
    assert "and 4 more" in problem.message


def test_find_delivers_the_good_parameters_and_names_the_bad_ones() -> None:
    names = ["/app/good", "/app/..x", "/app/...", "/app/..", "/app/" + "k" * 254, "/app/sub/..data"]
    found = Found("/app/", {n: Fetched(b"v", "1") for n in names})
    data, versions, (problem,) = found_keys(found)
    # "sub_..data" is fine: only a key that starts with ".." is refused.
    assert data == {"good": b"v", "sub_..data": b"v"} and versions == {"good": "1", "sub_..data": "1"}
    assert "/app/..x" in problem.message and "and 1 more" in problem.message
    assert "the other keys are delivered" in problem.message


def test_a_lone_surrogate_gets_a_clear_error_not_a_traceback() -> None:
    raw = b'{"password": "\\ud800-secret-tail", "ok": "fine"}'
    with pytest.raises(PropertyError) as err:
        lookup_property(Fetched(raw, "v"), "password", "secret app/json")
    assert "not valid Unicode" in err.value.message and "secret-tail" not in err.value.message
    with pytest.raises(PropertyError):
        extract(Fetched(raw, "v"), "secret app/json")


def test_invalid_utf8_with_a_property_is_a_clear_error() -> None:
    with pytest.raises(PropertyError, match="not JSON") as err:
        lookup_property(Fetched(b"\xff\xfe-secret-tail", "v"), "p", "secret app/bin")
    assert "secret-tail" not in err.value.message
