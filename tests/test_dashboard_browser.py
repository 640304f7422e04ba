"""The dashboard in a real headless browser (Debian's chromium): it renders without
JavaScript or anything from outside the machine, under its Content-Security-Policy, with
nothing blocked. Skipped, saying so, where chromium is not installed (`apt-get install chromium`)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from test_reconciler import ready, running_service

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_dashboard_renders_in_a_headless_browser(tmp_path: Path, store_template: Path):
    with running_service(tmp_path, store_template) as svc:
        svc.wait(ready(svc, "Applied"))
        profile = tmp_path / "chromium-profile"
        common = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}"]
        for page, shows in (("/", ">local</a>"), ("/environments/local", "<h1>local</h1>")):
            assert "default-src 'none'" in svc.http.get(page).headers["content-security-policy"]
            # the page's console (CSP violations, blocked or failed loads) goes to stderr
            browser = subprocess.run(
                [*common, "--enable-logging=stderr", "--v=0", "--dump-dom", f"{svc.url}{page}"],
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert "<table>" in browser.stdout and shows in browser.stdout and "Ready" in browser.stdout
            console = [line for line in browser.stderr.splitlines() if ":CONSOLE" in line]
            assert console == [], console
        shot = tmp_path / "dashboard.png"
        subprocess.run(
            [*common, f"--screenshot={shot}", "--window-size=1100,500", f"{svc.url}/environments/local"],
            capture_output=True,
            timeout=120,
        )
        assert shot.exists() and shot.stat().st_size > 5_000
        if os.environ.get("STACKWARD_SCREENSHOT"):
            shutil.copy(shot, os.environ["STACKWARD_SCREENSHOT"])
