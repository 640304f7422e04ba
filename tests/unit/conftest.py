"""Unit tests: pure functions fed data. No ZenML catalog, no terraform binary, no zenml import."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session", autouse=True)
def catalog() -> None:
    """Overrides tests/conftest.py's: unit tests never build the ZenML catalog."""


@pytest.fixture(autouse=True)
def no_terraform_no_zenml(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """PATH is an empty folder (no terraform to run); the test must not import zenml. (In a run
    with the other tests, a worker process may have imported it before: `pytest tests/unit`
    alone checks every test.)"""
    monkeypatch.setenv("PATH", str(tmp_path_factory.mktemp("empty-path")))
    assert shutil.which("terraform") is None
    before = set(sys.modules)
    yield
    assert "zenml" in before or "zenml" not in sys.modules, (
        "zenml was imported during a unit test; unit tests must run without ZenML "
        "(import only pure modules, or move the test out of tests/unit)"
    )
