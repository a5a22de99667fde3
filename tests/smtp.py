"""A real SMTP server for the tests (aiosmtpd, in a thread): STARTTLS or implicit TLS with a certificate made
here, an optional login, and scripted refusals; it keeps every message it accepts."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.certificates import make_certificates
from tests.processes import free_port


@dataclass
class Received:
    sender: str
    recipients: list[str]
    data: bytes


@dataclass
class SmtpServer:
    """``replies``: SMTP replies given to the first DATA commands in turn (e.g. ``"451 try later"``), then 250."""

    folder: Path
    user: str = ""
    password: str = ""
    implicit_tls: bool = False
    replies: list[str] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    logins: list[tuple[str, bool]] = field(default_factory=list)

    def start(self) -> SmtpServer:
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult, LoginPassword

        keystore, self.ca_file, self.other_ca_file = make_certificates(self.folder)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(keystore)
        server = self

        class Handler:
            async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd
                if server.replies:
                    return server.replies.pop(0)
                server.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
                return "250 OK"

        def authenticate(_server: Any, _session: Any, _envelope: Any, _mechanism: str, data: Any) -> AuthResult:
            ok = (isinstance(data, LoginPassword) and data.login.decode() == self.user
                  and data.password.decode() == self.password)
            self.logins.append((data.login.decode() if isinstance(data, LoginPassword) else "", ok))
            return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd sends the 235 or 535 reply

        self.port = free_port()
        options: dict[str, Any] = {"ssl_context": context} if self.implicit_tls else {
            "tls_context": context, "require_starttls": True}
        if self.user:
            options.update(authenticator=authenticate, auth_required=True)
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port, **options)
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()
