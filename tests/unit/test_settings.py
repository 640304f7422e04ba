"""One settings object, read in one place: defaults < file < STACKWARD_* variables < options."""

from __future__ import annotations

from pathlib import Path

import pytest

from action.context import ActionSettings
from reconciler.config import ServiceSettings
from stackward.errors import UsageError
from stackward.settings import Settings


@pytest.fixture(autouse=True)
def no_stackward_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("STACKWARD_"):
            monkeypatch.delenv(name)


def test_sources_in_order_later_ones_winning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    file = tmp_path / "settings.yaml"
    file.write_text("lock_timeout: 10\npolicies: from-file\nopa_url: http://file\n")
    monkeypatch.setenv("STACKWARD_POLICIES", "from-env")
    monkeypatch.setenv("STACKWARD_OPA_URL", "http://env")
    settings = Settings.load(file, opa_url="http://option", state_dir=None)
    assert settings.lock_timeout == 10.0  # the file over the default
    assert settings.policies == Path("from-env")  # a variable over the file
    assert settings.opa_url == "http://option"  # an option over a variable
    assert settings.state_dir is None  # an option not given changes nothing


def test_an_empty_variable_is_not_a_setting(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("STACKWARD_POLICIES", "")  # how an action input left empty arrives
    assert Settings.load().policies is None


def test_the_state_folder_default_exists_once(tmp_path: Path):
    assert Settings.load().state_root(tmp_path) == tmp_path / ".stackward"
    assert Settings.load(state_dir=tmp_path / "s").state_root(tmp_path / "repo") == tmp_path / "s"


def test_a_bad_value_names_where_it_came_from(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("STACKWARD_LOCK_TIMEOUT", "soon")
    with pytest.raises(UsageError, match=r"STACKWARD_LOCK_TIMEOUT: .*number.*'soon'") as caught:
        Settings.load()
    assert caught.value.exit_code == 2


def test_a_settings_file_with_an_unknown_key_is_refused(tmp_path: Path):
    file = tmp_path / "settings.yaml"
    file.write_text("lock_timout: 5\n")
    with pytest.raises(UsageError, match=r"unknown setting.*lock_timout"):
        Settings.load(file)


def test_the_opa_token_is_never_shown(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("STACKWARD_OPA_TOKEN", "canary-opa-token")
    settings = Settings.load()
    assert settings.opa_token.get_secret_value() == "canary-opa-token"
    assert "canary-opa-token" not in repr(settings) and "canary-opa-token" not in str(settings.model_dump())


def test_the_action_reads_its_environments_input_with_spaces(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("STACKWARD_ENVIRONMENTS", " local, dev ,,")
    assert ActionSettings.load().environments == ["local", "dev"]


def test_the_reconciler_has_the_policy_settings_of_every_front_end(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("STACKWARD_POLICIES", str(tmp_path / "policies"))
    monkeypatch.setenv("STACKWARD_OPA_URL", "http://opa:8181")
    settings = ServiceSettings.load(path=tmp_path / "environments")
    assert settings.policies == tmp_path / "policies" and settings.opa_url == "http://opa:8181"


def test_the_reconciler_keeps_its_database_and_clone_in_the_one_state_folder(tmp_path: Path):
    (tmp_path / "repo" / ".git").mkdir(parents=True)
    settings = ServiceSettings.load(path=tmp_path / "repo" / "environments")
    assert settings.state_dir == tmp_path / "repo" / ".stackward"
    assert settings.clone_dir == settings.state_dir / "source"
    assert settings.database == f"sqlite:///{settings.state_dir / 'reconciler.db'}"
