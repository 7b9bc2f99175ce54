"""Scaling pairwise choices: win counts, maximum-likelihood Bradley–Terry scores and bootstrap
intervals over observers (the analysis of :mod:`eval.userstudy`, after Mantiuk's pwcmp)."""
from __future__ import annotations

import numpy as np


def win_matrix(rows, methods) -> np.ndarray:
    idx = {m: i for i, m in enumerate(methods)}
    w = np.zeros((len(methods), len(methods)))
    for r in rows:
        w[idx[r["winner"]], idx[r["loser"]]] += 1
    return w


def bradley_terry(wins: np.ndarray, ridge: float = 1e-3, iters: int = 100) -> np.ndarray:
    """Maximum-likelihood Bradley–Terry log-strengths from ``wins[i, j]`` = times i beat j.

    Maximises ``Σ w_ij log σ(s_i − s_j) − ridge/2 · Σ s_i²`` by Newton's method; the ridge fixes the
    origin (scores sum to zero) and keeps a never-chosen method finite. ``P(i beats j) = σ(s_i − s_j)``.
    """
    w = np.asarray(wins, dtype=np.float64)
    n = w + w.T
    s = np.zeros(len(w))
    for _ in range(iters):
        p = 1 / (1 + np.exp(-(s[:, None] - s[None, :])))  # P(i beats j)
        grad = w.sum(1) - (n * p).sum(1) - ridge * s
        c = n * p * p.T
        hess = c - np.diag(c.sum(1)) - ridge * np.eye(len(s))
        # the likelihood is flat along (1, …, 1) (only differences matter): −11ᵀ/n fixes that direction
        step = np.linalg.solve(hess - np.ones_like(hess) / len(s), -grad)
        s = s + step
        if np.abs(step).max() < 1e-10:
            break
    return s - s.mean()


def bootstrap_intervals(rows, methods, observers, n: int, seed: int, scores) -> tuple[np.ndarray, np.ndarray]:
    """95 % intervals of the BT scores from ``n`` resamples of the observers (of the votes when
    there is a single observer)."""
    rng = np.random.default_rng(seed)
    groups = [[r for r in rows if r["observer"] == o] for o in observers] if len(observers) > 1 else [[r] for r in rows]
    boot = []
    for _ in range(n):
        pick = rng.integers(len(groups), size=len(groups))
        boot.append(bradley_terry(win_matrix([r for i in pick for r in groups[i]], methods)))
    return tuple(np.percentile(boot, q, axis=0) if boot else scores for q in (2.5, 97.5))
