"""`stackward diff A B --live`: what two environments' ZenML stores hold, compared, so drift
between environments that the specs hide shows up (real embedded stores, changed by hand with
ZenML's own client)."""

from __future__ import annotations

import shutil
from pathlib import Path

from conftest import EXAMPLES, run
from zenml_tools import copy_store, zenml_run

BY_HAND = """
from zenml.client import Client
from zenml.enums import StackComponentType
c = Client()
c.create_stack_component(
    "{env}-builder", "local", StackComponentType.IMAGE_BUILDER, {{"use_subprocess_call": {flag}}}
)
{extra}
"""


def test_live_diff_shows_what_the_stores_hold_and_the_specs_do_not(tmp_path: Path, store_template: Path):
    root, state = tmp_path / "environments", tmp_path / "state"
    shutil.copytree(EXAMPLES / "_modules", root / "_modules")
    for env in ("staging", "prod"):
        shutil.copytree(EXAMPLES / "local", root / env)
        spec = root / env / "environment.yaml"
        spec.write_text(spec.read_text().replace("name: local", f"name: {env}"))
        copy_store(store_template, state, env)
    hotfix = 'c.create_stack_component("prod-hotfix", "local", StackComponentType.ORCHESTRATOR, {})'
    zenml_run(state, "staging", BY_HAND.format(env="staging", flag=True, extra=""))
    zenml_run(state, "prod", BY_HAND.format(env="prod", flag=False, extra=hotfix))

    specs = run("diff", "staging", "prod", str(root), "--state-dir", str(state))
    assert specs.exit_code == 0, specs.output
    assert "staging and prod declare the same resources and settings" in specs.output

    live = run("diff", "staging", "prod", str(root), "--state-dir", str(state), "--live")
    assert live.exit_code == 0, live.output
    assert "> only in prod: StackComponent prod-hotfix" in live.output
    assert (
        "~ StackComponent builder: configuration.use_subprocess_call: staging=True prod=False" in live.output
    )
    assert "default" not in live.output  # ZenML's own default stack is the same in both
