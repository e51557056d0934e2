"""`ocssd-vfu ctl PATH COMMAND [KEY=VALUE ...]`: one control command from a shell.

Values are JSON (`grp=0`, `state="OFFLINE"`); a value that is not JSON is taken as a
string, so `state=OFFLINE` works too. The reply is printed as JSON; an error goes to
stderr as `CLASS: desc` and the exit status is 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ocssd_vfu.control.client import ControlClient, ControlError


def parse_arguments(words: list[str]) -> dict[str, Any]:
    arguments: dict[str, Any] = {}
    for word in words:
        key, sep, text = word.partition("=")
        if not sep or not key:
            raise ValueError(f"{word!r} is not KEY=VALUE")
        try:
            arguments[key] = json.loads(text)
        except ValueError:
            arguments[key] = text
    return arguments


def run(args: argparse.Namespace) -> int:
    try:
        arguments = parse_arguments(args.arguments)
    except ValueError as exc:
        print(f"ocssd-vfu ctl: {exc}", file=sys.stderr)
        return 1
    try:
        with ControlClient(args.path, timeout=args.timeout) as client:
            result = client.execute(args.name, **arguments)
    except ControlError as exc:
        print(f"ocssd-vfu ctl: {exc}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        print(f"ocssd-vfu ctl: {args.path}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2 if args.pretty else None))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "ctl", help="run one command on a server's control socket (JSON out)",
        description="Connect to the control socket of `ocssd-vfu serve --control PATH`, run "
        "COMMAND with KEY=VALUE arguments (JSON values; bare words are strings) and print "
        "the reply as JSON. `ocssd-vfu ctl PATH query-commands` lists the commands.")
    p.add_argument("path", type=Path, help="the control socket")
    p.add_argument("name", metavar="COMMAND", help="e.g. query-device, inject-fault")
    p.add_argument("arguments", nargs="*", metavar="KEY=VALUE")
    p.add_argument("--pretty", action="store_true", help="indent the JSON")
    p.add_argument("--timeout", type=float, default=10.0,
                   help="seconds to wait for the reply (default 10)")
    p.set_defaults(func=run)
