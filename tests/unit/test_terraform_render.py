"""The root module rendered from an environment's Infrastructure documents (no terraform run)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stackward.errors import EnvironmentFailed
from stackward.plan.state import EnvironmentState
from stackward.spec.loader import SourceMap
from stackward.spec.model import Environment, Repo, Resource
from stackward.terraform.render import backend, output_name, render_root


@pytest.fixture
def repo_root(tmp_path: Path) -> Path:
    return tmp_path.resolve() / "repo"


@pytest.fixture
def state(tmp_path: Path) -> EnvironmentState:
    return EnvironmentState(tmp_path.resolve() / "repo" / ".stackward", "dev")


def resource(kind: str, name: str, spec: dict[str, Any], spec_file: Path) -> Resource:
    data = {"apiVersion": "stackward.dev/v1alpha1", "kind": kind, "metadata": {"name": name}, "spec": spec}
    return Resource(kind, name, data, SourceMap({}), (spec_file,))


def infra(repo_root: Path, name: str, **spec: Any) -> Resource:
    spec.setdefault("source", "../_modules/base")
    return resource("Infrastructure", name, spec, repo_root / "environments" / "dev" / "infrastructure.yaml")


def environment(repo_root: Path, resources: list[Resource], backend: dict | None = None) -> Environment:
    folder = repo_root / "environments" / "dev"
    spec = {"terraform": {"backend": backend}} if backend else {}
    definition = resource("Environment", "dev", spec, folder / "environment.yaml")
    return Environment("dev", folder, definition, resources, [], [], [])


def repo(repo_root: Path) -> Repo:
    root = repo_root / "environments"
    return Repo(root, repo_root, {"dev": root / "dev"}, {"_modules": root / "_modules"})


def render(repo_root: Path, state: EnvironmentState, *modules: Resource, **kw: Any) -> dict:
    return render_root(environment(repo_root, list(modules), **kw), state).root


def test_infra_references_become_module_references_at_any_depth(repo_root: Path, state: EnvironmentState):
    variables = {
        "bucket": "${infra.storage.bucket_name}",
        "url": "gs://${infra.storage.bucket_name}/runs/${infra.net-1.subnet_id}",
        "nested": {"list": ["${infra.storage.id}", 3, True, None]},
    }
    root = render(repo_root, state, infra(repo_root, "app", variables=variables))
    assert root["module"]["app"] == {
        "source": "../../../environments/_modules/base",
        "bucket": "${module.storage.bucket_name}",
        "url": "gs://${module.storage.bucket_name}/runs/${module.net-1.subnet_id}",
        "nested": {"list": ["${module.storage.id}", 3, True, None]},
    }
    assert variables["bucket"] == "${infra.storage.bucket_name}"  # the spec is left as it was


def test_literal_template_sequences_are_escaped(repo_root: Path, state: EnvironmentState):
    variables = {
        "script": 'echo "${HOME}" %{ if x }',
        "mixed": "${infra.a.out}-${var.x}",
        "not_a_reference": "${infra.a}",
        "list": ["%{ for }"],
    }
    block = render(repo_root, state, infra(repo_root, "app", variables=variables))["module"]["app"]
    assert block["script"] == 'echo "$${HOME}" %%{ if x }'
    assert block["mixed"] == "${module.a.out}-$${var.x}"
    assert block["not_a_reference"] == "$${infra.a}"
    assert block["list"] == ["%%{ for }"]


def test_declared_outputs_are_exported_in_order_with_numbered_names(repo_root: Path, state: EnvironmentState):
    first = infra(repo_root, "first", outputs=["zeta", "mu", "alpha", "kappa", "beta"])
    second = infra(repo_root, "second", outputs=["id", 7])  # ill-typed entries are not exported
    rendered = render_root(environment(repo_root, [first, second]), state)
    names = ["alpha", "beta", "kappa", "mu", "zeta"]  # sorted: numbering never depends on set order
    assert rendered.outputs == (*(("first", n) for n in names), ("second", "id"))
    assert rendered.root["output"] == {
        **{f"stackward_000{i}": {"value": f"${{module.first.{n}}}"} for i, n in enumerate(names)},
        "stackward_0005": {"value": "${module.second.id}"},
    }
    assert [output_name(i) for i in range(len(rendered.outputs))] == list(rendered.root["output"])
    assert output_name(12) == "stackward_0012"


def test_no_declared_outputs_means_no_output_block(repo_root: Path, state: EnvironmentState):
    rendered = render_root(environment(repo_root, [infra(repo_root, "app")]), state)
    assert "output" not in rendered.root
    assert rendered.outputs == ()


def test_no_infrastructure_left_renders_only_the_backend(repo_root: Path, state: EnvironmentState):
    stack = resource("Stack", "s", {"components": {}}, repo_root / "environments" / "dev" / "stack.yaml")
    root = render(repo_root, state, stack)
    assert root == {"terraform": {"backend": {"local": {"path": str(state.terraform_state)}}}}


def test_local_backend_path_defaults_to_the_state_file(repo_root: Path, state: EnvironmentState):
    root = render(repo_root, state, infra(repo_root, "app"))
    assert root["terraform"] == {"backend": {"local": {"path": str(state.terraform_state)}}}
    assert str(state.terraform_state).endswith("/.stackward/dev/terraform.tfstate")


def test_local_backend_path_is_inside_the_state_folder(repo_root: Path, state: EnvironmentState):
    env = environment(repo_root, [], backend={"type": "local", "config": {"path": "tf/dev.tfstate"}})
    assert backend(env, state) == {"local": {"path": str(state.folder / "tf" / "dev.tfstate")}}


@pytest.mark.parametrize("path", ["../../elsewhere.tfstate", "/tmp/x.tfstate", "~/x.tfstate", "."])
def test_a_local_backend_path_out_of_the_state_folder_is_never_rendered(
    repo_root: Path, state: EnvironmentState, path: str
):
    env = environment(repo_root, [], backend={"type": "local", "config": {"path": path}})
    with pytest.raises(EnvironmentFailed):
        backend(env, state)


def test_remote_backend_config_is_passed_through(repo_root: Path, state: EnvironmentState):
    config = {"bucket": "acme-state", "prefix": "stackward/dev"}
    root = render(repo_root, state, backend={"type": "gcs", "config": config})
    assert root == {"terraform": {"backend": {"gcs": config}}}


def test_local_module_source_is_relative_to_the_working_folder(repo_root: Path, state: EnvironmentState):
    module = infra(repo_root, "app", source="../_modules/base")
    source = render(repo_root, state, module)["module"]["app"]["source"]
    assert source.startswith("../")
    assert (state.terraform_dir / source).resolve() == repo_root / "environments" / "_modules" / "base"


def test_module_folder_below_the_working_folder_gets_a_dot_slash(repo_root: Path, state: EnvironmentState):
    spec_file = state.terraform_dir / "infrastructure.yaml"
    module = resource("Infrastructure", "app", {"source": "./mod"}, spec_file)
    assert render(repo_root, state, module)["module"]["app"]["source"] == "./mod"


def test_remote_module_source_and_version_are_kept_as_written(repo_root: Path, state: EnvironmentState):
    registry = infra(repo_root, "reg", source="terraform-google-modules/network/google", version="9.1.0")
    git = infra(repo_root, "git", source="git::https://example.com/m.git?ref=v1")
    modules = render(repo_root, state, registry, git)["module"]
    assert modules["reg"] == {"source": "terraform-google-modules/network/google", "version": "9.1.0"}
    assert modules["git"] == {"source": "git::https://example.com/m.git?ref=v1"}


def test_rendering_writes_nothing(repo_root: Path, state: EnvironmentState):
    render(repo_root, state, infra(repo_root, "app", outputs=["id"]))
    assert not state.root.exists()
