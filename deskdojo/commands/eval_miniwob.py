"""``deskdojo eval miniwob``: success rate and mean reward per MiniWoB++ task.

Each episode loads the task page with its seed in a web-image sandbox, lets a policy act
(``oracle``: the task's scripted solver; otherwise a model through the normal rollout, with
the page's own utterance as its instruction) and reads the page's reward and done flag
in the guest. The table, ``results.json`` and ``results.csv`` follow the per-task layout
of published MiniWoB++ tables (task, success rate, mean reward, episodes). ``--loads``
instead opens every task page once and counts those that load and report a reward.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import statistics
import time
from pathlib import Path
from typing import Any, Sequence

from deskdojo.core.errors import ConfigError, SandboxError


@dataclasses.dataclass(frozen=True, slots=True)
class Episode:
    """One episode's outcome, as the page judged it."""

    task: str
    seed: int
    success: bool
    reward: float
    raw_reward: float
    steps: int
    reset_ms: float
    act_s: float
    error: str | None = None


def _tasks(text: str | None, policy: str) -> list[str]:
    from deskdojo.curriculum.families._miniwob import MINIWOB_TASKS, ORACLE_TASKS

    if not text:
        return list(ORACLE_TASKS)
    if text == "all":
        return list(MINIWOB_TASKS)
    names = [name.strip().removeprefix("miniwob.") for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in MINIWOB_TASKS]
    if unknown:
        raise ConfigError(f"no MiniWoB++ task {unknown[0]!r}; `deskdojo tasks families` lists them "
                          f"(miniwob.<task>), e.g. {', '.join(ORACLE_TASKS[:3])}")
    if policy == "oracle":
        missing = [name for name in names if name not in ORACLE_TASKS]
        if missing:
            raise ConfigError(f"{missing[0]!r} has no scripted oracle; the tasks with one are: "
                              f"{', '.join(ORACLE_TASKS)}")
    return names


def _start_sandbox(screen: str | None) -> Any:
    from deskdojo.core.progress import say
    from deskdojo.vm.config import SandboxConfig, parse_screen
    from deskdojo.vm.docker import DockerProvider
    from deskdojo.vm.image import build_image

    build_image(flavor="web", log=say)  # one tag lookup when it is built
    config = SandboxConfig(provider="docker", flavor="web",
                           **({"screen": parse_screen(screen)} if screen else {}))
    return DockerProvider(config).start()


def run_episode(sandbox: Any, task_name: str, seed: int, *, policy: Any = None,
                run_dir: Path | None = None) -> Episode:
    """One episode of ``task_name`` with ``seed``; ``policy`` None means the oracle."""
    from deskdojo.core.oracle import OracleError, run_oracle
    from deskdojo.curriculum.families import get_family

    task = get_family(f"miniwob.{task_name}").generate(0, seed, "train")
    started = time.perf_counter()
    sandbox.reset(task)
    reset_ms = (time.perf_counter() - started) * 1000
    error, steps = None, 0
    started = time.perf_counter()
    if policy is None:
        try:
            steps = len(run_oracle(sandbox, task))
        except OracleError as exc:
            error = str(exc)
    else:
        from deskdojo.agent.rollout import rollout

        (trajectory,) = rollout(policy, [task], [sandbox], run_dir)  # it tells the policy the page's utterance
        steps, error = len(trajectory.steps), trajectory.error
    act_s = time.perf_counter() - started
    state = sandbox.page_state()
    if state is None:
        raise SandboxError(f"{task_name}: the page was gone after the episode")
    return Episode(task=task_name, seed=seed, success=state.success, reward=state.reward,
                   raw_reward=state.raw_reward, steps=steps, reset_ms=round(reset_ms, 2),
                   act_s=round(act_s, 4), error=error)


def summarise(episodes: Sequence[Episode]) -> dict[str, Any]:
    """Per task and overall: success rate, mean reward; median reset ms and env steps/s."""
    rows = []
    for name in dict.fromkeys(e.task for e in episodes):
        mine = [e for e in episodes if e.task == name]
        rows.append({"task": name, "episodes": len(mine),
                     "success_rate": round(sum(e.success for e in mine) / len(mine), 4),
                     "mean_reward": round(statistics.fmean(e.reward for e in mine), 4),
                     "mean_steps": round(statistics.fmean(e.steps for e in mine), 2)})
    steps, act_s = sum(e.steps for e in episodes), sum(e.act_s for e in episodes)
    return {"tasks": rows,
            "mean_success_rate": round(statistics.fmean(r["success_rate"] for r in rows), 4) if rows else 0.0,
            "mean_reward": round(statistics.fmean(r["mean_reward"] for r in rows), 4) if rows else 0.0,
            "episodes": len(episodes),
            "median_reset_ms": round(statistics.median(e.reset_ms for e in episodes), 1) if episodes else None,
            "policy_actions_per_s": round(steps / act_s, 1) if act_s > 0 else None,
            "errors": [{"task": e.task, "seed": e.seed, "error": e.error} for e in episodes if e.error]}


def loads_pass(sandbox: Any, names: Sequence[str]) -> dict[str, Any]:
    """Open each task page (seed 0), read its utterance and its reward getter, solve nothing."""
    from deskdojo.core.progress import HEARTBEAT_S, LineStream, ProgressLine, say

    rows = []
    with ProgressLine("miniwob loads", len(names), unit="tasks", stream=LineStream(say),
                      heartbeat_s=HEARTBEAT_S) as line:
        for name in names:
            started = time.perf_counter()
            try:
                loaded = sandbox.load_page(name, seed=0)
                state = sandbox.page_state()
                ok = state is not None and bool(loaded.utterance) and not state.done
                rows.append({"task": name, "loads": ok, "utterance": loaded.utterance[:120],
                             "load_ms": round((time.perf_counter() - started) * 1000, 1),
                             "error": None if ok else "empty utterance or already done"})
            except SandboxError as exc:
                rows.append({"task": name, "loads": False, "utterance": "", "load_ms": None,
                             "error": str(exc)[:300]})
            line.advance()
    times = [r["load_ms"] for r in rows if r["load_ms"] is not None]
    return {"tasks": rows, "total": len(rows), "loaded": sum(r["loads"] for r in rows),
            "median_load_ms": round(statistics.median(times), 1) if times else None}


def measure_env_steps(sandbox: Any, task_name: str, steps: int = 40) -> float:
    """Env steps/s on a loaded page: a raw screenshot and one pointer move per step."""
    from deskdojo.core.actions import Move

    sandbox.load_page(task_name, seed=0)
    width, height = sandbox.screen_size
    started = time.perf_counter()
    for index in range(steps):
        sandbox.observe()
        sandbox.act(Move(x=(index * 7) % width, y=(index * 5) % height))
    return round(steps / (time.perf_counter() - started), 1)


def print_table(summary: dict[str, Any], policy: str) -> None:
    print(f"{'task':<26} {'episodes':>8} {'success %':>9} {'mean reward':>11} {'steps':>6}")
    for row in summary["tasks"]:
        print(f"{row['task']:<26} {row['episodes']:>8} {100 * row['success_rate']:>9.1f} "
              f"{row['mean_reward']:>11.3f} {row['mean_steps']:>6.1f}")
    print(f"{'mean (' + policy + ')':<26} {summary['episodes']:>8} {100 * summary['mean_success_rate']:>9.1f} "
          f"{summary['mean_reward']:>11.3f}")
    print(f"median reset {summary['median_reset_ms']} ms; {summary['policy_actions_per_s']} policy actions/s "
          f"(its decisions included); {summary.get('env_steps_per_s')} env steps/s (raw screenshot + one action)")
    for error in summary["errors"][:10]:
        print(f"  error: {error['task']} seed {error['seed']}: {error['error']}")


def cmd_eval_miniwob(args: argparse.Namespace) -> int:
    from deskdojo.core.progress import HEARTBEAT_S, LineStream, ProgressLine, say

    if args.episodes < 1:
        raise ConfigError(f"--episodes must be >= 1, got {args.episodes}")
    names = _tasks(args.tasks, args.policy) if not args.loads else _tasks(args.tasks or "all", "model")
    out = Path(args.out or f"runs/eval-miniwob-{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    policy = None
    if not args.loads and args.policy != "oracle":
        from deskdojo.agent.policy import load_policy

        policy = load_policy(args.policy)
    sandbox = _start_sandbox(args.screen)
    try:
        if args.loads:
            result = loads_pass(sandbox, names)
            (out / "loads.json").write_text(json.dumps(result, indent=1))
            if args.json:
                print(json.dumps(result, indent=1))
            else:
                for row in result["tasks"]:
                    if not row["loads"]:
                        print(f"  does not load: {row['task']}: {row['error']}")
                print(f"{result['loaded']} of {result['total']} MiniWoB++ tasks load and report a reward "
                      f"(median load {result['median_load_ms']} ms); {out / 'loads.json'}")
            return 0 if result["loaded"] else 1
        episodes: list[Episode] = []
        with ProgressLine("miniwob episodes", len(names) * args.episodes, unit="episodes",
                          stream=LineStream(say), heartbeat_s=HEARTBEAT_S) as line:
            for name in names:
                for index in range(args.episodes):
                    episodes.append(run_episode(sandbox, name, args.seed + index, policy=policy,
                                                run_dir=out / "trajectories" if policy else None))
                    line.advance()
        env_steps = measure_env_steps(sandbox, names[0])
    finally:
        sandbox.close()
    summary = {"policy": args.policy, **summarise(episodes), "env_steps_per_s": env_steps,
               "episodes_detail": [dataclasses.asdict(e) for e in episodes]}
    (out / "results.json").write_text(json.dumps(summary, indent=1))
    with open(out / "results.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["task", "episodes", "success_rate", "mean_reward", "mean_steps"])
        writer.writeheader()
        writer.writerows(summary["tasks"])
    if args.json:
        print(json.dumps({k: v for k, v in summary.items() if k != "episodes_detail"}, indent=1))
    else:
        print_table(summary, args.policy)
        print(f"written: {out / 'results.json'}, {out / 'results.csv'}")
    return 0


def add_eval_parser(subparsers: Any) -> None:
    evaluate = subparsers.add_parser("eval", help="evaluate a policy on a benchmark").add_subparsers(
        dest="eval_cmd", required=True)
    p = evaluate.add_parser("miniwob", help="MiniWoB++ in the web image: success rate and mean reward per task")
    p.add_argument("--tasks", default=None,
                   help="comma-separated task names, or 'all' (default: the tasks with an oracle)")
    p.add_argument("--episodes", type=int, default=10, help="episodes per task (seeds --seed, --seed+1, ...)")
    p.add_argument("--seed", type=int, default=0, help="the first page seed")
    p.add_argument("--policy", default="oracle", help="oracle, or a model: tiny, a folder, a hub name")
    p.add_argument("--loads", action="store_true",
                   help="only open each task page and read its utterance and reward (default: all tasks)")
    p.add_argument("--screen", default=None, help="sandbox screen size WxH (default 1024x768)")
    p.add_argument("--out", default=None, help="output folder (default runs/eval-miniwob-<time>)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_eval_miniwob)
