"""Continual-learning metrics over an accuracy matrix.

R[i][j] is the accuracy on task (day) j's facts after training stage (night) i; rows are stages
0..T-1, columns tasks 0..T-1. Definitions follow Lopez-Paz & Ranzato 2017 (ACC, BWT, FWT) and
Chaudhry et al. 2018 (forgetting); FUAR follows Jang et al. 2022 (CKL).
"""


def _check(R):
    T = len(R)
    if T == 0 or any(len(row) != T for row in R):
        raise ValueError(f"accuracy matrix must be square and non-empty, got {[len(r) for r in R]}")
    return T


def acc(R) -> float:
    """Mean accuracy over all tasks after the last stage."""
    T = _check(R)
    return sum(R[T - 1]) / T


def bwt(R) -> float:
    """Backward transfer: mean over j < T-1 of R[T-1][j] - R[j][j] (negative = forgetting)."""
    T = _check(R)
    if T < 2:
        return 0.0
    return sum(R[T - 1][j] - R[j][j] for j in range(T - 1)) / (T - 1)


def fwt(R, baseline) -> float:
    """Forward transfer: mean over j >= 1 of R[j-1][j] - baseline[j] (accuracy on task j before
    training on it, against an untrained model's accuracy `baseline[j]`)."""
    T = _check(R)
    if T < 2:
        return 0.0
    return sum(R[j - 1][j] - baseline[j] for j in range(1, T)) / (T - 1)


def forgetting(R) -> float:
    """Chaudhry et al.: mean over j < T-1 of max_{l < T-1} R[l][j] - R[T-1][j]."""
    T = _check(R)
    if T < 2:
        return 0.0
    return sum(max(R[l][j] for l in range(T - 1)) - R[T - 1][j] for j in range(T - 1)) / (T - 1)


def fuar(forgotten: int, updated: int, acquired: int) -> float | None:
    """Forgotten / (updated + acquired): below 1 means more was gained than lost. None (JSON
    null) when something was forgotten and nothing gained: the ratio is undefined."""
    gained = updated + acquired
    if gained == 0:
        return None if forgotten else 0.0
    return forgotten / gained
