"""``deskdojo bench ray``: what playing episodes through Ray costs against playing them in
this process, with the same total sandboxes and the same policy.

After one untimed batch each (first calls into torch and the apps are slow), three
arms play the same episodes (click_button tasks, the tiny policy sampling, the
state judge after each): ``local`` (one pool here, batches of its size, as ``evolve``
without Ray), ``ray 1 node`` (one worker owning every sandbox, on a second node of a
local cluster) and ``ray 2 nodes`` (two workers with half each, one per node). The
Ray arms include shipping every frame back and writing it here. Also: seconds to
publish the policy's trainable weights (the LoRA adapter) to the workers, and what this
process spends writing the workers' episodes (its ceiling on env steps per second).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from deskdojo.core.progress import ProgressLine


def _config(model: str, provider: str, sandboxes: int, steps: int, workers: int | None = None) -> Any:
    from deskdojo.evolve.config import EvolveConfig

    ray = ({"address": "auto", "workers": workers, "sandboxes_per_worker": sandboxes // workers,
            "worker_timeout_s": 600, "max_restarts": 0} if workers else {})
    return EvolveConfig.from_dict({
        "model": model, "provider": provider, "sandboxes": sandboxes, "max_steps": steps,
        "sandbox": {"screen": [640, 480]}, "sft": {"enabled": False},
        "policy": {"max_new_tokens": 8, "temperature": 1.0, "lora": {"r": 8, "alpha": 16}}, "ray": ray})


def _episodes(count: int) -> list[tuple[Any, str]]:
    from deskdojo.core.types import Split
    from deskdojo.curriculum.families import all_families

    family = all_families()["click_button"]
    return [(family.generate(0, k % 4, Split.TRAIN), f"it00001-t{k // 2:02d}-g{k % 2:02d}") for k in range(count)]


def _steps(run_dir: Path) -> int:
    return sum(len((p / "steps.jsonl").read_text().splitlines()) for p in (run_dir / "trajectories").iterdir())


def local_arm(config: Any, episodes: list[tuple[Any, str]]) -> dict[str, Any]:
    """As ``evolve`` plays without Ray: batches of the pool's size, judged while the
    sandboxes still show the final state, written straight into the run folder."""
    from concurrent.futures import ThreadPoolExecutor

    from deskdojo.agent.policy import load_policy
    from deskdojo.agent.rollout import RolloutConfig, rollout
    from deskdojo.core.rundir import RunDir
    from deskdojo.evolve.build import policy_config, sandbox_config
    from deskdojo.vm.pool import SandboxPool
    from deskdojo.world_model.judge import StateJudge
    from deskdojo.world_model.probe import StateProbe

    policy = load_policy(config.model, policy_config(config))
    judge, probe = StateJudge(), StateProbe(files=False)
    rollout_config = RolloutConfig(max_steps=config.max_steps)
    with SandboxPool(sandbox_config(config, config.provider), config.sandboxes) as pool, \
            tempfile.TemporaryDirectory(prefix="deskdojo-bench-ray-") as tmp:
        def play(run: Any, played: list[tuple[Any, str]]) -> None:
            for start in range(0, len(played), len(pool)):
                batch = played[start:start + len(pool)]
                ids = iter([tid for _, tid in batch])
                boxes = [pool[i] for i in range(len(batch))]
                trajectories = rollout(policy, [t for t, _ in batch], boxes,
                                       lambda _tid, task, pid: run.trajectory_writer(next(ids), task.id, pid),
                                       config=rollout_config, probe=probe)
                with ThreadPoolExecutor(max_workers=len(batch)) as threads:
                    list(threads.map(judge.judge, [t for t, _ in batch], trajectories, boxes))

        play(RunDir.create(Path(tmp) / "warm-up", config.to_dict()), episodes[:len(pool)])  # untimed
        run = RunDir.create(Path(tmp) / "run", config.to_dict())
        started = time.perf_counter()
        play(run, episodes)
        wall = time.perf_counter() - started
        return {"wall_s": wall, "env_steps": _steps(run.path)}


def ray_arm(config: Any, episodes: list[tuple[Any, str]], *, repeats: int) -> dict[str, Any]:
    """The workers play and judge; this process writes their episodes as ``evolve --ray`` does."""
    from deskdojo.agent.policy import load_policy
    from deskdojo.core.rundir import RunDir
    from deskdojo.evolve.build import policy_config
    from deskdojo.evolve.ray_workers import RayFleet, record_episode

    policy = load_policy(config.model, policy_config(config))
    fleet = RayFleet.start(config, log=lambda line: None)
    try:
        broadcasts = [fleet.publish(policy, version) for version in range(repeats)]
        nodes = len({w.info["node"] for w in fleet.workers})
        with tempfile.TemporaryDirectory(prefix="deskdojo-bench-ray-") as tmp:
            run = RunDir.create(Path(tmp) / "run", config.to_dict())
            writing: list[float] = []

            def write(index: int, result: Any) -> None:
                t0 = time.perf_counter()
                record_episode(run, episodes[index][0], result, version=fleet.version)
                writing.append(time.perf_counter() - t0)

            fleet.play(episodes[:len(fleet)])  # untimed warm-up, as the local arm's
            started = time.perf_counter()
            fleet.play(episodes, on_result=write)
            wall = time.perf_counter() - started
            steps = _steps(run.path)
        return {"wall_s": wall, "env_steps": steps, "nodes": nodes, "broadcast_s": statistics.median(broadcasts),
                "write_s_per_step": sum(writing) / max(1, steps),
                "adapter_mb": sum(v.numel() * v.element_size() for v in _weights(policy).values()) / 2**20}
    finally:
        fleet.close()


def _weights(policy: Any) -> dict[str, Any]:
    from deskdojo.evolve.ray_workers import trainable_state

    return trainable_state(policy)


def run_ray_bench(*, model: str = "tiny", provider: str = "docker", sandboxes: int = 2, episodes: int = 6,
                  steps: int = 4, repeats: int = 3) -> dict[str, Any]:
    from deskdojo.evolve.ray_local import LocalCluster
    from deskdojo.vm.bench import machine_info

    if sandboxes < 2 or sandboxes % 2:
        from deskdojo.core.errors import ConfigError

        raise ConfigError(f"--sandboxes must be even and >= 2 (the two-node arm halves them), got {sandboxes}")
    played = _episodes(episodes)
    rows = []
    with ProgressLine("bench ray", 3, unit="arms") as line:
        line.update(0, info="local")
        local = local_arm(_config(model, provider, sandboxes, steps), played)
        rows.append({"arm": "local", "nodes": 1, "workers": 0, **local})
        for arm, node_slots, workers in (("ray 1 node", [sandboxes], 1),
                                         ("ray 2 nodes", [sandboxes // 2, sandboxes // 2], 2)):
            line.update(len(rows), info=arm)
            # the head offers no sandbox slots: the workers run on the worker nodes only
            with LocalCluster(0, node_slots, node_cpus=1):
                result = ray_arm(_config(model, provider, sandboxes, steps, workers), played, repeats=repeats)
            rows.append({"arm": arm, "workers": workers, **result})
        line.update(len(rows))
    for row in rows:
        row["steps_per_s"] = row["env_steps"] / row["wall_s"] if row["wall_s"] > 0 else 0.0
        row["vs_local"] = row["steps_per_s"] / rows[0]["steps_per_s"] if rows[0]["steps_per_s"] else None
    return {"model": model, "provider": provider, "sandboxes": sandboxes, "episodes": episodes, "steps": steps,
            "rows": rows, "estimate": estimate(rows, sandboxes), "machine": machine_info()}


def estimate(rows: list[dict[str, Any]], sandboxes_here: int, machines: int = 8, per_machine: int = 32) -> dict[str, Any]:
    """Env steps per second of ``machines`` x ``per_machine`` sandboxes, from the two-node
    arm's rate per sandbox (assuming each machine gives each sandbox the CPU share it had
    here) and capped by what this process can write (its seconds per step written)."""
    two = rows[-1]
    sandboxes = machines * per_machine
    per_sandbox = two["steps_per_s"] / sandboxes_here
    cap = 1.0 / two["write_s_per_step"] if two.get("write_s_per_step") else None
    workers = per_sandbox * sandboxes
    return {"machines": machines, "sandboxes_per_machine": per_machine, "per_sandbox_steps_per_s": per_sandbox,
            "workers_steps_per_s": workers, "driver_write_cap_steps_per_s": cap,
            "steps_per_s": min(workers, cap) if cap else workers}


def print_ray_table(result: dict[str, Any]) -> None:
    header = ["arm", "nodes", "workers", "episodes", "env steps", "wall s", "env steps/s", "vs local",
              "broadcast s", "write ms/step"]
    table = []
    for row in result["rows"]:
        table.append([row["arm"], str(row.get("nodes", 1)), str(row["workers"]), str(result["episodes"]),
                      str(row["env_steps"]), f"{row['wall_s']:.1f}", f"{row['steps_per_s']:.2f}",
                      f"{row['vs_local']:.2f}x" if row["vs_local"] is not None else "-",
                      f"{row['broadcast_s']:.3f}" if "broadcast_s" in row else "-",
                      f"{row['write_s_per_step'] * 1000:.1f}" if "write_s_per_step" in row else "-"])
    widths = [max(len(h), *(len(r[i]) for r in table)) for i, h in enumerate(header)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in table:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")
    m, e = result["machine"], result["estimate"]
    adapter = next((r["adapter_mb"] for r in result["rows"] if "adapter_mb" in r), 0.0)
    print(f"\nmodel {result['model']} (trainable weights {adapter:.2f} MiB) on {result['provider']}, "
          f"{result['sandboxes']} sandboxes in all, {result['steps']} steps at most per episode; "
          f"{m['cpus']} CPUs ({m['cpu_model']}); python {m['python']}")
    cap = e["driver_write_cap_steps_per_s"]
    print(f"estimate, {e['machines']} machines x {e['sandboxes_per_machine']} sandboxes: "
          f"{e['per_sandbox_steps_per_s']:.2f} steps/s per sandbox -> {e['workers_steps_per_s']:.0f} steps/s "
          f"from the workers; this process writes at most {cap:.0f} steps/s" if cap else "")


def cmd_bench_ray(args: Any) -> int:
    import json

    result = run_ray_bench(model=args.model, provider=args.provider, sandboxes=args.sandboxes,
                           episodes=args.episodes, steps=args.steps, repeats=args.repeats)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print_ray_table(result)
    return 0


def add_bench_ray_parser(bench: Any) -> None:
    """Add ``ray`` to the ``bench`` group's subparsers."""
    p = bench.add_parser("ray", help="episodes played here vs on Ray workers (1 and 2 local nodes): env steps/s, "
                                     "overhead, seconds to broadcast the adapter")
    p.add_argument("--model", default="tiny", help="policy (every arm loads the same)")
    p.add_argument("--provider", default="docker", choices=["docker", "xvfb"], help="sandboxes")
    p.add_argument("--sandboxes", type=int, default=2, help="sandboxes in all, per arm (even: 2 nodes halve them)")
    p.add_argument("--episodes", type=int, default=6, help="episodes each arm plays")
    p.add_argument("--steps", type=int, default=4, help="steps at most per episode")
    p.add_argument("--repeats", type=int, default=3, help="adapter broadcasts timed (median reported)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(fn=cmd_bench_ray)
