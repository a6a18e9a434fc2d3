"""The one build step pyproject.toml cannot declare: the wheel carries the top-level
`migrations/`, `alembic.ini`, `jobs/` and `topology/` as package data under `xrdagg/_data/`
(read by xrdagg.resources). The repository keeps them at the top, where operators look for them;
an editable install reads them there. Everything else is in pyproject.toml.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
SHIPPED = ("migrations", "alembic.ini", "jobs", "topology")  # as xrdagg.resources.SHIPPED


class BuildPyWithShippedFiles(build_py):
    """build_py, then copy the shipped files into the built package."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads the checkout's own files
        target = Path(self.build_lib) / "xrdagg" / "_data"
        for name in SHIPPED:
            source = ROOT / name
            if source.is_dir():
                shutil.copytree(
                    source,
                    target / name,
                    dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
                )
            else:
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target / name)


setup(cmdclass={"build_py": BuildPyWithShippedFiles})
