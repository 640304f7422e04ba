"""Prometheus metrics of the reconciler (its own registry: no secret, no free text as labels).

They live in memory and are updated as passes end; a scrape reads no database and returns the
text rendered last. It is rendered again only when something changed, at most once every
RENDER_EVERY seconds, and never for more than RENDER_SHARE of the time: at a thousand
environments a render takes a tenth of a second, and a scraper asking several times a second
must not slow the passes down.
"""

from __future__ import annotations

import threading
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from reconciler.status import EnvironmentStatus, Type

RENDER_EVERY = 1.0  # seconds at least between two renders
RENDER_SHARE = 0.05  # of the time at most spent rendering: a render of 0.1 s is reused for 2 s


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.duration = Histogram(
            "stackward_reconcile_duration_seconds",
            "Time of one reconcile pass.",
            ["environment"],
            registry=self.registry,
            buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800),
        )
        self.condition = Gauge(
            "stackward_condition",
            "1 when the condition is true.",
            ["environment", "type"],
            registry=self.registry,
        )
        self.drift = Gauge(
            "stackward_drift", "1 when the environment has drifted.", ["environment"], registry=self.registry
        )
        self.applies = Counter("stackward_applies", "Applies made.", ["environment"], registry=self.registry)
        self.failures = Counter(
            "stackward_failures", "Failed reconcile passes.", ["environment"], registry=self.registry
        )
        self.in_progress = Gauge(
            "stackward_reconciles_in_progress", "Reconcile passes running now.", registry=self.registry
        )
        self._lock = threading.Lock()  # one pass's figures change together, never half-rendered
        self._changed = True
        self._rendered = b""
        self._rendered_at = 0.0
        self._render_took = 0.0

    def observe(self, status: EnvironmentStatus, seconds: float) -> None:
        with self._lock:
            self.duration.labels(status.name).observe(seconds)
            for type_ in Type:
                condition = status.condition(type_)
                self.condition.labels(status.name, type_.value).set(
                    1 if condition and condition.status else 0
                )
            self.drift.labels(status.name).set(1 if status.drifted else 0)
            self._changed = True

    def applied(self, environment: str) -> None:
        with self._lock:
            self.applies.labels(environment).inc()
            self._changed = True

    def failed(self, environment: str) -> None:
        with self._lock:
            self.failures.labels(environment).inc()
            self._changed = True

    def running(self, passes: int) -> None:
        with self._lock:
            self.in_progress.set(passes)
            self._changed = True

    def render(self) -> bytes:
        """The text exposition format, rendered again only if something changed and the last
        render is old enough (see the module's docstring)."""
        with self._lock:
            since = time.monotonic() - self._rendered_at
            if self._changed and since >= max(RENDER_EVERY, self._render_took / RENDER_SHARE):
                started = time.monotonic()
                self._rendered = generate_latest(self.registry)
                self._rendered_at = time.monotonic()
                self._render_took = self._rendered_at - started
                self._changed = False
            return self._rendered
