"""The docs as a fresh clone has them: every relative link resolves inside the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted([ROOT / "README.md", *ROOT.glob("docs/**/*.md"), *ROOT.glob("examples/**/*.md")])
LINK = re.compile(r"\]\(([^)\s]+)\)")


def relative_links(path: Path) -> list[str]:
    links = []
    for target in LINK.findall(path.read_text()):
        target = target.split("#", 1)[0]
        if target and not re.match(r"^[a-z]+:", target):  # http:, https:, mailto:
            links.append(target)
    return links


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_relative_link_resolves_inside_the_repository(doc: Path) -> None:
    broken = []
    for target in relative_links(doc):
        resolved = (doc.parent / target).resolve()
        if not resolved.is_relative_to(ROOT) or not resolved.exists():
            broken.append(target)
    assert not broken, f"{doc.relative_to(ROOT)} links to what a clone lacks: {broken}"


def test_the_readme_links_the_architecture_and_the_settings() -> None:
    links = relative_links(ROOT / "README.md")
    assert "docs/design/architecture.md" in links
    assert "docs/settings.md" in links
