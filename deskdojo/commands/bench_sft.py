"""``deskdojo bench sft``: does SFT on oracle demonstrations make the tiny policy succeed
on HELD-OUT tasks? Records oracle demos of a few task families in real Xvfb sandboxes,
measures held-out success of the untrained policy, fine-tunes it, measures again.
With several observation modes (``--observation screenshot,a11y_tree,som``) the demos are
recorded once (each step keeps its element listing) and one policy per mode starts from
the same weights, trains the same steps in the same order and is judged on the same
held-out tasks. With ``--out`` every finished mode is kept, so a run cut short resumes.

Held-out tasks come from each family's held-out split (seeds from 1,000,000), so their
words never appear in training. Success is the state judge's verdict, taken right after
each episode and before its sandbox is reset. Decoding is greedy.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from deskdojo.core.progress import ProgressLine

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
    model: str = field(default="tiny-scratch", metadata={"help": "policy to start from"})
    out: str | None = field(default=None, metadata={"help": "keep demos, runs and the policy here "
                                                           "(default: a temporary folder, removed)"})
    seed: int = field(default=0, metadata={"help": "weights of a tiny start and the data order"})
    before: bool = field(default=True, metadata={"help": "also measure the untrained policy (--no-before skips "
                                                         "it: a random start is near 0%, and it costs rollouts)"})
    observations: tuple[str, ...] = field(default=("screenshot",), metadata={
        "help": "observation modes (comma list or repeated): one policy per mode, on the same demos, "
                "steps and held-out tasks"})

    def __post_init__(self) -> None:
        from deskdojo.core.elements import check_mode
        from deskdojo.core.errors import ConfigError

        if not self.observations:
            raise ConfigError("name at least one observation mode (--observation screenshot,a11y_tree,som)")
        for mode in self.observations:
            try:
                check_mode(mode)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        if len(set(self.observations)) != len(self.observations):
            raise ConfigError(f"observation modes repeat: {', '.join(self.observations)}; name each once")

        for name in ("demos", "heldout", "steps", "batch_size", "sandboxes", "max_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.families:
            raise ConfigError("name at least one task family (--families click_button,toggle_choices)")


def heldout_success(policy: Any, tasks: Sequence[Any], pool: Any, run_dir: Path, *,
                    max_steps: int, label: str = "held-out") -> list[bool]:
    """Greedy rollouts of ``tasks`` (as many at once as the pool has sandboxes), each judged
    by the state judge before its sandbox is reused. One bool per task. ``label`` names
    the progress line."""
    from deskdojo.agent.rollout import RolloutConfig, rollout
    from deskdojo.world_model.judge import StateJudge

    judge = StateJudge()
    sandboxes = list(pool)
    successes: list[bool] = []
    config = RolloutConfig(max_steps=max_steps)
    policy.set_greedy(True)
    try:
        with ProgressLine(label, len(tasks), unit="tasks") as line:
            for start in range(0, len(tasks), len(sandboxes)):
                chunk = list(tasks[start:start + len(sandboxes)])
                trajectories = rollout(policy, chunk, sandboxes[:len(chunk)], run_dir, config=config)
                successes += [judge.judge(task, trajectory, sandbox).success
                              for task, trajectory, sandbox in zip(chunk, trajectories, sandboxes)]
                line.update(len(successes), info=f"{sum(successes)} succeeded")
    finally:
        policy.set_greedy(False)
    return successes


def run_sft_bench(config: SFTBenchConfig, *, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Record demos, measure held-out success before and after SFT; returns the numbers."""
    from deskdojo.agent.demos import record_oracle_demos
    from deskdojo.agent.train.sft import read_demos
    from deskdojo.core.errors import ConfigError
    from deskdojo.core.rundir import write_atomic
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
                                         "families": list(config.families),
                                         "observations": list(config.observations)}}
    try:
        with SandboxPool(SandboxConfig(provider="xvfb"), config.sandboxes) as pool:
            recorded = root / "demos" / ".recorded.json"  # written last: the demos are whole
            demo_spec = {"families": list(config.families), "level": config.level, "demos": config.demos}
            if recorded.exists():
                kept_demos = json.loads(recorded.read_text())
                if kept_demos.get("spec") != demo_spec:
                    raise ConfigError(f"{root / 'demos'} holds demos of {kept_demos.get('spec')}, not {demo_spec}: "
                                      f"pick another --out")
                result["record_s"] = kept_demos["record_s"]
                log(f"bench sft: reusing the demos in {root / 'demos'}")
            else:
                shutil.rmtree(root / "demos", ignore_errors=True)
                started = time.perf_counter()
                record_oracle_demos(train, list(pool), root / "demos", progress=sys.stderr)
                result["record_s"] = time.perf_counter() - started
                write_atomic(recorded, json.dumps({"record_s": result["record_s"], "spec": demo_spec}).encode())
            result["demo_steps"] = len(read_demos(root / "demos"))
            log(f"bench sft: {len(train)} oracle demos ({result['demo_steps']} steps) in "
                f"{result['record_s']:.0f} s")
            result["modes"] = {}
            # one whole line per mode (its phases draw lines of their own), with the time left
            with ProgressLine("bench sft", len(config.observations), unit="modes", plain_every_s=0,
                              heartbeat_s=None, redraw=False) as modes:
                for mode in config.observations:
                    modes.update(len(result["modes"]), info=f"now {mode}")
                    kept = root / "modes" / f"{mode}.json"
                    if kept.exists() and json.loads(kept.read_text()).get("settings") == _mode_settings(config):
                        result["modes"][mode] = json.loads(kept.read_text())
                        log(f"bench sft: {mode}: kept from an earlier run with the same settings ({kept})")
                        continue
                    result["modes"][mode] = _bench_mode(config, mode, heldout, pool, root, log=log)
                    kept.parent.mkdir(parents=True, exist_ok=True)
                    write_atomic(kept, json.dumps(result["modes"][mode], indent=1).encode())
                modes.update(len(result["modes"]), info="")
    finally:
        if not config.out:
            shutil.rmtree(root, ignore_errors=True)
    return result


def _bench_mode(config: SFTBenchConfig, mode: str, heldout: dict[str, list[Any]], pool: Any, root: Path, *,
                log: Callable[[str], None]) -> dict[str, Any]:
    """One observation mode: held-out success of the fresh policy, SFT, held-out success again."""
    from deskdojo.agent.policy import PolicyConfig, load_policy
    from deskdojo.agent.train.sft import SFTConfig, sft

    for name in (f"before-{mode}", f"after-{mode}"):  # a mode cut short rolls out again; SFT resumes
        shutil.rmtree(root / name, ignore_errors=True)
    policy = load_policy(config.model, PolicyConfig(seed=config.seed, observation=mode))
    before: dict[str, list[bool]] = {}
    if config.before:
        before = {name: heldout_success(policy, tasks, pool, root / f"before-{mode}", max_steps=config.max_steps,
                                        label=f"bench sft: {mode}: {name} before SFT")
                  for name, tasks in heldout.items()}
        log(f"bench sft: {mode}: before " + _rates(before))
    cpu, wall = time.process_time(), time.perf_counter()
    trained = sft(SFTConfig(demos=str(root / "demos"), out=str(root / f"sft-{mode}"), model=config.model,
                            steps=config.steps, batch_size=config.batch_size, lr=config.lr, seed=config.seed,
                            observation=mode, log_every=max(1, config.steps // 10),
                            checkpoint_every=max(1, config.steps // 4)), policy=policy, log=log, resume=True,
                  progress=sys.stderr)
    sft_cpu_min, sft_wall_min = (time.process_time() - cpu) / 60, (time.perf_counter() - wall) / 60
    after = {name: heldout_success(trained.policy, tasks, pool, root / f"after-{mode}", max_steps=config.max_steps,
                                   label=f"bench sft: {mode}: {name} after SFT") for name, tasks in heldout.items()}
    log(f"bench sft: {mode}: after " + _rates(after) + f" (SFT {sft_wall_min:.1f} min wall)")
    return {"settings": _mode_settings(config), "sft_cpu_min": sft_cpu_min, "sft_wall_min": sft_wall_min,
            "sft_loss": [trained.first_loss, trained.last_loss] if trained.losses else None,
            "sft_steps_run": len(trained.losses),  # fewer than steps: resumed from a checkpoint
            "families": {name: {"heldout": len(heldout[name]),
                                "before": statistics.fmean(before[name]) if before else None,
                                "after": statistics.fmean(after[name]),
                                "after_successes": sum(after[name])} for name in heldout}}


def _mode_settings(config: SFTBenchConfig) -> dict[str, Any]:
    """What a mode's result depends on besides its mode: a kept result is reused only when these match."""
    names = ("level", "demos", "heldout", "steps", "batch_size", "lr", "max_steps", "model", "seed", "before")
    return {**{name: getattr(config, name) for name in names}, "families": list(config.families)}


def _rates(by_family: dict[str, list[bool]]) -> str:
    return ", ".join(f"{name} {sum(v)}/{len(v)}" for name, v in by_family.items())


def print_sft_bench_table(result: dict[str, Any]) -> None:
    config = result["config"]
    modes = result["modes"]
    print(f"SFT on {config['demos']} oracle demos per family ({result['demo_steps']} steps), level "
          f"{config['level']}, {config['steps']} steps of {config['batch_size']}, held-out success after "
          f"(before) SFT:")
    print(f"{'family':<20} {'held-out':>8} " + " ".join(f"{mode:>22}" for mode in modes))
    for name in config["families"]:
        cells = [f"{row['families'][name]['after']:.0%} ({_percent(row['families'][name]['before'])})"
                 for row in modes.values()]
        heldout = next(iter(modes.values()))["families"][name]["heldout"]
        print(f"{name:<20} {heldout:>8} " + " ".join(f"{cell:>22}" for cell in cells))
    for mode, row in modes.items():
        loss = f"loss {row['sft_loss'][0]:.3f} -> {row['sft_loss'][1]:.3f}" if row["sft_loss"] else "no loss"
        resumed = "" if row["sft_steps_run"] == config["steps"] else \
            f" for {row['sft_steps_run']} of {config['steps']} steps (the rest ran before, resumed from a checkpoint)"
        print(f"{mode}: SFT {row['sft_cpu_min']:.1f} CPU min, {row['sft_wall_min']:.1f} min wall{resumed}, {loss}")


def _percent(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.0%}"


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def cmd_bench_sft(args: argparse.Namespace) -> int:
    modes = tuple(m.strip() for given in (args.observation or ["screenshot"]) for m in given.split(",") if m.strip())
    config = SFTBenchConfig(families=tuple(f.strip() for f in args.families.split(",") if f.strip()),
                            level=args.level, demos=args.demos, heldout=args.heldout, steps=args.steps,
                            batch_size=args.batch_size, lr=args.lr, sandboxes=args.sandboxes,
                            max_steps=args.max_steps, model=args.model, out=args.out, seed=args.seed,
                            before=args.before, observations=modes)
    result = run_sft_bench(config, log=_to_stderr if args.json else print)  # JSON alone on stdout
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
    p.add_argument("--observation", action="append", default=None, metavar="MODE",
                   help=helps["observations"] + " (default: screenshot)")
    p.add_argument("--no-before", dest="before", action="store_false", help=helps["before"])
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(fn=cmd_bench_sft)
