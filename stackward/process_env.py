"""The environment a Terraform or ZenML process gets: an allow-list, never this process's.

A pull request controls the Terraform modules and specs that run, so the processes that run
them see only what they need: the basics a program needs to run and reach the network
(PATH, HOME, locale, temporary folder, proxies, CA bundles), Terraform's own settings
(TF_*), and the credentials the Environment declares for the phase (`spec.credentials.plan`
for plans, `.apply` for applies). Never the GitHub token, the OPA token, or any other secret
the runner holds.
"""

from __future__ import annotations

import os

from stackward.spec.model import Environment

BASICS = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LANGUAGE",
    "TZ",
    "TMPDIR",
    "TERM",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
)
PREFIXES = ("LC_",)


def allowed(prefixes: tuple[str, ...] = ()) -> dict[str, str]:
    """This process's basics, and the variables starting with one of `prefixes`."""
    return {
        name: value
        for name, value in os.environ.items()
        if name in BASICS or name.startswith((*PREFIXES, *prefixes))
    }


def credentials(env: Environment, phase: str) -> dict[str, str]:
    """The Environment's credentials for `phase`, under the names the process sees them by
    (a source variable that is not set is left out: the tool then says what it misses)."""
    return {
        name: os.environ[source]
        for name, source in env.settings.credentials(phase).items()
        if source in os.environ
    }


def terraform_environment(env: Environment, phase: str) -> dict[str, str]:
    """What `terraform` runs with in `phase`."""
    return {
        **allowed(("TF_",)),
        "TF_IN_AUTOMATION": "1",
        "CHECKPOINT_DISABLE": "1",
        **credentials(env, phase),
    }
