"""Theory-vs-simulation checks that return a verdict table.

    from ratedist.validate import run_checks, format_table
    print(format_table(run_checks(quick=True)))

See :mod:`ratedist.validate.verdicts` for the verdict rules, :mod:`ratedist.validate.checks`
for the suite, :mod:`ratedist.validate.coding` for its gradient-coding checks and
:mod:`ratedist.validate.weights` for its weight-quantization check,
:mod:`ratedist.validate.coding_bounds` for the 1-bit gradient-coding convergence bounds and
:mod:`ratedist.validate.adam` for quantized distributed Adam.
"""

from ratedist.validate.core import format_table, run_checks, table_rows, to_json
from ratedist.validate.verdicts import (
    CHECKS,
    VERDICTS,
    CheckResult,
    verdict_equal,
    verdict_less,
    verdict_lower,
    verdict_upper,
    verdict_zero_count,
)

__all__ = [
    "CHECKS",
    "VERDICTS",
    "CheckResult",
    "format_table",
    "run_checks",
    "table_rows",
    "to_json",
    "verdict_equal",
    "verdict_less",
    "verdict_lower",
    "verdict_upper",
    "verdict_zero_count",
]
