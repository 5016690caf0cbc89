"""``deskdojo sft``: fine-tune a policy on demonstrations (a progress line on stderr, or a
log line every ``--log-every`` steps; resumable)."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from deskdojo.core.elements import OBSERVATION_MODES


def _help(name: str) -> str:
    from deskdojo.agent.train.sft import SFTConfig

    return next(f.metadata["help"] for f in dataclasses.fields(SFTConfig) if f.name == name)


def cmd_sft(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from deskdojo.agent.train.sft import SFTConfig, make_click_target_demos, sft

    demos = args.demos
    if args.synthetic:
        demos = str(Path(args.out) / "synthetic-demos")
        if not Path(demos).exists():
            make_click_target_demos(demos, args.synthetic, seed=args.seed)
            print(f"sft: wrote {args.synthetic} synthetic click-target demos to {demos}")
    if demos is None:
        raise SystemExit("deskdojo sft: give --demos DIR (or --synthetic N for the built-in click-target set)")
    values: dict[str, Any] = {"demos": demos, "model": args.model, "out": args.out, "format": args.format,
                              "steps": args.steps, "epochs": args.epochs, "batch_size": args.batch_size,
                              "lr": args.lr, "lora": args.lora, "history_k": args.history_k,
                              "checkpoint_every": args.checkpoint_every, "log_every": args.log_every or 10,
                              "seed": args.seed, "device": args.device, "dtype": args.dtype,
                              "gradient_checkpointing": args.gradient_checkpointing,
                              "observation": args.observation, "max_seconds": args.max_seconds,
                              "generated_per_batch": args.generated_per_batch}
    result = sft(SFTConfig(**values), resume=args.resume, progress=None if args.log_every else sys.stderr)
    return 0 if result.steps else 1


def add_sft_parser(sub: Any) -> None:
    """Add ``sft`` to the ``deskdojo`` command's subparsers (imports nothing heavy)."""
    p = sub.add_parser("sft", help="fine-tune a policy on demonstrations (full or LoRA), resumable")
    p.add_argument("--demos", default=None, help=_help("demos"))
    p.add_argument("--synthetic", type=int, default=0, metavar="N",
                   help="write N built-in click-target demos under --out and train on them")
    p.add_argument("--model", default="tiny", help=_help("model"))
    p.add_argument("--out", default="runs/sft", help=_help("out"))
    p.add_argument("--format", default=None, help=_help("format"))
    p.add_argument("--steps", type=int, default=None, help=_help("steps"))
    p.add_argument("--epochs", type=int, default=3, help=_help("epochs"))
    p.add_argument("--batch-size", type=int, default=8, help=_help("batch_size"))
    p.add_argument("--lr", type=float, default=1e-3, help=_help("lr"))
    p.add_argument("--lora", action="store_true", help=_help("lora"))
    p.add_argument("--history-k", type=int, default=1, help=_help("history_k"))
    p.add_argument("--observation", default=None, choices=list(OBSERVATION_MODES), help=_help("observation"))
    p.add_argument("--generated-per-batch", type=int, default=0, metavar="N", help=_help("generated_per_batch"))
    p.add_argument("--checkpoint-every", type=int, default=100, help=_help("checkpoint_every"))
    p.add_argument("--max-seconds", type=float, default=None, help=_help("max_seconds"))
    p.add_argument("--log-every", type=int, default=None,
                   help="a log line (stdout) every N steps instead of the progress line (stderr)")
    p.add_argument("--seed", type=int, default=0, help=_help("seed"))
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"], help=_help("device"))
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help=_help("dtype"))
    p.add_argument("--gradient-checkpointing", action="store_true", help=_help("gradient_checkpointing"))
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    p.set_defaults(fn=cmd_sft)
