"""`target.template` expressions: a small, safe subset of Go's text/template, as ESO uses it.

ESO renders templates with Go's text/template and the sprig functions. We accept the part of that
syntax that builds a value from fetched keys, and refuse the rest at admission with a message
that names the field: nothing is evaluated with `eval`, there are no loops, no variables, no
file or environment access, so a template can only rearrange the values it is given.

    {{ .password }}                      a fetched key (secretKey, or a key from extract/find)
    {{ index . "db-password" }}          a key whose name is not an identifier
    {{ .user | upper }}                  pipes pass the value as the last argument
    postgres://{{ .user }}:{{ .password | urlquery }}@db:5432/app
    {{ "literal" }}  {{- .x -}}          string literals; '-' trims spaces next to the action

Functions: b64enc, b64dec, upper, lower, trim, trimPrefix, trimSuffix, replace, quote, squote,
urlquery, toString, default, sha256sum, index.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tmpfs_secrets.errors import SpecError

# name -> number of arguments (the piped value counts as the last one)
FUNCTIONS: dict[str, int] = {
    "b64enc": 1,
    "b64dec": 1,
    "upper": 1,
    "lower": 1,
    "trim": 1,
    "trimPrefix": 2,
    "trimSuffix": 2,
    "replace": 3,
    "quote": 1,
    "squote": 1,
    "urlquery": 1,
    "toString": 1,
    "default": 2,
    "sha256sum": 1,
    "index": 2,
}
KEYWORDS = ("if", "else", "end", "range", "with", "define", "template", "block", "break", "continue")


@dataclass(frozen=True)
class Key:
    """`.name` or `index . "name"`: one fetched key."""

    name: str


@dataclass(frozen=True)
class Literal:
    text: str


@dataclass(frozen=True)
class Call:
    function: str
    args: tuple[Key | Literal | Call, ...]


Expr = Key | Literal | Call
Part = str | Expr  # literal text, or an action's expression


@dataclass(frozen=True)
class Template:
    source: str
    parts: tuple[Part, ...]

    def keys(self) -> set[str]:
        """Every fetched key the template reads."""
        out: set[str] = set()

        def walk(expr: Expr) -> None:
            if isinstance(expr, Key):
                out.add(expr.name)
            elif isinstance(expr, Call):
                for arg in expr.args:
                    walk(arg)

        for part in self.parts:
            if not isinstance(part, str):
                walk(part)
        return out


_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.DOTALL)
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<str>"(?:[^"\\]|\\.)*")
      | (?P<raw>`[^`]*`)
      | (?P<field>\.[A-Za-z_][A-Za-z0-9_]*)
      | (?P<dot>\.)
      | (?P<pipe>\|)
      | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<other>\S+)
    )""",
    re.VERBOSE,
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}
SUPPORTED = 'use {{ .key }}, {{ index . "key" }}, string literals, pipes and the functions ' + ", ".join(
    sorted(FUNCTIONS)
)


def parse_template(source: str, field: str) -> Template:
    """Parse one template string; SpecError naming `field` for anything outside the subset."""
    parts: list[Part] = []
    pos = 0
    trim_next = False  # the previous action ended with '-}}'
    for match in _ACTION.finditer(source):
        text = source[pos : match.start()]
        if trim_next:
            text = text.lstrip()
        if match.group(1):
            text = text.rstrip()
        if "{{" in text or "}}" in text:
            raise SpecError(f"{field} has a stray '{{{{' or '}}}}'; {SUPPORTED}")
        if text:
            parts.append(text)
        parts.append(_parse_action(match.group(2), field))
        trim_next = bool(match.group(3))
        pos = match.end()
    rest = source[pos:].lstrip() if trim_next else source[pos:]
    if "{{" in rest or "}}" in rest:
        raise SpecError(f"{field} has an unclosed '{{{{' or a stray '}}}}'; {SUPPORTED}")
    if rest:
        parts.append(rest)
    return Template(source, tuple(parts))


def _parse_action(body: str, field: str) -> Expr:
    text = body.strip()
    if text.startswith("/*"):
        raise SpecError(f"{field}: template comments are not supported; remove {{{{/* ... */}}}}")
    tokens = _tokens(text, field)
    if not tokens:
        raise SpecError(f"{field} has an empty action {{{{ }}}}; {SUPPORTED}")
    commands: list[list[tuple[str, str]]] = [[]]
    for kind, value in tokens:
        if kind == "pipe":
            commands.append([])
        else:
            commands[-1].append((kind, value))
    if any(not c for c in commands):
        raise SpecError(f"{field} has an empty command around '|'; {SUPPORTED}")
    expr = _command(commands[0], None, field)
    for command in commands[1:]:
        expr = _command(command, expr, field)
    return expr


def _tokens(text: str, field: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup or "other"
        value = match.group(kind)
        if kind == "ident" and value in KEYWORDS:
            raise SpecError(
                f"{field}: '{value}' is not supported (no control flow in templates); {SUPPORTED}"
            )
        if kind == "other":
            what = "variables" if value.startswith("$") else f"'{value}'"
            raise SpecError(f"{field}: {what} not supported; {SUPPORTED}")
        out.append((kind, value))
    return out


def _command(tokens: list[tuple[str, str]], piped: Expr | None, field: str) -> Expr:
    kind, value = tokens[0]
    if kind != "ident":
        if len(tokens) > 1 or piped is not None:
            raise SpecError(f"{field}: a value can't take arguments; put a function first; {SUPPORTED}")
        return _operand(kind, value, field)
    if value not in FUNCTIONS:
        raise SpecError(f"{field}: unknown function '{value}'; {SUPPORTED}")
    args: list[Expr] = []
    rest = tokens[1:]
    if value == "index":
        if len(rest) != 2 or rest[0][0] != "dot" or rest[1][0] not in ("str", "raw") or piped is not None:
            raise SpecError(f'{field}: write index as {{{{ index . "key" }}}}')
        return Key(_string(rest[1][1]))
    args = [_operand(k, v, field) for k, v in rest]
    if piped is not None:
        args.append(piped)
    if len(args) != FUNCTIONS[value]:
        raise SpecError(f"{field}: {value} takes {FUNCTIONS[value]} argument(s), got {len(args)}")
    return Call(value, tuple(args))


def _operand(kind: str, value: str, field: str) -> Expr:
    if kind == "field":
        return Key(value[1:])
    if kind in ("str", "raw"):
        return Literal(_string(value))
    if kind == "dot":
        raise SpecError(f"{field}: '.' alone is the whole key set; name a key: {{{{ .key }}}}")
    raise SpecError(f"{field}: '{value}' is not a value; {SUPPORTED}")


def _string(token: str) -> str:
    if token.startswith("`"):
        return token[1:-1]
    body = token[1:-1]
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), body)
