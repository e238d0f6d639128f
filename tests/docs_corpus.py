"""The user-facing documentation as the tests read it: the README (the front door) and the
pages under docs/ it links, in that order."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README = (ROOT / "README.md").read_text()
DOCS = "\n".join(page.read_text() for page in PAGES)
