"""``deskdojo parse``: what a format makes of a model's answer, as JSON; and
``deskdojo bench parse``: every format's worst-case parse time on 64 KB adversarial answers."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a size looks like 1280x800, got {text!r}") from None
    if width <= 0 or height <= 0:
        raise argparse.ArgumentTypeError(f"a size must be positive, got {text!r}")
    return width, height


def cmd_parse(args: argparse.Namespace) -> int:
    from deskdojo.agent.formats import get_format
    from deskdojo.core.actions import action_to_dict

    fmt = get_format(args.format)
    text = sys.stdin.read() if args.text == "-" else args.text
    result = fmt.parse(text, screen=args.screen, image=args.image or args.screen)
    if result.error is not None:
        print(json.dumps({"error": result.error}, ensure_ascii=False))
        return 2
    out: dict[str, Any] = {"actions": [action_to_dict(a) for a in result.actions], "thought": result.thought}
    print(json.dumps(out, ensure_ascii=False))
    return 0


def cmd_bench_parse(args: argparse.Namespace) -> int:
    from deskdojo.agent.formats.bench import print_parse_table, run_parse_bench

    result = run_parse_bench(repeats=args.repeats, formats=args.format)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_parse_table(result, all_rows=args.all)
    return 0


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"a count must be a positive integer, got {text!r}")
    return value


def add_parse_parser(sub: Any, bench: Any = None) -> None:
    """Add ``parse`` to the ``deskdojo`` command's subparsers, and ``parse`` to the ``bench``
    group's subparsers when given (imports nothing heavy)."""
    from deskdojo.agent.formats import FORMATS

    if bench is not None:
        p = bench.add_parser("parse", help="worst-case parse time of every action format on 64 KB "
                                           "adversarial answers, against a 50 ms budget")
        p.add_argument("--repeats", type=_positive, default=5, help="parses per case (max and median reported)")
        p.add_argument("--format", action="append", default=None, choices=list(FORMATS),
                       help="only this format (repeatable; default: all)")
        p.add_argument("--all", action="store_true", help="a row for every case, not only each format's worst")
        p.add_argument("--json", action="store_true", help="print JSON (every case) instead of the table")
        p.set_defaults(fn=cmd_bench_parse)

    p = sub.add_parser("parse", help="parse a model's answer into actions (JSON); exit 2 if it does not parse")
    p.add_argument("--format", required=True, choices=list(FORMATS), help="the action format the model used")
    p.add_argument("--screen", required=True, type=_size, help="screen size WxH (actions are in its pixels)")
    p.add_argument("--image", default=None, type=_size,
                   help="size WxH of the image the model saw (default: the screen size)")
    p.add_argument("text", help="the model's answer, or - to read it from stdin")
    p.set_defaults(fn=cmd_parse)
