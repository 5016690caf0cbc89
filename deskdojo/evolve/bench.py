"""``deskdojo bench learning``: does evolving help, and does the curriculum help?

Three arms per seed, each from the same SFT warm start (trained once per seed, then
copied): (a) SFT only, which is arm (b)'s held-out evaluation before its first
iteration; (b) SFT then evolve with the curriculum scheduler; (c) SFT then evolve with
uniform task sampling, on the same env-step budget. Reported: held-out success per
family and level before and after, env steps, CPU minutes of this process (sandboxes
are separate processes), and the env steps (b) needed to reach (c)'s final success.
Medians over seeds.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from deskdojo.core.rundir import JsonlFile
from deskdojo.evolve.build import SFT_DIR


def _arm(config: Any, run_dir: Path, *, provider: str | None) -> dict[str, Any]:
    from deskdojo.evolve.run import run_evolve

    cpu, wall = _cpu_seconds(), time.monotonic()
    # progress goes to stderr: stdout carries only the report (a table or --json)
    result = run_evolve(config, run_dir, provider=provider, log=lambda *a: None, progress=sys.stderr)
    heldout = list(JsonlFile(run_dir / "heldout.jsonl").read())
    return {"run_dir": str(run_dir), "iterations": result.iterations, "env_steps": result.env_steps,
            "cpu_minutes": round((_cpu_seconds() - cpu) / 60, 2),
            "wall_minutes": round((time.monotonic() - wall) / 60, 2),
            "before": heldout[0] if heldout else None, "after": heldout[-1] if heldout else None,
            "curve": [(h["env_steps"], h["success"]) for h in heldout]}


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the xvfb sandboxes it
    started and closed; docker containers are not children and are not counted)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def steps_to_reach(curve: list[tuple[int, float | None]], target: float | None) -> int | None:
    """The first env-step count at which ``curve`` reaches ``target`` (None: never)."""
    if target is None:
        return None
    for steps, success in curve:
        if success is not None and success >= target:
            return steps
    return None


def run_learning_bench(*, seeds: int = 2, env_steps: int = 400, heldout_per_level: int = 6,
                       runs_root: str = "runs/bench-learning",
                       provider: str = "auto", sandboxes: int | None = None,
                       config_path: str | None = None) -> dict[str, Any]:
    from deskdojo.evolve.build import resolve_provider
    from deskdojo.evolve.config import load_config

    provider = resolve_provider(provider)
    root = Path(runs_root) / time.strftime("%Y%m%d-%H%M%S")
    per_seed = []
    for seed in range(seeds):
        overrides: dict[str, Any] = {"seed": seed, "provider": provider,
                                     "budget": {"iterations": None, "wall_seconds": None, "env_steps": env_steps},
                                     "eval": {"at_start": True, "tasks_per_level": heldout_per_level}}
        if sandboxes:
            overrides["sandboxes"] = sandboxes
        curriculum = load_config(config_path, {**overrides, "sampling": "curriculum"})
        uniform = load_config(config_path, {**overrides, "sampling": "uniform"})
        arm_b = _arm(curriculum, root / f"seed{seed}-curriculum", provider=provider)
        if (root / f"seed{seed}-curriculum" / SFT_DIR).exists():  # same warm start for arm (c)
            (root / f"seed{seed}-uniform").mkdir(parents=True)
            shutil.copytree(root / f"seed{seed}-curriculum" / SFT_DIR, root / f"seed{seed}-uniform" / SFT_DIR)
        arm_c = _arm(uniform, root / f"seed{seed}-uniform", provider=provider, )
        target = arm_c["after"]["success"] if arm_c["after"] else None
        start = arm_c["before"]["success"] if arm_c["before"] else None
        # only a gain over the shared SFT start is a target worth reaching
        improved = target is not None and start is not None and target > start
        per_seed.append({"seed": seed, "sft_only": arm_b["before"], "curriculum": arm_b, "uniform": arm_c,
                         "uniform_improved": improved,
                         "curriculum_steps_to_uniform_final": steps_to_reach(arm_b["curve"], target)
                         if improved else None})
    return {"env_step_budget": env_steps, "seeds": seeds, "provider": provider, "runs": str(root),
            "per_seed": per_seed, "median": _medians(per_seed)}


def _median(values: list[Any]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _medians(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    def success(entry: Any) -> float | None:
        return entry["success"] if entry else None

    return {
        "sft_only_success": _median([success(s["sft_only"]) for s in per_seed]),
        "curriculum_success": _median([success(s["curriculum"]["after"]) for s in per_seed]),
        "uniform_success": _median([success(s["uniform"]["after"]) for s in per_seed]),
        "curriculum_env_steps": _median([s["curriculum"]["env_steps"] for s in per_seed]),
        "uniform_env_steps": _median([s["uniform"]["env_steps"] for s in per_seed]),
        "curriculum_cpu_minutes": _median([s["curriculum"]["cpu_minutes"] for s in per_seed]),
        "uniform_cpu_minutes": _median([s["uniform"]["cpu_minutes"] for s in per_seed]),
        "curriculum_steps_to_uniform_final": _median([s["curriculum_steps_to_uniform_final"] for s in per_seed]),
    }


def print_report(report: dict[str, Any]) -> None:
    def pct(value: Any) -> str:
        return "-" if value is None else f"{100 * value:.0f}%"

    def number(value: Any) -> str:
        return "-" if value is None else f"{value:.1f}".removesuffix(".0")

    m = report["median"]
    print(f"learning bench: {report['seeds']} seeds, {report['env_step_budget']} env steps per evolve arm, "
          f"{report['provider']} sandboxes; runs in {report['runs']}  (medians)")
    print(f"{'arm':<26} {'held-out':>9} {'env steps':>10} {'CPU min':>8}")
    print(f"{'(a) SFT only':<26} {pct(m['sft_only_success']):>9} {'-':>10} {'-':>8}")
    print(f"{'(b) SFT + evolve (curric.)':<26} {pct(m['curriculum_success']):>9} "
          f"{number(m['curriculum_env_steps']):>10} {number(m['curriculum_cpu_minutes']):>8}")
    print(f"{'(c) SFT + evolve (uniform)':<26} {pct(m['uniform_success']):>9} "
          f"{number(m['uniform_env_steps']):>10} {number(m['uniform_cpu_minutes']):>8}")
    print("(b)'s CPU minutes include the SFT warm start that (a) and (c) share; "
          "CPU counts this process and its xvfb sandboxes")
    reached = m["curriculum_steps_to_uniform_final"]
    if not any(s["uniform_improved"] for s in report["per_seed"]):
        reached = "n/a: (c) did not improve on the SFT start"
    print(f"env steps for (b) to reach (c)'s final held-out success: "
          f"{reached if reached is not None else 'not reached'}")
    print("\nper family and level (before -> after), per seed:")
    for s in report["per_seed"]:
        for arm in ("curriculum", "uniform"):
            before = (s[arm]["before"] or {}).get("by_family", {})
            after = (s[arm]["after"] or {}).get("by_family", {})
            cells = [f"{fam}/L{lv} {pct(rate)}->{pct(after.get(fam, {}).get(lv))}"
                     for fam, levels in before.items() for lv, rate in levels.items()]
            print(f"  seed {s['seed']} {arm:<10} " + "  ".join(cells))
