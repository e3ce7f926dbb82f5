"""Sending a mail through an SMTP relay (stdlib ``smtplib``), as one delivery attempt.

The call blocks (the forwarder runs it in a worker thread) and answers a :class:`Reply`, like
an HTTP POST does: SMTP 2xx is taken, 4xx may be retried, 5xx is a rejection (a refused login,
sender or recipient will be refused again). A connection error, a timeout, a dropped connection
or a TLS failure raises ``OSError``, which the forwarder retries like an HTTP connection error.

``security: starttls`` requires the upgrade: a relay that does not offer STARTTLS is a
rejection, never a silent fall back to plain text (the password and the alert would travel in
clear).
"""

from __future__ import annotations

import logging
import smtplib
import ssl

from .config import EmailTarget, ResolvedTarget
from .payloads import MailRequest, Reply, Verdict

__all__ = ["send_mail", "smtp_verdict"]

log = logging.getLogger("stream_monitor.notify")


def smtp_verdict(code: int) -> Verdict:
    """RFC 5321 4.2.1: 2yz done, 4yz transient (try again), 5yz permanent.

    >>> smtp_verdict(250), smtp_verdict(421), smtp_verdict(535)
    ('ok', 'retryable', 'rejected')
    """
    if 200 <= code < 400:
        return "ok"
    return "retryable" if 400 <= code < 500 else "rejected"


def _text(raw: bytes | str) -> str:
    return (raw.decode(errors="replace") if isinstance(raw, bytes) else raw)[:300]


def send_mail(target: ResolvedTarget, req: MailRequest, timeout: float) -> Reply:
    """Connect, secure, log in and send one mail; ``timeout`` bounds each socket operation."""
    spec = target.spec
    assert isinstance(spec, EmailTarget)
    context = ssl.create_default_context(cafile=str(spec.ca_file) if spec.ca_file else None)
    client: smtplib.SMTP
    try:
        if spec.security == "tls":
            client = smtplib.SMTP_SSL(spec.host, spec.smtp_port, timeout=timeout,
                                      context=context)
        else:
            client = smtplib.SMTP(spec.host, spec.smtp_port, timeout=timeout)
        with client:
            if spec.security == "starttls":
                client.starttls(context=context)
            if spec.username is not None:
                client.login(spec.username, target.secret or "")
            refused = client.send_message(req.message, req.sender, list(req.recipients))
    except smtplib.SMTPNotSupportedError as exc:
        return Reply(None, "rejected", f"SMTP: {exc}; the relay must offer it (STARTTLS or "
                                       "AUTH), or change security/username in the target")
    except smtplib.SMTPRecipientsRefused as exc:
        # Every recipient refused: retry only if each refusal was transient.
        codes = [code for code, _ in exc.recipients.values()]
        verdict: Verdict = ("retryable" if codes and all(400 <= c < 500 for c in codes)
                            else "rejected")
        detail = "; ".join(f"{rcpt}: {code} {_text(msg)}"
                           for rcpt, (code, msg) in exc.recipients.items())
        return Reply(max(codes, default=None), verdict, f"SMTP recipients refused: {detail}"[:300])
    except smtplib.SMTPResponseException as exc:
        code = exc.smtp_code
        return Reply(code, smtp_verdict(code) if code >= 400 else "retryable",
                     f"SMTP {code}: {_text(exc.smtp_error)}")
    if refused:
        # Some recipients took it: sending again would give them a second copy.
        log.warning("%s: the relay refused recipients %s (the others got the mail)",
                    spec.name, ", ".join(f"{r} ({c})" for r, (c, _) in refused.items()))
    return Reply(250, "ok", f"SMTP 250: queued for {len(req.recipients) - len(refused)} "
                            "recipient(s)")
