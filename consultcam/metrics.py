"""Prometheus metrics (`GET /metrics`): requests, uploads, commits and sweeps. One registry per app."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class Metrics:
    """The app's counters and histograms; label values are route templates, never ids or tokens."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "consultcam_http_requests_total",
            "HTTP requests",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "consultcam_http_request_seconds",
            "HTTP request duration",
            ["method", "route"],
            registry=self.registry,
        )
