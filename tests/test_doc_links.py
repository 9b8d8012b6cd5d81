"""Every relative link in the README and the guides points at a file of the repository, and every
`#anchor` at a heading of that file, so merging or renaming a guide cannot leave a dead link."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_LINK = re.compile(r"\]\(([^)\s]+)\)")


def _anchors(path: Path) -> set[str]:
    """GitHub's anchors of a Markdown file's headings: lower case, punctuation dropped, spaces
    as hyphens."""
    headings = re.findall(r"^#+\s+(.+)$", path.read_text(), re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_every_relative_link_of_the_guides_resolves() -> None:
    guides = [REPO / "README.md", REPO / "config" / "README.md",
              *sorted((REPO / "docs").glob("*.md"))]
    dead = []
    for guide in guides:
        for target in _LINK.findall(guide.read_text()):
            if re.match(r"[a-z]+:", target):
                continue
            file, _, anchor = target.partition("#")
            path = (guide.parent / file).resolve() if file else guide
            if not path.exists():
                dead.append(f"{guide.relative_to(REPO)}: {target}")
            elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
                dead.append(f"{guide.relative_to(REPO)}: {target} (no such heading)")
    assert not dead, "dead links:\n" + "\n".join(dead)
