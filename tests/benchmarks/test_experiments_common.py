"""benchmarks/experiments/common.py: the helpers the benchmarks share, on closed-form inputs."""

import pytest
from experiments.common import last_quarter_gain, mean_std


def test_last_quarter_gain_reads_the_point_nearest_three_quarters():
    curve = [[100, 15.0], [200, 18.0], [300, 20.0], [400, 21.0]]
    assert last_quarter_gain(curve, 400) == pytest.approx(1.0)  # 21 - the score at step 300
    assert last_quarter_gain([[75, 10.0], [150, 12.0], [225, 13.5], [300, 13.0]], 300) == pytest.approx(-0.5)
    assert last_quarter_gain([[400, 21.0]], 400) is None


def test_mean_std_is_the_sample_standard_deviation():
    assert mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)
    assert mean_std([5.0]) == (5.0, 0.0)
    with pytest.raises(ValueError):
        mean_std([])
