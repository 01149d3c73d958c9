"""Ordinary least squares with its coefficient of determination: one fit for every regression here.

Paper A's embedding geometry (Eq 5.2: inner product against Hamming distance), the linearity of
its identity-W_V variant (Theorem 3), and paper B's reading of an MLP as a weighted sum of the
heads before it are all y ≈ X c. R² = 1 − Σ residual² / Σ (y − ȳ)², computed in float64.
`pearson` is scipy's correlation over the first axis, for paper B's attention–projection test,
and `permutation_p_value` its null distribution by shuffling.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Union

import numpy as np
import torch
from jaxtyping import Float
from scipy import stats
from torch import Tensor

Matrix = Union[Float[Tensor, "n k"], Sequence[Sequence[float]]]
Vector = Union[Float[Tensor, "n"], Sequence[float]]


@dataclass
class Fit:
    coefficients: Float[Tensor, "k"]  # float64
    residual: Float[Tensor, "n"]
    r2: float  # 0 when y is constant (nothing to explain)


def least_squares(design: Matrix, target: Vector) -> Fit:
    """argmin_c ‖design @ c − target‖²; add a column of ones to `design` for an intercept."""
    X = torch.as_tensor(design, dtype=torch.float64)
    y = torch.as_tensor(target, dtype=torch.float64)
    if X.ndim != 2 or y.ndim != 1 or X.shape[0] != y.shape[0] or X.shape[0] == 0:
        raise ValueError(f"least squares needs design [n, k] and target [n] with n ≥ 1, got {tuple(X.shape)} and {tuple(y.shape)}.")
    coefficients = torch.linalg.lstsq(X, y[:, None]).solution[:, 0]
    residual = y - X @ coefficients
    total = float(((y - y.mean()) ** 2).sum())
    return Fit(coefficients, residual, 1.0 - float((residual**2).sum()) / total if total > 0 else 0.0)


def pearson(x: Float[Tensor, "n ..."], y: Float[Tensor, "n ..."]) -> Float[Tensor, "..."]:
    """Pearson's r over the first axis (scipy.stats.pearsonr), float64; 0 where either side is
    constant (there is no correlation to speak of)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        r = stats.pearsonr(torch.as_tensor(x).double().numpy(), torch.as_tensor(y).double().numpy(), axis=0).statistic
    return torch.as_tensor(np.nan_to_num(np.asarray(r, dtype=np.float64), nan=0.0))


def permutation_p_value(x: Float[Tensor, "n ..."], y: Float[Tensor, "n ..."], n_permutations: int = 1000,
                        seed: int = 0) -> Float[Tensor, "..."]:
    """Two-sided p-value of Pearson's r over the first axis against the null of no association:
    the share of `n_permutations` seeded shuffles of y's rows whose |r| is at least the observed
    |r| (counting the observed itself, so never 0)."""
    observed = pearson(x, y).abs()
    generator = torch.Generator().manual_seed(seed)
    as_large = torch.ones_like(observed)
    for _ in range(n_permutations):
        shuffled = torch.as_tensor(y)[torch.randperm(len(y), generator=generator)]
        as_large += pearson(x, shuffled).abs() >= observed - 1e-12
    return as_large / (n_permutations + 1)
