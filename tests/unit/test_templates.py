"""target.template: the safe Go-template subset, its refusals at admission, and rendering."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from tmpfs_secrets.api import parse_external_secret
from tmpfs_secrets.api.template import parse_template
from tmpfs_secrets.engine.render import apply_template, render
from tmpfs_secrets.errors import PropertyError, SpecError

VALUES = {"user": b"app", "password": b"p@ss word", "db-host": b"db.internal", "bin": b"\xff\x00"}


def out(text: str, values: dict[str, bytes] | None = None) -> bytes:
    return render(parse_template(text, "t"), values or VALUES, "t")


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("{{ .user }}", b"app"),
        (
            'postgres://{{ .user }}:{{ .password | urlquery }}@{{ index . "db-host" }}:5432/app',
            b"postgres://app:p%40ss+word@db.internal:5432/app",
        ),
        ("{{ .user | upper }}", b"APP"),
        ("{{ .password | b64enc }}", base64.b64encode(b"p@ss word")),
        ("{{ .password | b64enc | b64dec }}", b"p@ss word"),
        ("{{ .bin | b64enc }}", base64.b64encode(b"\xff\x00")),
        ('{{ "lit" }}-{{ `raw` }}', b"lit-raw"),
        ("a  {{- .user -}}  b", b"aappb"),
        ('{{ replace "@" "-at-" .password }}', b"p-at-ss word"),
        ('{{ .user | trimPrefix "a" }}', b"pp"),
        ("{{ .user | quote }}", b'"app"'),
        ('{{ default "none" .user }}', b"app"),
        ("plain text", b"plain text"),
    ],
)
def test_rendering(text: str, want: bytes) -> None:
    assert out(text) == want


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("{{ if .user }}x{{ end }}", "'if' is not supported"),
        ("{{ range . }}x{{ end }}", "'range' is not supported"),
        ("{{ $x := .user }}", "variables"),
        ('{{ env "HOME" }}', "unknown function 'env'"),
        ('{{ exec "ls" }}', "unknown function 'exec'"),
        ("{{ .user", "unclosed"),
        ("{{ }}", "empty action"),
        ("{{ . }}", "name a key"),
        ("{{ upper }}", "takes 1 argument"),
        ("{{ /* note */ }}", "comments"),
        ('{{ index .user "x" }}', "index"),
    ],
)
def test_anything_else_is_refused_naming_the_field(text: str, words: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_template(text, "spec.target.template.data.url")
    assert "spec.target.template.data.url" in err.value.message and words in err.value.message


def test_a_missing_key_names_the_key_not_a_value() -> None:
    with pytest.raises(PropertyError) as err:
        out("{{ .nope }}")
    assert "'nope'" in err.value.message and "p@ss" not in err.value.message


def es(target: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "db", "namespace": "shop"},
        "spec": {
            "secretStoreRef": {"name": "aws"},
            "data": [{"secretKey": "password", "remoteRef": {"key": "k"}}],
            "target": target,
            **spec,
        },
    }


def test_template_parsing_and_apply() -> None:
    spec = parse_external_secret(
        es(
            {
                "template": {
                    "type": "kubernetes.io/basic-auth",
                    "metadata": {"labels": {"team": "shop"}, "annotations": {"a": "b"}},
                    "data": {"username": "{{ .user }}", "password": "{{ .password }}"},
                }
            }
        )
    )
    tpl = spec.target.template
    assert tpl is not None and tpl.type == "kubernetes.io/basic-auth" and tpl.labels == (("team", "shop"),)
    data, versions = apply_template(tpl, VALUES, dict.fromkeys(VALUES, "v1"))
    assert data == {"username": b"app", "password": b"p@ss word"}  # Replace: only the template's keys
    assert set(versions) == {"username", "password"}
    merged = parse_external_secret(es({"template": {"mergePolicy": "Merge", "data": {"u": "{{ .user }}"}}}))
    assert merged.target.template is not None
    data, _ = apply_template(merged.target.template, VALUES, {})
    assert data["u"] == b"app" and data["db-host"] == b"db.internal"


@pytest.mark.parametrize(
    ("target", "field"),
    [
        ({"template": {"engineVersion": "v1"}}, "engineVersion"),
        ({"template": {"data": {"..x": "{{ .user }}"}}}, "template.data"),
        ({"template": {"metadata": {"labels": {"a": "{{ .user }}"}}}}, "metadata.labels.a"),
        ({"template": {"data": {"k": "{{ if .a }}{{ end }}"}}}, "template.data.k"),
        ({"immutable": "yes"}, "immutable"),
    ],
)
def test_template_refusals_name_the_field(target: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError, match=field.replace(".", r"\.")):
        parse_external_secret(es(target))


def test_refresh_policies_and_decoding_strategies_parse() -> None:
    assert parse_external_secret(es({}, refreshPolicy="CreatedOnce")).refresh_interval == 0
    assert parse_external_secret(es({}, refreshPolicy="OnChange")).refresh_policy == "OnChange"
    assert parse_external_secret(es({})).refresh_interval == 3600
    with pytest.raises(SpecError, match="refreshPolicy"):
        parse_external_secret(es({}, refreshPolicy="Sometimes"))
    body = es({})
    body["spec"]["data"][0]["remoteRef"]["decodingStrategy"] = "Base64URL"
    assert parse_external_secret(body).data[0].remote.decoding_strategy == "Base64URL"
    body["spec"]["data"][0]["remoteRef"]["conversionStrategy"] = "Unicode"
    with pytest.raises(SpecError, match="conversionStrategy"):
        parse_external_secret(body)
