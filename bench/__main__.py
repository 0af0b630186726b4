"""``python -m bench NAME [--quick] [--seed N] [--out DIR] [--strict]`` and ``--list``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from bench.common import (
    DEFAULT_SEED,
    RESULTS_DIR,
    BenchmarkError,
    Options,
    command_line,
    discover,
    write_result,
)


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    registry = discover()
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("name", nargs="?", help="benchmark to run (see --list)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--quick", action="store_true", help="a smaller run (seconds, for CI)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="RNG seed")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="where NAME.json goes")
    parser.add_argument("--strict", action="store_true", help="exit 1 if the target is not met")
    args = parser.parse_args(args_list)
    if args.list:
        for bench in registry.values():
            print(f"{bench.name:<20} {bench.description}")
        return 0
    if args.name is None:
        parser.error("give a benchmark NAME or --list")
    if args.name not in registry:
        parser.error(f"unknown benchmark {args.name!r}; known: {', '.join(registry) or 'none'}")
    try:
        result = registry[args.name].run(Options(quick=args.quick, seed=args.seed))
    except BenchmarkError as exc:
        print(f"bench {args.name}: FAILED: {exc}", file=sys.stderr)
        return 2
    write_result(result, args.out, command=command_line(args_list))
    return 1 if args.strict and not result["met"] else 0


if __name__ == "__main__":
    sys.exit(main())
