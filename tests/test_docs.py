"""The README is a front door: short, every relative link and image in it and in docs/ resolves."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "docs").glob("*/*.md"))]


def test_readme_fits_the_front_door_limit():
    text = (ROOT / "README.md").read_text()
    assert len(text) < 12_000, len(text)
    for needed in ("## Quick start", "streamlit run app.py", "python -m pytest", "import ttc", "## Model zoo"):
        assert needed in text


def test_every_relative_link_resolves():
    broken = []
    for page in pages():
        for target in LINK.findall(page.read_text()):
            if target.startswith(("http://", "https://", "mailto:", "#")):
                continue
            path = target.split("#", 1)[0]
            if path and not (page.parent / path).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not broken, broken


@pytest.mark.parametrize("script", sorted(p.name for p in (ROOT / "scripts").glob("*.py")))
def test_every_script_answers_help_without_doing_its_work(script, tmp_path):
    """`--help` prints a usage line and exits 0, and touches nothing: no server, no file written in the tree
    (scripts/screenshots.py --help once started a server and overwrote the README's images)."""
    import subprocess
    import sys

    before = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / script), "--help"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "usage" in r.stdout.lower(), (script, r.stdout[-500:], r.stderr[-500:])
    after = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout
    assert after == before, f"{script} --help changed the tree"
