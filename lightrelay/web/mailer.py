"""Sending the console's mails: through SMTP when ``LIGHTRELAY_SMTP_URL`` is set,
otherwise into ``<data dir>/outbox/`` as ``.eml`` files and the log.

``smtp://host:port`` (plain), ``smtp+starttls://…`` or ``smtps://…`` (TLS), with
optional ``user:password@`` (URL-encoded). smtplib runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import logging
import os
import smtplib
import ssl
import time
import uuid
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from urllib.parse import unquote, urlsplit

log = logging.getLogger("lightrelay.mail")


@dataclass(frozen=True, slots=True)
class Delivery:
    """Where a mail went: ``"smtp"`` or ``"outbox"`` (then ``path`` is the file)."""

    via: str
    path: Path | None = None


class Mailer:
    def __init__(self, *, smtp_url: str | None, sender: str, outbox: Path, timeout: float = 15.0) -> None:
        self.smtp_url = smtp_url
        self.sender = sender
        self.outbox = outbox
        self.timeout = timeout

    @property
    def via(self) -> str:
        return "smtp" if self.smtp_url else "outbox"

    def compose(self, *, to: str, subject: str, body: str) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = to
        msg["Subject"] = subject
        msg["Date"] = formatdate(localtime=True)
        msg["Message-ID"] = make_msgid(domain=self.sender.partition("@")[2] or "lightrelay")
        msg.set_content(body)
        return msg

    async def send(self, *, to: str, subject: str, body: str, log_line: str) -> Delivery:
        """Send one mail. ``log_line`` is what the log may say about it (no secrets but the code)."""
        msg = self.compose(to=to, subject=subject, body=body)
        if self.smtp_url:
            await asyncio.to_thread(self._smtp_send, msg)
            log.info("mail to %s sent by SMTP: %s", to, subject)
            return Delivery("smtp")
        path = await asyncio.to_thread(self._write_outbox, msg)
        log.warning("no SMTP configured (LIGHTRELAY_SMTP_URL): mail to %s written to %s — %s", to, path, log_line)
        return Delivery("outbox", path)

    def _write_outbox(self, msg: EmailMessage) -> Path:
        """Only the server's user may read it (it holds a live code): the folder 0700, the file 0600."""
        self.outbox.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.outbox / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}.eml"
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
            f.write(bytes(msg))
        return path

    def _smtp_send(self, msg: EmailMessage) -> None:
        url = urlsplit(self.smtp_url or "")
        host, scheme = url.hostname or "localhost", url.scheme.lower()
        if scheme == "smtps":
            client: smtplib.SMTP = smtplib.SMTP_SSL(host, url.port or 465, timeout=self.timeout,
                                                    context=ssl.create_default_context())
        elif scheme in ("smtp", "smtp+starttls"):
            client = smtplib.SMTP(host, url.port or (587 if scheme == "smtp+starttls" else 25), timeout=self.timeout)
        else:
            raise ValueError(f"LIGHTRELAY_SMTP_URL: unknown scheme {scheme!r} (smtp, smtp+starttls, smtps)")
        with client:
            if scheme == "smtp+starttls":
                client.starttls(context=ssl.create_default_context())
            if url.username:
                client.login(unquote(url.username), unquote(url.password or ""))
            client.send_message(msg)
