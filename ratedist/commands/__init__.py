"""Sub-commands of the ``ratedist`` console script.

Each module named in :data:`SUBCOMMANDS` exposes ``add_arguments(parser)`` and
``run(args) -> int``; its one-line help lives here, so that ``ratedist --help`` lists the
commands without importing any of them (their imports reach JAX), and a command's module
is imported only when that command runs or prints its own help.
"""

from typing import NamedTuple


class Subcommand(NamedTuple):
    """Where a sub-command lives and what ``ratedist --help`` says about it."""

    module: str
    help: str


SUBCOMMANDS: dict[str, Subcommand] = {
    "demo": Subcommand(
        "ratedist.commands.demo",
        "Run the main job: optimal levels, an RD figure and a theory-vs-simulation table.",
    ),
    "gradients": Subcommand(
        "ratedist.commands.gradients",
        "Capture the per-layer gradients of a small JAX model and fit gradient models to them.",
    ),
    "levels": Subcommand(
        "ratedist.commands.levels",
        "Design an optimal scalar quantizer (levels, thresholds, MSE, entropy, gap to Shannon).",
    ),
    "rd": Subcommand(
        "ratedist.commands.rd",
        "Rate-distortion points (closed form + Monte Carlo) of compressors on Gaussian gradients.",
    ),
    "results": Subcommand(
        "ratedist.commands.results",
        "A sweep's result directory as one table (one row per run or step): CSV, Parquet.",
    ),
    "simulate": Subcommand(
        "ratedist.commands.simulate",
        "Run a simulation sweep from a TOML config; finished configs are skipped on re-runs.",
    ),
    "validate": Subcommand(
        "ratedist.commands.validate",
        "Run the theory-vs-simulation checks and print predicted vs measured with verdicts.",
    ),
}
