"""``deskdojo evolve``, ``deskdojo run`` (the main job) and ``deskdojo bench learning``.

Nothing heavy is imported here: each command imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from typing import Any

from deskdojo.core.elements import OBSERVATION_MODES
from deskdojo.core.errors import DeskdojoError

MAIN_JOB_SECONDS = 900.0
"""The main job's whole budget (set-up check, SFT warm start and evolving), in seconds."""
WARM_START_SHARE = 0.4
"""Of the main job's budget, the most the SFT warm start (demo recording and SFT) may take,
counted from the job's start: a slow machine records fewer demos and trains fewer steps,
and evolving always gets the rest (more than half)."""
CLOSING_RESERVE_S = 10.0
"""Kept back at the end of the main job for closing the sandboxes and printing the table."""


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The flags that were given, as a nested config mapping."""
    out: dict[str, Any] = {}
    for flag, key in (("model", "model"), ("provider", "provider"), ("sandboxes", "sandboxes"),
                      ("seed", "seed")):
        if getattr(args, flag, None) is not None:
            out[key] = getattr(args, flag)
    budget = {key: getattr(args, flag) for flag, key in (("iterations", "iterations"), ("env_steps", "env_steps"),
                                                          ("wall_seconds", "wall_seconds"))
              if getattr(args, flag, None) is not None}
    if getattr(args, "observation", None) is not None:
        out["policy"] = {"observation": args.observation}  # merged into the file's policy settings
    if getattr(args, "proposer", None) is not None:
        out["proposer"] = ({"kind": args.proposer} if args.proposer in ("none", "explore")
                           else {"kind": "model", "model": args.proposer})
    if getattr(args, "ray", None) is not None:
        out["ray"] = {"address": args.ray}
    if budget:
        # a budget given on the command line replaces the file's budget as a whole
        out["budget"] = {"iterations": None, "env_steps": None, "wall_seconds": None, **budget}
    return out


def _resolved_config(args: argparse.Namespace, overrides: dict[str, Any]) -> Any:
    """The run's config (None: resume with the stored one)."""
    from deskdojo.evolve.config import EvolveConfig, load_config, merge, read_config_file
    from deskdojo.evolve.run import open_or_create_run, stored_config

    if args.resume and not (args.config or overrides):
        return None
    if not args.resume:
        return load_config(args.config, overrides)
    base = stored_config(open_or_create_run(args.resume, None, resume=True)).to_dict()
    if args.config:
        base = merge(base, read_config_file(args.config))
    return EvolveConfig.from_dict(merge(base, overrides))


def cmd_evolve(args: argparse.Namespace) -> int:
    """``run_evolve`` checks every part's settings before it makes a folder or starts a
    sandbox; a config error names ``--config``'s file."""
    from deskdojo.core.errors import ConfigError
    from deskdojo.evolve.run import new_run_dir, run_evolve

    overrides = _overrides(args)
    if args.resume and (args.run_dir or args.runs_root):
        raise DeskdojoError("--resume names the run folder; drop --run-dir/--runs-root")
    try:
        config = _resolved_config(args, overrides)
        if args.resume:
            result = run_evolve(config, args.resume, resume=True, force=args.force)  # refuses a changed config
        else:
            result = run_evolve(config, args.run_dir or new_run_dir(args.runs_root or "runs"))
    except ConfigError as exc:
        if args.config and not str(exc).startswith(str(args.config)):
            raise ConfigError(f"{args.config}: {exc}") from None
        raise
    return 0 if result.state in ("finished", "stopped") else 1


def setup_check(provider: str) -> str:
    """What the main job needs: a way to run sandboxes. Returns the provider to use."""
    from deskdojo.evolve.build import resolve_provider

    chosen = resolve_provider(provider)
    if chosen == "xvfb" and shutil.which("Xvfb") is None:
        raise DeskdojoError("neither docker (engine + image) nor Xvfb is available: run `deskdojo doctor` "
                            "for the fixes (`apt-get install xvfb`, or start dockerd and `deskdojo image build`)")
    print(f"set-up check: sandboxes on {chosen}; model tiny (offline preset); {sys.version.split()[0]}")
    return chosen


def main_job_config(wall_seconds: float, **overrides: Any) -> Any:
    """The embedded defaults, bounded to ``wall_seconds`` for the evolve loop, with the warm
    start limited to its share of it."""
    from deskdojo.evolve.config import EvolveConfig, merge

    return EvolveConfig.from_dict(merge({"budget": {"wall_seconds": wall_seconds},
                                         "sft": {"max_seconds": round(WARM_START_SHARE * wall_seconds, 1)}},
                                        overrides))


def cmd_run(args: argparse.Namespace) -> int:
    """The main job: set-up check, SFT warm start on oracle demos, then evolve, ~15 minutes."""
    from deskdojo.evolve.run import new_run_dir, run_evolve

    started = time.monotonic()
    provider = setup_check(args.provider)
    overrides: dict[str, Any] = {"provider": provider}
    if args.sandboxes:
        overrides["sandboxes"] = args.sandboxes
    budget = args.minutes * 60
    config = main_job_config(budget, **overrides)
    run_dir = args.run_dir or new_run_dir(args.runs_root, prefix="main")
    # phases by the clock, not by step counts: the warm start ends by its share of the budget
    # (from the job's start: set-up and sandbox start count), evolving and its final held-out
    # evaluation by the end, less what closing takes
    result = run_evolve(config, run_dir, provider=provider, deadline=started + budget - CLOSING_RESERVE_S,
                        warm_start_deadline=started + WARM_START_SHARE * budget)
    print(f"main job done in {(time.monotonic() - started) / 60:.1f} min")
    return 0 if result.state in ("finished", "stopped") else 1


def cmd_bench_learning(args: argparse.Namespace) -> int:
    """Runs or resumes the bench under --runs-root; a stopped arm exits 1 (run it again to go on)."""
    import shlex

    from deskdojo.evolve.bench import BenchStopped, run_learning_bench
    from deskdojo.evolve.bench_report import print_report

    try:
        report = run_learning_bench(
            seeds=args.seeds, env_steps=args.budget_env_steps, heldout_per_level=args.heldout_per_level,
            levels=tuple(args.levels), families=tuple(args.families) if args.families else None,
            runs_root=args.runs_root, provider=args.provider, sandboxes=args.sandboxes, config_path=args.config,
            chunk_demos=args.more_sft_chunk_demos, chunk_steps=args.more_sft_chunk_steps,
            resamples=args.bootstrap_resamples, command=shlex.join(["deskdojo", *sys.argv[1:]]))
    except BenchStopped as exc:
        print(f"deskdojo: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print_report(report)
    return 0


def add_evolve_parser(sub: Any, bench: Any = None) -> None:
    """Register ``evolve`` and ``run`` on the ``deskdojo`` subparsers, and ``learning`` on
    the ``bench`` subparsers when given."""
    p = sub.add_parser("evolve", help="the self-evolving loop: propose, roll out, judge, train (GRPO), schedule")
    p.add_argument("--config", default=None, help="YAML or JSON config (keys of EvolveConfig; flags override)")
    p.add_argument("--run-dir", default=None, help="the run folder to create (default RUNS_ROOT/evolve-<time>)")
    p.add_argument("--runs-root", default=None, help="where new run folders go (default runs)")
    p.add_argument("--model", default=None, help="policy: tiny, a checkpoint folder or a hub name")
    p.add_argument("--provider", default=None, choices=["auto", "docker", "xvfb", "fake"],
                   help="sandboxes: auto = docker when the engine and image are there, else xvfb")
    p.add_argument("--sandboxes", type=int, default=None, help="parallel sandboxes")
    p.add_argument("--iterations", type=int, default=None, help="budget: iterations")
    p.add_argument("--env-steps", type=int, default=None, help="budget: environment steps")
    p.add_argument("--wall-seconds", type=float, default=None, help="budget: wall-clock seconds")
    p.add_argument("--seed", type=int, default=None, help="seed of everything")
    p.add_argument("--observation", default=None,
                   choices=list(OBSERVATION_MODES),
                   help="what the policy's prompt shows (policy.observation): the screenshot, the element "
                        "table (a11y_tree), both, or numbered marks on the screenshot plus the table (som)")
    p.add_argument("--proposer", default=None, metavar="MODEL",
                   help="tasks beyond the templates: a (V)LM that proposes them (a checkpoint folder, a hub "
                        "name or tiny), or 'explore' (tasks from exploring the apps), or 'none' (proposer.kind)")
    p.add_argument("--ray", default=None, metavar="auto|ADDRESS",
                   help="play the episodes on Ray rollout workers (ray.address): 'auto' (the cluster started "
                        "on this machine, or RAY_ADDRESS) or HOST:PORT of the head; ray.workers and "
                        "ray.sandboxes_per_worker in --config say how many")
    p.add_argument("--resume", default=None, metavar="RUN", help="continue RUN from its last checkpoint")
    p.add_argument("--force", action="store_true", help="with --resume: accept a changed config")
    p.set_defaults(fn=cmd_evolve)

    p = sub.add_parser("run", help="the main job: set-up check, SFT warm start, evolve for ~15 min, plot")
    p.add_argument("--provider", default="auto", choices=["auto", "docker", "xvfb"], help="where sandboxes run")
    p.add_argument("--sandboxes", type=int, default=None, help="parallel sandboxes (default 4)")
    p.add_argument("--minutes", type=float, default=MAIN_JOB_SECONDS / 60, help="whole budget in minutes")
    p.add_argument("--run-dir", default=None, help="the run folder (default RUNS_ROOT/main-<time>)")
    p.add_argument("--runs-root", default="runs", help="where run folders go")
    p.set_defaults(fn=cmd_run)

    if bench is not None:
        p = bench.add_parser("learning", help="from one SFT start per seed: (a) SFT only, (b) GRPO with the "
                             "curriculum, (c) GRPO uniform, (d) more SFT for (b)'s CPU time; resumable")
        p.add_argument("--seeds", type=int, default=3, help="seeds (medians over seeds reported)")
        p.add_argument("--budget-env-steps", type=int, default=400, help="env steps each GRPO arm may spend")
        p.add_argument("--heldout-per-level", type=int, default=4, help="held-out tasks per family and level")
        p.add_argument("--levels", type=int, nargs="+", default=[0, 1, 2, 3],
                       help="levels held out (and (d)'s demos' levels)")
        p.add_argument("--families", nargs="+", default=None,
                       help="task families (default: the config's curriculum.families)")
        p.add_argument("--provider", default="auto", choices=["auto", "docker", "xvfb"])
        p.add_argument("--sandboxes", type=int, default=None, help="parallel sandboxes")
        p.add_argument("--config", default=None, help="base config (YAML/JSON) for all arms")
        p.add_argument("--runs-root", default="runs/bench-learning",
                       help="the bench's folder: the same path resumes it, skipping finished arms")
        p.add_argument("--more-sft-chunk-demos", type=int, default=None,
                       help="(d): demos recorded per chunk (default: one per family and level)")
        p.add_argument("--more-sft-chunk-steps", type=int, default=20, help="(d): SFT steps per chunk")
        p.add_argument("--bootstrap-resamples", type=int, default=2000, help="resamples of the held-out tasks")
        p.add_argument("--json", action="store_true", help="print JSON instead of tables")
        p.set_defaults(fn=cmd_bench_learning)
