"""What ``deskdojo bench learning`` reports, from its arms' run folders: bootstrap
intervals over held-out tasks, family x level cells, per-iteration diagnostics from
metrics.jsonl, the summary figures, the tables it prints and the learning-curve PNGs.

Nothing here runs a sandbox or a model; numpy and matplotlib load when first used.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from deskdojo.core.rundir import JsonlFile

ARMS = ("sft_only", "curriculum", "uniform", "more_sft")
"""(a), (b), (c), (d): the order every table and plot uses."""
ARM_LABELS = {"sft_only": "(a) SFT only", "curriculum": "(b) GRPO, curriculum",
              "uniform": "(c) GRPO, uniform", "more_sft": "(d) more SFT, same CPU"}
RESAMPLES = 2000
CONFIDENCE = 0.95
BOOTSTRAP_SEED = 0
CPU_NOTE = ("CPU = this process plus its finished child processes (xvfb sandboxes count once closed); "
            "docker containers are not children of this process and are not counted")


# --- bootstrap over held-out tasks ---------------------------------------------------


def bootstrap_ci(outcomes: Sequence[float], *, resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED,
                 confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """Percentile interval of the mean of ``outcomes`` (one 0/1 per task), resampling tasks
    with replacement. None for no outcomes; all-equal outcomes give a zero-width interval."""
    import numpy as np

    values = np.asarray([float(v) for v in outcomes])
    if values.size == 0:
        return None
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(resamples, values.size))].mean(axis=1)
    low, high = np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(low), float(high)


def median_difference(per_seed: Sequence[tuple[Mapping[str, bool], Mapping[str, bool]]], *,
                      resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED,
                      confidence: float = CONFIDENCE) -> dict[str, Any] | None:
    """Median over seeds of (second arm - first arm) held-out success, in points, with a
    paired bootstrap interval: the same resampled tasks for every seed and both arms (the
    held-out set does not depend on the seed). Only tasks judged in both arms of every
    seed count. ``per_seed``: (first, second) maps of task id -> success."""
    import numpy as np

    pairs = [(a, b) for a, b in per_seed if a and b]
    if not pairs:
        return None
    common = sorted(set.intersection(*(set(a) & set(b) for a, b in pairs)))
    if not common:
        return None
    diffs = np.asarray([[float(b[t]) - float(a[t]) for t in common] for a, b in pairs])  # seeds x tasks
    point = float(np.median(diffs.mean(axis=1)))
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(common), size=(resamples, len(common)))
    medians = np.median(diffs[:, picks].mean(axis=2), axis=0)
    low, high = np.quantile(medians, [(1 - confidence) / 2, (1 + confidence) / 2])
    return {"pp": round(100 * point, 2), "ci_pp": [round(100 * float(low), 2), round(100 * float(high), 2)],
            "tasks": len(common), "seeds": len(pairs)}


def outcome_map(record: Mapping[str, Any] | None) -> dict[str, bool] | None:
    """task id -> success of one held-out record; errors left out. None for a record
    written before per-task outcomes were kept (no interval can be drawn from it)."""
    if not record or record.get("outcomes") is None:
        return None
    return {o["task"]: bool(o["success"]) for o in record["outcomes"] if o.get("success") is not None}


def arm_figures(record: Mapping[str, Any] | None, *, resamples: int = RESAMPLES) -> dict[str, Any]:
    """One arm's held-out success with its interval and its family x level cells."""
    if record is None:
        return {"success": None, "ci": None, "tasks": 0, "errors": 0, "by_family": {}}
    outcomes = outcome_map(record)
    ci = bootstrap_ci(list(outcomes.values()), resamples=resamples) if outcomes is not None else None
    return {"success": record.get("success"), "ci": [round(v, 4) for v in ci] if ci else None,
            "tasks": record.get("tasks"), "errors": record.get("errors", 0),
            "by_family": record.get("by_family") or {}, "iteration": record.get("iteration")}


# --- reading an arm's folder -----------------------------------------------------------


def heldout_records(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "heldout.jsonl"
    return list(JsonlFile(path).read()) if path.exists() else []


def diagnostics(run_dir: Path) -> list[dict[str, Any]]:
    """Per iteration: sampled rollouts' success, the share of groups with signal, replayed
    groups, KL, entropy and level moves. Moves come from metrics.jsonl (promotions,
    demotions) or, for runs written before those keys, from curriculum.json's move history."""
    path = run_dir / "metrics.jsonl"
    lines = list(JsonlFile(path).read()) if path.exists() else []
    moves_by_iteration: dict[int, list[dict[str, Any]]] = {}
    if lines and "promotions" not in lines[0] and (run_dir / "curriculum.json").exists():
        import json

        for move in json.loads((run_dir / "curriculum.json").read_text()).get("moves", []):
            moves_by_iteration.setdefault(int(move.get("iteration", -1)), []).append(move)
    rows = []
    for m in lines:
        used, dropped = m.get("groups_used") or 0, m.get("groups_dropped") or 0
        if "promotions" in m:
            up, down = m.get("promotions"), m.get("demotions")
        else:
            moves = moves_by_iteration.get(m["iteration"], [])
            up, down = sum(v["to"] > v["from"] for v in moves), sum(v["to"] < v["from"] for v in moves)
        rows.append({"iteration": m["iteration"], "env_steps": m["env_steps"], "train_success": m.get("train_success"),
                     "signal_share": used / (used + dropped) if used + dropped else None,
                     "replayed": m.get("replayed"), "kl": m.get("kl"), "entropy": m.get("entropy"),
                     "promotions": up, "demotions": down})
    return rows


def diagnostics_summary(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    def average(key: str) -> float | None:
        values = [r[key] for r in rows if r.get(key) is not None]
        return sum(values) / len(values) if values else None

    return {"iterations": len(rows), "train_success": average("train_success"),
            "signal_share": average("signal_share"), "replayed": sum(r.get("replayed") or 0 for r in rows),
            "kl": average("kl"), "entropy": average("entropy"),
            "promotions": sum(r.get("promotions") or 0 for r in rows),
            "demotions": sum(r.get("demotions") or 0 for r in rows)}


def cpu_samples(path: Path) -> list[tuple[float, float]]:
    """(wall time, cumulative CPU seconds) samples of a CPU ledger file."""
    return [(s["time"], s["cpu_s"]) for s in JsonlFile(path).read()] if path.exists() else []


def cpu_at(samples: Sequence[tuple[float, float]], when: float) -> float | None:
    """The ledger's cumulative CPU at wall time ``when``, interpolated between samples."""
    if not samples:
        return None
    if when <= samples[0][0]:
        return samples[0][1]
    for (t0, c0), (t1, c1) in zip(samples, samples[1:]):
        if t0 <= when <= t1:
            return c0 if t1 == t0 else c0 + (c1 - c0) * (when - t0) / (t1 - t0)
    return samples[-1][1]


# --- the summary --------------------------------------------------------------------


def median(values: Iterable[Any]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def steps_to_reach(curve: Sequence[Sequence[Any]], target: float | None) -> int | None:
    """The first env-step count at which ``curve`` ((env_steps, success, ...) rows) reaches
    ``target`` (None: never)."""
    if target is None:
        return None
    for point in curve:
        if point[1] is not None and point[1] >= target:
            return point[0]
    return None


def cells(by_family: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    return {f"{family}/L{level}": rate for family, levels in by_family.items() for level, rate in levels.items()}


def summarise(per_seed: Sequence[Mapping[str, Any]], *, resamples: int = RESAMPLES) -> dict[str, Any]:
    """The headline figures: medians over seeds, differences with paired intervals, the
    steps (b) needs to reach (c)'s final success, and the cells (b) lifted from 0% to over 50%."""
    def arm(seed: Mapping[str, Any], name: str) -> Mapping[str, Any]:
        return seed["arms"].get(name) or {}

    def difference(first: str, second: str) -> dict[str, Any] | None:
        return median_difference([(arm(s, first).get("outcomes"), arm(s, second).get("outcomes")) for s in per_seed],
                                 resamples=resamples)

    out: dict[str, Any] = {"seeds": len(per_seed)}
    for first, second, key in (("sft_only", "curriculum", "curriculum_minus_sft"),
                               ("uniform", "curriculum", "curriculum_minus_uniform"),
                               ("more_sft", "curriculum", "curriculum_minus_more_sft"),
                               ("sft_only", "uniform", "uniform_minus_sft"),
                               ("sft_only", "more_sft", "more_sft_minus_sft")):
        figure = difference(first, second)
        out[f"{key}_pp"] = figure["pp"] if figure else None
        out[f"{key}_ci_pp"] = figure["ci_pp"] if figure else None
    for name in ARMS:
        out[f"{name}_success"] = median(arm(s, name).get("success") for s in per_seed)
        out[f"{name}_cpu_minutes"] = median(arm(s, name).get("cpu_minutes") for s in per_seed)
        out[f"{name}_env_steps"] = median(arm(s, name).get("env_steps") for s in per_seed)
    improved = [s for s in per_seed if s.get("uniform_improved")]
    out["uniform_improved_seeds"] = len(improved)
    out["curriculum_steps_to_uniform_final"] = median(s.get("curriculum_steps_to_uniform_final") for s in improved)
    out["uniform_env_steps_at_final"] = median(arm(s, "uniform").get("env_steps") for s in improved)
    table = cell_table(per_seed)
    out["cells_zero_to_over_half"] = [cell for cell, row in table.items()
                                      if row.get("sft_only") == 0.0 and (row.get("curriculum") or 0.0) > 0.5]
    return out


def cell_table(per_seed: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float | None]]:
    """family/level -> arm -> median over seeds of that cell's held-out success."""
    names = sorted({c for s in per_seed for a in s["arms"].values() if a for c in cells(a.get("by_family") or {})},
                   key=lambda c: (c.rsplit("/L", 1)[0], int(c.rsplit("/L", 1)[1])))
    return {cell: {name: median(cells((s["arms"].get(name) or {}).get("by_family") or {}).get(cell)
                                for s in per_seed) for name in ARMS} for cell in names}


# --- tables and plots ------------------------------------------------------------------


def _pct(value: Any) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def _ci(ci: Any) -> str:
    return "" if not ci else f"[{100 * ci[0]:.0f},{100 * ci[1]:.0f}]"


def _num(value: Any, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _pp(value: Any, ci: Any) -> str:
    if value is None:
        return "n/a (no per-task outcomes)"
    return f"{value:+.1f} pp  95% CI [{ci[0]:+.1f}, {ci[1]:+.1f}]"


def print_report(report: Mapping[str, Any], out: Any = None) -> None:
    """The tables ``deskdojo bench learning`` prints (``--json`` prints the report instead)."""
    import sys

    def say(text: str = "") -> None:
        print(text, file=out or sys.stdout)

    s, held = report["summary"], report["heldout"]
    say(f"learning bench: {s['seeds']} seeds, {report['env_step_budget']} env steps per GRPO arm, "
        f"{report['provider']} sandboxes; runs in {report['runs_root']}")
    say(f"held-out: {held['tasks']} tasks ({len(held['families'])} families x levels "
        f"{','.join(map(str, held['levels']))} x {held['per_level']}), split heldout, the same for every seed and arm")
    if held.get("warning"):
        say(f"WARNING: {held['warning']}")
    say(f"commit {report['git_commit']}{' (with uncommitted changes)' if report.get('git_dirty') else ''}; "
        f"intervals: bootstrap over tasks, {report['bootstrap']['resamples']} resamples, 95%")
    say()
    width = max(len(label) for label in ARM_LABELS.values())
    say(f"{'arm':<{width}}  {'median':>6}  per seed (95% CI)" + " " * 22 + f"{'env steps':>9}  {'CPU min':>7}")
    for name in ARMS:
        per = "  ".join(f"{_pct(a.get('success'))}{_ci(a.get('ci'))}"
                        for a in (seed["arms"].get(name) or {} for seed in report["per_seed"]))
        say(f"{ARM_LABELS[name]:<{width}}  {_pct(s[f'{name}_success']):>6}  {per:<40} "
            f"{_num(s[f'{name}_env_steps'], 0):>9}  {_num(s[f'{name}_cpu_minutes'], 2):>7}")
    say()
    say(f"(b)-(a), median over seeds: {_pp(s['curriculum_minus_sft_pp'], s['curriculum_minus_sft_ci_pp'])}")
    say(f"(b)-(c), median over seeds: {_pp(s['curriculum_minus_uniform_pp'], s['curriculum_minus_uniform_ci_pp'])}")
    say(f"(b)-(d), median over seeds: {_pp(s['curriculum_minus_more_sft_pp'], s['curriculum_minus_more_sft_ci_pp'])}")
    if s["uniform_improved_seeds"]:
        reached = s["curriculum_steps_to_uniform_final"]
        say(f"env steps for (b) to reach (c)'s final held-out success: "
            f"{'not reached' if reached is None else _num(reached, 0)} vs (c)'s "
            f"{_num(s['uniform_env_steps_at_final'], 0)} (median over the {s['uniform_improved_seeds']} seeds "
            f"where (c) improved on the SFT start)")
    else:
        say("env steps for (b) to reach (c)'s final held-out success: n/a, (c) did not improve on the SFT start")
    say(f"cells where (a) was 0% and (b) rose above 50% (medians over seeds): "
        f"{', '.join(s['cells_zero_to_over_half']) or 'none'}")
    say()
    say("held-out success per family x level (median over seeds):")
    table = report["cells"]
    cell_width = max([len(c) for c in table] + [10])
    say(f"  {'cell':<{cell_width}}" + "".join(f"  {label[:3]:>5}" for label in ARM_LABELS.values()))
    for cell, row in table.items():
        say(f"  {cell:<{cell_width}}" + "".join(f"  {_pct(row.get(name)):>5}" for name in ARMS))
    say()
    say("per-iteration diagnostics (mean over iterations; sums for replayed and level moves):")
    say(f"  {'arm':<11} {'seed':>4} {'iters':>5} {'train':>6} {'signal':>6} {'replay':>6} {'KL':>8} "
        f"{'entropy':>8} {'up':>3} {'down':>4}")
    for seed in report["per_seed"]:
        for name in ("curriculum", "uniform"):
            d = (seed["arms"].get(name) or {}).get("diagnostics_summary")
            if d:
                say(f"  {name:<11} {seed['seed']:>4} {d['iterations']:>5} {_pct(d['train_success']):>6} "
                    f"{_pct(d['signal_share']):>6} {d['replayed']:>6} {_num(d['kl'], 4):>8} "
                    f"{_num(d['entropy'], 3):>8} {d['promotions']:>3} {d['demotions']:>4}")
    for seed in report["per_seed"]:
        d = seed["arms"].get("more_sft") or {}
        if d:
            say(f"(d) seed {seed['seed']}: {d.get('demos')} new demos, {d.get('sft_steps')} SFT steps in "
                f"{d.get('chunks')} chunks, {_num(d.get('cpu_minutes'), 2)} CPU min vs (b)'s "
                f"{_num((seed['arms'].get('curriculum') or {}).get('cpu_minutes'), 2)}")
    say()
    say(report["cpu_note"])
    for name, path in report.get("plots", {}).items():
        say(f"plot ({name}): {path}")


def plot_curves(report: Mapping[str, Any], folder: Path) -> dict[str, str]:
    """Held-out success vs env steps and vs CPU minutes, one line per arm and seed."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from deskdojo.core.rundir import write_atomic

    colours = {"sft_only": "#7f7f7f", "curriculum": "#1f77b4", "uniform": "#ff7f0e", "more_sft": "#2ca02c"}
    written = {}
    for axis, index, label in (("env_steps", 0, "environment steps (GRPO rollouts; (d): oracle demo steps)"),
                               ("cpu_minutes", 2, "CPU minutes of the arm")):
        fig = Figure(figsize=(7, 4), dpi=100)
        ax = fig.add_subplot(1, 1, 1)
        for name in ARMS:
            for n, seed in enumerate(report["per_seed"]):
                curve = [(p[index], p[1]) for p in (seed["arms"].get(name) or {}).get("curve", [])
                         if p[index] is not None and p[1] is not None]
                if curve:
                    ax.plot(*zip(*curve), color=colours[name], marker="o", alpha=0.8,
                            label=ARM_LABELS[name] if n == 0 else None)
        ax.set_xlabel(label)
        ax.set_ylabel("held-out success")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.set_title("deskdojo bench learning (one line per seed)")
        ax.legend(loc="best", fontsize=8)
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        path = folder / f"curve_{axis}.png"
        write_atomic(path, buf.getvalue(), fsync=False)
        written[axis] = str(path)
    return written
