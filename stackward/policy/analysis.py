"""What the loaded policies read, from their syntax trees (regorus's AST as JSON).

For each rule: the top-level keys of `input` it reads, directly (`input.terraform_plan…`,
`object.get(input, ["changes"], …)`, an import alias such as `import input.terraform_plan as
tfplan`) or through the rules and functions it uses, in its package or others (`data.lib…`,
import aliases). The policy gate uses it to say which deny/warn rules need a Terraform plan
that `validate` and `policy check` do not have, which packages hold rules outside the
evaluated namespaces, and where a policy reads an `input` key stackward does not provide
(`input.tfplan`, `input.resource_changes`: a conftest policy not yet adapted), so that none of
them passes silently. The analysis over-approximates (a local variable named like a rule
counts as a use of that rule): it informs, it never blocks.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

RULE_NAME = re.compile(r"^(deny|violation|warn)(?:_[A-Za-z0-9_]+)?$")
PLAN_KEYS = ("terraform_plan", "changes")

Path = tuple[str, ...]


@dataclass
class Rule:
    """One rule definition (a rule defined in several places has several)."""

    package: str
    name: str
    file: str
    line: int
    reads: set[str] = field(default_factory=set)  # top-level input keys read directly
    uses: set[Path] = field(default_factory=set)  # data paths (package + rule) it refers to


@dataclass(frozen=True)
class Read:
    """A direct read of a top-level input key, where it is written."""

    key: str
    file: str
    line: int
    column: int


@dataclass
class Analysis:
    rules: list[Rule]
    reads: list[Read]

    @property
    def packages(self) -> set[str]:
        return {r.package for r in self.rules}

    def _rules_at(self, path: Path) -> list[Rule]:
        """The rules a data path refers to: the rule it names, or every rule below it."""
        packages = sorted(self.packages, key=lambda p: -len(p.split(".")))
        for package in packages:
            parts = tuple(package.split("."))
            if path[: len(parts)] == parts and len(path) > len(parts):
                return [r for r in self.rules if r.package == package and r.name == path[len(parts)]]
        prefix = ".".join(path)
        return [r for r in self.rules if r.package == prefix or r.package.startswith(prefix + ".")]

    def input_keys(self, rule: Rule) -> set[str]:
        """The top-level input keys `rule` reads, directly or through what it uses."""
        seen: set[int] = set()
        keys: set[str] = set()
        stack = [rule]
        while stack:
            current = stack.pop()
            if id(current) in seen:
                continue
            seen.add(id(current))
            keys |= current.reads
            for path in current.uses:
                stack.extend(self._rules_at(path))
        return keys

    def checks(self, packages: Iterable[str]) -> list[Rule]:
        """The deny/violation/warn rules of `packages`."""
        wanted = set(packages)
        return [r for r in self.rules if r.package in wanted and RULE_NAME.match(r.name)]


def _node(value: Any) -> tuple[str, dict] | None:
    if isinstance(value, dict) and len(value) == 1:
        kind, body = next(iter(value.items()))
        if isinstance(body, dict) and kind[:1].isupper():
            return kind, body
    return None


def _chain(node: Any) -> tuple[Any, list[str | None]]:
    """A reference as its base node and its segments (None where a segment is not a literal)."""
    segments: list[str | None] = []
    current = node
    while True:
        parsed = _node(current)
        if parsed is None:
            break
        kind, body = parsed
        if kind == "RefDot":
            field_ = body.get("field")
            segments.append(field_[1] if isinstance(field_, list) and len(field_) > 1 else None)
            current = body.get("refr")
        elif kind == "RefBrack":
            index = _node(body.get("index"))
            segments.append(str(index[1].get("value")) if index and index[0] == "String" else None)
            current = body.get("refr")
        else:
            break
    segments.reverse()
    return current, segments


def _var(node: Any) -> tuple[str, dict] | None:
    parsed = _node(node)
    if parsed and parsed[0] == "Var":
        return str(parsed[1].get("value")), parsed[1]
    return None


def _span_line(body: dict) -> tuple[int, int]:
    span = body.get("span") or {}
    return int(span.get("line") or 0), int(span.get("col") or 0)


def _path(node: Any) -> Path:
    base, segments = _chain(node)
    var = _var(base)
    names = [var[0]] if var else []
    for segment in segments:
        if segment is None:
            break
        names.append(segment)
    return tuple(names)


class _Module:
    def __init__(self, module: dict):
        ast = module.get("ast") or {}
        source = module.get("source") or {}
        self.file = str(source.get("file") or "")
        contents = str(source.get("contents") or "")
        package = _path((ast.get("package") or {}).get("refr"))
        self.package = ".".join(package[1:] if package[:1] == ("data",) else package)
        self.aliases: dict[str, Path] = {}  # alias -> input.… or data.… path
        self.alias_at: dict[
            str, dict
        ] = {}  # alias -> the import's span (reads through it are reported there)
        for imported in ast.get("imports") or []:
            path = _path(imported.get("refr"))
            if not path or path[0] not in ("input", "data"):
                continue
            alias_span = imported.get("as")
            if isinstance(alias_span, dict) and "start" in alias_span:
                alias = contents[alias_span["start"] : alias_span["end"]]
            else:
                alias = path[-1]
            self.aliases[alias] = path
            self.alias_at[alias] = {"span": imported.get("span") or {}}
        self.rules_raw = ast.get("rules") or []

    def rule_names(self) -> Iterator[tuple[str, dict]]:
        for raw in self.rules_raw:
            parsed = _node(raw)
            if parsed is None:
                continue
            kind, body = parsed
            head = body
            if kind == "Spec":
                head_node = _node(body.get("head"))
                if head_node is None:
                    continue
                head = head_node[1]
            path = _path(head.get("refr"))
            if path:
                yield path[0], body


def analyse(modules: list[dict]) -> Analysis:
    """The rules of `modules` (regorus's `get_ast_as_json()`) and the input keys they read."""
    parsed = [_Module(m) for m in modules]
    local_names: dict[str, set[str]] = {}
    for module in parsed:
        local_names.setdefault(module.package, set()).update(name for name, _ in module.rule_names())
    rules: list[Rule] = []
    reads: list[Read] = []
    for module in parsed:
        names = local_names.get(module.package, set())
        for name, body in module.rule_names():
            line, _ = _span_line(body)
            rule = Rule(module.package, name, module.file, line)
            _Walker(module, names, rule, reads).walk(_without_head_name(body))
            rules.append(rule)
    return Analysis(rules, reads)


class _Walker:
    def __init__(self, module: _Module, names: set[str], rule: Rule, reads: list[Read]):
        self.module = module
        self.names = names
        self.rule = rule
        self.reads = reads

    def read(self, key: str, body: dict) -> None:
        self.rule.reads.add(key)
        line, column = _span_line(body)
        self.reads.append(Read(key, self.module.file, line, column))

    def reference(self, name: str, body: dict, segments: list[str | None]) -> None:
        """A variable (with the literal segments that follow it) read in the rule."""
        if name == "input":
            if segments and segments[0] is not None:
                self.read(segments[0], body)
            return
        if name == "data":
            path = tuple(s for s in _literal_prefix(segments))
            if path:
                self.rule.uses.add(path)
            return
        alias = self.module.aliases.get(name)
        if alias is not None:
            if alias[0] == "input":
                if len(alias) > 1:
                    self.read(alias[1], self.module.alias_at.get(name, body))
                elif segments and segments[0] is not None:
                    self.read(segments[0], body)
            else:
                self.rule.uses.add(alias[1:] + tuple(_literal_prefix(segments)))
            return
        if name in self.names and self.module.package:
            self.rule.uses.add((*self.module.package.split("."), name))

    def call(self, body: dict) -> None:
        function = _path(body.get("fcn"))
        params = body.get("params") or []
        if function == ("object", "get") and len(params) >= 2:
            base = _var(params[0])
            root = base and (base[0] == "input" or self.module.aliases.get(base[0]) == ("input",))
            if root:
                key = _node(params[1])
                if key and key[0] == "String":
                    self.read(str(key[1].get("value")), key[1])
                elif key and key[0] == "Array":
                    items = key[1].get("items") or []
                    first = _node(items[0]) if items else None
                    if first and first[0] == "String":
                        self.read(str(first[1].get("value")), first[1])

    def walk(self, node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                self.walk(item)
            return
        if not isinstance(node, dict):
            return
        parsed = _node(node)
        if parsed is None:
            for value in node.values():
                self.walk(value)
            return
        kind, body = parsed
        if kind in ("RefDot", "RefBrack"):
            base, segments = _chain(node)
            var = _var(base)
            if var is not None:
                self.reference(var[0], var[1], segments)
            else:
                self.walk(base)
            self._walk_indexes(node)
            return
        if kind == "Var":
            self.reference(str(body.get("value")), body, [])
            return
        if kind == "Call":
            self.call(body)
        for value in body.values():
            self.walk(value)

    def _walk_indexes(self, node: Any) -> None:
        current = node
        while True:
            parsed = _node(current)
            if parsed is None or parsed[0] not in ("RefDot", "RefBrack"):
                return
            if parsed[0] == "RefBrack":
                self.walk(parsed[1].get("index"))
            current = parsed[1].get("refr")


def _without_head_name(body: dict) -> dict:
    """The rule without the reference naming it (a rule does not use itself by being defined)."""
    out = dict(body)
    if "refr" in out:
        out.pop("refr")
    head = _node(out.get("head"))
    if head is not None:
        kind, head_body = head
        out["head"] = {kind: {k: v for k, v in head_body.items() if k != "refr"}}
    return out


def _literal_prefix(segments: list[str | None]) -> Iterator[str]:
    for segment in segments:
        if segment is None:
            return
        yield segment
