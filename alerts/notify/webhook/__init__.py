"""The webhook receiver kind: payload shapes, Standard Webhooks signing, the sender."""

from alerts.notify.webhook.config import WebhookConfig
from alerts.notify.webhook.sender import WebhookSender, webhook_integration
from alerts.notify.webhook.signing import SignatureError, WebhookSecret, sign_headers, verify

__all__ = [
    "SignatureError",
    "WebhookConfig",
    "WebhookSecret",
    "WebhookSender",
    "sign_headers",
    "verify",
    "webhook_integration",
]
