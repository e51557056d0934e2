"""`make fuzz`: a bounded campaign of the plain random driver, seed after seed.

    python -m tests.fuzz.campaign [--seconds S] [--steps N] [--seed FIRST]

Each seed builds a fresh target and runs N actions; a failure prints the seed (rerun it
with --seed SEED --seconds 0) and the message, and exits 1. At the end: commands fuzzed
and the statuses they completed with.
"""

from __future__ import annotations

import argparse
import faulthandler
import random
import sys
import time

from tests.fuzz.actions import step
from tests.fuzz.harness import Stats, Target


def run_seed(seed: int, steps: int, stats: Stats) -> None:
    with Target(random.Random(seed), stats) as target:
        try:
            for _ in range(steps):
                step(target)
            target.check_data()
        except AssertionError:
            print("fuzz: the last actions:\n  " + "\n  ".join(target.log[-12:]),
                  file=sys.stderr)
            raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--steps", type=int, default=400, help="actions per seed")
    parser.add_argument("--seed", type=int, default=0, help="first seed")
    args = parser.parse_args(argv)
    faulthandler.enable()  # a stray access in the C shim hits a guard page: show where
    stats = Stats()
    deadline = time.monotonic() + args.seconds
    seed = args.seed
    while True:
        try:
            run_seed(seed, args.steps, stats)
        except AssertionError as exc:
            print(f"fuzz: seed {seed} FAILED: {exc}", file=sys.stderr)
            return 1
        seed += 1
        if time.monotonic() >= deadline:
            break
    print(f"fuzz: {seed - args.seed} seeds x {args.steps} actions, {stats.commands} commands "
          f"fuzzed, no failure")
    print("fuzz: statuses: " + ", ".join(f"{name} {count}" for name, count in
                                          sorted(stats.statuses.items(), key=lambda x: -x[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
