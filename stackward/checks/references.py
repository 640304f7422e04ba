"""Cross-reference checks: every name a spec mentions must exist, with the right type."""

from __future__ import annotations

from pathlib import Path

from stackward.diagnostics import Diagnostic, JsonPath, display_path
from stackward.plan.state import local_state_path
from stackward.spec.model import Environment, Repo, Resource
from stackward.spec.schema import suggest
from stackward.terraform.modules import (
    SourceKind,
    classify,
    has_terraform_files,
    is_pinned,
    read_interface,
    refusal,
)
from stackward.zenml.catalog import parse_secret_reference


def check_references(env: Environment, repo: Repo) -> list[Diagnostic]:
    """Dangling references between resources of one environment, and to other environments;
    module sources and a local backend's path that lead outside the repository or state folder."""
    out: list[Diagnostic] = []
    connectors = env.of_kind("ServiceConnector")
    components = env.of_kind("StackComponent")
    infra = env.of_kind("Infrastructure")
    for component in components.values():
        name = component.spec.get("connector")
        if isinstance(name, str) and name not in connectors:
            out.append(
                component.diagnostic(
                    "reference.connector",
                    f"StackComponent {component.name!r} uses connector {name!r}, which is not "
                    f"declared in environment {env.name}",
                    _missing_hint("ServiceConnector", name, connectors),
                    ("spec", "connector"),
                )
            )
    for stack in env.of_kind("Stack").values():
        slots = stack.spec.get("components")
        for slot, name in slots.items() if isinstance(slots, dict) else []:
            path = ("spec", "components", slot)
            target = components.get(name) if isinstance(name, str) else None
            if isinstance(name, str) and target is None:
                out.append(
                    stack.diagnostic(
                        "reference.component",
                        f"Stack {stack.name!r} uses component {name!r} in slot {slot}, which is "
                        f"not declared in environment {env.name}",
                        _missing_hint("StackComponent", name, components),
                        path,
                    )
                )
            elif target is not None and target.spec.get("type") != slot:
                out.append(
                    stack.diagnostic(
                        "reference.slot",
                        f"slot {slot} of Stack {stack.name!r} holds {name!r}, whose type is "
                        f"{target.spec.get('type')}",
                        f"put {name!r} in the {target.spec.get('type')} slot, or name a "
                        f"component of type {slot} here",
                        path,
                    )
                )
    for resource in env.resources:
        for path, refs in resource.infra_refs.items():
            for ref in refs:
                out += _infra_output(resource, env, str(ref), ref.name, ref.output, path, path)
        for path, module, output in from_infra_refs(resource):
            shown = f"fromInfra {{module: {module}, output: {output}}}"
            out += _infra_output(resource, env, shown, module, output, (*path, "module"), (*path, "output"))
    out.extend(check_secret_references(env))
    out.extend(_promotion(env, repo))
    out.extend(_backend(env))
    for module in infra.values():
        out.extend(check_module_source(module, repo))
    return out


def _infra_output(
    resource: Resource,
    env: Environment,
    shown: str,
    module: str,
    output: str,
    module_path: JsonPath,
    output_path: JsonPath,
) -> list[Diagnostic]:
    """An Infrastructure output a value takes (`shown` as written) is declared: the module at
    `module_path`, the output at `output_path`."""
    infra = env.of_kind("Infrastructure")
    target = infra.get(module)
    if target is None:
        return [
            resource.diagnostic(
                "reference.infra",
                f"{shown} names Infrastructure {module!r}, which is not declared in environment {env.name}",
                _missing_hint("Infrastructure", module, infra),
                module_path,
            )
        ]
    outputs = declared_outputs(target)
    if output in outputs:
        return []
    return [
        resource.diagnostic(
            "reference.infra",
            f"{shown}: Infrastructure {module!r} declares no output {output!r}",
            f"add {output} to spec.outputs of Infrastructure {module}, or "
            + (suggest(output, outputs) or "declare its outputs"),
            output_path,
        )
    ]


def from_infra_refs(resource: Resource) -> list[tuple[JsonPath, str, str]]:
    """(path of the `fromInfra` mapping, module, output) for every secret value a connector
    (`spec.secrets`) or a Secret (`spec.values`) takes from an Infrastructure output."""
    key = {"ServiceConnector": "secrets", "Secret": "values"}.get(resource.kind)
    refs = resource.spec.get(key) if key else None
    out = []
    for name, ref in refs.items() if isinstance(refs, dict) else []:
        source = ref.get("fromInfra") if isinstance(ref, dict) else None
        if isinstance(source, dict):
            module, output = source.get("module"), source.get("output")
            if isinstance(module, str) and isinstance(output, str):  # else the schema reports it
                out.append((("spec", key, name, "fromInfra"), module, output))
    return out


def check_secret_references(env: Environment) -> list[Diagnostic]:
    """Keys taken from a Secret of this environment exist in it: `{{name.key}}` in a
    component's configuration and `fromZenmlSecret` in a connector's secrets. A name no Secret
    of the environment has may be a secret of the ZenML store: the plan checks those."""
    secrets = env.of_kind("Secret")
    out = []
    for component in env.of_kind("StackComponent").values():
        config = component.spec.get("configuration")
        for field_name, value in config.items() if isinstance(config, dict) else []:
            parsed = parse_secret_reference(value)
            if parsed is not None and parsed[0] in secrets:
                out += _secret_key(
                    component,
                    secrets[parsed[0]],
                    parsed[1],
                    str(value),
                    ("spec", "configuration", field_name),
                )
    for connector in env.of_kind("ServiceConnector").values():
        refs = connector.spec.get("secrets")
        for key, ref in refs.items() if isinstance(refs, dict) else []:
            source = ref.get("fromZenmlSecret") if isinstance(ref, dict) else None
            if not isinstance(source, dict):
                continue
            name, secret_key = source.get("name"), source.get("key")
            if isinstance(name, str) and isinstance(secret_key, str) and name in secrets:
                shown = f"fromZenmlSecret {{name: {name}, key: {secret_key}}}"
                out += _secret_key(
                    connector,
                    secrets[name],
                    secret_key,
                    shown,
                    ("spec", "secrets", key, "fromZenmlSecret", "key"),
                )
    return out


def _secret_key(
    resource: Resource, secret: Resource, key: str, shown: str, path: JsonPath
) -> list[Diagnostic]:
    values = secret.spec.get("values")
    keys = {k for k in values if isinstance(k, str)} if isinstance(values, dict) else set()
    if key in keys:
        return []
    hint = suggest(key, keys) if keys else ""
    if not hint.startswith("did you mean"):
        hint = f"add {key} to spec.values of Secret {secret.name}"
        hint += f", or use one of its keys: {', '.join(sorted(keys))}" if keys else ""
    return [
        resource.diagnostic(
            "reference.secret", f"{shown}: Secret {secret.name!r} has no key {key!r}", hint, path
        )
    ]


def declared_outputs(module: Resource) -> set[str]:
    """The output names an Infrastructure declares (ill-typed entries are the schema's to report)."""
    outputs = module.spec.get("outputs")
    return {o for o in outputs if isinstance(o, str)} if isinstance(outputs, list) else set()


def local_module_folder(module: Resource) -> Path | None:
    """The folder a local module source points at (relative to the file that sets it), or
    None for a remote source."""
    source = module.spec.get("source")
    if not isinstance(source, str) or classify(source) is not SourceKind.LOCAL:
        return None
    spec_file = module.location(("spec", "source"))
    defined_in = Path(spec_file.file).resolve().parent if spec_file else module.files[-1].parent
    return (defined_in / source).resolve()


def _missing_hint(kind: str, name: str, existing: dict[str, Resource]) -> str:
    close = suggest(name, existing) if existing else ""
    if close.startswith("did you mean"):
        return close
    return f"declare a {kind} named {name!r} in this environment (or its base folder)"


def _promotion(env: Environment, repo: Repo) -> list[Diagnostic]:
    after = env.settings.promotion_after
    if after is None or env.definition is None:
        return []
    path = ("spec", "promotion", "after")
    if after == env.name:
        return [
            env.definition.diagnostic(
                "reference.promotion",
                f"environment {env.name} is promoted after itself",
                "name the environment that must apply a change first (e.g. staging for prod)",
                path,
            )
        ]
    if after not in repo.environments:
        return [
            env.definition.diagnostic(
                "reference.promotion",
                f"promotion.after names environment {after!r}, which does not exist",
                suggest(after, repo.environments),
                path,
            )
        ]
    return []


def _backend(env: Environment) -> list[Diagnostic]:
    """A local backend keeps its state inside the environment's state folder."""
    path = env.settings.terraform_backend_config.get("path")
    if env.definition is None or env.settings.terraform_backend != "local" or not isinstance(path, str):
        return []
    if local_state_path(path) is not None:
        return []
    return [
        env.definition.diagnostic(
            "infra.backend",
            f"local backend path {path!r} is outside the environment's state folder",
            "give a file path relative to the environment's state folder (.stackward/<env>/ by "
            "default), e.g. terraform.tfstate, or leave path out",
            ("spec", "terraform", "backend", "config", "path"),
        )
    ]


def check_module_source(module: Resource, repo: Repo) -> list[Diagnostic]:
    """The module source is local inside the repo (and declares what is used) or pinned."""
    source = module.spec.get("source")
    if not isinstance(source, str):
        return []
    version = module.spec.get("version")
    kind = classify(source)
    refused = refusal(source)
    if refused is not None:
        return [
            module.diagnostic(
                "infra.source",
                f"module source {source!r} is not allowed: {refused}",
                "use a local path inside the repository (./ or ../, relative to this file), a git "
                "source pinned with ?ref=, or a registry source with an exact version",
                ("spec", "source"),
            )
        ]
    if kind is not SourceKind.LOCAL:
        if is_pinned(source, version if isinstance(version, str) else None):
            return []
        hint = {
            SourceKind.GIT: "pin the module: add ?ref=<tag or commit> to the git source",
            SourceKind.REGISTRY: "pin the module: set spec.version to an exact version, e.g. 1.4.0",
        }[kind]
        return [
            module.diagnostic(
                "infra.source",
                f"module source {source!r} is not pinned; a plan could change without a spec change",
                hint,
                ("spec", "source"),
            )
        ]
    folder = local_module_folder(module)
    assert folder is not None  # a local source
    if not folder.is_relative_to(repo.repo_root):
        return [
            module.diagnostic(
                "infra.source",
                f"module source {source!r} points outside the repository",
                f"keep modules inside {display_path(repo.repo_root)}, e.g. in {display_path(repo.root / '_modules')}",
                ("spec", "source"),
            )
        ]
    if not folder.is_dir() or not has_terraform_files(folder):
        return [
            module.diagnostic(
                "infra.source",
                f"module folder {display_path(folder)} does not exist or holds no .tf files",
                "local sources are relative to the file that sets spec.source",
                ("spec", "source"),
            )
        ]
    interface = read_interface(folder)
    out = []
    outputs = module.spec.get("outputs")
    for index, output in enumerate(outputs if isinstance(outputs, list) else []):
        if isinstance(output, str) and output not in interface.outputs:
            out.append(
                module.diagnostic(
                    "infra.output",
                    f"module {display_path(folder)} has no output {output!r}",
                    suggest(output, interface.outputs) or "add the output block to the module",
                    ("spec", "outputs", index),
                )
            )
    variables = module.spec.get("variables")
    for name in variables if isinstance(variables, dict) else []:
        if name not in interface.variables:
            out.append(
                module.diagnostic(
                    "infra.variable",
                    f"module {display_path(folder)} has no variable {name!r}",
                    suggest(name, interface.variables) or "add the variable block to the module",
                    ("spec", "variables", name),
                )
            )
    return out


def check_promotion_cycles(environments: list[Environment]) -> list[Diagnostic]:
    """Promotion order must be a chain without loops (dev -> staging -> prod)."""
    after = {}
    for env in environments:
        if env.settings.promotion_after is not None:
            after[env.name] = env.settings.promotion_after
    out = []
    reported: set[str] = set()
    for env in environments:
        seen = [env.name]
        current = env.name
        while current in after:
            current = after[current]
            if current in seen:
                loop = [*seen[seen.index(current) :], current]
                if not reported.intersection(loop) and env.definition is not None:
                    reported.update(loop)
                    out.append(
                        env.definition.diagnostic(
                            "reference.promotion",
                            f"promotion order has a loop: {' -> '.join(reversed(loop))}",
                            "one environment must come first: remove promotion.after from it",
                            ("spec", "promotion", "after"),
                        )
                    )
                break
            seen.append(current)
    return out
