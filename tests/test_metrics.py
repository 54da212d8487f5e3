"""Metrics against matrices worked out by hand."""

import pytest

from reverie.gate import metrics

# after night 0: day0 0.8; after night 1: day0 0.6, day1 0.9; after night 2: 0.5, 0.7, 1.0
R = [[0.8, 0.1, 0.0],
     [0.6, 0.9, 0.2],
     [0.5, 0.7, 1.0]]


def test_acc_bwt_forgetting_by_hand():
    assert metrics.acc(R) == pytest.approx((0.5 + 0.7 + 1.0) / 3)
    assert metrics.bwt(R) == pytest.approx(((0.5 - 0.8) + (0.7 - 0.9)) / 2)       # -0.25
    assert metrics.forgetting(R) == pytest.approx(((0.8 - 0.5) + (0.9 - 0.7)) / 2)  # 0.25


def test_fwt_by_hand():
    assert metrics.fwt(R, baseline=[0.0, 0.05, 0.1]) == pytest.approx(((0.1 - 0.05) + (0.2 - 0.1)) / 2)


def test_no_forgetting_matrix():
    perfect = [[1.0, 0.0], [1.0, 1.0]]
    assert metrics.bwt(perfect) == 0 and metrics.forgetting(perfect) == 0 and metrics.acc(perfect) == 1


def test_fuar():
    assert metrics.fuar(3, 2, 10) == pytest.approx(0.25)
    assert metrics.fuar(0, 0, 0) == 0.0 and metrics.fuar(2, 0, 0) is None


def test_bad_matrix():
    with pytest.raises(ValueError, match="square"):
        metrics.acc([[1.0, 0.5]])
