"""The bytes of an outgoing mail, written directly instead of through ``email.message``.

The outbox worker sends one fixed shape of message: a few headers, a text body and an
optional HTML alternative. Building that with ``EmailMessage`` and flattening it again cost
about as much CPU as everything else the worker does per mail; this module writes the same
message as bytes, 7-bit clean, ready for ``smtplib.SMTP.sendmail``:

- header fields in the order given, lines ending in CRLF; a pure ASCII value is written as
  it is (folded at whitespace beyond 78 characters), anything else as RFC 2047 encoded words
  (UTF-8, base64), each line at most 76 characters. In address fields (From, To, Reply-To)
  only the display names are encoded; the addresses stay as they are and must be ASCII.
- Control characters (CR, LF and NUL among them) in a header name or value raise
  ``ValueError``: a line break in a value would start a header of the caller's choosing.
- The body as ``text/plain``, or with HTML as ``multipart/alternative`` (text, then html),
  each part UTF-8 in quoted-printable with CRLF line breaks and lines of at most 76
  characters. A text that does not end in a line break ends in a soft one, so it decodes to
  exactly what was given (with its line breaks as CRLF, as MIME wants them).
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from collections.abc import Iterable
from email.utils import getaddresses

ADDRESS_HEADERS = frozenset({"from", "to", "reply-to", "cc", "bcc", "sender"})
# Structured fields whose long tokens (ids, URLs) must stay as they are, on a long line.
_TOKEN_HEADERS = frozenset({"message-id", "in-reply-to", "references", "list-id", "list-unsubscribe",
                            "list-unsubscribe-post", "list-help", "list-post", "list-archive"})
_MAX_LINE = 76  # RFC 2047 for lines with encoded words, RFC 2045 for quoted-printable
_FOLD_AT = 78  # RFC 5322's recommended limit for other header lines
_HARD_LIMIT = 998
# C0 and C1 controls, DEL, and the Unicode line and paragraph separators.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_FIELD_NAME = re.compile("[!-9;-~]+")  # printable ASCII but ':' (RFC 5322 ftext)
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_TOKENS = re.compile(r"\s*\S+")  # each word with the whitespace before it
_WORD_START = "=?utf-8?b?"
_WORD_OVERHEAD = len(_WORD_START) + 2  # "?="
# Bytes of UTF-8 that fit one encoded word on a continuation line (" " + word).
_CONTINUATION_BYTES = (_MAX_LINE - 1 - _WORD_OVERHEAD) // 4 * 3


def build_mime(headers: Iterable[tuple[str, str]], text: str, html: str | None = None) -> bytes:
    """The whole message: ``headers`` (name, value) as given, then MIME-Version and the body."""
    lines = [header_line(name, value) for name, value in headers]
    lines.append(b"MIME-Version: 1.0\r\n")
    if not html:
        lines.append(_PART_HEADERS % b"plain")
        lines.append(b"\r\n")
        lines.append(quoted_printable(text))
        return b"".join(lines)
    boundary = b"=_" + uuid.uuid4().hex.encode()  # "=_" never occurs in quoted-printable
    delimiter = b"\r\n--" + boundary + b"\r\n"
    lines.append(b'Content-Type: multipart/alternative;\r\n boundary="' + boundary + b'"\r\n\r\n')
    lines.append(delimiter[2:])
    lines.append(_PART_HEADERS % b"plain")
    lines.append(b"\r\n")
    lines.append(quoted_printable(text))
    lines.append(delimiter)
    lines.append(_PART_HEADERS % b"html")
    lines.append(b"\r\n")
    lines.append(quoted_printable(html))
    lines.append(b"\r\n--" + boundary + b"--\r\n")
    return b"".join(lines)


_PART_HEADERS = b'Content-Type: text/%s; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n'


def header_line(name: str, value: str) -> bytes:
    """One header field, folded, with its CRLF; ``ValueError`` for anything unsafe in it."""
    if not _FIELD_NAME.fullmatch(name):
        raise ValueError(f"invalid header name {name!r}")
    if _CONTROL.search(value):
        raise ValueError(f"control character in the {name} header")
    lowered = name.lower()
    if value.isascii() and (not value or (value == value.strip() and "=?" not in value)):
        folded = _fold(name, value)
        if lowered in ADDRESS_HEADERS or lowered in _TOKEN_HEADERS or _fits(folded, _FOLD_AT + 1):
            return _fit(folded, name)
        return encoded_words(name, value)  # a word too long for a line: cut it up
    if lowered in ADDRESS_HEADERS:
        return _address_line(name, value)
    return encoded_words(name, value)


def _fits(lines: bytes, limit: int) -> bool:
    return all(len(line) <= limit for line in lines.split(b"\n"))  # each with its CR


def _fit(lines: bytes, name: str) -> bytes:
    if not _fits(lines, _HARD_LIMIT + 1):
        raise ValueError(f"the {name} header has a word too long for a line")
    return lines


def _fold(name: str, value: str) -> bytes:
    """An ASCII value, folded before whitespace where a line would pass 78 characters."""
    line = f"{name}: {value}"
    if len(line) <= _FOLD_AT:
        return line.encode("ascii") + b"\r\n"
    tokens = _TOKENS.findall(value)
    lines = []
    current = f"{name}: {tokens[0]}"
    for token in tokens[1:]:
        if len(current) + len(token) > _FOLD_AT:
            lines.append(current)
            current = token
        else:
            current += token
    lines.append(current)
    return "\r\n".join(lines).encode("ascii") + b"\r\n"


def _address_line(name: str, value: str) -> bytes:
    """Address field with non-ASCII display names: names encoded, addresses as they are."""
    pairs = getaddresses([value])
    parts = []
    for display_name, address in pairs:
        if not address or not address.isascii() or "@" not in address:
            raise ValueError(f"the {name} header needs ASCII addresses: {value!r}")
        if not display_name:
            parts.append(address)
        elif display_name.isascii():
            quoted = display_name.replace("\\", "\\\\").replace('"', '\\"')
            parts.append(f'"{quoted}" <{address}>')
        else:
            # One word where it fits: the standard library's parser (unlike RFC 2047) keeps
            # the space between adjacent encoded words in a display name.
            parts.append(f"{_words(display_name, _CONTINUATION_BYTES)} <{address}>")
    return _fold(name, ", ".join(parts))


def encoded_words(name: str, value: str) -> bytes:
    """The whole value as RFC 2047 encoded words, one per line, no line over 76 characters.

    Words are cut between characters; a decoder joins adjacent encoded words without the
    folding whitespace between them, so the value comes back exactly.
    """
    data = value.encode("utf-8")
    # At least one character on the field's own line (policy.default's parser would keep a
    # leading space otherwise): only a name of over 56 characters makes that line too long.
    first = max((_MAX_LINE - len(name) - 2 - _WORD_OVERHEAD) // 4 * 3, 4)
    chunk = _cut(data, 0, first)
    lines = [f"{name}: {_word(data[:chunk])}"]
    while chunk < len(data):
        end = _cut(data, chunk, _CONTINUATION_BYTES)
        lines.append(" " + _word(data[chunk:end]))
        chunk = end
    return "\r\n".join(lines).encode("ascii") + b"\r\n"


def _words(text: str, size: int) -> str:
    """``text`` as encoded words separated by folding-ready spaces."""
    data = text.encode("utf-8")
    words, start = [], 0
    while start < len(data):
        end = _cut(data, start, size)
        words.append(_word(data[start:end]))
        start = end
    return " ".join(words)


def _cut(data: bytes, start: int, size: int) -> int:
    """End of a chunk of at most ``size`` bytes from ``start`` that splits no UTF-8 character."""
    end = min(start + size, len(data))
    while end < len(data) and data[end] & 0xC0 == 0x80:
        end -= 1
    return end


def _word(chunk: bytes) -> str:
    return _WORD_START + base64.b64encode(chunk).decode("ascii") + "?="


def quoted_printable(text: str) -> bytes:
    """``text`` in UTF-8 quoted-printable with CRLF line breaks, ending in a (soft) line break.

    Lines starting with "From " get their F encoded, so that mailboxes that mangle such
    lines ("From " -> ">From ") leave this one alone; a lone "." is encoded by binascii.
    """
    # binascii breaks lines with CRLF only if the data's first line break is one: lead with one.
    data = b"\r\n" + _LINE_BREAK.sub("\r\n", text).encode("utf-8")
    encoded = binascii.b2a_qp(data, istext=True)[2:]
    lines = encoded.split(b"\r\n")  # the last one is empty if the text ends in a line break
    if lines[-1]:  # it does not: end with a soft line break, so that none is added
        lines[-1] += b"="
        lines.append(b"")
    # binascii lets a line ending in an encoded space reach 77 characters.
    if max(map(len, lines)) > _MAX_LINE or encoded.startswith(b"From ") or b"\nFrom " in encoded:
        lines = [_wrap(_escape_from(line)) for line in lines]
    return b"\r\n".join(lines)


def _escape_from(line: bytes) -> bytes:
    return b"=46" + line[1:] if line.startswith(b"From ") else line


def _wrap(line: bytes) -> bytes:
    """A quoted-printable line cut with soft breaks into lines of at most 76 characters."""
    if len(line) <= _MAX_LINE:
        return line
    soft = line.endswith(b"=")
    rest = line[:-1] if soft else line
    last_limit = _MAX_LINE - 1 if soft else _MAX_LINE
    pieces = []
    while len(rest) > last_limit:
        cut = _MAX_LINE - 1
        # Do not cut an =XX escape in two.
        if rest[cut - 1:cut] == b"=":
            cut -= 1
        elif rest[cut - 2:cut - 1] == b"=":
            cut -= 2
        pieces.append(rest[:cut] + b"=")
        rest = rest[cut:]
    pieces.append(rest + b"=" if soft else rest)
    return b"\r\n".join(pieces)
