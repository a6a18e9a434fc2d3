"""The documentation stays inside the repository: every link of the README and docs/ is a
relative path to a file that exists."""

from __future__ import annotations

import re

import pytest

from xrdagg.config import PROJECT_ROOT

DOCS = [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").glob("*.md"))]
_LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.mark.parametrize("page", DOCS, ids=lambda p: p.name)
def test_every_link_points_to_a_file_of_the_repository(page) -> None:
    links = _LINK.findall(page.read_text())
    outside = [link for link in links if re.match(r"[a-z]+:", link)]
    assert outside == [], f"{page.name} links outside the repository"
    for link in links:
        target = (page.parent / link.split("#")[0]).resolve()
        assert target.exists(), f"{page.name}: {link} does not exist"
        assert target.is_relative_to(PROJECT_ROOT), f"{page.name}: {link} leaves the repository"


def test_the_readme_links_the_contract() -> None:
    assert "](docs/spec.md)" in (PROJECT_ROOT / "README.md").read_text()
