"""A real SMTP server for the notifier's email target: aiosmtpd on 127.0.0.1, STARTTLS required
before MAIL, AUTH required (over TLS only), with a self-signed certificate made by openssl for
the test, scripted replies to DATA, and stop/start on the same port to play an outage."""

from __future__ import annotations

import ssl
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from ..helpers import free_port

# The reply to the n-th DATA (0-based): "250 OK", or e.g. "451 4.3.0 try again later".
DataScript = Callable[[int], str]


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost (its own CA): (cert, key)."""
    cert, key = directory / "smtp.crt", directory / "smtp.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-addext",
                    "subjectAltName=IP:127.0.0.1,DNS:localhost",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


@dataclass
class Mail:
    """One accepted mail: who logged in, over TLS or not, the envelope and the message."""

    login: str | None
    tls: bool
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        m = message_from_bytes(self.raw, policy=policy.default)
        assert isinstance(m, EmailMessage)
        return m

    def header(self, name: str) -> str:
        return str(self.message[name] or "").strip()


class MailServer:
    def __init__(self, cert: Path, key: Path, users: dict[str, str], *,
                 implicit_tls: bool = False, offer_starttls: bool = True) -> None:
        """STARTTLS required (the default); ``implicit_tls``: TLS from the first byte (AUTH then
        needs no STARTTLS); ``offer_starttls=False``: a plain relay that offers neither STARTTLS
        nor AUTH."""
        self.users = users
        self.implicit_tls = implicit_tls
        self.offer_starttls = offer_starttls and not implicit_tls
        self.mails: list[Mail] = []
        self.data_replies: list[str] = []  # every DATA answer, accepted or not
        self.script: DataScript = lambda n: "250 OK"
        self.logins: list[tuple[str, bool]] = []  # (user, accepted)
        self._tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._tls.load_cert_chain(cert, key)
        self._controller: Controller | None = None
        self._lock = threading.Lock()
        self.port = free_port()  # kept across stop/start

    # aiosmtpd handler hooks (run in the controller's thread) ---------------------------------
    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self._lock:
            reply = self.script(len(self.data_replies))
            self.data_replies.append(reply)
            if reply.startswith("2"):
                auth = session.auth_data
                tls = server.transport is not None and (
                    server.transport.get_extra_info("ssl_object") is not None)
                self.mails.append(Mail(
                    auth.login.decode() if isinstance(auth, LoginPassword) else None,
                    tls, str(envelope.mail_from),
                    list(envelope.rcpt_tos), bytes(envelope.original_content or b"")))
        return reply

    def _authenticate(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                      auth_data: Any) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user, password = auth_data.login.decode(), auth_data.password.decode()
        ok = self.users.get(user) == password
        self.logins.append((user, ok))
        # handled=False on a failure: aiosmtpd answers it (535 5.7.8).
        return AuthResult(success=ok, handled=ok, auth_data=auth_data if ok else None)

    # lifecycle -------------------------------------------------------------------------------
    def start(self) -> MailServer:
        self._controller = Controller(
            self, hostname="127.0.0.1", port=self.port,
            ssl_context=self._tls if self.implicit_tls else None,
            tls_context=self._tls if self.offer_starttls else None,
            require_starttls=self.offer_starttls,
            auth_required=self.offer_starttls,  # (implicit TLS: AUTH offered, the client uses it)
            # aiosmtpd counts only STARTTLS as TLS; over implicit TLS, AUTH is encrypted anyway.
            auth_require_tls=not self.implicit_tls,
            authenticator=self._authenticate, ready_timeout=10)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
