"""Environments as they are at a git ref (a pull request's base branch): `input.base`.

A pull request can rewrite an environment's labels and specs, so policies that must hold
whatever the change says read the base branch's version too. The spec files of the
environments folder at the ref are copied out of git into a temporary folder (bounded in
number and size; links are not followed), resolved like the working tree, then removed.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from stackward.diagnostics import display_path
from stackward.policy.input import environment_part
from stackward.policy.sources import PolicySourceError, run_git
from stackward.spec.discover import SPEC_SUFFIXES, discover
from stackward.spec.model import Repo
from stackward.spec.resolve import Resolver

MAX_FILES = 10_000
MAX_BYTES = 64 * 1024 * 1024
GIT_TIMEOUT = 120.0  # seconds


def environments_at(repo: Repo, ref: str, names: list[str]) -> dict[str, dict]:
    """`input.base` of each of `names` that exists at `ref`: the environment part of the input
    as resolved there. A name missing from the result is a new environment."""
    if not names:
        return {}
    top = Path(run_git(repo.root, "rev-parse", "--show-toplevel").strip())
    relative = repo.root.resolve().relative_to(top.resolve()).as_posix()
    blobs = _spec_blobs(top, ref, relative)
    if not blobs:
        return {}
    with tempfile.TemporaryDirectory(prefix="stackward-base-") as tmp:
        folder = Path(tmp).resolve()
        for (path, _), content in zip(blobs, _read_blobs(top, [blob for _, blob in blobs]), strict=True):
            target = folder / path
            if not target.resolve().is_relative_to(folder):
                raise PolicySourceError(f"{ref}: {path} is outside the repository")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        base_repo, _ = discover(folder / relative)
        resolver = Resolver(base_repo)
        found = {}
        for name in names:
            if name in base_repo.environments:
                part = environment_part(resolver.resolve(name), base_repo)
                for resource in part["resources"]:
                    if resource["source"]:
                        resource["source"]["file"] = _in_repo(resource["source"]["file"], folder, top)
                found[name] = part
        return found


def _in_repo(file: str, folder: Path, top: Path) -> str:
    """A file of the temporary copy as the same file of the repository would be shown."""
    return display_path(top / Path(os.path.abspath(file)).relative_to(folder))


def _spec_blobs(top: Path, ref: str, relative: str) -> list[tuple[str, str]]:
    """(path, blob id) of every spec file under `relative` at `ref`; refused beyond the limits."""
    found: list[tuple[str, str]] = []
    total = 0
    for entry in filter(None, run_git(top, "ls-tree", "-r", "-l", "-z", ref, "--", relative).split("\0")):
        meta, path = entry.split("\t", 1)
        mode, kind, blob, size = meta.split()
        if kind == "blob" and mode != "120000" and path.endswith(SPEC_SUFFIXES):
            found.append((path, blob))
            total += int(size)
    if len(found) > MAX_FILES or total > MAX_BYTES:
        raise PolicySourceError(
            f"{relative} at {ref} has {len(found)} spec files ({total:,} bytes), more than the "
            f"{MAX_FILES:,} files or {MAX_BYTES // 1024 // 1024} MiB read to build input.base"
        )
    return found


def _read_blobs(top: Path, blobs: list[str]) -> list[bytes]:
    """The contents of `blobs`, read by one `git cat-file --batch`."""
    try:
        proc = subprocess.run(
            ["git", "-C", str(top), "cat-file", "--batch"],
            input="".join(f"{blob}\n" for blob in blobs).encode(),
            capture_output=True,
            timeout=GIT_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        raise PolicySourceError(f"git cat-file took more than {GIT_TIMEOUT:.0f}s") from None
    if proc.returncode != 0:
        raise PolicySourceError(f"git cat-file --batch: {proc.stderr.decode(errors='replace').strip()}")
    out, position, contents = proc.stdout, 0, []
    for _ in blobs:
        header_end = out.index(b"\n", position)
        size = int(out[position:header_end].split()[2])
        contents.append(out[header_end + 1 : header_end + 1 + size])
        position = header_end + 1 + size + 1  # the content, then a newline
    return contents
