"""The benchmark's topology apply remaps a shipped domain whose hosts really move: with seed 1
the domain closest to 1.5 % of the rows (gla.scotgrid.ac.uk) is resolved by a host pattern,
so mapping it to a new site would change nothing, and `make bench` would stop at its check."""

from __future__ import annotations

import pytest

from bench import run


@pytest.mark.parametrize("seed", [1, 42])
def test_the_remapped_domain_moves_generated_hosts(seed: int) -> None:
    frame = run.generate_rows(100_000, run.START, 4.0, seed, "realistic")
    domain, share = run.remap_domain(frame)
    assert run.remapped_sites(domain, run.domain_pairs(frame, domain)) > 0
    assert 0.005 < share < 0.05
