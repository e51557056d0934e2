"""`make fuzz`: a bounded campaign of both fuzzers, seed after seed.

    python -m tests.fuzz.campaign [--seconds S] [--steps N] [--seed FIRST]

Each seed runs the controller fuzzer (a fresh target, N random actions; harness.py's
properties) and then the vanishing-memory fuzzer (guest memory shrinking and the image
truncated under 20-80 commands; vanishing.py's properties). A failure prints the fuzzer and
the seed (rerun it with --seed SEED --seconds 0) and the message, and exits 1. At the end:
seeds and commands fuzzed, and the statuses the controller fuzzer's commands completed with.
"""

from __future__ import annotations

import argparse
import faulthandler
import logging
import random
import sys
import tempfile
import time
from pathlib import Path

# Before anything imports ocssd_vfu: the SIGBUS/SIGSEGV guard (native/guard.h) must sit on
# top of faulthandler and chain to it (tests/conftest.py), so that a fault in guest memory
# or the image fails a command while a stray access in the C shim still dies with a traceback.
faulthandler.enable()

from tests.fuzz.actions import step  # noqa: E402
from tests.fuzz.harness import Stats, Target  # noqa: E402
from tests.fuzz.vanishing import run_vanishing  # noqa: E402


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
    # The warnings the fuzzers provoke by design (guest errors, a truncated image refusing
    # I/O) would be thousands of lines: a broken property is what fails the campaign.
    logging.disable(logging.WARNING)
    stats = Stats()
    vanishing_commands = 0
    deadline = time.monotonic() + args.seconds
    seed = args.seed
    with tempfile.TemporaryDirectory(prefix="ocssd-vfu-fuzz-") as workdir:
        while True:
            fuzzer = "controller"
            try:
                run_seed(seed, args.steps, stats)
                fuzzer = "vanishing-memory"
                vanishing_commands += run_vanishing(random.Random(seed), Path(workdir))
            except AssertionError as exc:
                print(f"fuzz: {fuzzer} fuzzer, seed {seed} FAILED: {exc}", file=sys.stderr)
                return 1
            seed += 1
            if time.monotonic() >= deadline:
                break
    seeds = seed - args.seed
    print(f"fuzz: controller: {seeds} seeds x {args.steps} actions, {stats.commands} commands "
          f"fuzzed, no failure")
    print("fuzz: statuses: " + ", ".join(f"{name} {count}" for name, count in
                                          sorted(stats.statuses.items(), key=lambda x: -x[1])))
    print(f"fuzz: vanishing memory: {seeds} seeds, {vanishing_commands} commands fuzzed, "
          f"no failure")
    return 0


if __name__ == "__main__":
    sys.exit(main())
