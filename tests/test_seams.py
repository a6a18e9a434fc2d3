"""The crash tests' seams (tests/seams.py) exist: a rename fails here, at once and by name."""

from __future__ import annotations

import types

import pytest

from tests.seams import SEAMS, SeamMissingError, target, wrap


@pytest.mark.parametrize(("module", "name"), SEAMS, ids=lambda v: v)
def test_every_seam_is_a_function_of_its_module(module: str, name: str) -> None:
    assert callable(target(module, name))


def test_wrap_refuses_a_missing_or_uncallable_seam() -> None:
    module = types.ModuleType("somewhere")
    module.constant = 3  # type: ignore[attr-defined]
    for name in ("gone", "constant"):
        with pytest.raises(SeamMissingError, match=f"somewhere.{name} is gone"):
            wrap(module, name, after=print)


def test_wrap_calls_after_with_the_result() -> None:
    module = types.ModuleType("somewhere")
    module.double = lambda x: 2 * x  # type: ignore[attr-defined]
    seen: list[int] = []
    wrap(module, "double", after=seen.append)
    assert module.double(4) == 8 and seen == [8]
