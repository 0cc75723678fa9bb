"""The README and docs/ stand on their own: no pointer outside the repository, no broken link."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

# [text](target "title"), [label]: target, href="target" / src="target"
LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)|^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)"
                  r"|(?:href|src)=\"([^\"]+)\"", re.MULTILINE)
# A relative path climbing out of its folder, written anywhere (a link, a code span, prose).
CLIMB = re.compile(r"(?<![\w.])((?:\.\./)+[^\s`'\")\]]*)")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # https:, mailto:, ...


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.DOTALL)
    return {_slug(m[1]) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*$", text, re.MULTILINE)}


def _inside(path: Path) -> bool:
    return path.resolve().is_relative_to(ROOT)


def problems(text: str, path: Path) -> list[str]:
    """What in ``text`` (the content of ``path``) points outside the repository or nowhere."""
    found = []
    if "../shared" in text or re.search(r"\bshared/SPEC", text, re.IGNORECASE):
        found.append("mentions ../shared (say it here, in our own words)")
    for match in CLIMB.finditer(re.sub(r"\b[a-z][a-z0-9+.-]*://\S+", "", text, flags=re.IGNORECASE)):
        if not _inside(path.parent / match[1]):
            found.append(f"{match[1]}: a path outside the repository")
    for match in LINK.finditer(text):
        target = next(group for group in match.groups() if group)
        if EXTERNAL.match(target):
            continue
        file_part, _, anchor = target.partition("#")
        if file_part.startswith("/"):
            found.append(f"{target}: an absolute path (link relative to the file instead)")
            continue
        linked = (path.parent / file_part).resolve() if file_part else path
        if not _inside(linked):
            found.append(f"{target}: outside the repository")
        elif not linked.exists():
            found.append(f"{target}: no such file in the repository")
        elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
            found.append(f"{target}: no heading #{anchor} in {linked.relative_to(ROOT)}")
    return found


@pytest.mark.parametrize("path", DOCS, ids=[str(p.relative_to(ROOT)) for p in DOCS])
def test_docs_point_only_inside_the_repository(path):
    assert problems(path.read_text(encoding="utf-8"), path) == []


def test_the_readme_links_the_concepts():
    assert (ROOT / "docs" / "concepts.md").exists()
    assert "](docs/concepts.md)" in (ROOT / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("text", [
    "The product is specified in `../shared/SPEC.md`.",
    "See [the spec](../shared/SPEC.md).",
    "See [the spec](/work/shared/SPEC.md).",
    "See ../../elsewhere/notes.md for more.",
    "[spec]: ../other-repo/README.md",
    '<a href="../outside.html">outside</a>',
    "See [concepts](docs/missing.md).",
    "See [the demo](docs/concepts.md#no-such-heading).",
])
def test_the_check_catches_pointers_outside(text):
    assert problems(text, ROOT / "README.md") != []


def test_the_check_accepts_links_inside():
    text = ("[concepts](docs/concepts.md), [demo](docs/concepts.md#the-demo-story), [up](#quick-start), "
            "<https://example.com>, [site](https://example.com/a/../b)")
    assert problems(text, ROOT / "README.md") == []
    assert problems("[readme](../README.md)", ROOT / "docs" / "concepts.md") == []
