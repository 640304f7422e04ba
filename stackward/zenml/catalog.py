"""ZenML's flavor and service-connector schemas, taken from the installed `zenml` package.

Importing zenml takes seconds, so the catalog is built once per installed zenml version in
a subprocess (which also keeps ZenML's process-wide configuration out of ours) and cached
as JSON in the settings' cache folder (`cache_dir`: `$STACKWARD_CACHE_DIR`, else
`$XDG_CACHE_HOME/stackward`, else `~/.cache/stackward`), file
`zenml-catalog-<zenml version>-v<format>.json`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

from stackward.errors import CannotRun

CATALOG_FORMAT = 3
REQUIRED_SLOTS = ("orchestrator", "artifact_store")


def is_secret_reference(value: object) -> bool:
    """ZenML's `{{secret_name.key}}` (its regex, without the backtracking on hostile input)."""
    return parse_secret_reference(value) is not None


def parse_secret_reference(value: object) -> tuple[str, str] | None:
    """(secret name, key) of a `{{secret_name.key}}` value, split as ZenML splits it (at the
    first dot), or None when the value is not a secret reference."""
    if not isinstance(value, str) or not (value.startswith("{{") and value.endswith("}}")):
        return None
    inner = value[2:-2].strip()
    name, dot, key = inner.partition(".")
    if not (name and dot and key) or any(c.isspace() for c in inner):
        return None
    return name, key


class CatalogError(CannotRun):
    """The ZenML catalog could not be built (zenml missing or broken)."""


@dataclass(frozen=True)
class FlavorInfo:
    type: str
    name: str
    schema: dict
    secret_fields: tuple[str, ...]
    connector_type: str | None
    resource_type: str | None


@dataclass(frozen=True)
class AuthMethodInfo:
    name: str
    schema: dict
    secret_fields: tuple[str, ...]
    # Temporary credentials (ZenML's AuthenticationMethodModel): all None when the method
    # issues none, and then an expiration cannot be set.
    min_expiration_seconds: int | None = None
    max_expiration_seconds: int | None = None
    default_expiration_seconds: int | None = None

    @property
    def issues_temporary_credentials(self) -> bool:
        """ZenML's `supports_temporary_credentials`: an expiration may be set."""
        return any(
            s is not None
            for s in (
                self.min_expiration_seconds,
                self.max_expiration_seconds,
                self.default_expiration_seconds,
            )
        )


@dataclass(frozen=True)
class ConnectorTypeInfo:
    type: str
    resource_types: tuple[str, ...]
    auth_methods: dict[str, AuthMethodInfo]
    # resource type -> the auth methods that can give access to it (ZenML's
    # ResourceTypeModel.auth_methods)
    resource_auth_methods: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def methods_for(self, resource_type: str) -> tuple[str, ...]:
        """The auth methods that can give access to `resource_type`."""
        return self.resource_auth_methods.get(resource_type, ())


@dataclass(frozen=True)
class Catalog:
    zenml_version: str
    component_types: tuple[str, ...]
    flavors: dict[str, dict[str, FlavorInfo]]
    connectors: dict[str, ConnectorTypeInfo]

    @classmethod
    def from_json(cls, data: dict) -> Catalog:
        flavors = {
            ctype: {
                name: FlavorInfo(**{**info, "secret_fields": tuple(info["secret_fields"])})
                for name, info in by_name.items()
            }
            for ctype, by_name in data["flavors"].items()
        }
        connectors = {
            ctype: ConnectorTypeInfo(
                ctype,
                tuple(info["resource_types"]),
                {
                    m: AuthMethodInfo(**{**a, "secret_fields": tuple(a["secret_fields"])})
                    for m, a in info["auth_methods"].items()
                },
                {r: tuple(methods) for r, methods in info["resource_auth_methods"].items()},
            )
            for ctype, info in data["connectors"].items()
        }
        return cls(data["zenml_version"], tuple(data["component_types"]), flavors, connectors)


def zenml_version() -> str:
    try:
        return metadata.version("zenml")
    except metadata.PackageNotFoundError:
        raise CatalogError(
            "the zenml package is not installed; install stackward with its dependencies"
        ) from None


def catalog_path(cache_dir: Path) -> Path:
    return cache_dir / f"zenml-catalog-{zenml_version()}-v{CATALOG_FORMAT}.json"


@cache
def load_catalog(cache_dir: Path) -> Catalog:
    """The catalog for the installed zenml, building it into `cache_dir` on first use."""
    path = catalog_path(cache_dir)
    if not path.exists():
        _build_in_subprocess(path)
    return Catalog.from_json(json.loads(path.read_text()))


def _build_in_subprocess(path: Path) -> None:
    print(
        f"stackward: reading flavor schemas from zenml {zenml_version()} (once; cached in {path})",
        file=sys.stderr,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="stackward-zenml-") as config_dir:
        env = {
            **os.environ,
            "ZENML_CONFIG_PATH": config_dir,
            "ZENML_ANALYTICS_OPT_IN": "false",
            "ZENML_LOGGING_VERBOSITY": "ERROR",
            "PYTHONWARNINGS": "ignore",
        }
        proc = subprocess.run(
            [sys.executable, "-m", "stackward.zenml.catalog", str(path)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    if proc.returncode != 0 or not path.exists():
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise CatalogError(f"could not read flavor schemas from zenml:\n{tail}")


def _secret_fields(model: Any) -> tuple[str, ...]:
    from zenml.utils.secret_utils import is_secret_field

    return tuple(sorted(n for n, f in model.model_fields.items() if is_secret_field(f)))


def _flavor_schema(flavor: Any) -> dict:
    schema = dict(flavor.config_schema)
    properties = schema.get("properties", {})
    # ZenML ignores unknown configuration keys silently; a typo would vanish. Reject them
    # unless the flavor accepts extra keys on purpose.
    schema.setdefault("additionalProperties", False)
    schemes = getattr(flavor.config_class, "SUPPORTED_SCHEMES", None)
    if schemes and "path" in properties and all(schemes):
        # Artifact stores check their path scheme in a validator the JSON schema lacks.
        alternatives = "|".join(sorted(s.replace(".", r"\.") for s in schemes))
        properties["path"] = {
            **properties["path"],
            "pattern": f"^({alternatives})",
            "x-hint": f"the path must start with {' or '.join(sorted(schemes))}",
        }
    return schema


def _is_secret(schema: dict) -> bool:
    """A property ZenML marks secret (SecretStr), also when optional (inside anyOf/oneOf)."""
    if schema.get("format") == "password" or schema.get("writeOnly"):
        return True
    return any(_is_secret(branch) for key in ("anyOf", "oneOf", "allOf") for branch in schema.get(key, []))


def auth_method_secret_fields(config_schema: dict) -> tuple[str, ...]:
    """The secret configuration keys of a connector auth method, from its JSON schema (ZenML's
    `AuthenticationMethodModel.config_schema`): the catalog's `secret_fields`, and what the
    ZenML worker never reads back."""
    return tuple(sorted(k for k, v in config_schema.get("properties", {}).items() if _is_secret(v)))


def build_catalog() -> dict:
    """Read flavors and connector types from the installed zenml (slow: imports zenml)."""
    from zenml.enums import StackComponentType
    from zenml.service_connectors.service_connector_registry import service_connector_registry
    from zenml.stack.flavor_registry import FlavorRegistry

    registry = FlavorRegistry()
    flavors: dict[str, dict[str, dict]] = {}
    for flavor_class in [*registry.builtin_flavors, *registry.integration_flavors]:
        flavor = flavor_class()
        name = str(getattr(flavor.name, "value", flavor.name))
        requirements = flavor.service_connector_requirements
        flavors.setdefault(flavor.type.value, {})[name] = {
            "type": flavor.type.value,
            "name": name,
            "schema": _flavor_schema(flavor),
            "secret_fields": _secret_fields(flavor.config_class),
            "connector_type": requirements.connector_type if requirements else None,
            "resource_type": requirements.resource_type if requirements else None,
        }
    connectors = {}
    for spec in service_connector_registry.list_service_connector_types():
        connectors[spec.connector_type] = {
            "resource_types": [r.resource_type for r in spec.resource_types],
            "resource_auth_methods": {r.resource_type: list(r.auth_methods) for r in spec.resource_types},
            "auth_methods": {
                m.auth_method: {
                    "name": m.auth_method,
                    "schema": m.config_schema,
                    "secret_fields": auth_method_secret_fields(m.config_schema),
                    "min_expiration_seconds": m.min_expiration_seconds,
                    "max_expiration_seconds": m.max_expiration_seconds,
                    "default_expiration_seconds": m.default_expiration_seconds,
                }
                for m in spec.auth_methods
            },
        }
    return {
        "format": CATALOG_FORMAT,
        "zenml_version": zenml_version(),
        "component_types": [t.value for t in StackComponentType],
        "flavors": flavors,
        "connectors": connectors,
    }


def _write(path: Path) -> None:
    data = build_catalog()
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, sort_keys=True))
    tmp.replace(path)  # atomic: concurrent runs never read half a file


if __name__ == "__main__":
    _write(Path(sys.argv[1]))
