"""The MIME writer: its bytes, parsed back by the standard library, say exactly what was given."""

from __future__ import annotations

import re
from email import policy
from email.header import decode_header, make_header
from email.parser import BytesParser

import pytest

from portal.services.mime import build_mime, header_line

FROM = "Acme Entitlement Portal <portal@acme.example>"
TEXT = "\n".join([
    "Dear customer,",
    "",
    "A line that is far longer than seventy-six characters, so quoted-printable has to break it "
    "with soft line breaks, more than once: " + "0123456789 " * 20,
    ".",
    ".a line starting with a dot",
    "From here on, mailboxes would mangle this line",
    "From " + "x" * 200,
    "trailing spaces   ",
    "trailing tab\t",
    "non-ASCII: Grüße, naïve café, Ελληνικά, 日本語",
    "emoji: 🔐🛡️ 👩‍👩‍👧 and = signs == =3D",
    "\tindented with a tab",
    "-- ",
    "--=_not-a-boundary",
    "",
])
HTML = ("<p>Dear customer,</p>\n<p>" + "<b>long</b> " * 40 + "</p>\n"
        "<p>.</p>\n.dot\nFrom me\n<p>Grüße 🔐</p>   \n")


def parse(data: bytes):
    return BytesParser(policy=policy.default).parsebytes(data)


def headers(subject="Security patch for Widget", to="contact@contoso.example", **extra):
    return [("From", FROM), ("To", to), ("Subject", subject),
            ("Date", "Tue, 01 Dec 2026 09:00:00 +0000"), ("Message-ID", "<abc@portal.example>"),
            *extra.items()]


def body(part) -> str:
    """A part's text with MIME's CRLF line breaks back as \\n."""
    return part.get_content().replace("\r\n", "\n")


def assert_well_formed(data: bytes) -> None:
    """7-bit, CRLF only; header lines within 78 (76 with encoded words), body lines within 76."""
    assert data.isascii()
    assert b"\n" not in data.replace(b"\r\n", b"") and b"\r" not in data.replace(b"\r\n", b"")
    head, _, rest = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        assert len(line) <= (76 if b"=?utf-8?b?" in line else 78), line
    for line in rest.split(b"\r\n"):
        assert len(line) <= 76, line


def test_text_only_is_a_single_text_part_that_decodes_exactly():
    data = build_mime(headers(), TEXT)
    assert_well_formed(data)
    message = parse(data)
    assert message.get_content_type() == "text/plain"
    assert not message.is_multipart()
    assert message.get_content_charset() == "utf-8"
    assert message["Content-Transfer-Encoding"] == "quoted-printable"
    assert message["MIME-Version"] == "1.0"
    assert body(message) == TEXT
    assert message.defects == []
    # "From " at the start of a line never appears on the wire; a lone "." is encoded too.
    assert not re.search(rb"(^|\r\n)(From |\.\r\n)", data)


def test_html_makes_a_multipart_alternative_with_text_then_html():
    data = build_mime(headers(), TEXT, HTML)
    assert_well_formed(data)
    message = parse(data)
    assert message.get_content_type() == "multipart/alternative"
    text, html = message.iter_parts()
    assert (text.get_content_type(), html.get_content_type()) == ("text/plain", "text/html")
    assert body(text) == TEXT
    assert body(html) == HTML
    assert body(message.get_body(("plain",))) == TEXT
    assert body(message.get_body(("html",))) == HTML
    assert message.defects == [] and text.defects == [] and html.defects == []


@pytest.mark.parametrize("text", [
    "", "\n", "no final newline", "x" * 75, "x" * 76, "x" * 77, "x" * 200, "ends in space ",
    "x" * 74 + " \nnext",  # binascii alone writes a 77-character line for this one
    "From " + "x" * 71, "From " + "x" * 71 + "\n", "x\nFrom the last line", "\x00\x0b\x0c\u2028",
    "two\n\nbreaks\n\n", "crlf\r\nand cr\rand lf\n", "é" * 100,
])
def test_edge_bodies_decode_exactly(text):
    expected = text.replace("\r\n", "\n").replace("\r", "\n")
    data = build_mime(headers(), text)
    assert_well_formed(data)
    assert body(parse(data)) == expected
    data = build_mime(headers(), text, "<p>" + text + "</p>")
    assert_well_formed(data)
    text_part, html_part = parse(data).iter_parts()
    assert body(text_part) == expected
    assert body(html_part) == "<p>" + expected + "</p>"


@pytest.mark.parametrize("subject", [
    "Security patch for Widget",
    "Sicherheitspatch für Widget – bitte installieren",
    "日本語の件名: ウィジェットのセキュリティパッチ",
    "Emoji 🔐🛡️ 👩‍👩‍👧 subject",
    "A long ASCII subject " + "that goes on and on " * 10,
    "A long non-ASCII subject " + "über alles, " * 30,
    "x" * 200,  # one word longer than a line
    "  leading and trailing spaces  ",
    "looks encoded =?utf-8?q?evil?= but is not",
    "",
])
def test_subjects_decode_to_the_original(subject):
    data = build_mime(headers(subject=subject), "x")
    assert_well_formed(data)
    message = parse(data)
    assert message["Subject"] == subject
    assert message["From"] == FROM
    assert message["Message-ID"] == "<abc@portal.example>"


@pytest.mark.parametrize(("to", "name", "address"), [
    ("contact@contoso.example", "", "contact@contoso.example"),
    ("Jane Doe <jane@contoso.example>", "Jane Doe", "jane@contoso.example"),
    ("Jürgen Müller <jm@contoso.example>", "Jürgen Müller", "jm@contoso.example"),
    ('"Müller, Jürgen" <jm@contoso.example>', "Müller, Jürgen", "jm@contoso.example"),
])
def test_address_headers_keep_the_address_and_decode_the_name(to, name, address):
    data = build_mime(headers(to=to), "x")
    assert_well_formed(data)
    (parsed,) = parse(data)["To"].addresses
    assert (parsed.display_name, parsed.addr_spec) == (name, address)
    assert address.encode() in data


def test_long_non_ascii_display_names_take_several_encoded_words_joined_as_rfc_2047_says():
    name = "Zoë 🔐 " + "Ärger " * 11 + "Ärger"
    data = build_mime(headers(to=f"{name} <z@contoso.example>"), "x")
    assert_well_formed(data)
    raw = BytesParser(policy=policy.compat32).parsebytes(data)["To"]
    assert raw.count("=?utf-8?b?") > 1
    # The RFC 2047 decoder; policy.default's address parser would keep the folding spaces
    # between the words of a display name (so would it for the standard library's own output).
    assert str(make_header(decode_header(raw))) == f"{name} <z@contoso.example>"


def test_extra_headers_with_long_names_and_non_ascii_values():
    name = "X-" + "Long-Header-Name-" * 3
    data = build_mime(headers(**{"X-Portal-Category": "security_patch", name: "Grüße " * 20}), "x")
    assert_well_formed(data)
    message = parse(data)
    assert message["X-Portal-Category"] == "security_patch"
    assert message[name] == "Grüße " * 20


@pytest.mark.parametrize("value", [
    "Hello\r\nBcc: everyone@example.com", "Hello\nBcc: x@example.com", "Hello\rX: y", "nul\x00",
    "tab\tinside", "vertical\x0btab", "next line\x85", "line\u2028separator", "del\x7f",
])
@pytest.mark.parametrize("name", ["Subject", "To", "From", "X-Extra"])
def test_control_characters_in_header_values_are_refused(name, value):
    with pytest.raises(ValueError, match="control character"):
        header_line(name, value)
    with pytest.raises(ValueError, match="control character"):
        build_mime([("From", FROM), (name, value)], "x")


@pytest.mark.parametrize("name", ["Bcc: x@example.com\r\nX-Evil", "X Space", "X:Colon", "", "Näme", "X\x00"])
def test_bad_header_names_are_refused(name):
    with pytest.raises(ValueError, match="invalid header name"):
        header_line(name, "value")


def test_non_ascii_addresses_are_refused():
    with pytest.raises(ValueError, match="ASCII addresses"):
        header_line("To", "Jürgen <jürgen@contoso.example>")
