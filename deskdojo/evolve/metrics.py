"""What an evolve run reports: one metrics.jsonl line per iteration (the panel's keys),
the same scalars to TensorBoard, the learning-curve PNG, and the terminal's progress
line and final table. matplotlib and tensorboard load only when first used.
"""

from __future__ import annotations

import math
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence, TextIO

METRIC_KEYS = ("iteration", "time", "wall_s", "env_steps", "train_success", "heldout_success",
               "success_by_family", "heldout_by_family", "reward_mean", "grounding", "adv_mean_abs", "adv_std",
               "loss", "kl", "entropy", "clip_frac", "tokens_per_s", "env_steps_per_s", "time_split",
               "groups_used", "groups_dropped", "errors", "replayed", "rehearsed", "retired", "admitted",
               "rejected", "promotions", "demotions", "explored")
"""Exactly the keys of a metrics.jsonl line (the panel reads them). ``errors``: the
iteration's training episodes that ended as ``error`` (a sandbox died or failed, also
under the judge); they are in no group and never scored. ``replayed``: all-fail groups
that got a stored success; ``rehearsed``: stored successes of other families and levels
the update also trained on (``grpo.rehearsal``); ``retired``: tasks newly retired (mastered); ``admitted`` and
``rejected``: admission checks run while proposing (each task is checked once per run);
``promotions`` and ``demotions``: the scheduler's level moves this iteration; ``explored``:
with ``explore_failed_only``, the groups played again exploring (null without it)."""

SCALARS = ("train_success", "heldout_success", "reward_mean", "grounding", "adv_mean_abs", "adv_std", "loss", "kl",
           "entropy", "clip_frac", "tokens_per_s", "env_steps_per_s", "groups_used", "groups_dropped", "errors",
           "replayed", "rehearsed", "retired", "admitted", "rejected", "promotions", "demotions")


def success_table(results: Iterable[tuple[str, int, bool]]) -> dict[str, dict[str, float]]:
    """``{family: {level: rate}}`` from (family, level, success) rows."""
    cells: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    for family, level, success in results:
        cells[family][str(level)].append(bool(success))
    return {family: {level: sum(v) / len(v) for level, v in sorted(levels.items())}
            for family, levels in sorted(cells.items())}


def mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def std(values: Sequence[float]) -> float | None:
    if not values:
        return None
    m = sum(values) / len(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / len(values))


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def metrics_line(**values: Any) -> dict[str, Any]:
    """A metrics record with exactly ``METRIC_KEYS`` (missing ones are null)."""
    unknown = set(values) - set(METRIC_KEYS)
    if unknown:
        raise KeyError(f"not metrics keys: {sorted(unknown)}")
    return {key: _finite(values.get(key)) for key in METRIC_KEYS}


class TensorBoard:
    """Scalars under ``tb/``; a no-op (with one warning) when tensorboard cannot load."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.purge_step: int | None = None  # on resume: drop events of iterations being redone
        self._writer: Any = None
        self._failed = False

    def write(self, line: Mapping[str, Any]) -> None:
        if self._failed:
            return
        if self._writer is None:
            try:
                from deskdojo.agent.train.tensorboard import summary_writer

                self._writer = summary_writer(self.folder, purge_step=self.purge_step)
            except Exception as exc:  # tensorboard missing or broken: metrics.jsonl still has it all
                print(f"deskdojo: TensorBoard disabled ({exc})", file=sys.stderr)
                self._failed = True
                return
        step = int(line["iteration"])
        for key in SCALARS:
            if line.get(key) is not None:
                self._writer.add_scalar(key, float(line[key]), step)
        for part, seconds in (line.get("time_split") or {}).items():
            self._writer.add_scalar(f"time/{part}", float(seconds), step)
        self._writer.add_scalar("env_steps", float(line["env_steps"]), step)
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def plot_learning_curve(path: Path, metrics: Sequence[Mapping[str, Any]],
                        heldout: Sequence[Mapping[str, Any]]) -> Path:
    """Held-out and training success against env steps, written atomically as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from deskdojo.core.rundir import write_atomic

    fig = Figure(figsize=(7, 4), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    train = [(m["env_steps"], m["train_success"]) for m in metrics if m.get("train_success") is not None]
    held = [(h["env_steps"], h["success"]) for h in heldout if h.get("success") is not None]
    if train:
        ax.plot(*zip(*train), color="#999999", marker=".", label="training success (iteration)")
    if held:
        ax.plot(*zip(*held), color="#1f77b4", marker="o", linewidth=2, label="held-out success")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("success rate")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title("deskdojo learning curve")
    if train or held:
        ax.legend(loc="lower right")
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    write_atomic(path, buf.getvalue(), fsync=False)
    return path


class Progress:
    """One line per iteration, rewritten in place with ``\\r`` on a terminal (stderr by
    default; none with ``--quiet``, whose notes still print)."""

    def __init__(self, stream: TextIO | None = None, *, total_iterations: int | None = None,
                 total_env_steps: int | None = None, wall_seconds: float | None = None):
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.total_iterations = total_iterations
        self.total_env_steps = total_env_steps
        self.wall_seconds = wall_seconds
        self._last_width = 0

    def _fraction(self, line: Mapping[str, Any]) -> float:
        parts = []
        if self.total_iterations:
            parts.append(line["iteration"] / self.total_iterations)
        if self.total_env_steps:
            parts.append(line["env_steps"] / self.total_env_steps)
        if self.wall_seconds:
            parts.append(line["wall_s"] / self.wall_seconds)
        return min(1.0, max(parts)) if parts else 0.0

    def update(self, line: Mapping[str, Any]) -> None:
        from deskdojo.core.progress import bar, duration, is_quiet

        if is_quiet():
            return
        fraction = self._fraction(line)
        held = line.get("heldout_success")
        text = (f"{bar(fraction)} {fraction:4.0%} it {line['iteration']:>3}  steps {line['env_steps']:>6}  "
                f"train {_pct(line.get('train_success'))}  held-out {_pct(held)}  "
                f"loss {_num(line.get('loss'))}  {line['wall_s']:6.0f}s")
        if self.wall_seconds:  # the same words as the warm start's progress line
            text += f"  time limit in {duration(self.wall_seconds - line['wall_s'])}"
        if line.get("errors"):  # sandbox trouble is news: say it only when there is some
            text += f"  errors {line['errors']}"
        if self.tty:
            pad = max(0, self._last_width - len(text))
            self.stream.write("\r" + text + " " * pad)
            self._last_width = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def note(self, message: str) -> None:
        if self.tty and self._last_width:
            self.stream.write("\n")
            self._last_width = 0
        self.stream.write(message + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self._last_width:
            self.stream.write("\n")
            self._last_width = 0
        self.stream.flush()


def _pct(value: Any) -> str:
    return "  -  " if value is None else f"{100 * value:4.0f}%"


def _num(value: Any) -> str:
    return "   -   " if value is None else f"{value:7.4f}"


def learning_curve_table(heldout: Sequence[Mapping[str, Any]]) -> str:
    """Held-out success per evaluation, with each family/level cell."""
    if not heldout:
        return "no held-out evaluation was run"
    cells = sorted({f"{fam}/L{level}" for h in heldout for fam, levels in (h.get("by_family") or {}).items()
                    for level in levels})
    header = f"{'iteration':>9} {'env_steps':>9} {'held-out':>8}" + "".join(f" {c:>18}" for c in cells)
    rows = [header, "-" * len(header)]
    for h in heldout:
        by = h.get("by_family") or {}
        values = []
        for cell in cells:
            fam, level = cell.rsplit("/L", 1)
            rate = by.get(fam, {}).get(level)
            values.append(f" {_pct(rate):>18}")
        rows.append(f"{h['iteration']:>9} {h['env_steps']:>9} {_pct(h.get('success')):>8}" + "".join(values))
    return "\n".join(rows)


def now() -> float:
    return time.time()
