"""JSON Schema of every spec kind, and translation of schema errors into diagnostics."""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Iterable
from functools import cache, cached_property
from importlib import resources
from typing import TYPE_CHECKING, Any

import jsonschema_rs

from stackward.diagnostics import Diagnostic, JsonPath
from stackward.spec.loader import SourceMap

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError

API_VERSION = "stackward.dev/v1alpha1"
_MAX_SUGGEST_OPTIONS = 300
KINDS = ("Environment", "ServiceConnector", "StackComponent", "Stack", "Secret", "Infrastructure")
_SCHEMA_TYPES = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "boolean": "a boolean (true/false)",
    "integer": "an integer",
    "number": "a number",
    "null": "null",
}
_JSON_TYPES = {
    dict: "a mapping",
    list: "a list",
    str: "a string",
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    type(None): "null",
}


@cache
def bundle() -> dict:
    """The whole schema: every kind under $defs, dispatched on `kind`."""
    text = resources.files("stackward.spec.schemas").joinpath("stackward.schema.json").read_text()
    return json.loads(text)


def kind_schema(kind: str) -> dict:
    """A standalone schema for one kind (references resolve inside it)."""
    full = bundle()
    return {
        "$schema": full["$schema"],
        "$id": full["$id"].replace("stackward.schema.json", f"{kind}.schema.json"),
        "title": kind,
        "$ref": f"#/$defs/{kind}",
        "$defs": full["$defs"],
    }


class SchemaChecker:
    """A compiled Draft 2020-12 validator that answers "valid?" fast, and the `jsonschema`
    validator that explains what is wrong when the answer is no."""

    def __init__(self, schema: dict):
        self.schema = schema
        try:
            self.gate: Any = jsonschema_rs.validator_for(schema)
        except ValueError:  # a pattern outside the compiled engine's regex dialect
            self.gate = None

    @cached_property
    def explainer(self) -> Any:
        """jsonschema's validator, imported when something is to be explained (or the compiled
        engine cannot take the schema): importing it costs more than the rest of a start-up."""
        from jsonschema import Draft202012Validator

        return Draft202012Validator(self.schema)

    def is_valid(self, instance: Any) -> bool:
        if self.gate is not None:
            return self.gate.is_valid(instance)
        return self.explainer.is_valid(instance)


@cache
def _checker(kind: str) -> SchemaChecker:
    return SchemaChecker(kind_schema(kind))


def suggest(word: str, options: Iterable[str]) -> str:
    """'did you mean X?' when a close match exists, else the list of options."""
    options = sorted({o for o in options if isinstance(o, str)})
    # difflib is quadratic per pair: compare only against a bounded number of options.
    candidates = options if len(options) <= _MAX_SUGGEST_OPTIONS else []
    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]!r}?"
    if not options:
        return ""
    shown = ", ".join(options[:20]) + (", …" if len(options) > 20 else "")
    return f"expected one of: {shown}"


def _describe(value: Any) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _label(path: JsonPath) -> str:
    return ".".join(str(p) for p in path) or "document"


def _shown(value: Any, path: JsonPath) -> str:
    """A value fit to repeat in a message: never one under secrets, never a long one."""
    if "secrets" in path or "fromEnv" in path:
        return "the value"  # whatever was written there may be a secret
    text = repr(value)
    return text if len(text) <= 40 else text[:36] + "…"


def _translate(error: ValidationError, base: JsonPath) -> list[tuple[JsonPath, str, str]]:
    """(path, message, hint) for one schema error, phrased for a person editing YAML."""
    path = (*base, *error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    hint = schema.get("x-hint", "")
    keyword = error.validator
    if keyword == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set(schema.get("properties", {}))
        patterns = schema.get("patternProperties", {})
        out = []
        for key in error.instance:
            if key in allowed or any(re.search(p, key) for p in patterns):
                continue
            out.append(
                (
                    (*path, key),
                    f"unknown key {key!r} in {_label(path)}",
                    hint or suggest(key, allowed) or "remove it: nothing else is allowed here",
                )
            )
        return out
    if keyword == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        return [(path, f"missing required key {missing!r} in {_label(path)}", hint or f"add {missing}:")]
    if keyword == "type":
        expected = error.validator_value
        expected = expected if isinstance(expected, list) else [expected]
        expected = " or ".join(_SCHEMA_TYPES.get(t, t) for t in expected)
        message = f"{_label(path)} must be {expected}, not {_describe(error.instance)}"
        return [(path, message, hint or f"change the value to {expected}")]
    if keyword in ("enum", "const"):
        options = error.validator_value if keyword == "enum" else [error.validator_value]
        options = [str(o) for o in options]
        message = f"{_label(path)}: {_shown(error.instance, path)} is not allowed"
        return [(path, message, hint or suggest(str(error.instance), options))]
    if keyword == "pattern":
        message = f"{_label(path)}: {_shown(error.instance, path)} does not match {error.validator_value}"
        return [(path, message, hint or "change the value to match the pattern")]
    if keyword == "uniqueItems":
        return [
            (path, f"{_label(path)} lists an entry more than once", hint or "remove the repeated entries")
        ]
    if keyword in ("minProperties", "maxProperties") and "fromEnv" in schema.get("properties", {}):
        sources = ", ".join(schema.get("properties", {}))
        return [(path, f"{_label(path)} needs exactly one of {sources}", hint)]
    if keyword in ("minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties"):
        bound = "at least" if keyword.startswith("min") else "at most"
        unit = "characters" if keyword.endswith("Length") else "entries"
        message = f"{_label(path)} must have {bound} {error.validator_value} {unit}"
        return [(path, message, hint or f"give {bound} {error.validator_value} {unit}")]
    if keyword == "not" and isinstance(error.validator_value, dict) and error.validator_value.get("required"):
        together = " and ".join(error.validator_value["required"])
        return [
            (
                path,
                f"{_label(path)}: {together} cannot be used together",
                error.validator_value.get("x-hint", ""),
            )
        ]
    if keyword in ("not", "false"):
        return [(path, f"{_label(path)} is not allowed here", hint or "remove it")]
    if keyword in ("minimum", "maximum"):
        bound = "at least" if keyword == "minimum" else "at most"
        return [
            (
                path,
                f"{_label(path)} must be {bound} {error.validator_value}",
                hint or f"give a number {bound} {error.validator_value}",
            )
        ]
    if keyword == "dependentRequired":
        message = error.message.replace("is a dependency of", "is required by")
        return [(path, message, hint or "add the key it names, or remove the key that needs it")]
    if keyword in ("oneOf", "anyOf") and error.context:
        best = min(error.context, key=lambda e: (-len(e.absolute_path), e.validator == "type"))
        return _translate(best, base)
    # jsonschema's own message repeats the value, which may be a secret: describe the rule instead.
    return [
        (path, f"{_label(path)} breaks the schema rule {keyword}", hint or "see docs/specs.md for this field")
    ]


def schema_diagnostics(
    checker: SchemaChecker,
    instance: Any,
    positions: SourceMap,
    *,
    base: JsonPath = (),
    code: str = "schema",
    skip: Callable[[JsonPath], bool] | None = None,
) -> list[Diagnostic]:
    """Validate `instance` (found at `base` in a document) and explain every error."""
    if checker.is_valid(instance):
        return []
    out: list[Diagnostic] = []
    for error in checker.explainer.iter_errors(instance):
        for path, message, hint in _translate(error, base):
            if skip and skip(path):
                continue
            out.append(Diagnostic(code, message, hint, positions.find(path), path))
    return out


def validate_document(data: Any, positions: SourceMap) -> list[Diagnostic]:
    """Check one document's shape: a mapping of a known kind that meets that kind's schema."""
    start = positions.find(())
    if not isinstance(data, dict):
        return [
            Diagnostic(
                "schema.document",
                f"document is {_describe(data)}; each document must be a mapping",
                "write apiVersion, kind, metadata and spec as keys at the top level",
                start,
            )
        ]
    kind = data.get("kind")
    if kind not in KINDS:
        if kind is None:
            message, hint = "document has no 'kind'", f"add kind: one of {', '.join(KINDS)}"
        else:
            message, hint = f"unknown kind {kind!r}", suggest(str(kind), KINDS)
        return [Diagnostic("schema.kind", message, hint, positions.find(("kind",)), ("kind",))]
    return schema_diagnostics(_checker(kind), data, positions)
