"""`xrdagg report html` opened in a real headless Chromium, and `--plot` pictures."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.browser import colour_pixels, render
from xrdagg.cli import main

RANGE = ["--from", "2024-03-01", "--to", "2024-03-02"]


@pytest.fixture(scope="module")
def demo_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An embedded database filled the way a new user fills it: `xrdagg demo`."""
    path = tmp_path_factory.mktemp("html") / "demo.db"
    env = {"XRDAGG_DATABASE_URL": f"sqlite:///{path}"}
    result = CliRunner().invoke(main, ["demo", "--fed-rows", "4000", "--eos-rows", "1000"], env=env)
    assert result.exit_code == 0, result.output
    return env


@pytest.fixture(scope="module")
def page(demo_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("page") / "report"
    result = CliRunner().invoke(main, ["report", "html", *RANGE, "--out", str(out)], env=demo_env)
    assert result.exit_code == 0, result.output
    assert f"wrote {out / 'index.html'}" in result.output
    return out / "index.html"


def test_the_page_is_one_self_contained_file(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    assert list(page.parent.iterdir()) == [page]
    assert not re.search(r"""(src|href)\s*=\s*["'](?!#|data:)""", text), "a link out of the page"
    assert "<script" not in text and "<link" not in text and "@import" not in text
    for chart in ("matrix", "throughput", "access", "sites"):
        assert re.search(rf'<div class="chart" id="chart-{chart}"><svg', text), chart
    for section in ("Transfer matrix", "Unresolved domains", "Data quality", "Invalid raw rows"):
        assert section in text
    assert "example-university.edu" in text  # a generated domain no topology resolves


@pytest.mark.chromium
def test_chromium_renders_the_charts_without_console_errors(page: Path, tmp_path: Path) -> None:
    shown = render(page, tmp_path)
    assert shown.console == [], shown.console
    inked, coloured = colour_pixels(shown.screenshot)
    assert inked > 200_000, f"the page looks blank: {inked} non-white pixels"
    assert coloured > 50_000, f"the charts did not render: {coloured} coloured pixels"
    # The same page without its charts: tables and text alone put almost no colour on screen,
    # so the count above is the charts' doing.
    bare = tmp_path / "bare" / "index.html"
    bare.parent.mkdir()
    bare.write_text(re.sub(r"<svg.*?</svg>", "", page.read_text(), flags=re.S))
    assert colour_pixels(render(bare, bare.parent).screenshot)[1] < 2_000


@pytest.mark.chromium
def test_the_console_check_sees_errors(tmp_path: Path) -> None:
    broken = tmp_path / "broken.html"
    broken.write_text('<!DOCTYPE html><p>x</p><script>console.error("boom")</script>')
    shown = render(broken, tmp_path)
    assert any('"boom"' in line for line in shown.console), shown.log[-2000:]
    assert colour_pixels(shown.screenshot)[1] == 0


@pytest.mark.parametrize("kind", ["matrix", "throughput", "access", "users", "sites", "unresolved"])
@pytest.mark.parametrize("suffix", [".png", ".svg"])
def test_plot_files(demo_env: dict[str, str], tmp_path: Path, kind: str, suffix: str) -> None:
    target = tmp_path / f"{kind}{suffix}"
    result = CliRunner().invoke(
        main, ["report", kind, *RANGE, "--plot", str(target), "--format", "csv"], env=demo_env
    )
    assert result.exit_code == 0, result.output
    data = target.read_bytes()
    if suffix == ".png":
        from PIL import Image

        assert data.startswith(b"\x89PNG")
        with Image.open(target) as image:
            assert image.width > 500 and image.height > 300
            colours = image.convert("RGB").getcolors(maxcolors=1 << 24) or []
            assert len(colours) > 20  # drawn, not blank
    else:
        import xml.etree.ElementTree as ET

        root = ET.fromstring(data)
        assert root.tag.endswith("svg") and len(data) > 5_000


def test_plot_needs_png_or_svg(demo_env: dict[str, str], tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["report", "matrix", *RANGE, "--plot", str(tmp_path / "m.gif")], env=demo_env
    )
    assert result.exit_code == 2 and ".png or .svg" in result.output


def test_without_matplotlib_the_message_names_the_extra(
    demo_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import fails as if absent
    for args in (
        ["report", "matrix", *RANGE, "--plot", str(tmp_path / "m.png")],
        ["report", "html", *RANGE, "--out", str(tmp_path / "out")],
    ):
        result = CliRunner().invoke(main, args, env=demo_env)
        assert result.exit_code == 2, result.output
        assert "pip install 'xrdagg[plots]'" in result.output and "'plots' extra" in result.output
