"""``deskdojo bench click-targets``: does SFT teach the tiny policy to click where a
target is, at positions it never saw? The synthetic click-target stream (a coloured
square on a grey screen; ``agent/train/sft.py``) with no sandbox: demos from one
seed's stream, held-out tasks from another's, greedy first clicks judged by geometry.

It reports the held-out hit rate and how far clicks land from the target's centre,
beside the best fixed guess (the screen's centre), so a short run that does not hit
yet still shows whether it localises. The test suite runs it short
(``tests/test_sft.py``); the full-length figure is this command's.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from deskdojo.core.progress import ProgressLine

SCREEN = (1024, 768)


def run_click_targets(*, demos: int = 192, steps: int = 200, heldout: int = 32, batch_size: int = 8,
                      lr: float = 1e-3, log: Any = None) -> dict[str, Any]:
    """Train on ``demos`` click-target demos for ``steps`` steps, then score ``heldout`` tasks.
    Without ``log``, SFT draws its progress line on stderr instead of log lines."""
    from deskdojo.agent.train.sft import SFTConfig, click_target_frame, click_target_task, make_click_target_demos, sft
    from deskdojo.core.actions import Click
    from deskdojo.core.types import Observation

    with tempfile.TemporaryDirectory(prefix="deskdojo-targets-") as tmp:
        train = make_click_target_demos(Path(tmp) / "train", demos, seed=0, screen=SCREEN)
        started = time.perf_counter()
        result = sft(SFTConfig(demos=str(train), model="tiny-scratch", out=str(Path(tmp) / "out"), steps=steps,
                               batch_size=batch_size,
                               lr=lr, log_every=max(1, steps // 4), checkpoint_every=steps + 1),
                     log=log or (lambda line: None), progress=None if log else sys.stderr)
        seconds = time.perf_counter() - started
    policy = result.policy
    policy.set_greedy(True)
    tasks = [click_target_task(i, seed=1, screen=SCREEN) for i in range(heldout)]
    hits, distances, centre_guess = 0, [], []
    with ProgressLine("click-targets: held-out", heldout, unit="tasks") as line:
        for start in range(0, heldout, 16):
            chunk = tasks[start:start + 16]
            observations = [Observation(click_target_frame(rect, colour, screen=SCREEN), SCREEN)
                            for _, rect, colour in chunk]
            decisions = policy.act(observations, [task for task, _, _ in chunk], [()] * len(chunk))
            for decision, (_, (x, y, w, h), _) in zip(decisions, chunk):
                cx, cy = x + w / 2, y + h / 2
                centre_guess.append(math.hypot(cx - SCREEN[0] / 2, cy - SCREEN[1] / 2))
                action = decision.action
                if isinstance(action, Click) and action.x is not None:
                    distances.append(math.hypot(action.x - cx, action.y - cy))
                    hits += x <= action.x < x + w and y <= action.y < y + h
                else:  # no click: as far as the screen allows
                    distances.append(math.hypot(*SCREEN))
            line.update(len(distances), info=f"{hits} hits")
    return {"bench": "click-targets", "demos": demos, "steps": steps, "heldout": heldout,
            "batch_size": batch_size, "lr": lr, "first_loss": round(result.first_loss, 4),
            "last_loss": round(result.last_loss, 4), "hit_rate": hits / heldout,
            "median_distance_px": round(statistics.median(distances), 1),
            "centre_guess_median_px": round(statistics.median(centre_guess), 1),
            "seconds_per_step": round(seconds / steps, 3)}


def cmd_bench_click_targets(args: argparse.Namespace) -> int:
    result = run_click_targets(demos=args.demos, steps=args.steps, heldout=args.heldout,
                               batch_size=args.batch_size, lr=args.lr)
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"click-targets: {result['demos']} demos, {result['steps']} steps of {result['batch_size']} "
          f"({result['seconds_per_step']} s/step), {result['heldout']} held-out positions")
    print(f"  loss {result['first_loss']} -> {result['last_loss']}")
    print(f"  held-out hit rate {result['hit_rate']:.3f} (a random click hits about 0.01)")
    print(f"  median distance to the target's centre {result['median_distance_px']} px "
          f"(always guessing the screen's centre: {result['centre_guess_median_px']} px)")
    return 0


def add_bench_click_targets_parser(bench: Any) -> None:
    """Add ``click-targets`` to the ``bench`` group's subparsers."""
    p = bench.add_parser("click-targets", help="SFT on synthetic click targets: held-out hit rate and distance")
    p.add_argument("--demos", type=int, default=192, help="training demos (one click each)")
    p.add_argument("--steps", type=int, default=200, help="SFT steps")
    p.add_argument("--heldout", type=int, default=32, help="held-out target positions")
    p.add_argument("--batch-size", type=int, default=8, help="examples per SFT step")
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(fn=cmd_bench_click_targets)
