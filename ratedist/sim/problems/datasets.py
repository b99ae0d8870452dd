"""Logistic problems on real data: LIBSVM/SVMlight files (kept sparse) and breast cancer."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from ratedist._validation import check_int
from ratedist.sim.problems.core import PROBLEMS, Problem
from ratedist.sim.problems.regression import logistic_nonconvex


def load_libsvm(
    path: Any, *, n_features: int | None = None, dense: bool = False
) -> tuple[Any, np.ndarray]:
    """Read a LIBSVM/SVMlight text file into a CSR matrix (or dense arrays on request).

    Format: one sample per line, ``label index:value index:value ...`` with 1-based,
    increasing indices; ``#`` starts a comment; blank lines are skipped; a ``qid:`` token is
    ignored. Parsed by scikit-learn's C-speed ``load_svmlight_file`` (``zero_based=False``),
    never densified unless ``dense=True``: memory is O(nnz).

    Args:
        path: file path.
        n_features: number of columns (default: the largest index seen).
        dense: return a dense float64 ``X`` (memory O(samples x features)).

    Returns:
        ``(X, y)``: ``X`` a ``scipy.sparse.csr_array`` float64 ``(M, n_features)`` (a numpy
        array if ``dense``), ``y`` float64 ``(M,)``.

    Raises:
        ValueError: malformed line (its number is named), index < 1 or > ``n_features``,
            or no samples.
        ImportError: scikit-learn is not installed (``pip install 'ratedist[data]'``).
    """
    try:
        from sklearn.datasets import load_svmlight_file
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("load_libsvm needs scikit-learn: pip install 'ratedist[data]'") from exc
    if not isinstance(dense, bool | np.bool_):
        raise TypeError(f"dense must be a bool, got {dense!r} ({type(dense).__name__})")
    try:
        X, y = load_svmlight_file(str(path), zero_based=False, dtype=np.float64)
    except ValueError as exc:
        raise ValueError(f"path {str(path)!r}: {_first_bad_line(path) or exc}") from exc
    if X.shape[0] == 0:
        raise ValueError(f"path {str(path)!r} holds no samples")
    X = sp.csr_array(X)
    if n_features is not None:
        p = check_int("n_features", n_features, min_value=1)
        if X.shape[1] > p:
            raise ValueError(f"n_features must be >= the largest index {X.shape[1]}, got {p}")
        X = sp.csr_array((X.data, X.indices, X.indptr), shape=(X.shape[0], p))
    return (X.toarray() if dense else X), np.asarray(y, np.float64)


def _first_bad_line(path: Any) -> str | None:
    """``"malformed line k: ..."`` for the first line the LIBSVM grammar rejects (error path)."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        for lineno, raw in enumerate(fh, start=1):
            tokens = raw.split("#", 1)[0].split()
            if not tokens:
                continue
            try:
                float(tokens[0])
                for tok in tokens[1:]:
                    k, v = tok.split(":", 1)
                    float(v)
                    if k != "qid" and int(k) < 1:
                        return f"line {lineno}: indices must be >= 1, got {k}"
            except ValueError:
                return f"malformed line {lineno}: {raw.strip()!r}"
    return None


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
        path: the file (read with :func:`load_libsvm` into CSR; the problem stays sparse,
            gradients and memory O(nnz), see :mod:`ratedist.sim.problems.sparse`).
        n_workers, lam, batch_size, solve_f_star: as in :func:`logistic_nonconvex`
            (``batch_size`` needs ``standardize=True``: minibatch oracles are dense only).
        n_features: number of columns (default: largest index in the file).
        standardize: centre and scale every column to unit variance first; centring makes
            ``X`` dense, so this takes the dense path (memory O(samples x features)).

    Raises:
        ValueError: unreadable file, labels not binary, bad sizes.
    """
    X, y = load_libsvm(path, n_features=n_features)
    if standardize:
        X = _standardize(X.toarray())  # centring fills every entry: the dense path
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
