"""Observability: Prometheus metrics, health endpoints and structured JSON logs."""

from .http import HealthServer, Readiness, start_http_server
from .logging import JsonFormatter, configure_logging, log_context
from .metrics import BatchCounts, NotifierMetrics, WorkerMetrics, batch_counts

__all__ = [
    "BatchCounts",
    "HealthServer",
    "JsonFormatter",
    "NotifierMetrics",
    "Readiness",
    "WorkerMetrics",
    "batch_counts",
    "configure_logging",
    "log_context",
    "start_http_server",
]
