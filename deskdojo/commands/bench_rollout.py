"""``deskdojo bench rollout``: rollout throughput with 1, 4, 8 sandboxes stepping in
lock-step, and where a step's time goes (generate, observe, action, frame writing).

``--model scripted`` plays fixed clicks (no model: the environment side alone);
``--model tiny`` (or a checkpoint path) runs the real VLM policy. Every figure is a
median per step, except the rates: env steps per wall second of the step loop, and
decisions per second spent inside ``policy.act``.
"""

from __future__ import annotations

import tempfile
from typing import Any, Sequence

from deskdojo.core.actions import Click
from deskdojo.core.progress import ProgressLine
from deskdojo.core.types import Task

BENCH_LABELS = ("apple", "pear", "plum", "fig", "lime", "kiwi")


def bench_task(steps: int) -> Task:
    """A buttons app with six buttons: something real to click and repaint."""
    from deskdojo.vm.guest.apps import launch_step

    return Task(id="bench-buttons", instruction="Click the buttons.", family="bench", max_steps=steps,
                setup=(launch_step("buttons", {"seed": 1, "labels": list(BENCH_LABELS), "columns": 3}),))


def scripted_clicks(screen: tuple[int, int], steps: int) -> list[Click]:
    """Clicks sweeping the middle of the screen (where the app's window opens)."""
    width, height = screen
    return [Click(x=width // 4 + (i * 37) % (width // 2), y=height // 3 + (i * 23) % (height // 3))
            for i in range(steps)]


def _policy(model: str, screen: tuple[int, int], steps: int) -> Any:
    if model == "scripted":
        from deskdojo.core.fakes import ScriptedPolicy

        return ScriptedPolicy(scripted_clicks(screen, steps), policy_id="scripted")
    from deskdojo.agent.policy import load_policy  # the VLM policy (torch, transformers)

    return load_policy(model)


def run_rollout_bench(*, model: str = "scripted", counts: Sequence[int] = (1, 4, 8), steps: int = 20,
                      provider: str = "xvfb", screen: tuple[int, int] = (1024, 768)) -> dict[str, Any]:
    from deskdojo.agent.rollout import RolloutConfig, RolloutStats, rollout
    from deskdojo.vm.bench import machine_info
    from deskdojo.vm.config import SandboxConfig
    from deskdojo.vm.pool import SandboxPool

    policy = _policy(model, screen, steps)
    task = bench_task(steps)
    config = RolloutConfig(max_steps=steps, time_limit_s=3600)
    rows = []
    # at most this many env steps (an episode may end sooner): the line's total
    with ProgressLine("bench rollout", sum(counts) * steps, unit="env steps") as line:
        for count in counts:
            line.update(line.done, info=f"{count} sandboxes: starting them")
            with SandboxPool(SandboxConfig(provider=provider, screen=screen), count) as pool, \
                    tempfile.TemporaryDirectory(prefix="deskdojo-bench-") as out:
                line.update(line.done, info=f"{count} sandboxes")
                stats = RolloutStats()
                trajectories = rollout(policy, [task] * count, list(pool), out, config=config, stats=stats,
                                       on_step=lambda *_: line.advance())
                summary = stats.summary()
                ends = sorted({t.end.value for t in trajectories if t.end is not None})
                rows.append({"sandboxes": count, **summary, "ends": ends})
            line.update(sum(row["sandboxes"] for row in rows) * steps)  # episodes that ended early
    return {"model": model, "policy_id": getattr(policy, "policy_id", model), "provider": provider,
            "screen": f"{screen[0]}x{screen[1]}", "steps": steps, "rows": rows, "machine": machine_info()}


def _rate(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}" if value >= 1 else f"{value:.2f}"


def _ms(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_rollout_table(result: dict[str, Any]) -> None:
    header = ["sandboxes", "env steps/s", "decisions/s (generate)", "generate ms/batch", "observe ms",
              "action ms", "write ms", "reset ms", "ends"]
    table = []
    for row in result["rows"]:
        med = row["median_ms"]
        rate = row["decisions_per_generate_s"]
        table.append([str(row["sandboxes"]), _rate(row["steps_per_s"]), _rate(rate), _ms(med["generate"]),
                      _ms(med["observe"]), _ms(med["action"]), _ms(med["write"]), _ms(med["reset"], 0),
                      ",".join(row["ends"])])
    widths = [max(len(h), *(len(r[i]) for r in table)) for i, h in enumerate(header)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in table:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")
    m = result["machine"]
    print(f"\nmodel {result['model']} on {result['provider']}, {result['steps']} steps per episode, screen "
          f"{result['screen']}; medians per step; {m['cpus']} CPUs ({m['cpu_model']}); python {m['python']}")
