"""``deskdojo tiny``: rebuild the tiny preset's tokenizer and its pretrained reader.

Both are built from what this project generates, never downloaded:

* ``deskdojo tiny tokenizer`` trains the byte-level BPE on deskdojo's own source and adds
  whole-word tokens (numbers, interface words, the task families' word pools, made-up
  words; ``deskdojo.agent.tiny.words``);
* ``deskdojo tiny pretrain`` builds the reader from seeded random weights and pretrains it
  on generated element tables (``deskdojo.agent.tiny.pretrain``), then writes it to
  ``deskdojo/agent/tiny/reader`` (the ``tiny`` preset) with a report of its accuracy.

The shipped files come from ``deskdojo tiny tokenizer && deskdojo tiny pretrain`` with
the defaults, then ``deskdojo tiny pretrain --continue-from deskdojo/agent/tiny/reader
--steps 800 --lr 1e-3`` (800 more steps that taught the typing answers their ``$1`` form
and the typed field's states; the reader's ``pretrain_report.json`` holds both runs). Rebuilding the tokenizer changes token ids, so the reader must then be pretrained
again.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from deskdojo.core.errors import ConfigError


def family_words() -> tuple[str, ...]:
    """The task families' word pools (train and held-out parts: held-out words get a token
    too, so their names are one token, but no pretraining or training example shows them)."""
    from deskdojo.curriculum.families.vocab import CITIES, COLORS, NAMES, NOUNS, VERBS

    return tuple(dict.fromkeys(NOUNS + NAMES + COLORS + CITIES + VERBS))


def cmd_tiny_tokenizer(args: argparse.Namespace) -> int:
    from deskdojo.agent.tiny import TINY_DIR, build_tokenizer_files

    out = build_tokenizer_files(Path(args.out) if args.out else TINY_DIR, family_words=family_words())
    print(f"tokenizer written to {out}; pretrain the reader again: `deskdojo tiny pretrain`")
    return 0


def cmd_tiny_pretrain(args: argparse.Namespace) -> int:
    from deskdojo.agent.model.loading import quiet_libraries
    from deskdojo.agent.tiny import TINY_DIR
    from deskdojo.agent.tiny.pretrain import PretrainConfig, pretrain, reader_from, reader_from_scratch, write_report

    quiet_libraries()
    out = Path(args.out) if args.out else TINY_DIR / "reader"
    start_step, before = 0, None
    if args.continue_from:
        report = Path(args.continue_from) / "pretrain_report.json"
        if not report.exists():
            raise ConfigError(f"{args.continue_from} holds no pretrain_report.json: --continue-from takes a "
                              f"folder 'deskdojo tiny pretrain' wrote (the shipped one: {TINY_DIR / 'reader'})")
        before = json.loads(report.read_text())
        start_step = int(before.get("total_steps", before["steps"]))
    if not 0 <= args.form_share <= 1:
        raise ConfigError(f"--form-share is a share of the examples, 0 to 1; got {args.form_share}")
    if args.form_share and not args.continue_from:
        raise ConfigError("--form-share continues a pretrained reader: pass --continue-from FOLDER")
    config = PretrainConfig(steps=args.steps, seed=args.seed, start_step=start_step,
                            **({"lr": args.lr} if args.lr is not None else {}),
                            max_seconds=args.minutes * 60 if args.minutes else None, form_share=args.form_share)
    policy = reader_from(Path(args.continue_from), seed=args.seed, field_texts=args.form_share > 0) \
        if args.continue_from else reader_from_scratch(seed=args.seed)
    params = sum(p.numel() for p in policy.model.parameters())
    print(f"tiny reader: {params / 1e6:.2f} M parameters, {config.steps} steps of {config.batch_size} "
          f"generated examples")
    result = pretrain(policy, config, progress=sys.stderr)
    staging = out.with_name(out.name + ".partial")
    if staging.exists():
        shutil.rmtree(staging)
    policy.policy_id = "vlm:tiny"
    policy.save(staging)
    write_report(staging / "pretrain_report.json", config, result, continued_from=before)
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    print(f"reader written to {out} ({result.steps} steps, {result.seconds / 60:.1f} min)")
    return 0


def add_tiny_parser(sub: Any) -> None:
    tiny = sub.add_parser("tiny", help="rebuild the tiny preset: its tokenizer and its pretrained reader").add_subparsers(
        dest="tiny_cmd", required=True)
    p = tiny.add_parser("tokenizer", help="train the BPE on deskdojo's source and add the whole-word tokens")
    p.add_argument("--out", default=None, help="folder (default: the shipped one, deskdojo/agent/tiny)")
    p.set_defaults(fn=cmd_tiny_tokenizer)
    p = tiny.add_parser("pretrain", help="pretrain the reader on generated element tables (text only)")
    p.add_argument("--steps", type=int, default=PRETRAIN_STEPS, help="optimizer steps of 16 examples")
    p.add_argument("--minutes", type=float, default=None, help="stop after this many minutes")
    p.add_argument("--seed", type=int, default=0, help="weights and data")
    p.add_argument("--out", default=None, help="folder (default: the shipped one, deskdojo/agent/tiny/reader)")
    p.add_argument("--continue-from", default=None, metavar="FOLDER",
                   help="pretrain this reader further (a folder this command wrote; new examples, full "
                        "tables) instead of one from scratch")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default: PretrainConfig's, 2e-3)")
    p.add_argument("--form-share", type=float, default=0.0,
                   help="share of examples that fill a form of two or three labelled fields, each field "
                        "marked with the place of the text it takes; the reader then saves field_texts on "
                        "(with --continue-from; default 0: the shipped reader's data)")
    p.set_defaults(fn=cmd_tiny_pretrain)


PRETRAIN_STEPS = 2500
