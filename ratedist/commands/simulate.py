"""``ratedist simulate CONFIG.toml [--out DIR] [--shard i/n] [--executor dask://HOST:PORT]``:
run a sweep of simulations, resumably, from one process or many sharing ``--out``."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ratedist._io import check_output_dir


def _dask_client(address: str) -> contextlib.AbstractContextManager[Any]:
    """A ``dask.distributed.Client`` of the scheduler at ``tcp://HOST:PORT``."""
    try:
        from distributed import Client
    except ImportError:
        raise ValueError(
            "--executor dask://... needs dask.distributed: pip install 'ratedist[cluster]'"
        ) from None
    return Client(f"tcp://{address}", timeout=30)


#: ``--executor`` URL scheme -> ``address -> context manager of an executor`` (an object with
#: ``submit(fn, *args)``, see :func:`ratedist.sim.sweep.run_sweep`).
EXECUTORS: dict[str, Callable[[str], contextlib.AbstractContextManager[Any]]] = {
    "dask": _dask_client,
}


@contextlib.contextmanager
def open_executor(url: str | None) -> Iterator[Any]:
    """The executor named by ``--executor`` (None: run in this process).

    Raises:
        ValueError: an unknown scheme or a URL without ``HOST:PORT``.
    """
    if url is None:
        yield None
        return
    parts = urlsplit(url)
    if parts.scheme not in EXECUTORS or not parts.netloc or parts.path not in ("", "/"):
        raise ValueError(
            f"--executor must be one of {[f'{k}://HOST:PORT' for k in EXECUTORS]}, got {url!r}"
        )
    with EXECUTORS[parts.scheme](parts.netloc) as executor:
        yield executor


def _seconds(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds >= 0, got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "config", help="sweep config (TOML), e.g. simulations/ef21_lag_tridiagonal.toml"
    )
    parser.add_argument(
        "--out",
        default=None,
        help="result directory (default: results/<config name> next to the config)",
    )
    parser.add_argument("--progress", action="store_true", help="show a progress bar per run")
    parser.add_argument("--dry-run", action="store_true", help="list the expanded configs and exit")
    parser.add_argument(
        "--shard",
        default=None,
        metavar="i/n",
        help="run only part i of n (0 <= i < n): the configs whose hash is i modulo n, as for "
        "a job array: --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT",
    )
    parser.add_argument(
        "--executor",
        default=None,
        metavar="URL",
        help="run the configs on a cluster: dask://HOST:PORT (a dask.distributed scheduler "
        "whose workers see --out; needs the 'cluster' extra)",
    )
    parser.add_argument(
        "--claim-timeout",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="a config claimed longer ago than this by another process (on any host) is "
        "taken over (default: ratedist.sim.store.CLAIM_TIMEOUT_S, 6 hours); a dead holder on "
        "this host is taken over at once",
    )


def run(args: argparse.Namespace) -> int:
    # Imported here so that `ratedist --help` does not import JAX.
    import jax

    from ratedist.sim.store import CLAIM_TIMEOUT_S, ResultStore, config_hash
    from ratedist.sim.sweep import STAGE_SECTIONS, load_sweep, parse_shard, run_sweep

    shard = None if args.shard is None else parse_shard(args.shard)
    configs = load_sweep(args.config)
    if shard is not None:
        configs = [cfg for cfg in configs if cfg in shard]
    cfg_path = Path(args.config)
    out = Path(args.out) if args.out else cfg_path.parent / "results" / cfg_path.stem
    store = ResultStore(out)
    if args.dry_run:
        for cfg in configs:
            state = "done" if store.done(cfg) else "claimed" if store.holder(cfg) else "todo"
            stages = "".join(f" {k}={cfg[k]}" for k in STAGE_SECTIONS if k in cfg)
            print(
                f"{config_hash(cfg)} {state} {cfg['algorithm']} on {cfg['problem']}{stages} "
                f"seed={cfg['seed']}"
            )
        return 0
    check_output_dir(out, option="--out" if args.out else "result directory")
    # float64 runs need x64; enable it for this command only (a scoped context, not global).
    need_x64 = any(cfg["dtype"] == "float64" for cfg in configs)
    with open_executor(args.executor) as executor, jax.enable_x64(need_x64):
        counts = run_sweep(
            configs,
            out,
            progress=args.progress,
            log=lambda s: print(s, file=sys.stderr),
            claim_timeout_s=CLAIM_TIMEOUT_S if args.claim_timeout is None else args.claim_timeout,
            executor=executor,
        )
    bad = counts["diverged"]
    note = f" ({bad} DIVERGED: non-finite iterates, see the log)" if bad else ""
    held = counts["claimed"]
    claimed = (
        f", {held} claimed by other processes (not run here; run again after they end to "
        "pick up any whose holder died)"
        if held
        else ""
    )
    part = f" (shard {shard})" if shard is not None else ""
    print(
        f"{counts['ran']} run{note}, {counts['skipped']} skipped{claimed}, "
        f"{counts['total']} total{part} -> {out}"
    )
    return 0
