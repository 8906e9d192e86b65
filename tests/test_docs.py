"""The README is a front door and docs/ the reference: both say only what is true of the code."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from markdown.extensions.toc import slugify

import config
from memchat.cli import SUBCOMMANDS
from memchat.commands import REGISTRY

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
LINK = re.compile(r"\]\(([^)\s]+)\)")
SETTING = re.compile(r"\b(?:MEMCHAT|OPENAI)_[A-Z0-9_]+\b")


def table(page: Path, heading: str) -> list[list[str]]:
    """The rows of the first table whose header starts with ``heading``, as lists of cells."""
    rows: list[list[str]] = []
    inside = False
    for line in page.read_text().splitlines():
        if line.startswith(f"| {heading} |"):
            inside = True
            continue
        if inside and not line.startswith("|"):
            break
        if inside and not line.startswith("|---"):
            rows.append([cell.strip() for cell in line.strip("|").split(" | ")])
    return rows


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)
    return {slugify(line.lstrip("#").strip(), "-") for line in text.splitlines() if re.match(r"#{1,6} ", line)}


def test_the_readme_stays_a_front_door_of_at_most_15_kb() -> None:
    assert len((ROOT / "README.md").read_bytes()) <= 15_000


def test_every_link_of_the_readme_reaches_a_file_and_heading_that_exist() -> None:
    readme = ROOT / "README.md"
    checked = 0
    for target in LINK.findall(readme.read_text()):
        if target.startswith(("http://", "https://")):
            continue
        path, _, anchor = target.partition("#")
        page = (ROOT / path) if path else readme
        assert page.exists(), f"README links to {target}, which does not exist"
        if anchor:
            assert anchor in anchors(page), f"README links to {target}, but {path or 'README.md'} has no such heading"
        checked += 1
    assert checked >= 10  # the tour links to most pages


def test_the_docs_site_builds_with_strict_warnings_so_no_link_is_broken(tmp_path: Path) -> None:
    # mkdocs.yml asks it to warn on a link to a missing page or heading; --strict makes a warning fail.
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=120,
    )
    assert built.returncode == 0, built.stderr
    assert (tmp_path / "site" / "recall" / "index.html").exists()
    # Every page is in the site's navigation: none is built but unreachable.
    nav = (ROOT / "mkdocs.yml").read_text()
    assert [page.name for page in PAGES if page.name not in nav] == []


def test_the_configuration_page_lists_every_setting_and_only_those() -> None:
    listed = [row[0].strip("`") for row in table(DOCS / "configuration.md", "variable")]
    assert sorted(listed) == sorted(config.ENVIRONMENT)


def test_every_setting_the_docs_name_is_one_memchat_or_its_tests_read() -> None:
    # A renamed or removed variable left in the docs would send people to a setting that does nothing.
    sources = "".join(path.read_text() for folder in ("tests", "bench") for path in (ROOT / folder).rglob("*.py"))
    named = {name for page in [ROOT / "README.md", *PAGES] for name in SETTING.findall(page.read_text())}
    unknown = sorted(name for name in named if name not in config.ENVIRONMENT and f'"{name}' not in sources)
    assert unknown == []


def test_the_commands_page_lists_every_command_where_it_runs() -> None:
    rows = {row[0].strip("`").split()[0]: row[2] for row in table(DOCS / "commands.md", "command")}
    assert sorted(rows) == sorted([*(f"/{name}" for name in REGISTRY), "/exit"])
    for name, spec in REGISTRY.items():
        assert (rows[f"/{name}"] == "everywhere") == (not spec.terminal_only), f"/{name}: {rows[f'/{name}']}"


def test_the_readme_names_only_commands_that_exist() -> None:
    text = (ROOT / "README.md").read_text()
    named = set(re.findall(r"`/([a-z]+)", text))
    assert named and named <= {*REGISTRY, "exit"}


def test_the_usage_page_and_the_readme_show_every_subcommand() -> None:
    for page in (DOCS / "usage.md", ROOT / "README.md"):
        text = page.read_text()
        missing = [name for name in SUBCOMMANDS if f"memchat {name} " not in text]
        assert missing == [], f"{page.name} does not show memchat {missing}"
