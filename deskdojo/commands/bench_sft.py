"""``deskdojo bench sft``: does SFT on oracle demonstrations make the tiny policy succeed
on HELD-OUT tasks? Records oracle demos of a few task families in real Xvfb sandboxes,
measures held-out success of the untrained policy, fine-tunes it, measures again.

Held-out tasks come from each family's held-out split (seeds from 1,000,000), so their
words never appear in training. Success is the state judge's verdict, taken right after
each episode and before its sandbox is reset. Decoding is greedy.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

DEFAULT_FAMILIES = ("click_button", "toggle_choices")


@dataclass(frozen=True, slots=True, kw_only=True)
class SFTBenchConfig:
    """One bench run. Field docs are the ``--help`` texts."""

    families: tuple[str, ...] = field(default=DEFAULT_FAMILIES, metadata={"help": "task families"})
    level: int = field(default=0, metadata={"help": "difficulty level of every task"})
    demos: int = field(default=160, metadata={"help": "oracle demos per family (train split)"})
    heldout: int = field(default=16, metadata={"help": "held-out tasks per family"})
    steps: int = field(default=400, metadata={"help": "SFT optimizer steps"})
    batch_size: int = field(default=16, metadata={"help": "SFT examples per step"})
    lr: float = field(default=2e-3, metadata={"help": "SFT learning rate"})
    sandboxes: int = field(default=4, metadata={"help": "parallel Xvfb sandboxes"})
    max_steps: int = field(default=3, metadata={"help": "step cap per held-out episode"})
    model: str = field(default="tiny", metadata={"help": "policy to start from"})
    out: str | None = field(default=None, metadata={"help": "keep demos, runs and the policy here "
                                                           "(default: a temporary folder, removed)"})
    seed: int = field(default=0, metadata={"help": "weights of a tiny start and the data order"})

    def __post_init__(self) -> None:
        from deskdojo.core.errors import ConfigError

        for name in ("demos", "heldout", "steps", "batch_size", "sandboxes", "max_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.families:
            raise ConfigError("name at least one task family (--families click_button,toggle_choices)")


def heldout_success(policy: Any, tasks: Sequence[Any], pool: Any, run_dir: Path, *,
                    max_steps: int) -> list[bool]:
    """Greedy rollouts of ``tasks`` (as many at once as the pool has sandboxes), each judged
    by the state judge before its sandbox is reused. One bool per task."""
    from deskdojo.agent.rollout import RolloutConfig, rollout
    from deskdojo.world_model.judge import StateJudge

    judge = StateJudge()
    sandboxes = list(pool)
    successes: list[bool] = []
    config = RolloutConfig(max_steps=max_steps)
    policy.set_greedy(True)
    try:
        for start in range(0, len(tasks), len(sandboxes)):
            chunk = list(tasks[start:start + len(sandboxes)])
            trajectories = rollout(policy, chunk, sandboxes[:len(chunk)], run_dir, config=config)
            successes += [judge.judge(task, trajectory, sandbox).success
                          for task, trajectory, sandbox in zip(chunk, trajectories, sandboxes)]
    finally:
        policy.set_greedy(False)
    return successes


def run_sft_bench(config: SFTBenchConfig, *, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Record demos, measure held-out success before and after SFT; returns the numbers."""
    from deskdojo.agent.demos import record_oracle_demos
    from deskdojo.agent.policy import PolicyConfig, load_policy
    from deskdojo.agent.train.sft import SFTConfig, read_demos, sft
    from deskdojo.curriculum.families import get_family
    from deskdojo.curriculum.families.base import HELDOUT_SEED_BASE
    from deskdojo.vm.config import SandboxConfig
    from deskdojo.vm.pool import SandboxPool

    root = Path(config.out) if config.out else Path(tempfile.mkdtemp(prefix="deskdojo-bench-sft-"))
    families = [get_family(name) for name in config.families]
    train = [f.generate(config.level, seed, "train") for f in families for seed in range(config.demos)]
    heldout = {f.name: [f.generate(config.level, HELDOUT_SEED_BASE + i, "heldout") for i in range(config.heldout)]
               for f in families}
    result: dict[str, Any] = {"config": {**{k: getattr(config, k) for k in config.__slots__},
                                         "families": list(config.families)}}
    try:
        with SandboxPool(SandboxConfig(provider="xvfb"), config.sandboxes) as pool:
            started = time.perf_counter()
            record_oracle_demos(train, list(pool), root / "demos")
            result["record_s"] = time.perf_counter() - started
            result["demo_steps"] = len(read_demos(root / "demos"))
            log(f"bench sft: {len(train)} oracle demos ({result['demo_steps']} steps) in "
                f"{result['record_s']:.0f} s")
            policy = load_policy(config.model, PolicyConfig(seed=config.seed))
            before = {name: heldout_success(policy, tasks, pool, root / "before", max_steps=config.max_steps)
                      for name, tasks in heldout.items()}
            log("bench sft: before " + _rates(before))
            cpu, wall = time.process_time(), time.perf_counter()
            trained = sft(SFTConfig(demos=str(root / "demos"), out=str(root / "sft"), model=config.model,
                                    steps=config.steps, batch_size=config.batch_size, lr=config.lr,
                                    seed=config.seed, log_every=max(1, config.steps // 10),
                                    checkpoint_every=config.steps), policy=policy, log=log)
            result["sft_cpu_min"] = (time.process_time() - cpu) / 60
            result["sft_wall_min"] = (time.perf_counter() - wall) / 60
            result["sft_loss"] = [trained.first_loss, trained.last_loss]
            after = {name: heldout_success(trained.policy, tasks, pool, root / "after",
                                           max_steps=config.max_steps) for name, tasks in heldout.items()}
            log("bench sft: after " + _rates(after))
    finally:
        if not config.out:
            shutil.rmtree(root, ignore_errors=True)
    result["families"] = {name: {"heldout": len(heldout[name]), "before": statistics.fmean(before[name]),
                                 "after": statistics.fmean(after[name])} for name in heldout}
    return result


def _rates(by_family: dict[str, list[bool]]) -> str:
    return ", ".join(f"{name} {sum(v)}/{len(v)}" for name, v in by_family.items())


def print_sft_bench_table(result: dict[str, Any]) -> None:
    config = result["config"]
    print(f"SFT on {config['demos']} oracle demos per family ({result['demo_steps']} steps), level "
          f"{config['level']}, {config['steps']} steps of {config['batch_size']}: "
          f"{result['sft_cpu_min']:.1f} CPU min, {result['sft_wall_min']:.1f} min wall, "
          f"loss {result['sft_loss'][0]:.3f} -> {result['sft_loss'][1]:.3f}")
    print(f"{'family':<20} {'held-out':>8} {'before':>8} {'after':>8}")
    for name, row in result["families"].items():
        print(f"{name:<20} {row['heldout']:>8} {row['before']:>8.0%} {row['after']:>8.0%}")


def cmd_bench_sft(args: argparse.Namespace) -> int:
    config = SFTBenchConfig(families=tuple(f.strip() for f in args.families.split(",") if f.strip()),
                            level=args.level, demos=args.demos, heldout=args.heldout, steps=args.steps,
                            batch_size=args.batch_size, lr=args.lr, sandboxes=args.sandboxes,
                            max_steps=args.max_steps, model=args.model, out=args.out, seed=args.seed)
    result = run_sft_bench(config, log=(lambda line: None) if args.json else print)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print_sft_bench_table(result)
    return 0


def add_bench_sft_parser(bench: Any) -> None:
    """Add ``sft`` to the ``bench`` group's subparsers."""
    import dataclasses

    helps = {f.name: f.metadata["help"] for f in dataclasses.fields(SFTBenchConfig)}
    defaults = SFTBenchConfig()
    p = bench.add_parser("sft", help="held-out success of the tiny policy before and after SFT on oracle demos")
    p.add_argument("--families", default=",".join(DEFAULT_FAMILIES), help=helps["families"])
    for name in ("level", "demos", "heldout", "steps", "batch_size", "sandboxes", "max_steps", "seed"):
        p.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name), help=helps[name])
    p.add_argument("--lr", type=float, default=defaults.lr, help=helps["lr"])
    p.add_argument("--model", default=defaults.model, help=helps["model"])
    p.add_argument("--out", default=None, help=helps["out"])
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(fn=cmd_bench_sft)
