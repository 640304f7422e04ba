"""Notifications: on drift or failure, one GitHub issue per environment (opened, then kept up to
date) and a commit status on the revision; through the Action's GitHub client."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from reconciler.config import ServiceSettings
from reconciler.status import EnvironmentStatus, Type

if TYPE_CHECKING:
    from stackward.github.client import GitHubClient

log = logging.getLogger("stackward.reconciler")


def _trouble(status: EnvironmentStatus) -> str:
    """What needs attention, or "" when nothing does."""
    if status.drifted:
        return "drifted"
    ready = status.condition(Type.READY)
    if status.failures and ready is not None and not ready.status:
        return "failing"
    return ""


class Notifier:
    def __init__(self, settings: ServiceSettings, scrub: Callable[[str], str] = str):
        self.settings = settings
        token = os.environ.get(settings.github_token_env, "")
        self.client: GitHubClient | None = None
        if settings.github_repository and token:
            # imported only when notifications are on: PyGithub adds about 35 MB to the service
            from stackward.github.client import GitHubClient

            self.client = GitHubClient(
                token,
                settings.github_repository,
                settings.github_api_url,
                max_rate_limit_wait=60,
                scrub=scrub,  # issues and statuses hide secret values like the API does
            )

    def changed(self, before: EnvironmentStatus, after: EnvironmentStatus) -> None:
        """Tell GitHub when an environment starts or keeps needing attention, or recovers."""
        if self.client is None:
            return
        from stackward.github.client import GitHubError

        trouble, was = _trouble(after), _trouble(before)
        if not trouble and not was:
            return
        ready = after.condition(Type.READY)
        drifted = after.condition(Type.DRIFTED)
        message = drifted.message if trouble == "drifted" and drifted else ready.message if ready else ""
        try:
            if trouble:
                body = (
                    f"stackward's reconciler found environment **{after.name}** {trouble}.\n\n"
                    f"- reason: `{ready.reason.value if ready else '?'}`\n- desired revision: `{after.desired_revision}`\n"
                    f"- last applied revision: `{after.applied_revision}`\n\n```\n{message[:3000]}\n```\n"
                )
                self.client.upsert_issue(
                    f"stackward: {after.name} {trouble}", body, f"stackward:{after.name}"
                )
            if after.applied_revision:
                state = "failure" if trouble else "success"
                self.client.status(
                    after.applied_revision,
                    f"stackward/{after.name}",
                    state,
                    f"{trouble or 'in sync'}: {(ready.reason.value if ready else '')}",
                )
        except GitHubError as exc:  # a notification must never stop reconciling
            log.warning("stackward: could not notify GitHub: %s", exc)
