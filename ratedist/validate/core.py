"""Running the registered checks and printing the table.

A check is a function ``check(quick: bool, key) -> CheckResult | list[CheckResult]`` enrolled
in :data:`~ratedist.validate.verdicts.CHECKS` (the suite: :mod:`ratedist.validate.checks`).
:func:`run_checks` runs a selection (each under a scoped ``jax.enable_x64(True)``, so the
library never flips the global JAX config), turns an exception inside a check into an
``inconclusive`` row that says what went wrong, and returns the rows; :func:`format_table`
prints them and :func:`table_rows` gives them as JSON-able dicts (keys ``check, predicted,
measured, error, verdict, detail``). The verdict rules are in :mod:`ratedist.validate.verdicts`.
"""

from __future__ import annotations

import json
import math
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jax

from ratedist._validation import check_positive
from ratedist.validate import adam as _adam  # noqa: F401  (registers its check)
from ratedist.validate import checks as _impl
from ratedist.validate import coding as _coding  # noqa: F401  (registers its checks)
from ratedist.validate import coding_bounds as _coding_bounds  # noqa: F401  (registers its check)
from ratedist.validate import weights as _weights  # noqa: F401  (registers its check)
from ratedist.validate.verdicts import CHECKS, VERDICTS, CheckResult


def _as_list(out: Any) -> list[CheckResult]:
    items = [out] if isinstance(out, CheckResult) else list(out)
    for r in items:
        if not isinstance(r, CheckResult) or r.verdict not in VERDICTS:
            raise TypeError(f"a check must return CheckResult rows with a known verdict, got {r!r}")
    return items


def _check_key(key: Any, name: str) -> Any:
    # keyed by the name, so a check sees the same randomness whatever else is selected
    return jax.random.fold_in(key, zlib.crc32(name.encode()) & 0x7FFFFFFF)


def run_checks(
    names: Sequence[str] | None = None,
    quick: bool = False,
    *,
    seed: int = 0,
    on_result: Callable[[CheckResult], None] | None = None,
) -> list[CheckResult]:
    """Run the registered checks and return their rows.

    Args:
        names: check names (default: all; with ``quick``, all those marked quick).
        quick: small sizes for CI (the whole quick suite targets < 60 s on 2 cores).
        seed: seed of the PRNG key handed to each check (``fold_in(key(seed), crc32(name))``).
        on_result: called with each row as soon as it is ready (for streaming output).

    Returns:
        The rows, in check order (a check may contribute several rows).

    Raises:
        ValueError: an unknown check name.
        TypeError: ``names`` is a string rather than a sequence of names.
    """
    if isinstance(names, str):
        raise TypeError(f"names must be a sequence of check names, got the string {names!r}")
    if names is None:
        names = [n for n in CHECKS.names() if CHECKS.facts(n)["quick"] or not quick]
    else:
        # a row's name "family[variant]" selects its check, as the table prints it
        names = list(dict.fromkeys(n.split("[", 1)[0] if isinstance(n, str) else n for n in names))
        for n in names:
            if not isinstance(n, str) or n not in CHECKS:
                raise ValueError(f"names must hold known checks {CHECKS.names()}, got {n!r}")
    key = jax.random.key(seed)
    rows: list[CheckResult] = []
    with jax.enable_x64(True):
        try:
            if "vmap_vs_shard_map" in names:
                _impl.prestart(names, quick, _check_key(key, "vmap_vs_shard_map"))
            for name in names:
                t0 = time.perf_counter()
                try:
                    out = _as_list(CHECKS.get(name)(quick, _check_key(key, name)))
                except Exception as exc:  # a broken check is reported, never hidden
                    msg = str(exc).splitlines()[0] if str(exc) else ""
                    out = [
                        CheckResult(
                            name,
                            math.nan,
                            math.nan,
                            math.nan,
                            "inconclusive",
                            f"check failed to run: {type(exc).__name__}: {msg}",
                        )
                    ]
                dt = time.perf_counter() - t0
                out = [r._replace(detail=f"{r.detail} [{dt:.1f} s]") for r in out]
                for r in out:
                    if on_result is not None:
                        on_result(r)
                rows.extend(out)
        finally:
            _impl.clear_cache()
            _impl.stop_pending()
    return rows


def table_rows(
    names: Sequence[str] | None = None, quick: bool = True, *, seed: int = 0
) -> list[dict[str, Any]]:
    """The validation table as a list of JSON-able dicts (for ``ratedist demo`` and --json)."""
    return [r.as_dict() for r in run_checks(names, quick=quick, seed=seed)]


def _num(v: float) -> str:
    if v is None or not math.isfinite(v):
        return "-"
    if v == 0:
        return "0"
    return f"{v:.4g}"


def format_table(results: Iterable[CheckResult], *, width: int = 60) -> str:
    """Plain-text table: check, predicted, measured (± error), verdict, detail."""
    check_positive("width", width)
    rows = [
        (
            r.check,
            _num(r.predicted),
            _num(r.measured)
            + (f" ± {_num(r.error)}" if r.error and math.isfinite(r.error) else ""),
            r.verdict,
            r.detail if len(r.detail) <= width else r.detail[: width - 3] + "...",
        )
        for r in results
    ]
    head = ("check", "predicted", "measured (± SE)", "verdict", "detail")
    widths = [
        max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(head)
    ]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()  # noqa: E731
    out = [line(head), line(tuple("-" * w for w in widths))]
    out += [line(row) for row in rows]
    counts = {v: sum(1 for row in rows if row[3] == v) for v in VERDICTS}
    out.append("")
    out.append(", ".join(f"{n} {v}" for v, n in counts.items()))
    return "\n".join(out)


def to_json(results: Iterable[CheckResult]) -> str:
    """The rows as a JSON list of objects with keys check/predicted/measured/error/verdict/detail."""
    return json.dumps([r.as_dict() for r in results], indent=2)
