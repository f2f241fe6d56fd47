"""The flag-vs-seeds comparison's statistics, by hand."""

import math

import pytest
from scipy import stats

from benchmarks import xla_flag_seeds


def test_compare_gives_means_sample_stds_and_welchs_p_value():
    off, on = [0.39, 0.33, 0.59, 0.61], [0.54, 0.45, 0.70]
    row = xla_flag_seeds.compare(off, on)
    assert row["off"]["mean"] == pytest.approx(sum(off) / 4)
    assert row["on"]["std"] == pytest.approx(math.sqrt(sum((v - sum(on) / 3) ** 2 for v in on) / 2))
    assert row["difference_of_means"] == pytest.approx(sum(on) / 3 - sum(off) / 4)
    # Welch's statistic and Welch-Satterthwaite degrees of freedom, written out.
    va, vb = row["on"]["std"] ** 2 / 3, row["off"]["std"] ** 2 / 4
    t = row["difference_of_means"] / math.sqrt(va + vb)
    dof = (va + vb) ** 2 / (va**2 / 2 + vb**2 / 3)
    assert row["welch_p"] == pytest.approx(2 * stats.t.sf(abs(t), dof), rel=1e-9)


def test_identical_constant_samples_are_the_same_mean():
    row = xla_flag_seeds.compare([8.0, 8.0], [8.0, 8.0])
    assert row["welch_p"] == 1.0 and row["difference_of_means"] == 0.0


def test_an_unknown_demo_entry_is_one_clear_error():
    with pytest.raises(SystemExit, match="no demo entry 'nope'"):
        xla_flag_seeds._entry("nope")
