"""The ``ratedist`` command: a thin dispatcher over :mod:`ratedist.commands`.

Errors in user input (``ValueError``/``TypeError`` from the library's argument checks) and
file-system errors (any ``OSError``: a missing directory, a read-only one, a path under a
regular file) exit with status 2 and a one-line message, like argparse's own usage errors.
Warnings print as one line, ``ratedist CMD: warning: ...``. A closed pipe (``ratedist rd ... | head``) ends the command quietly with status 1, as the
Python documentation recommends for SIGPIPE.
"""

from __future__ import annotations

import argparse
import importlib
import io
import os
import sys
import warnings
from collections.abc import Sequence

from ratedist.commands import SUBCOMMANDS


def _module(name: str):
    return importlib.import_module(SUBCOMMANDS[name].module)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser, with the arguments of the sub-command ``only`` (no command's if None)."""
    parser = argparse.ArgumentParser(
        prog="ratedist",
        description="Rate-distortion analysis of gradient compression in distributed SGD.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, command in SUBCOMMANDS.items():
        if name != only:
            # Listed by --help without importing the command (its imports reach JAX).
            sub.add_parser(name, help=command.help, add_help=False)
            continue
        p = sub.add_parser(name, help=command.help, description=command.help)
        _module(name).add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    if command in SUBCOMMANDS:
        parser = build_parser(only=command)
    else:
        parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warning(args.command)
            return int(_module(args.command).run(args) or 0)
    except BrokenPipeError:
        _silence_stdout()
        return 1
    except (ValueError, TypeError, OSError) as exc:
        print(f"ratedist {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2


def _one_line_warning(command: str):
    """``warnings.showwarning`` for the command line: ``ratedist CMD: warning: <message>``,
    one line, without the library's file and source line."""

    def show(message, category, filename, lineno, file=None, line=None):
        text = str(message).splitlines()[0] if str(message) else category.__name__
        print(f"ratedist {command}: warning: {text}", file=sys.stderr if file is None else file)

    return show


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush into the closed pipe stays
    quiet (a stdout without a file descriptor, as under a test harness, is left alone)."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        pass


def _one_line(exc: BaseException) -> str:
    """The first line of an error; an ``OSError`` as ``<path>: <reason>``, without its errno."""
    if isinstance(exc, OSError) and exc.strerror:
        where = [repr(str(f)) for f in (exc.filename, exc.filename2) if f is not None]
        return f"{' -> '.join(where)}: {exc.strerror}" if where else exc.strerror
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
