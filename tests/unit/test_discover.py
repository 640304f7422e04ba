"""Finding the environments of a folder (stackward.spec.discover): a listing kept between calls
never hides an environment added, removed or renamed since."""

from __future__ import annotations

import os
import time
from pathlib import Path

from stackward.spec.discover import discover


def environment(folder: Path) -> None:
    folder.mkdir()
    (folder / "environment.yaml").write_text(f"kind: Environment\nmetadata: {{name: {folder.name}}}\n")


def settled(folder: Path) -> None:
    """As an environments folder nobody touched for a while (its listing may be kept)."""
    old = time.time() - 60
    os.utime(folder, (old, old))


def names(folder: Path) -> list[str]:
    repo, _ = discover(folder)
    return list(repo.environments)


def test_environments_added_removed_or_renamed_are_seen_at_once(tmp_path: Path):
    root = tmp_path / "environments"
    root.mkdir()
    for name in ("dev", "prod"):
        environment(root / name)
    (root / "_base").mkdir()
    settled(root)
    assert names(root) == ["dev", "prod"]
    assert names(root) == ["dev", "prod"]  # (the kept listing)
    environment(root / "staging")
    assert names(root) == ["dev", "prod", "staging"]
    settled(root)
    assert names(root) == ["dev", "prod", "staging"]
    (root / "staging").rename(root / "qa")
    assert names(root) == ["dev", "prod", "qa"]
    settled(root)
    names(root)
    for path in (root / "qa").iterdir():
        path.unlink()
    (root / "qa").rmdir()
    assert names(root) == ["dev", "prod"]
    repo, _ = discover(root)
    assert list(repo.shared) == ["_base"] and repo.environments["dev"] == root / "dev"
