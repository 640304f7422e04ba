"""From an environments folder to resolved environments.

An environments folder holds one folder per environment plus shared folders whose names
start with `_` (`_base` for documents every environment inherits, `_modules` for Terraform
modules). Resolving an environment: load its documents and those of its bases, apply
same-named environment documents to base documents as JSON Merge Patches (RFC 7386),
interpolate `${env.*}`/`${var.*}`, and stamp the environment's labels on every resource.
The result is the model in stackward.spec.model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stackward.diagnostics import Diagnostic, Location, display_path
from stackward.spec.discover import spec_files
from stackward.spec.interpolation import Context, interpolate
from stackward.spec.loader import Document, LoadedFile, SourceMap, load_file
from stackward.spec.model import Environment, EnvironmentSettings, Repo, Resource
from stackward.spec.schema import suggest, validate_document

DEFAULT_BASE = "_base"


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON Merge Patch: mappings merge, `null` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


class Resolver:
    """Resolves environments of one repo; each spec file is read once."""

    def __init__(self, repo: Repo):
        self.repo = repo
        self._files: dict[Path, LoadedFile] = {}

    def _outside(self, path: Path) -> Diagnostic | None:
        """The finding for a spec file or folder that links outside the repository."""
        if path.resolve().is_relative_to(self.repo.repo_root):
            return None
        kind, target = ("folder", "folder") if path.is_dir() else ("spec file", "file")
        return Diagnostic(
            "file.symlink",
            f"{kind} {path.name} is a link to a {target} outside the repository; it was not read",
            f"replace the link with the {target} itself",
            Location(display_path(path)),
        )

    def load(self, folder: Path) -> tuple[list[Path], list[Document], list[Diagnostic]]:
        """The spec files of `folder`, their documents and what reading them found; nothing is
        read from a folder or file that links outside the repository."""
        outside = self._outside(folder)
        if outside is not None:
            return [], [], [outside]
        files = spec_files(folder)
        documents: list[Document] = []
        diagnostics: list[Diagnostic] = []
        for path in files:
            outside = self._outside(path)
            if outside is not None:
                diagnostics.append(outside)
                continue
            if path not in self._files:
                self._files[path] = load_file(path)
            loaded = self._files[path]
            documents.extend(loaded.documents)
            diagnostics.extend(loaded.diagnostics)
        return files, documents, diagnostics

    def resolve(self, name: str) -> Environment:
        folder = self.repo.environments[name]
        outside = self._outside(folder)
        if outside is not None:  # nothing else to say about a folder that is not read
            return Environment(name, folder, None, [], [], [], [outside])
        files, documents, diagnostics = self.load(folder)
        definitions = [d for d in documents if isinstance(d.data, dict) and d.kind == "Environment"]
        own = [d for d in documents if d not in definitions]
        definition = self._definition(name, folder, definitions, diagnostics)
        settings = definition.data.get("spec") if definition else None
        settings = settings if isinstance(settings, dict) else {}
        bases = self._bases(settings, definition, diagnostics)
        inherited: list[Document] = []
        for base in bases:
            base_files, docs, diags = self.load(self.repo.shared[base])
            diagnostics.extend(diags)
            files.extend(base_files)
            for doc in docs:
                if isinstance(doc.data, dict) and doc.kind == "Environment":
                    diagnostics.append(
                        Diagnostic(
                            "spec.environment",
                            f"shared folder {base} holds an Environment document",
                            "Environment documents belong in the environment's own folder",
                            doc.start,
                        )
                    )
                else:
                    inherited.append(doc)
        ctx = _context(name, settings)
        resources = self._combine(inherited, own, ctx, diagnostics)
        resolved_definition = None
        if definition is not None:
            resolved_definition = Resource(
                "Environment", name, definition.data, definition.positions, (definition.file,)
            )
            diagnostics.extend(validate_document(definition.data, definition.positions))
        return Environment(name, folder, resolved_definition, resources, bases, files, diagnostics)

    def _definition(
        self, name: str, folder: Path, found: list[Document], diagnostics: list[Diagnostic]
    ) -> Document | None:
        if not found:
            diagnostics.append(
                Diagnostic(
                    "spec.environment",
                    f"environment folder {display_path(folder)} has no Environment document",
                    f"add {display_path(folder)}/environment.yaml with kind: Environment and "
                    f"metadata.name: {name}; a shared folder needs a name starting with '_'",
                    Location(display_path(folder)),
                )
            )
            return None
        for extra in found[1:]:
            diagnostics.append(
                Diagnostic(
                    "spec.environment",
                    "more than one Environment document in this environment",
                    f"keep one; the first is at {found[0].start.file}:{found[0].start.line}",
                    extra.start,
                )
            )
        first = found[0]
        if first.name is not None and first.name != name:
            diagnostics.append(
                Diagnostic(
                    "spec.environment",
                    f"Environment is named {first.name!r} but its folder is {name!r}",
                    f"set metadata.name: {name} (the folder name is the environment's name)",
                    first.positions.find(("metadata", "name")),
                    ("metadata", "name"),
                )
            )
        return first

    def _bases(self, settings: dict, definition: Document | None, diagnostics: list[Diagnostic]) -> list[str]:
        declared = settings.get("bases")
        if not isinstance(declared, list):
            return [DEFAULT_BASE] if DEFAULT_BASE in self.repo.shared else []
        bases: list[str] = []
        for index, base in enumerate(declared):
            if not isinstance(base, str) or base in bases:
                continue  # the schema reports it
            if base in self.repo.shared:
                bases.append(base)
            else:
                path = ("spec", "bases", index)
                diagnostics.append(
                    Diagnostic(
                        "reference.base",
                        f"base folder {base!r} does not exist in {display_path(self.repo.root)}",
                        suggest(base, self.repo.shared)
                        or f"create {base}/ there, or remove it from spec.bases",
                        definition.positions.find(path) if definition else None,
                        path,
                    )
                )
        return bases

    def _combine(
        self,
        inherited: list[Document],
        own: list[Document],
        ctx: Context,
        diagnostics: list[Diagnostic],
    ) -> list[Resource]:
        """Overlay environment documents on base documents of the same kind and name."""
        layers: list[dict[tuple[str, str], Document]] = []
        for docs in (inherited, own):
            layer: dict[tuple[str, str], Document] = {}
            for doc in docs:
                problems = _shape_problems(doc)
                if problems:
                    diagnostics.extend(problems)
                    continue
                name = interpolate(doc.name, ctx, doc.positions, ("metadata", "name"))
                key = (doc.kind, str(name.value))
                if key in layer:
                    first = layer[key].positions.find(("metadata", "name"))
                    diagnostics.append(
                        Diagnostic(
                            "spec.duplicate",
                            f"duplicate {doc.kind} named {key[1]!r} (first defined at "
                            f"{first.file}:{first.line})",
                            "rename one of them; names are unique per kind in an environment",
                            doc.positions.find(("metadata", "name")),
                            ("metadata", "name"),
                        )
                    )
                    continue
                layer[key] = doc
            layers.append(layer)
        base_layer, own_layer = layers
        resources = []
        for key in [*base_layer, *(k for k in own_layer if k not in base_layer)]:
            resources.append(self._resource(key, base_layer.get(key), own_layer.get(key), ctx, diagnostics))
        return resources

    def _resource(
        self,
        key: tuple[str, str],
        base: Document | None,
        override: Document | None,
        ctx: Context,
        diagnostics: list[Diagnostic],
    ) -> Resource:
        if base is not None and override is not None:
            data = merge_patch(base.data, override.data)
            positions = SourceMap({**base.positions, **override.positions})
            files = (base.file, override.file)
        else:
            doc = base or override
            data, positions, files = doc.data, doc.positions, (doc.file,)
        result = interpolate(data, ctx, positions)
        diagnostics.extend(result.diagnostics)
        data = _stamp_labels(result.value, ctx.env_labels)
        diagnostics.extend(validate_document(data, positions))
        return Resource(key[0], key[1], data, positions, files, result.infra_refs)


def _shape_problems(doc: Document) -> list[Diagnostic]:
    """Problems that stop a document from taking part in resolution at all."""
    if not isinstance(doc.data, dict) or doc.kind is None or doc.name is None:
        problems = validate_document(doc.data, doc.positions)
        if problems:
            return problems
        return [
            Diagnostic(
                "schema",
                "missing required key 'name' in metadata",
                "add metadata.name",
                doc.start,
                ("metadata",),
            )
        ]
    if doc.kind not in ("ServiceConnector", "StackComponent", "Stack", "Secret", "Infrastructure"):
        return validate_document(doc.data, doc.positions)
    return []


def _context(name: str, settings: dict) -> Context:
    parsed = EnvironmentSettings.parse(settings)
    return Context(name, parsed.labels, parsed.variables)


def _stamp_labels(data: dict, labels: dict[str, str]) -> dict:
    if not labels:
        return data
    metadata = data.get("metadata")
    if not isinstance(metadata, dict):
        return data
    own = metadata.get("labels", {})
    if not isinstance(own, dict):
        return data  # the schema reports it; stamping must not hide it
    return {**data, "metadata": {**metadata, "labels": {**labels, **own}}}
