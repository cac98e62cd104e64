"""README.md is the front door: at most 300 lines, the contract's commands written out, and every relative link in
README.md, CHANGELOG.md and docs/*.md pointing at a file that exists (and at a heading that exists, for links
into our own Markdown files)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MAX_README_LINES = 300
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
ONE_CELL = "python -m ssl_lightning +experiment=simclr data.fraction=0.25"
GRID = "python -m ssl_lightning -m +experiment=rotation,rotation_jitter,simclr,supervised data.fraction=0.05,0.25,0.5"


def markdown_files() -> list[Path]:
    return [REPO / "README.md", REPO / "CHANGELOG.md", *sorted((REPO / "docs").glob("*.md"))]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (hyphens and underscores kept), spaces to -."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file (a repeated heading gets -1, -2, ... as on GitHub)."""
    found: set[str] = set()
    counts: dict[str, int] = {}
    in_code = False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        match = None if in_code else re.match(r"#{1,6} (.+)", line)
        if match:
            base = slug(match.group(1))
            found.add(base if base not in counts else f"{base}-{counts[base]}")
            counts[base] = counts.get(base, 0) + 1
    return found


def relative_links(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)  # links inside code blocks are code
    return [target for target in LINK.findall(text) if not re.match(r"[a-z]+:", target)]


def test_readme_is_at_most_300_lines():
    lines = (REPO / "README.md").read_text().count("\n")
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines; move detail to docs/guide.md"


def test_readme_keeps_the_contract_commands():
    text = (REPO / "README.md").read_text()
    joined = re.sub(r"\\\n\s*", "", text)  # shell continuation lines read as one command
    assert ONE_CELL in joined and GRID in joined
    assert "make run" in text and "make test" in text
    makefile = (REPO / "Makefile").read_text()
    assert f"$(BIN)/{ONE_CELL}" in makefile  # `make run` is the README's one cell
    assert "make test" in (REPO / ".ci" / "run").read_text()  # CI runs the README's test command


@pytest.mark.parametrize("path", markdown_files(), ids=lambda path: str(path.relative_to(REPO)))
def test_relative_links_point_at_existing_files(path: Path):
    broken = []
    for target in relative_links(path):
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target} (no heading #{anchor} in {linked.relative_to(REPO)})")
    assert not broken, f"{path.relative_to(REPO)}: broken links: {broken}"


def test_slugs_follow_github():
    assert slug("Pretrained encoders: ImageNet, timm (`+experiment=pretrained`, `backbone=timm`)") == \
        "pretrained-encoders-imagenet-timm-experimentpretrained-backbonetimm"
    assert slug("GPUs, several GPUs, SLURM") == "gpus-several-gpus-slurm"
