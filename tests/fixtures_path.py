"""Where the shared recordings are: ../shared/fixtures beside the repository (as in CI)."""

from pathlib import Path


def shared_fixtures() -> Path:
    for folder in Path(__file__).resolve().parents:
        candidate = folder / "shared" / "fixtures"
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        "shared/fixtures not found beside the repository (the GitHub recordings live there)"
    )
