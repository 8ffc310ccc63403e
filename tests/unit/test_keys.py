import json

import pytest

from tmpfs_secrets.engine.keys import (
    content_hash,
    extract,
    find_key,
    found_keys,
    lookup_property,
    split_path,
)
from tmpfs_secrets.errors import PropertyError, Reason
from tmpfs_secrets.providers.base import Fetched, Found

DOC = {
    "password": "hunter2",
    "db": {"password": "s3cr3t-inner", "port": 5432, "hosts": ["a", "b"]},
    "a.b": "literal-dotted",
    "x": {"y.z": "escaped"},
    "flag": True,
}


def value(doc: object) -> Fetched:
    return Fetched(json.dumps(doc).encode(), "v1")


@pytest.mark.parametrize(
    ("prop", "expected"),
    [
        ("password", b"hunter2"),
        ("db.password", b"s3cr3t-inner"),
        ("db.port", b"5432"),
        ("db.hosts.1", b"b"),
        ("db.hosts", b'["a","b"]'),
        ("a.b", b"literal-dotted"),
        ("x.y\\.z", b"escaped"),
        ("flag", b"true"),
        ("db", b'{"password":"s3cr3t-inner","port":5432,"hosts":["a","b"]}'),
    ],
)
def test_property_paths(prop: str, expected: bytes) -> None:
    assert lookup_property(value(DOC), prop, "secret prod/db") == expected


def test_split_path_escapes() -> None:
    assert split_path("a.b\\.c.d\\\\") == ["a", "b.c", "d\\"]


@pytest.mark.parametrize("prop", ["pasword", "db.pasword", "db.hosts.2", "password.x"])
def test_missing_property_names_the_property_not_the_value(prop: str) -> None:
    with pytest.raises(PropertyError) as err:
        lookup_property(value(DOC), prop, "secret prod/db")
    assert err.value.reason is Reason.INVALID_PROPERTY
    assert repr(prop) in err.value.message and "remoteRef.property" in err.value.message
    assert "hunter2" not in err.value.message and "s3cr3t-inner" not in err.value.message


def test_property_on_binary_or_plain_text_says_what_to_change() -> None:
    with pytest.raises(PropertyError, match="binary"):
        lookup_property(Fetched(b"\xff\xfe", "v", binary=True), "p", "secret bin")
    with pytest.raises(PropertyError, match="not JSON") as err:
        lookup_property(Fetched(b"plain-text-value", "v"), "p", "secret txt")
    assert "plain-text-value" not in err.value.message


def test_extract_top_level_keys_with_non_strings_as_json() -> None:
    got, problems = extract(value({"user": "u", "port": 5432, "opts": {"ssl": True}}), "secret s")
    assert got == {"user": b"u", "port": b"5432", "opts": b'{"ssl":true}'}
    assert problems == ()


def test_extract_rejects_non_object_and_skips_bad_keys_without_naming_them() -> None:
    with pytest.raises(PropertyError, match="not an object"):
        extract(value(["a"]), "secret s")
    got, (problem,) = extract(value({"bad key-hunter2": "x", "good": "y"}), "secret s")
    assert got == {"good": b"y"}
    assert "1 top-level key" in problem.message and "hunter2" not in problem.message


@pytest.mark.parametrize(
    ("path", "name", "key"),
    [("/shop/prod/", "/shop/prod/db/host", "db_host"), ("/shop/prod", "/shop/prod/port", "port")],
)
def test_find_key_naming(path: str, name: str, key: str) -> None:
    assert find_key(path, name) == key


def test_found_keys_detects_collisions() -> None:
    found = Found("/p/", {"/p/a/b": Fetched(b"1", "1"), "/p/a_b": Fetched(b"2", "2")})
    with pytest.raises(PropertyError, match="both map to key 'a_b'"):
        found_keys(found)


def test_content_hash_is_order_independent_and_unambiguous() -> None:
    a = content_hash({"k1": b"v1", "k2": b"v2"})
    assert a == content_hash({"k2": b"v2", "k1": b"v1"})
    assert a.startswith("sha256:") and len(a) == len("sha256:") + 64
    assert content_hash({"ab": b"c"}) != content_hash({"a": b"bc"})
    assert a != content_hash({"k1": b"v1", "k2": b"v3"})


@pytest.mark.parametrize(
    ("raw", "strategy", "want"),
    [
        (b"aGVsbG8=", "Base64", b"hello"),
        (b"aGVsbG8", "Base64", b"hello"),  # missing padding is tolerated
        (b"_-8=", "Base64URL", b"\xff\xef"),
        (b"aGVsbG8=", "Auto", b"hello"),
        (b"not base64!", "Auto", b"not base64!"),
        (b"aGVsbG8=", "None", b"aGVsbG8="),
    ],
)
def test_decoding_strategies(raw: bytes, strategy: str, want: bytes) -> None:
    from tmpfs_secrets.engine.keys import decode

    assert decode(raw, strategy, "secret s") == want


def test_an_invalid_base64_value_is_a_clear_error_without_the_value() -> None:
    from tmpfs_secrets.engine.keys import decode

    with pytest.raises(PropertyError) as err:
        decode(b"not base64 hunter2!", "Base64", "secret s")
    assert "decodingStrategy" in err.value.message and "hunter2" not in err.value.message


def test_extract_a_nested_property() -> None:
    got, problems = extract(value({"db": {"user": "u", "port": 1}, "x": "y"}), "secret s", "db")
    assert got == {"user": b"u", "port": b"1"} and problems == ()
    with pytest.raises(PropertyError, match="not an object"):
        extract(value({"db": "flat"}), "secret s", "db")
