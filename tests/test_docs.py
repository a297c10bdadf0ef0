"""The docs site builds with `mkdocs build --strict` without a warning (every page in nav, every link and anchor
found), a broken anchor does fail that build, and every link of the README points at a file and heading that
exist (the README is not part of the site, so mkdocs does not check it).

Here rather than as a line in `make test`: pytest runs it wherever the suite runs (`make test`, a fast lane, CI
calling pytest), it builds into a temporary folder, and it runs mkdocs without `-q`, under which mkdocs stops
counting warnings and `--strict` passes a broken link."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from markdown.extensions.toc import slugify

ROOT = Path(__file__).resolve().parents[1]


def build(config: Path, site: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # mkdocs-material's banner about its successor
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
                          capture_output=True, text=True, env=env, cwd=config.parent)


def test_the_docs_site_builds_clean_under_strict(tmp_path):
    result = build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert result.returncode == 0 and "WARNING" not in result.stderr, result.stderr
    for page in (ROOT / "docs").rglob("*.md"):  # each page rendered, a folder's README.md as its index.html
        page = page.relative_to(ROOT / "docs")
        folder = page.parent if page.stem in ("README", "index") else page.with_suffix("")
        assert (tmp_path / "site" / folder / "index.html").is_file(), page

def test_a_broken_anchor_fails_the_strict_build(tmp_path):
    shutil.copy(ROOT / "mkdocs.yml", tmp_path)
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    with open(tmp_path / "docs" / "index.md", "a") as f:
        f.write("\n[a heading that is not there](cli.md#no-such-heading)\n")
    result = build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert result.returncode != 0 and "no-such-heading" in result.stderr


def headings(page: Path) -> set[str]:
    """The anchors mkdocs gives the page's headings (Python-Markdown's toc slugify, its default)."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # a '# comment' in a code block is no heading
    return {slugify(m, "-") for m in re.findall(r"^#+ (.+)$", text, re.M)}


def test_every_readme_link_points_at_a_file_and_heading_that_exist():
    links = re.findall(r"\]\(([^)\s]+)\)", (ROOT / "README.md").read_text())
    local = [link for link in links if "://" not in link]
    assert local
    for link in local:
        path, _, anchor = link.partition("#")
        target = ROOT / path
        assert target.exists(), f"README links to {link}: no such file"
        if anchor:
            assert anchor in headings(target), f"README links to {link}: no such heading in {path}"
