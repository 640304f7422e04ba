"""The errors users can cause or run into, each with the exit code the commands return.

Every front-end catches `StackwardError` alone and prints it: no list of engine internals,
no traceback. Anything that is not a `StackwardError` is a bug in stackward.

    StackwardError            exit 1
    ├── UsageError            exit 2: a path, option, setting or name that is not right
    │                                 (PolicySourceError, GitError)
    ├── CannotRun             exit 3: something stackward needs is missing or refused
    │                                 (CatalogError, PolicyEngineError, GitHubError)
    ├── SpecsInvalid          exit 1: the specs do not validate, or the policies deny them
    └── EnvironmentFailed     exit 1: planning or applying one environment failed, the others
                                      may go on (ApplyRefused, LockError, TerraformError,
                                      ZenmlError, Interrupted)

Each specific error lives beside the code that raises it.
"""

from __future__ import annotations

EXIT_FINDINGS = 1
EXIT_USAGE = 2
EXIT_CANNOT_RUN = 3


class StackwardError(Exception):
    """An error a user can act on; its message says what happened and what to do."""

    exit_code = EXIT_FINDINGS


class UsageError(StackwardError):
    """The command was pointed at something wrong: no such folder or environment, a bad option
    or setting."""

    exit_code = EXIT_USAGE


class CannotRun(StackwardError):
    """Something stackward needs is missing or refused: zenml, an OPA server, the GitHub API."""

    exit_code = EXIT_CANNOT_RUN


class SpecsInvalid(StackwardError):
    """The specs do not validate, or the policies deny them; carries the findings."""

    def __init__(self, message: str, findings: list | None = None):
        super().__init__(message)
        self.findings = findings or []


class EnvironmentFailed(StackwardError):
    """Planning or applying one environment failed; the message names the environment."""


class Interrupted(EnvironmentFailed):
    """The run stopped before it finished: its lock was lost, or the service is shutting down.
    What was done before it stopped is in the ledger, recorded as interrupted."""
