"""Prometheus metrics of the reconciler (its own registry: no secret, no free text as labels)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from reconciler.status import EnvironmentStatus, Type


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

    def observe(self, status: EnvironmentStatus, seconds: float) -> None:
        self.duration.labels(status.name).observe(seconds)
        for type_ in Type:
            condition = status.condition(type_)
            self.condition.labels(status.name, type_.value).set(1 if condition and condition.status else 0)
        self.drift.labels(status.name).set(1 if status.drifted else 0)

    def applied(self, environment: str) -> None:
        self.applies.labels(environment).inc()

    def failed(self, environment: str) -> None:
        self.failures.labels(environment).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
