"""The notifier: drift alerts and retrain requests from Kafka to Alertmanager, PagerDuty,
OpsGenie, Slack, Microsoft Teams, email (SMTP) and signed webhooks, with retries, rate limits
and a dead-letter topic."""

from .config import (
    NotifyConfig,
    NotifySettings,
    ResolvedTarget,
    load_notify_config,
    parse_notify_config,
    resolve_targets,
)
from .delivery import DeliveryResult, Forwarder, TokenBucket, backoff_delay
from .notification import Notification, UnsupportedRecord, fingerprint, notification_from_record
from .payloads import (
    HttpRequest,
    MailRequest,
    Reply,
    SignatureError,
    build_request,
    sign,
    verify_signature,
)
from .service import HandledRecord, Notifier, dead_letter_record, run_notifier

__all__ = [
    "DeliveryResult",
    "Forwarder",
    "HandledRecord",
    "HttpRequest",
    "MailRequest",
    "Notification",
    "Notifier",
    "NotifyConfig",
    "NotifySettings",
    "Reply",
    "ResolvedTarget",
    "SignatureError",
    "TokenBucket",
    "UnsupportedRecord",
    "backoff_delay",
    "build_request",
    "dead_letter_record",
    "fingerprint",
    "load_notify_config",
    "notification_from_record",
    "parse_notify_config",
    "resolve_targets",
    "run_notifier",
    "sign",
    "verify_signature",
]
