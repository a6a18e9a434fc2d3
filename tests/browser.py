"""A real headless Chromium for the tests: open a page, take a screenshot, collect what the page
wrote to the console. Debian's `chromium` package (`.ci/run` installs it)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

BINARIES = ("chromium", "chromium-browser", "google-chrome")
# Quiet and hermetic: no network of its own, no profile reuse, no GPU on a server.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    # Console messages go to stderr as `…:CONSOLE:LINE] "message", source: URL (LINE)`.
    "--enable-logging=stderr",
    "--v=0",
)


def find_chromium() -> str | None:
    for name in BINARIES:
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class Rendered:
    screenshot: Path
    console: list[str]  # every console message the page produced
    log: str


def render(page: Path, out_dir: Path, width: int = 1300, height: int = 5000) -> Rendered:
    """Open `page` in a fresh headless Chromium profile and screenshot `width` x `height`."""
    binary = find_chromium()
    assert binary, "no chromium on PATH"
    shot = out_dir / "screenshot.png"
    profile = out_dir / "chromium-profile"
    result = subprocess.run(
        [
            binary,
            *FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            f"--screenshot={shot}",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert shot.exists(), f"chromium wrote no screenshot: {result.stderr[-2000:]}"
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    return Rendered(shot, console, result.stderr)


def colour_pixels(path: Path) -> tuple[int, int]:
    """(pixels that are not white, pixels clearly coloured) of a screenshot.

    Text and table rules are black or grey; only the charts (viridis, the default colour cycle)
    put saturated colours on the page, so coloured pixels are the charts' ink.
    """
    import numpy as np
    from PIL import Image

    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    inked = int((pixels.min(axis=2) < 245).sum())
    coloured = int((pixels.max(axis=2) - pixels.min(axis=2) > 60).sum())
    return inked, coloured
