"""Specs from what a ZenML store already holds, for `stackward import`: the registrations read
from the store (stackward.zenml.reading) become spec documents, one file per kind, with a
README.md beside them. Pure: the CLI reads the store and writes the files.

Secret values stay in ZenML (the worker tells which secret keys a connector holds, never their
values). A connector's secret settings become `fromEnv` references to variables named after
the connector and the key (`PROD_GCP_SERVICE_ACCOUNT_JSON`), which the README lists; a Secret
likewise, key by key. A component holding a plain value in a field its flavor marks secret is
left out (specs reference secrets, never hold them).

Left out as well, each with the reason: ZenML's own `default` stack and components, what
another environment owns, what the environment's specs already declare, what stackward owns
in it (unless asked), and whatever depends on something left out.

With `adopt`, each document of a resource registered by hand says `adopt: true`, so that the
plan shows it taken over rather than as a conflict.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from stackward.checks.variables import is_runner_variable
from stackward.errors import UsageError
from stackward.spec.schema import API_VERSION, bundle, suggest
from stackward.zenml.catalog import Catalog, parse_secret_reference
from stackward.zenml.registrations import OWNERSHIP, Registration

FILES = {
    "ServiceConnector": "connectors.yaml",
    "StackComponent": "components.yaml",
    "Stack": "stacks.yaml",
    "Secret": "secrets.yaml",
}
NOTE = "README.md"
DEFAULT = "default"  # the name of ZenML's own stack and of its components


@dataclass(frozen=True)
class Skipped:
    """A resource of the store that was not imported, and why."""

    kind: str
    name: str
    reason: str


@dataclass(frozen=True)
class Variable:
    """An environment variable a `fromEnv` reference names: set it before applying."""

    name: str
    kind: str
    resource: str
    key: str


@dataclass
class Imported:
    """What an import writes: documents by kind, the variables they name, what was left out."""

    env: str
    adopt: bool = False  # the documents adopt what they describe
    documents: dict[str, list[dict]] = field(default_factory=dict)
    variables: list[Variable] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


def next_step(env: str, adopt: bool) -> str:
    """What to do after an import: the plan shows the imported resources as adopted with
    `adopt`, else as conflicts (they exist, and stackward does not own them)."""
    plan = f"run `stackward plan --env {env}`: it shows"
    if adopt:
        return (
            f"{plan} each imported resource as adopted (⇐), with what taking it over changes: "
            "stackward's ownership labels, the environment's labels where a resource lacks them, and "
            "each connector secret, which the apply sets from its variable. Set the variables the "
            "README lists, then apply: stackward manages them from then on."
        )
    return (
        f"{plan} each imported resource as a conflict (it exists in ZenML and stackward does not "
        "own it), so nothing is applied. The next step is adopting them: add `adopt: true` to "
        "their metadata (`stackward import --adopt` writes it), and the plan shows each as adopted "
        "(⇐), with what taking it over changes."
    )


def secret_probes(registrations: Sequence[Registration], catalog: Catalog) -> list[dict]:
    """The worker's `compare` requests (stackward.zenml.checking) that tell which secret
    settings each connector holds: every secret key of its auth method, as a reference to a
    variable the worker does not have. The reply names the keys the connector holds, never a
    value."""
    probes = []
    for r in registrations:
        if r.kind != "ServiceConnector":
            continue
        method = catalog.connectors.get(r.type)
        info = method.auth_methods.get(r.fields.get("auth_method", "")) if method else None
        if info and info.secret_fields:
            secrets = {
                key: {"fromEnv": f"STACKWARD_IMPORT_PROBE_{i}"} for i, key in enumerate(info.secret_fields)
            }
            probes.append({"kind": r.kind, "name": r.name, "id": r.id, "secrets": secrets, "values": {}})
    return probes


def held_secret_keys(status: Mapping[tuple[str, str], Mapping[str, str]]) -> dict[str, frozenset[str]]:
    """Connector name -> the secret keys it holds, from the reply to `secret_probes`."""
    return {name: frozenset(keys) for (kind, name), keys in status.items() if kind == "ServiceConnector"}


def _pattern(definition: str) -> re.Pattern[str]:
    return re.compile(bundle()["$defs"][definition]["pattern"])


def _escaped(value: Any) -> Any:
    """A value from the store as a spec holds it: `${` written `$${`, so that nothing in it
    reads as a reference."""
    if isinstance(value, str):
        return value.replace("${", "$${")
    if isinstance(value, dict):
        return {k: _escaped(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_escaped(v) for v in value]
    return value


class _Importer:
    def __init__(
        self,
        registrations: Sequence[Registration],
        catalog: Catalog,
        env: str,
        env_labels: Mapping[str, str],
        declared: Collection[tuple[str, str]],
        include_owned: bool,
        connector_secrets: Mapping[str, Collection[str]],
        adopt: bool,
    ):
        self.catalog = catalog
        self.adopt = adopt
        self.env = env
        self.env_labels = env_labels
        self.declared = set(declared)
        self.include_owned = include_owned
        self.connector_secrets = connector_secrets
        self.of_kind: dict[str, list[Registration]] = {kind: [] for kind in FILES}
        for r in registrations:
            if r.kind in self.of_kind:
                self.of_kind[r.kind].append(r)
        self.imported: set[tuple[str, str]] = set()
        self.why: dict[tuple[str, str, str], str] = {}  # (kind, name, type) -> why it was left out
        self.result = Imported(env, adopt)
        self.taken: set[str] = set()
        self.patterns = {definition: _pattern(definition) for definition in ("name", "secretName")}
        # what the environment will have without this import: its specs, and what it owns
        self.present = self.declared | {(r.kind, r.name) for r in registrations if r.owner == env}

    # -- what is in scope -------------------------------------------------------------------
    def scope(self, stacks: Sequence[str]) -> dict[str, list[Registration]]:
        """Everything, or the stacks asked for and what they use."""
        if not stacks:
            return self.of_kind
        known = {s.name: s for s in self.of_kind["Stack"]}
        unknown = [name for name in dict.fromkeys(stacks) if name not in known]
        if unknown:
            hints = "; ".join(filter(None, (suggest(n, known) for n in unknown)))
            raise UsageError(
                f"{self.env}: no stack named {', '.join(map(repr, unknown))} in the ZenML store"
                + (f" ({hints})" if hints else "")
                + "; nothing was imported"
            )
        chosen = [known[name] for name in dict.fromkeys(stacks)]
        used = {(t, n) for s in chosen for t, n in s.fields["components"].items()}
        components = [c for c in self.of_kind["StackComponent"] if (c.type, c.name) in used]
        connectors = {c.fields.get("connector") for c in components}
        secrets = {name for r in [*chosen, *components] for name in r.fields.get("secrets") or []}
        secrets |= {ref[0] for c in components for ref in _references(c.fields.get("configuration"))}
        return {
            "ServiceConnector": [c for c in self.of_kind["ServiceConnector"] if c.name in connectors],
            "StackComponent": components,
            "Stack": chosen,
            "Secret": [s for s in self.of_kind["Secret"] if s.name in secrets],
        }

    # -- why a resource is left out ---------------------------------------------------------
    def left_out(self, r: Registration) -> str | None:
        """Why `r` is not imported, for reasons of its own."""
        if r.name == DEFAULT and r.kind in ("Stack", "StackComponent"):
            return "ZenML's own default " + ("stack" if r.kind == "Stack" else r.type)
        if r.owner and r.owner != self.env:
            return f"environment {r.owner} owns it"
        if (r.kind, r.name) in self.declared:
            return f"{self.env}'s specs already declare it"
        if r.owner == self.env and not self.include_owned:
            return f"stackward already owns it in {self.env} (--include-owned imports it all the same)"
        definition = "secretName" if r.kind == "Secret" else "name"
        if "$" in r.name or not self.patterns[definition].fullmatch(r.name):
            return f"specs cannot name it so ({bundle()['$defs'][definition]['x-hint']}): rename it in ZenML"
        return None

    def unavailable(self, kind: str, name: str, type_: str = "") -> str | None:
        """Why a resource another one uses will not be in the environment (None: it will be)."""
        if (kind, name) in self.imported or (kind, name) in self.present:
            return None
        why = self.why.get((kind, name, type_))
        return why or f"there is no {kind} {name} in the store"

    def skip(self, r: Registration, reason: str) -> None:
        self.why[(r.kind, r.name, r.type if r.kind == "StackComponent" else "")] = reason
        self.result.skipped.append(Skipped(r.kind, r.name, reason))

    def add(self, r: Registration, spec: dict, description: str = "") -> None:
        metadata: dict[str, Any] = {"name": self.named(r.name)}
        texts = {k: "" if v is None else str(v) for k, v in sorted(r.labels.items()) if k not in OWNERSHIP}
        # the environment stamps its own labels: a resource's copy of one would only repeat it
        labels = {k: _escaped(v) for k, v in texts.items() if self.env_labels.get(k) != v}
        if labels:
            metadata["labels"] = labels
        if description:
            metadata["description"] = _escaped(description)
        if self.adopt and r.owner is None:
            metadata["adopt"] = True
        document = {"apiVersion": API_VERSION, "kind": r.kind, "metadata": metadata, "spec": spec}
        self.result.documents.setdefault(r.kind, []).append(document)
        self.imported.add((r.kind, r.name))

    def named(self, name: str) -> str:
        """`${env.name}-rest` for a name that starts with the environment's name and a dash."""
        prefix = f"{self.env}-"
        return "${env.name}-" + name[len(prefix) :] if name.startswith(prefix) and name != prefix else name

    def variable(self, kind: str, resource: str, key: str) -> dict:
        """A `fromEnv` reference to a variable named after the resource and key, listed."""
        name = re.sub(r"[^A-Za-z0-9]+", "_", f"{resource}_{key}").strip("_").upper()
        if not re.match(r"[A-Z_]", name) or is_runner_variable(name):
            name = f"SECRET_{name}"
        unique, n = name, 2
        while unique in self.taken:
            unique, n = f"{name}_{n}", n + 1
        self.taken.add(unique)
        self.result.variables.append(Variable(unique, kind, resource, key))
        return {"fromEnv": unique}

    # -- each kind --------------------------------------------------------------------------
    def connector(self, r: Registration) -> None:
        f = r.fields
        known = self.catalog.connectors.get(r.type)
        if known is None or f["auth_method"] not in known.auth_methods:
            self.skip(r, f"the installed zenml has no {r.type} connector with auth method {f['auth_method']}")
            return
        spec: dict[str, Any] = {"type": r.type, "authMethod": f["auth_method"]}
        if f.get("resource_type"):
            spec["resourceType"] = f["resource_type"]
            if f.get("resource_id"):
                spec["resourceId"] = _escaped(f["resource_id"])
        if f.get("expiration_seconds") is not None:
            spec["expirationSeconds"] = f["expiration_seconds"]
        if f.get("configuration"):
            spec["configuration"] = _escaped(dict(f["configuration"]))
        keys = sorted({*r.secret_keys, *self.connector_secrets.get(r.name, ())})
        if keys:
            spec["secrets"] = {k: self.variable(r.kind, r.name, k) for k in keys}
        self.add(r, spec, f.get("description") or "")

    def component(self, r: Registration, clashes: dict[str, list[str]]) -> None:
        f = r.fields
        flavor = self.catalog.flavors.get(r.type, {}).get(f["flavor"])
        if flavor is None:
            self.skip(r, f"the installed zenml has no {r.type} flavor {f['flavor']}")
            return
        if r.name in clashes:
            types = ", ".join(clashes[r.name])
            self.skip(
                r,
                f"components of several types are named {r.name} ({types}); names are unique per kind in "
                "specs: rename all but one in ZenML and import again",
            )
            return
        config = dict(f.get("configuration") or {})
        plain = sorted(
            k for k in flavor.secret_fields if config.get(k) is not None and not _is_reference(config[k])
        )
        if plain:
            self.skip(
                r,
                f"it holds a plain value in {', '.join(plain)}, which its flavor marks secret: put the value in "
                "a ZenML secret, set the field to {{secret_name.key}} in ZenML, and import again",
            )
            return
        connector = f.get("connector")
        missing = connector and self.unavailable("ServiceConnector", connector)
        if missing:
            self.skip(r, f"it uses connector {connector}, which is not imported: {missing}")
            return
        spec: dict[str, Any] = {"type": r.type, "flavor": f["flavor"]}
        if config:
            spec["configuration"] = _escaped(config)
        if connector:
            spec["connector"] = self.named(connector)
            if f.get("connector_resource_id"):
                spec["connectorResourceId"] = _escaped(f["connector_resource_id"])
        self.attached(spec, f)
        self.add(r, spec)

    def stack(self, r: Registration) -> None:
        f = r.fields
        for slot, name in sorted(f["components"].items()):
            missing = self.unavailable("StackComponent", name, slot)
            if missing and name == DEFAULT:
                self.skip(
                    r,
                    f"it uses ZenML's default {slot}, which is left out: give the stack its own {slot}",
                )
                return
            if missing:
                self.skip(r, f"it uses {slot} {name}, which is not imported: {missing}")
                return
        spec: dict[str, Any] = {
            "components": {slot: self.named(name) for slot, name in f["components"].items()}
        }
        self.attached(spec, f)
        self.add(r, spec, f.get("description") or "")

    def secret(self, r: Registration, used: dict[str, set[str]]) -> None:
        keys = r.fields.get("keys") or []
        if not keys:
            uses = sorted(used.get(r.name, ()))
            self.skip(
                r,
                "stackward reads the key names only of the secrets it owns, so its keys are not known"
                + (f" (its components use {', '.join(uses)})" if uses else "")
                + ": specs may use it as it is, or declare it by hand",
            )
            return
        spec: dict[str, Any] = {"values": {k: self.variable(r.kind, r.name, k) for k in keys}}
        if r.fields.get("private"):
            spec["private"] = True
        self.add(r, spec)

    def attached(self, spec: dict, f: dict) -> None:
        if f.get("environment"):
            spec["environment"] = _escaped({k: str(v) for k, v in f["environment"].items()})
        if f.get("secrets"):
            spec["secrets"] = [self.named(name) for name in f["secrets"]]

    def run(self, stacks: Sequence[str]) -> Imported:
        scope = self.scope(stacks)
        todo: dict[str, list[Registration]] = {}
        for kind, items in scope.items():
            for r in sorted(items, key=lambda r: (r.type, r.name)):
                reason = self.left_out(r)
                if reason:
                    self.skip(r, reason)
                else:
                    todo.setdefault(kind, []).append(r)
        types: dict[str, list[str]] = {}
        for c in todo.get("StackComponent", []):
            types.setdefault(c.name, []).append(c.type)
        clashes = {name: found for name, found in types.items() if len(found) > 1}
        used: dict[str, set[str]] = {}
        for c in self.of_kind["StackComponent"]:
            for name, key in _references(c.fields.get("configuration")):
                used.setdefault(name, set()).add(key)
        for r in todo.get("ServiceConnector", []):
            self.connector(r)
        for r in todo.get("StackComponent", []):
            self.component(r, clashes)
        for r in todo.get("Stack", []):
            self.stack(r)
        for r in todo.get("Secret", []):
            self.secret(r, used)
        return self.result


def _is_reference(value: Any) -> bool:
    return parse_secret_reference(value) is not None


def _references(config: Any) -> list[tuple[str, str]]:
    """(secret name, key) of every `{{name.key}}` value of a component's configuration."""
    values = config.values() if isinstance(config, dict) else []
    return [ref for ref in map(parse_secret_reference, values) if ref is not None]


def import_specs(
    registrations: Sequence[Registration],
    catalog: Catalog,
    *,
    env: str,
    env_labels: Mapping[str, str] | None = None,
    declared: Collection[tuple[str, str]] = (),
    stacks: Sequence[str] = (),
    include_owned: bool = False,
    connector_secrets: Mapping[str, Collection[str]] | None = None,
    adopt: bool = False,
) -> Imported:
    """The spec documents for what the store holds (or, with `stacks`, for those stacks and
    what they use). `declared`: (kind, name) of what the environment's specs already declare;
    `env_labels`: the labels the environment stamps on every resource (left out of each
    document); `connector_secrets`: connector name -> the secret keys it holds; `adopt`: each
    document of a resource registered by hand says `adopt: true`. UsageError for a stack not in
    the store."""
    importer = _Importer(
        registrations, catalog, env, env_labels or {}, declared, include_owned, connector_secrets or {}, adopt
    )
    return importer.run(stacks)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def render(imported: Imported, *, origin: str, when: str, command: str) -> dict[str, str]:
    """File name -> text: one YAML file per kind with a header saying where it came from and
    when, and the README listing the variables to set and what was left out. Nothing to write
    when nothing was imported."""
    if not imported.documents:
        return {}
    header = (
        f"# Imported by `{_one_line(command)}` on {when}\n# from {_one_line(origin)}.\n"
        f"# Secret values are not here: each is a fromEnv reference; {NOTE} lists the variables to set.\n"
    )
    files = {}
    for kind, name in FILES.items():
        documents = imported.documents.get(kind)
        if documents:
            files[name] = header + yaml.safe_dump_all(documents, sort_keys=False, allow_unicode=True)
    files[NOTE] = _note(imported, origin, when, command)
    return files


def _note(imported: Imported, origin: str, when: str, command: str) -> str:
    lines = [
        f"# Imported from ZenML: {imported.env}",
        "",
        f"`{_one_line(command)}` wrote these specs on {when} from {_one_line(origin)}. It only read the store.",
        "",
    ]
    for kind, name in FILES.items():
        documents = imported.documents.get(kind, [])
        if documents:
            names = ", ".join(f"`{d['metadata']['name']}`" for d in documents)
            lines.append(f"- `{name}`: {names}")
    lines += ["", "## Variables to set", ""]
    if imported.variables:
        lines += [
            "Secret values stay in ZenML: they are not in these files. Each secret setting is a `fromEnv`",
            "reference to the variable below: set it where `stackward apply` runs (a CI secret, for",
            "example) before the first apply.",
            "",
            "| variable | for |",
            "|---|---|",
            *(f"| `{v.name}` | {v.kind} `{v.resource}`, key `{v.key}` |" for v in imported.variables),
        ]
    else:
        lines.append("None: no imported resource holds a secret value.")
    if imported.skipped:
        lines += ["", "## Not imported", ""]
        lines += [f"- {s.kind} `{s.name}`: {s.reason}" for s in imported.skipped]
    lines += [
        "",
        "## Before committing",
        "",
        "Review the values: ZenML marks some settings secret and those are references here, but",
        "anything else (component `environment` variables, for example) is written as the store has it.",
        "",
        "## Next step",
        "",
        next_step(imported.env, imported.adopt),
        "",
    ]
    return "\n".join(lines)
