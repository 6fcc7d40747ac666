"""Channels: Telegram Bot API, email over SMTP, a JSON webhook; one small class each.

Each channel has a ``name`` and ``send(target, message)``; it returns when the far side
acknowledged the message and raises :class:`DeliveryError` otherwise, saying whether a retry
can help (SMTP down, HTTP 5xx, Telegram's 429 with ``retry_after``) or not (a bad token, a
chat that does not exist). Secrets (the bot token, the SMTP password) never appear in an error
or a log line: the token is part of the Bot API's URL, so errors name the method instead.
"""

from __future__ import annotations

import json
import logging
import secrets
import smtplib
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from velox.config import Settings

log = logging.getLogger(__name__)

#: Seconds a channel waits for the far side before the attempt counts as failed.
TIMEOUT_S = 15.0
#: Telegram's limits: a message's text and a photo's caption.
TELEGRAM_TEXT_LIMIT = 4096
TELEGRAM_CAPTION_LIMIT = 1024


class DeliveryError(Exception):
    """A send that did not go through; ``transient`` says whether retrying can help."""

    def __init__(self, message: str, *, transient: bool, retry_after: float | None = None):
        super().__init__(message)
        self.transient = transient
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Message:
    """What a channel sends: a subject line, a plain-text body, maybe a PNG chart, and the
    alert's fields for machine readers (the webhook's JSON)."""

    subject: str
    body: str
    chart_png: bytes | None = None
    data: dict[str, object] = field(default_factory=dict)


class Channel(Protocol):
    """One way to reach people; ``send`` returns once the far side acknowledged."""

    name: str

    def send(self, target: str, message: Message) -> None: ...


def _http_error(what: str, status: int, body: bytes) -> DeliveryError:
    """Classify an HTTP answer: 429 and 5xx retry (429 after its ``retry_after``), else not."""
    retry_after = None
    description = body[:200].decode(errors="replace").strip()
    try:
        answer = json.loads(body)
        description = str(answer.get("description", description))
        retry_after = answer.get("parameters", {}).get("retry_after")
    except (ValueError, AttributeError):
        pass
    transient = status == 429 or status >= 500
    wait = float(retry_after) if retry_after is not None else None
    return DeliveryError(f"{what}: HTTP {status} {description}".strip(), transient=transient,
                         retry_after=wait)  # fmt: skip


def _post(url: str, body: bytes, content_type: str, what: str) -> bytes:
    """POST and return the answer's body; any failure is a classified :class:`DeliveryError`
    that names ``what`` (never the URL, which may hold a token)."""
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": content_type})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as reply:
            return reply.read()
    except urllib.error.HTTPError as exc:
        raise _http_error(what, exc.code, exc.read()) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DeliveryError(f"{what}: cannot connect ({reason})", transient=True) from None


def multipart(
    fields: dict[str, str], files: dict[str, tuple[str, str, bytes]]
) -> tuple[bytes, str]:
    """Return a ``multipart/form-data`` body and its content type (``files``: name ->
    (filename, content type, bytes))."""
    boundary = "velox-" + secrets.token_hex(12)
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                     f"{value}\r\n".encode())  # fmt: skip
    for name, (filename, content_type, data) in files.items():
        head = (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                f'filename="{filename}"\r\nContent-Type: {content_type}\r\n\r\n')  # fmt: skip
        parts.append(head.encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


@dataclass(frozen=True, slots=True)
class TelegramChannel:
    """Telegram Bot API: ``sendMessage``, or ``sendPhoto`` (multipart) when there is a chart."""

    token: str = field(repr=False)
    api_url: str = "https://api.telegram.org"
    name: str = "telegram"

    def text(self, message: Message) -> str:
        return f"{message.subject}\n\n{message.body}"

    def send(self, target: str, message: Message) -> None:
        text = self.text(message)
        if message.chart_png is not None:
            body, content_type = multipart(
                {"chat_id": target, "caption": text[:TELEGRAM_CAPTION_LIMIT]},
                {"photo": ("chart.png", "image/png", message.chart_png)},
            )
            self._call("sendPhoto", body, content_type)
        else:
            payload = {"chat_id": target, "text": text[:TELEGRAM_TEXT_LIMIT],
                       "disable_web_page_preview": True}  # fmt: skip
            self._call("sendMessage", json.dumps(payload).encode(), "application/json")

    def _call(self, method: str, body: bytes, content_type: str) -> None:
        what = f"telegram {method}"
        answer = _post(f"{self.api_url}/bot{self.token}/{method}", body, content_type, what)
        try:
            ok = json.loads(answer).get("ok") is True
        except (ValueError, AttributeError):
            ok = False
        if not ok:
            raise DeliveryError(f"{what}: the Bot API did not answer ok: {answer[:200]!r}",
                                transient=True)  # fmt: skip


@dataclass(frozen=True, slots=True)
class EmailChannel:
    """Email over SMTP: STARTTLS with the certificate verified, then AUTH when a user is set."""

    host: str
    port: int = 587
    sender: str = "velox@localhost"
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    starttls: bool = True
    ca_file: Path | None = None
    name: str = "email"

    def build(self, target: str, message: Message) -> EmailMessage:
        """Return the email sent to ``target`` (comma-separated addresses)."""
        mail = EmailMessage()
        mail["Subject"] = message.subject
        mail["From"] = self.sender
        mail["To"] = ", ".join(a.strip() for a in target.split(",") if a.strip())
        mail["Date"] = formatdate(localtime=False)
        mail["Message-ID"] = make_msgid(domain="velox")
        mail.set_content(message.body)
        if message.chart_png is not None:
            mail.add_attachment(message.chart_png, maintype="image", subtype="png",
                                filename="chart.png")  # fmt: skip
        return mail

    def send(self, target: str, message: Message) -> None:
        mail = self.build(target, message)
        where = f"email via {self.host}:{self.port}"
        try:
            with smtplib.SMTP(self.host, self.port, timeout=TIMEOUT_S) as smtp:
                smtp.ehlo()
                if self.starttls:
                    context = ssl.create_default_context(
                        cafile=str(self.ca_file) if self.ca_file else None
                    )
                    smtp.starttls(context=context)
                    smtp.ehlo()
                if self.user:
                    smtp.login(self.user, self.password or "")
                refused = smtp.send_message(mail)
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(f"{where}: login as {self.user!r} refused ({exc.smtp_code})",
                                transient=False) from None  # fmt: skip
        except smtplib.SMTPResponseException as exc:
            transient = 400 <= exc.smtp_code < 500
            detail = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) \
                else str(exc.smtp_error)  # fmt: skip
            raise DeliveryError(f"{where}: {exc.smtp_code} {detail}", transient=transient) from None
        except smtplib.SMTPRecipientsRefused as exc:
            raise DeliveryError(f"{where}: recipients refused: {sorted(exc.recipients)}",
                                transient=False) from None  # fmt: skip
        except ssl.SSLError as exc:
            raise DeliveryError(f"{where}: TLS failed ({exc.reason or exc})",
                                transient=False) from None  # fmt: skip
        except (TimeoutError, smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"{where}: {type(exc).__name__}: {exc}", transient=True) from None
        if refused:
            raise DeliveryError(f"{where}: recipients refused: {sorted(refused)}", transient=False)


@dataclass(frozen=True, slots=True)
class WebhookChannel:
    """POST the alert as JSON to a URL; any 2xx answer acknowledges it."""

    name: str = "webhook"

    def send(self, target: str, message: Message) -> None:
        payload = {"subject": message.subject, "text": message.body, **message.data}
        _post(target, json.dumps(payload, default=str).encode(), "application/json",
              f"webhook {shown_target('webhook', target)}")  # fmt: skip


def shown_target(channel: str, target: str) -> str:
    """Return ``target`` as errors and logs show it: a webhook URL as its scheme and host only
    (hook URLs often carry their secret in the path or query)."""
    if channel != "webhook":
        return target
    from urllib.parse import urlsplit

    parts = urlsplit(target)
    host = parts.hostname or "?"
    return f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}/…"


def configured_channels(settings: Settings) -> dict[str, Channel]:
    """Return the channels the settings enable (by name): Telegram with a token, email with an
    SMTP host; the webhook channel is always available (its target is the URL)."""
    channels: dict[str, Channel] = {"webhook": WebhookChannel()}
    if settings.telegram_token:
        channels["telegram"] = TelegramChannel(settings.telegram_token, settings.telegram_api_url)
    if settings.smtp_host:
        channels["email"] = EmailChannel(
            settings.smtp_host, settings.smtp_port, settings.alert_email_from,
            settings.smtp_user, settings.smtp_password, settings.smtp_starttls,
            settings.smtp_ca_file,
        )  # fmt: skip
    return channels


def default_targets(settings: Settings) -> dict[str, str]:
    """Return the configured destination of each channel (subscriptions add more)."""
    targets = {}
    if settings.telegram_token and settings.telegram_chat_id:
        targets["telegram"] = settings.telegram_chat_id
    if settings.smtp_host and settings.alert_email_to:
        targets["email"] = settings.alert_email_to
    if settings.alert_webhook_url:
        targets["webhook"] = settings.alert_webhook_url
    return targets


__all__ = [
    "Channel", "DeliveryError", "EmailChannel", "Message", "TelegramChannel", "WebhookChannel",
    "configured_channels", "default_targets", "multipart", "shown_target",
]  # fmt: skip
