"""Prometheus metrics (`GET /metrics`; `consultcam worker --metrics-port`): requests, uploads, events, open
streams, commits and jobs. Label values are route templates, types and outcomes: never ids or tokens.

The metrics live in the process-wide default registry, so every part of a process (web app, bus, job
queue) adds to the same figures without passing a handle around.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter("consultcam_http_requests_total", "HTTP requests", ["method", "route", "status"])
REQUEST_SECONDS = Histogram("consultcam_http_request_seconds", "HTTP request duration", ["method", "route"])
IMAGES_REGISTERED = Counter("consultcam_images_registered_total", "Photos verified and stored", ["source"])
IMAGES_REJECTED = Counter("consultcam_images_rejected_total", "Uploads refused at registration", ["reason"])
REGISTER_SECONDS = Histogram(
    "consultcam_image_register_seconds",
    "Verify + normalise + store one photo",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10),
)
EVENTS_PUBLISHED = Counter("consultcam_events_published_total", "Events published on the bus", ["type"])
EVENT_DELIVERY_SECONDS = Histogram(
    "consultcam_event_delivery_seconds",
    "Event published → written to an open stream, per stream",
    ["type"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1, 2.5),
)
STREAMS_OPEN = Gauge("consultcam_event_streams_open", "Server-Sent Event streams open in this process")
COMMITS = Counter("consultcam_commits_total", "Commits by outcome", ["connector", "outcome"])
JOBS = Counter("consultcam_jobs_total", "Jobs run by outcome", ["task", "outcome"])
JOB_SECONDS = Histogram("consultcam_job_seconds", "Job run time", ["task"])
