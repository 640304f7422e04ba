"""Look at and change an environment's ZenML store with ZenML's own client (not stackward's
executor), the way a person at the dashboard or CLI would."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

READ = """
import json
from zenml.client import Client
from zenml.utils.pagination_utils import depaginate
c = Client()
out = {"connectors": {}, "components": {}, "stacks": {}}
for x in depaginate(c.list_service_connectors, hydrate=True):
    out["connectors"][x.name] = {"type": str(getattr(x.connector_type, "connector_type", x.connector_type)),
        "auth_method": x.auth_method, "labels": x.labels, "updated": str(x.updated)}
for x in depaginate(c.list_stack_components, hydrate=True):
    out["components"][x.name] = {"type": x.type.value, "flavor": x.flavor_name,
        "configuration": {k: str(v) for k, v in x.configuration.items()}, "labels": x.labels,
        "connector": x.connector.name if x.connector else None, "updated": str(x.updated)}
for x in depaginate(c.list_stacks, hydrate=True):
    out["stacks"][x.name] = {"components": {t.value: v[0].name for t, v in x.components.items()},
        "labels": x.labels, "updated": str(x.updated)}
print(json.dumps(out))
"""


def zenml_env(state_root: Path, env: str, server: tuple[str, str] | None = None) -> dict[str, str]:
    """The environment's embedded store, or the ZenML server `server` (URL, API key)."""
    out = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ZENML_STORE")},
        "ZENML_CONFIG_PATH": str(state_root / env / "zenml"),
        "ZENML_ANALYTICS_OPT_IN": "false",
        "ZENML_LOGGING_VERBOSITY": "ERROR",
        "PYTHONWARNINGS": "ignore",
    }
    if server:
        out.update(ZENML_STORE_URL=server[0], ZENML_STORE_API_KEY=server[1])
    return out


def zenml_run(state_root: Path, env: str, code: str, server: tuple[str, str] | None = None) -> str:
    """Run `code` with the environment's store, or with the ZenML server `server` (URL, API key);
    from a file: ZenML wants a source root."""
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "zenml_script.py"
        script.write_text(code)
        proc = subprocess.run(
            [sys.executable, str(script)],
            capture_output=True,
            text=True,
            env=zenml_env(state_root, env, server),
            cwd=folder,
        )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def zenml_state(state_root: Path, env: str) -> dict:
    return json.loads(zenml_run(state_root, env, READ).strip().splitlines()[-1])


def make_store(state_root: Path) -> Path:
    """A fresh embedded store (slow: ZenML creates and migrates the database); its folder."""
    zenml_run(state_root, "template", "from zenml.client import Client; Client().list_stacks()")
    return state_root / "template" / "zenml"


def copy_store(template: Path, state_root: Path, env: str) -> None:
    """A copy of a fresh store for one environment (ZenML rewrites its config for the new place)."""
    target = state_root / env / "zenml"
    target.mkdir(parents=True, exist_ok=True)
    shutil.copytree(template / "local_stores", target / "local_stores")
