"""Spec loading: YAML files into documents that remember where every value came from.

PyYAML composes the node graph (in C when available); this module turns nodes into
plain data itself so that it can record a file:line:column for every JSON path, reject
duplicate keys, and bound the work a hostile file can cause (size, alias expansion, depth).
It is longer than most modules on purpose: every bound must apply to every file, so the
walk over the node graph and its limits stay in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor

from stackward.diagnostics import Diagnostic, JsonPath, Location, display_path

MAX_FILE_BYTES = 1024 * 1024
MAX_NODES_PER_FILE = 200_000
MAX_DEPTH = 64
# PyYAML's C composer recurses once per nesting level and overflows the C stack (a crash, not
# an exception) on tens of thousands of levels. Block nesting costs a line per level, so the
# size limit bounds it; flow brackets ([[[[...) are counted before composing.
MAX_FLOW_OPENERS = 2_000

_ComposeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_constructor = SafeConstructor()
_TAG = "tag:yaml.org,2002:"
_SCALARS = {
    _TAG + "str": lambda node: node.value,
    _TAG + "int": _constructor.construct_yaml_int,
    _TAG + "float": _constructor.construct_yaml_float,
    _TAG + "bool": _constructor.construct_yaml_bool,
    _TAG + "null": lambda node: None,
    # Dates stay strings: specs are JSON-shaped and the schema expects text.
    _TAG + "timestamp": lambda node: node.value,
}


class SourceMap(dict[JsonPath, Location]):
    """JSON path -> location of the key (or list item) that holds it."""

    def find(self, path: JsonPath) -> Location | None:
        """Location of `path`, or of its nearest ancestor that has one."""
        for end in range(len(path), -1, -1):
            loc = self.get(path[:end])
            if loc is not None:
                return loc
        return None


@dataclass
class Document:
    """One YAML document of a spec file, as data plus the place of each value."""

    file: Path
    index: int
    data: Any
    positions: SourceMap = field(default_factory=SourceMap)

    @property
    def start(self) -> Location:
        return self.positions[()]

    @property
    def kind(self) -> str | None:
        kind = self.data.get("kind") if isinstance(self.data, dict) else None
        return kind if isinstance(kind, str) else None

    @property
    def name(self) -> str | None:
        meta = self.data.get("metadata") if isinstance(self.data, dict) else None
        name = meta.get("name") if isinstance(meta, dict) else None
        return name if isinstance(name, str) else None


@dataclass
class LoadedFile:
    path: Path
    documents: list[Document]
    diagnostics: list[Diagnostic]


class _LoadError(Exception):
    def __init__(self, diagnostic: Diagnostic):
        super().__init__(diagnostic.message)
        self.diagnostic = diagnostic


class _Converter:
    """Turns a composed node tree into data plus a SourceMap, within the limits."""

    def __init__(self, display: str):
        self.display = display
        self.nodes = 0

    def loc(self, node: yaml.Node) -> Location:
        return Location(self.display, node.start_mark.line + 1, node.start_mark.column + 1)

    def fail(self, node: yaml.Node, code: str, message: str, hint: str, path: JsonPath) -> None:
        raise _LoadError(Diagnostic(code, message, hint, self.loc(node), path))

    def convert(self, node: yaml.Node, path: JsonPath, positions: SourceMap, depth: int) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES_PER_FILE:
            self.fail(
                node,
                "yaml.too-large",
                f"file expands to more than {MAX_NODES_PER_FILE:,} YAML nodes",
                "YAML anchors and aliases may multiply a document; write the values out "
                "or move shared settings to the base folder",
                path[:4],
            )
        if depth > MAX_DEPTH:
            self.fail(
                node,
                "yaml.too-deep",
                f"nesting is deeper than {MAX_DEPTH} levels",
                "flatten the structure; a recursive alias also causes this",
                path[:4],
            )
        if isinstance(node, yaml.ScalarNode):
            build = _SCALARS.get(node.tag)
            if build is None:
                self.fail(
                    node,
                    "yaml.tag",
                    f"unsupported YAML tag {node.tag!r}",
                    "remove the tag; specs use plain YAML values only",
                    path,
                )
            try:
                return build(node)
            except (ValueError, KeyError, OverflowError):
                kind = node.tag.removeprefix(_TAG)
                self.fail(
                    node,
                    "yaml.value",
                    f"value cannot be read as {kind}",  # the value is not repeated: it may be a secret
                    f"write a valid {kind}, or quote it to make it a string",
                    path,
                )
        if isinstance(node, yaml.SequenceNode):
            items = []
            for index, child in enumerate(node.value):
                child_path = (*path, index)
                positions[child_path] = self.loc(child)
                items.append(self.convert(child, child_path, positions, depth + 1))
            return items
        if isinstance(node, yaml.MappingNode):
            return self.convert_mapping(node, path, positions, depth)
        self.fail(node, "yaml.node", "unsupported YAML node", "use plain YAML values", path)
        return None

    def convert_mapping(
        self, node: yaml.MappingNode, path: JsonPath, positions: SourceMap, depth: int
    ) -> dict:
        result: dict[str, Any] = {}
        merged: dict[str, Any] = {}
        merged_positions = SourceMap()
        seen: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _TAG + "merge":
                merged.update(self.merge_sources(value_node, path, merged_positions, depth))
                continue
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != _TAG + "str":
                what = (
                    key_node.tag.removeprefix(_TAG)
                    if isinstance(key_node, yaml.ScalarNode)
                    else "a collection"
                )
                self.fail(
                    key_node,
                    "yaml.key",
                    f"mapping key is read as {what}, not as text",
                    "quote the key (YAML reads on/off/yes/no as booleans and 0x1F as a number)",
                    path,
                )
            key = key_node.value
            if key in seen:
                first = seen[key].start_mark.line + 1
                self.fail(
                    key_node,
                    "yaml.duplicate-key",
                    f"duplicate key {key!r} (first defined on line {first})",
                    "remove one of them: YAML would silently keep only the last",
                    (*path, key),
                )
            seen[key] = key_node
            child_path = (*path, key)
            positions[child_path] = self.loc(key_node)
            result[key] = self.convert(value_node, child_path, positions, depth + 1)
        for merged_path, location in merged_positions.items():
            positions.setdefault(merged_path, location)
        return {**merged, **result} if merged else result

    def merge_sources(self, node: yaml.Node, path: JsonPath, positions: SourceMap, depth: int) -> dict:
        sources = node.value if isinstance(node, yaml.SequenceNode) else [node]
        merged: dict = {}
        for source in reversed(sources):
            value = self.convert(source, path, positions, depth + 1)
            if not isinstance(value, dict):
                self.fail(
                    source,
                    "yaml.merge",
                    "'<<' merge key needs a mapping or a list of mappings",
                    "point '<<' at an anchored mapping",
                    path,
                )
            merged.update(value)
        return merged


def _read_text(path: Path, display: str) -> str:
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise _LoadError(
            Diagnostic(
                "file.too-large",
                f"file is {size / 1024 / 1024:.1f} MiB; spec files may be at most "
                f"{MAX_FILE_BYTES // 1024 // 1024} MiB",
                "split it into several files in the same environment folder",
                Location(display),
            )
        )
    raw = path.read_bytes()
    if b"\x00" in raw:
        raise _LoadError(
            Diagnostic(
                "file.binary",
                "file contains binary data (NUL bytes), not YAML text",
                "remove it from the environment folder or rename it so it does not end in .yaml/.yml",
                Location(display),
            )
        )
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise _LoadError(
            Diagnostic(
                "file.encoding",
                f"file is not valid UTF-8 (byte 0x{raw[exc.start]:02x})",
                "save the file as UTF-8",
                Location(display, line, column),
            )
        ) from None


def _syntax_diagnostic(exc: yaml.YAMLError, display: str) -> Diagnostic:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    message = f"{context}: {problem}" if context else problem
    hint = "fix the YAML syntax at this position"
    if "tab" in problem or "\\t" in problem:
        hint = "YAML does not allow tabs for indentation: indent with spaces"
    elif "undefined alias" in problem:
        hint = "define the anchor (&name) before using the alias (*name)"
    elif "mapping values are not allowed" in problem:
        hint = "a value containing ': ' must be quoted, or the indentation is off"
    location = Location(display, mark.line + 1, mark.column + 1) if mark else Location(display)
    return Diagnostic("yaml.syntax", f"invalid YAML: {message}", hint, location)


def _flow_depth(text: str) -> int:
    """Deepest [ / { nesting outside quoted strings (an upper bound of YAML flow nesting)."""
    depth = deepest = 0
    quote = ""
    for char in text:
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth = max(depth - 1, 0)
        elif char == "\n":
            quote = ""
    return deepest


def load_file(path: Path) -> LoadedFile:
    """Load every document of one spec file; problems come back as diagnostics."""
    display = display_path(path)
    try:
        text = _read_text(path, display)
    except _LoadError as exc:
        return LoadedFile(path, [], [exc.diagnostic])
    except OSError as exc:
        diag = Diagnostic(
            "file.unreadable",
            f"cannot read file: {exc.strerror}",
            "check the file exists and is readable",
            Location(display),
        )
        return LoadedFile(path, [], [diag])
    converter = _Converter(display)
    documents: list[Document] = []
    if text.count("[") + text.count("{") > MAX_FLOW_OPENERS and _flow_depth(text) > MAX_DEPTH:
        diag = Diagnostic(
            "yaml.too-deep",
            f"brackets nest deeper than {MAX_DEPTH} levels",
            "flatten the structure",
            Location(display),
        )
        return LoadedFile(path, [], [diag])
    try:
        for index, node in enumerate(yaml.compose_all(text, Loader=_ComposeLoader)):
            if node is None:
                continue
            positions = SourceMap({(): converter.loc(node)})
            data = converter.convert(node, (), positions, 0)
            if data is None:
                continue  # an empty document between '---' separators
            documents.append(Document(path, index, data, positions))
    except yaml.YAMLError as exc:
        return LoadedFile(path, documents, [_syntax_diagnostic(exc, display)])
    except _LoadError as exc:
        return LoadedFile(path, documents, [exc.diagnostic])
    except RecursionError:
        diag = Diagnostic(
            "yaml.too-deep",
            "YAML nesting is too deep to read",
            "flatten the structure",
            Location(display),
        )
        return LoadedFile(path, documents, [diag])
    if not documents:
        diag = Diagnostic(
            "file.empty",
            "file holds no YAML documents",
            "add a spec (apiVersion, kind, metadata, spec) or delete the file",
            Location(display, 1, 1),
        )
        return LoadedFile(path, [], [diag])
    return LoadedFile(path, documents, [])
