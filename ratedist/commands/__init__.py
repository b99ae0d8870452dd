"""Sub-commands of the ``ratedist`` console script.

Each module named here exposes ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int``; modules are imported lazily so ``ratedist --help`` stays fast.
"""

SUBCOMMANDS: dict[str, str] = {
    "demo": "ratedist.commands.demo",
    "levels": "ratedist.commands.levels",
    "rd": "ratedist.commands.rd",
    "simulate": "ratedist.commands.simulate",
    "validate": "ratedist.commands.validate",
}
