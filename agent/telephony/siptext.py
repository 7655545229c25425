"""SIP messages as text: parse what arrives, build what goes out, read URIs (RFC 3261).

The one place SIP text is handled outside pjsip: callsim's user agent, the agent's OPTIONS
ping, its request-URI routing and the tests all use it. Header names are kept in their
compact-form-expanded, lower-case spelling for lookups.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field

_COMPACT = {
    "v": "via",
    "f": "from",
    "t": "to",
    "i": "call-id",
    "m": "contact",
    "l": "content-length",
    "c": "content-type",
    "r": "refer-to",
    "k": "supported",
    "s": "subject",
    "e": "content-encoding",
}
_TAG = re.compile(r";\s*tag=([^;>\s]+)", re.I)
_URI = re.compile(r"<([^>]+)>")
_USER = re.compile(r"^(?:sips?:([^@;>\s]+)@|tel:([^;>\s]+))", re.I)


class SipParseError(ValueError):
    """A datagram that is not a SIP message we can read."""


@dataclass
class SipMessage:
    """One SIP request (`method` set) or response (`status` set)."""

    start: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: str = ""

    @property
    def is_request(self) -> bool:
        return not self.start.startswith("SIP/2.0 ")

    @property
    def method(self) -> str:
        return self.start.split(" ", 1)[0] if self.is_request else self.cseq[1]

    @property
    def status(self) -> int:
        return 0 if self.is_request else int(self.start.split(" ", 2)[1])

    @property
    def cseq(self) -> tuple[int, str]:
        num, method = self.get("cseq").split()
        return int(num), method.upper()

    def get(self, name: str, default: str = "") -> str:
        """The first value of a header (case-insensitive name)."""
        name = name.lower()
        return next((v for k, v in self.headers if k == name), default)

    def get_all(self, name: str) -> list[str]:
        name = name.lower()
        return [v for k, v in self.headers if k == name]

    def encode(self) -> bytes:
        body = self.body.encode()
        lines = [self.start]
        lines += [f"{_title(k)}: {v}" for k, v in self.headers if k != "content-length"]
        lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def parse(data: bytes) -> SipMessage:
    """Parse one datagram; raises SipParseError with a reason."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SipParseError("not UTF-8") from exc
    head, sep, body = text.partition("\r\n\r\n")
    if not sep:
        head, sep, body = text.partition("\n\n")
    lines = head.replace("\r\n", "\n").split("\n")
    start = lines[0].strip()
    if not (start.startswith("SIP/2.0 ") or start.endswith(" SIP/2.0")):
        raise SipParseError(f"not a SIP start line: {start[:60]!r}")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and headers:  # folded continuation line
            headers[-1] = (headers[-1][0], headers[-1][1] + " " + line.strip())
            continue
        name, colon, value = line.partition(":")
        if not colon:
            raise SipParseError(f"bad header line: {line[:60]!r}")
        key = name.strip().lower()
        headers.append((_COMPACT.get(key, key), value.strip()))
    msg = SipMessage(start, headers, body)
    try:
        msg.cseq  # noqa: B018 - every message we handle needs a readable CSeq
        if not msg.is_request:
            msg.status  # noqa: B018
    except ValueError as exc:
        raise SipParseError(f"bad CSeq or status: {exc}") from exc
    return msg


DTMF_KEYS = frozenset("0123456789*#ABCD")


def info_key(message: SipMessage) -> str | None:
    """The key of an INFO whose body is `application/dtmf` (just the key); None otherwise.
    (`application/dtmf-relay`, "Signal=5", pjsua reads itself.)"""
    ctype = message.get("content-type").split(";")[0].strip().lower()
    key = message.body.strip()[:1].upper()
    return key if message.method == "INFO" and ctype == "application/dtmf" and key in DTMF_KEYS else None


def tag_of(header: str) -> str:
    m = _TAG.search(header)
    return m.group(1) if m else ""


def uri_of(header: str) -> str:
    """The URI inside a name-addr ('"A" <sip:a@h>;tag=x' -> 'sip:a@h') or the bare value."""
    m = _URI.search(header)
    return m.group(1) if m else header.split(";", 1)[0].strip()


def uri_user(uri_or_header: str) -> str:
    """The user part of a SIP URI ('echo' in '"Echo" <sip:echo@host>;tag=1'), or ''."""
    m = _USER.match(uri_of(uri_or_header))
    return (m.group(1) or m.group(2)) if m else ""


def request_uri(message: str, method: str = "INVITE") -> str:
    """The Request-URI of a request's text if it is a `method` request, else ''."""
    parts = message.split("\n", 1)[0].split()
    return parts[1] if len(parts) == 3 and parts[0] == method and parts[2] == "SIP/2.0" else ""


def read(message: str) -> SipMessage:
    """A received message's text, parsed; a message with no headers if it does not parse."""
    try:
        return parse(message.encode())
    except (SipParseError, UnicodeError):
        return SipMessage("")


def withheld(message: SipMessage) -> bool:
    """The caller withholds its identity: an anonymous From (RFC 3261/3323) or a Privacy header
    asking for it (RFC 3323/3325: id, user or header)."""
    sender = uri_of(message.get("from")).lower()
    if uri_user(sender) == "anonymous" or sender.endswith("@anonymous.invalid"):
        return True
    privacy = {p.strip().lower() for p in message.get("privacy").split(";")}
    return bool(privacy & {"id", "user", "header"})


def request(method: str, uri: str, headers: list[tuple[str, str]], body: str = "") -> SipMessage:
    """A request; Content-Length is added when encoded."""
    return SipMessage(f"{method} {uri} SIP/2.0", [(k.lower(), v) for k, v in headers], body)


def new_token() -> str:
    return secrets.token_hex(8)


def response(
    req: SipMessage,
    status: int,
    reason: str,
    to_tag: str = "",
    extra: Iterable[tuple[str, str]] = (),
    body: str = "",
) -> SipMessage:
    """A response to `req`: Via, From, To (with our tag), Call-ID and CSeq copied."""
    headers = [(k, v) for k, v in req.headers if k in ("via", "from", "call-id", "cseq")]
    to = req.get("to")
    if to_tag and not tag_of(to):
        to += f";tag={to_tag}"
    headers.insert(2, ("to", to))
    headers += list(extra)
    return SipMessage(f"SIP/2.0 {status} {reason}", headers, body)


def _title(name: str) -> str:
    return {"call-id": "Call-ID", "cseq": "CSeq", "www-authenticate": "WWW-Authenticate"}.get(
        name, "-".join(p.capitalize() for p in name.split("-"))
    )
