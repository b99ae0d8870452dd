"""Logistic problems on real data: the LIBSVM text format and scikit-learn's breast cancer."""

from __future__ import annotations

from typing import Any

import numpy as np

from ratedist._validation import check_int
from ratedist.sim.problems.core import PROBLEMS, Problem
from ratedist.sim.problems.regression import logistic_nonconvex


def load_libsvm(path: Any, *, n_features: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read a LIBSVM/SVMlight text file into dense numpy arrays.

    Format: one sample per line, ``label index:value index:value ...`` with 1-based,
    increasing indices; ``#`` starts a comment; blank lines are skipped; a ``qid:`` token is
    ignored.

    Args:
        path: file path.
        n_features: number of columns (default: the largest index seen).

    Returns:
        ``(X, y)``: ``X`` float64 ``(M, n_features)``, ``y`` float64 ``(M,)``.

    Raises:
        ValueError: malformed line (its number is named), index < 1 or > ``n_features``,
            or no samples.
    """
    rows: list[tuple[float, list[int], list[float]]] = []
    max_idx = 0
    with open(path, encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, start=1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            tokens = line.split()
            try:
                label = float(tokens[0])
                idx, val = [], []
                for tok in tokens[1:]:
                    k, v = tok.split(":", 1)
                    if k == "qid":
                        continue
                    idx.append(int(k))
                    val.append(float(v))
            except ValueError as exc:
                raise ValueError(
                    f"path {str(path)!r}: malformed line {lineno}: {raw.strip()!r}"
                ) from exc
            if idx and min(idx) < 1:
                raise ValueError(f"path {str(path)!r}: line {lineno}: indices must be >= 1")
            max_idx = max([max_idx, *idx])
            rows.append((label, idx, val))
    if not rows:
        raise ValueError(f"path {str(path)!r} holds no samples")
    p = max_idx if n_features is None else check_int("n_features", n_features, min_value=1)
    if max_idx > p:
        raise ValueError(f"n_features must be >= the largest index {max_idx}, got {p}")
    X = np.zeros((len(rows), p))
    y = np.empty(len(rows))
    for r, (label, idx, val) in enumerate(rows):
        y[r] = label
        X[r, np.asarray(idx, dtype=np.int64) - 1] = val
    return X, y


def _standardize(X: np.ndarray) -> np.ndarray:
    sd = X.std(axis=0)
    return (X - X.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


@PROBLEMS.register("logistic_libsvm")
def logistic_libsvm(
    path: Any,
    *,
    n_workers: int = 20,
    lam: float = 0.1,
    n_features: int | None = None,
    standardize: bool = False,
    batch_size: int | None = None,
    solve_f_star: bool = True,
) -> Problem:
    """:func:`logistic_nonconvex` on a LIBSVM file (labels ``{−1, 1}`` or ``{0, 1}``).

    Args:
        path: the file (read with :func:`load_libsvm`).
        n_workers, lam, batch_size, solve_f_star: as in :func:`logistic_nonconvex`.
        n_features: number of columns (default: largest index in the file).
        standardize: centre and scale every column to unit variance first.

    Raises:
        ValueError: unreadable file, labels not binary, bad sizes.
    """
    X, y = load_libsvm(path, n_features=n_features)
    if standardize:
        X = _standardize(X)
    return logistic_nonconvex(
        X,
        y,
        n_workers=n_workers,
        lam=lam,
        batch_size=batch_size,
        solve_f_star=solve_f_star,
        source=f"libsvm:{path}" + (":standardized" if standardize else ""),
    )


@PROBLEMS.register("logistic_breast_cancer")
def logistic_breast_cancer(
    *,
    n_workers: int = 20,
    lam: float = 0.1,
    batch_size: int | None = None,
    solve_f_star: bool = True,
) -> Problem:
    """:func:`logistic_nonconvex` on scikit-learn's Wisconsin breast-cancer data (569 x 30).

    Features are standardized (centred, unit variance) so that ``L`` is O(1); labels
    malignant/benign are mapped to ``{−1, +1}``. Needs the optional extra ``data``
    (scikit-learn); the data ship inside the package (no download).

    Raises:
        ImportError: scikit-learn is not installed (``pip install ratedist[data]``).
    """
    try:
        from sklearn.datasets import load_breast_cancer
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "logistic_breast_cancer needs scikit-learn: pip install 'ratedist[data]'"
        ) from exc
    X, y = load_breast_cancer(return_X_y=True)
    return logistic_nonconvex(
        _standardize(np.asarray(X, np.float64)),
        np.asarray(y, np.float64),
        n_workers=n_workers,
        lam=lam,
        batch_size=batch_size,
        solve_f_star=solve_f_star,
        source="sklearn:breast_cancer:standardized",
    )
