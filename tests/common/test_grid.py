"""Extremes: the best and worst cases of a stream as sorting the whole stream would pick them, in
bounded memory."""
import random

import pytest

from common.grid import Extremes


@pytest.mark.parametrize("count", [0, 1, 5, 6, 7, 50, 400])
def test_extremes_equal_a_full_sort_and_stay_bounded(count):
    rng = random.Random(count)
    ranks = [rng.choice([0.0, 1.0, 2.5]) if i % 3 else rng.random() for i in range(count)]  # many ties
    ex = Extremes(3)
    for i, r in enumerate(ranks):
        ex.add(r, f"item{i}")
        assert len(ex.items) <= 6
    ranked = sorted((r, i) for i, r in enumerate(ranks))         # ties in arrival order
    want = ranked[:3] + ranked[-3:] if count > 6 else ranked
    assert ex.picked() == [(r, f"item{i}") for r, i in want]
