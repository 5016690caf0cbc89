"""The self-evolving loop, one iteration at a time::

    plan.propose(n) -> each task rolled out G times in parallel sandboxes (every copy reset
    to the same task) -> judge -> verdicts.jsonl -> learner.update (GRPO) -> plan.record
    (success and mean |advantage| per group) -> every K iterations held-out evaluation ->
    metrics.jsonl, curriculum.json, TensorBoard, plot -> checkpoint every N iterations

It runs until the budget (iterations, env steps, wall time) is spent or a stop arrives
(control.json, Ctrl-C, SIGTERM). A stop mid-iteration abandons that iteration: the run
keeps the last completed one (checkpointed on the way out) and a resume redoes the rest.
A ``kill -9`` at any moment resumes from the last checkpoint (see ``runstate``).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence, TextIO

from deskdojo.core.actions import action_to_dict
from deskdojo.core.control import ControlReader, write_status
from deskdojo.core.errors import JudgeUnanswered, SandboxError
from deskdojo.core.progress import HEARTBEAT_S, ProgressLine
from deskdojo.core.protocols import shown_task
from deskdojo.core.rundir import JsonlFile, RunDir, write_atomic
from deskdojo.core.types import EndReason, Step, Task, Trajectory, Verdict
from deskdojo.evolve.config import EvolveConfig
from deskdojo.evolve.metrics import (
    Progress, TensorBoard, learning_curve_table, mean, metrics_line, plot_learning_curve, std, success_table,
)
from deskdojo.evolve.parts import GroupOutcome, Parts
from deskdojo.evolve.runstate import (
    HELDOUT_FILE, Cursor, count_lines, discard_uncounted, read_checkpoint, rng_states, seed_everything,
    set_rng_states, write_checkpoint,
)

STATUS_INTERVAL_S = 0.25
PAUSE_POLL_S = 0.2
LOGS = ("tasks.jsonl", "verdicts.jsonl", "metrics.jsonl", HELDOUT_FILE)


class StopRequested(Exception):
    """The iteration was abandoned because a stop arrived (control.json or a signal)."""


@dataclass(slots=True)
class Played:
    """One judged episode. ``verdict`` is None for an ``error`` trajectory (excluded)."""

    task: Task
    trajectory: Trajectory
    verdict: Verdict | None


@dataclass(slots=True)
class Timing:
    rollout: float = 0.0
    judge: float = 0.0
    train: float = 0.0


@dataclass(slots=True)
class RunResult:
    """How the run ended: ``finished`` (budget spent) or ``stopped``; where it is now."""

    state: str
    iterations: int
    env_steps: int
    wall_s: float
    run_dir: Path
    heldout: list[dict[str, Any]] = field(default_factory=list)


class Evolver:
    """Runs the loop for one run directory. ``resume=True`` continues from its last
    checkpoint; otherwise it starts at iteration 0 (writing checkpoint 0 first)."""

    def __init__(self, config: EvolveConfig, run: RunDir, parts: Parts, *, resume: bool = False,
                 out: TextIO | None = None, handle_signals: bool = True,
                 after_iteration: Callable[[int], None] | None = None, deadline: float | None = None):
        self.config = config
        self.run = run
        self.parts = parts
        self.resume = resume
        self.handle_signals = handle_signals
        self.after_iteration = after_iteration
        self.deadline = deadline  # time.monotonic() past which no iteration starts (this session only)
        budget = config.budget
        self.progress = Progress(out, total_iterations=budget.iterations, total_env_steps=budget.env_steps,
                                 wall_seconds=budget.wall_seconds)
        self.tb = TensorBoard(run.path / "tb")
        self.control = ControlReader(run.path)
        self.cursor = Cursor()
        self.state = "starting"
        self.stop_reason: str | None = None
        self._stop = threading.Event()
        self._signals = 0
        self._slots: list[dict[str, Any]] = []
        self._status_at = 0.0
        self._session_start = time.monotonic()
        self._wall_at_start = 0.0
        self._last_iteration_s = 0.0  # training part of the last iteration
        self._last_eval_s = 0.0  # the last held-out evaluation (the final iteration runs one)
        self._checkpointed = -1

    # --- the run ----------------------------------------------------------------

    def run_loop(self) -> RunResult:
        previous = self._install_signals()
        try:
            self._start()
            while not self._budget_spent() and not self._poll_stop():
                try:
                    self._iteration(self.cursor.iteration + 1)
                except StopRequested:
                    break
                if self.after_iteration is not None:
                    self.after_iteration(self.cursor.iteration)
                if self._stop.is_set():
                    break
            final = "stopped" if self._stop.is_set() else "finished"
            if final == "finished":
                self._final_evaluation()
            if self._checkpointed != self.cursor.iteration:
                self._checkpoint()
            if final == "stopped":  # what an abandoned iteration wrote is not the run's
                discard_uncounted(self.run, self.cursor)
            self.state = "finished"
            self._write_status(force=True)
            self.progress.close()
            heldout = list(JsonlFile(self.run.path / HELDOUT_FILE).read())
            if final == "stopped":
                self.progress.note(f"stopped ({self.stop_reason}); the run keeps iteration "
                                   f"{self.cursor.iteration}: resume with `deskdojo evolve --resume {self.run.path}`")
            return RunResult(final, self.cursor.iteration, self.cursor.env_steps, self._wall(),
                             self.run.path, heldout)
        except BaseException:
            self.state = "failed"
            self._write_status(force=True)
            raise
        finally:
            self._restore_signals(previous)
            self.tb.close()

    def _start(self) -> None:
        checkpoint = self.run.latest_checkpoint() if self.resume else None
        if checkpoint is not None:
            restored = read_checkpoint(checkpoint)
            self.cursor = restored.cursor
            self.cursor.resumes += 1
            removed = discard_uncounted(self.run, self.cursor)
            self.parts.learner.load(restored.learner_folder)
            self.parts.plan.load_state_dict(restored.plan_state)
            set_rng_states(restored.rng)
            self._checkpointed = self.cursor.iteration
            self.tb.purge_step = self.cursor.iteration + 1
            dropped = {k: v for k, v in removed.items() if v}
            self.progress.note(f"resumed {self.run.path} at iteration {self.cursor.iteration} "
                               f"({self.cursor.env_steps} env steps)"
                               + (f"; superseded after the checkpoint: {dropped}" if dropped else ""))
        else:
            if self.resume:  # killed before checkpoint 0: nothing counts yet
                discard_uncounted(self.run, Cursor(lines={name: 0 for name in LOGS}))
            seed_everything(self.config.seed)
        self._wall_at_start = self.cursor.wall_s
        self._session_start = time.monotonic()
        if self.deadline is not None:  # the bar fills by whichever ends first
            left = self._wall_at_start + max(0.0, self.deadline - self._session_start)
            self.progress.wall_seconds = min(self.progress.wall_seconds or left, left)
        self.state = "running"
        self._write_status(force=True)
        self._publish(self.cursor.iteration)
        if checkpoint is None:
            if self.config.eval.at_start and self.parts.plan.heldout():
                t0 = time.monotonic()
                record = self._evaluate(0)
                self._last_eval_s = time.monotonic() - t0
                if record is not None:
                    self._last_iteration_s = self._first_iteration_guess(self._last_eval_s, record["eval_env_steps"])
            self._count_lines()
            self._checkpoint()

    def _budget_spent(self) -> bool:
        budget = self.config.budget
        if budget.iterations is not None and self.cursor.iteration >= budget.iterations:
            return True
        if budget.env_steps is not None and self.cursor.env_steps >= budget.env_steps:
            return True
        if budget.wall_seconds is not None:
            # do not start an iteration that would likely end past the budget
            if self._wall() + self._next_iteration_s() > budget.wall_seconds:
                return True
        return self.deadline is not None and time.monotonic() + self._next_iteration_s() > self.deadline

    def _next_iteration_s(self) -> float:
        """How long one more iteration would likely take, its final evaluation included."""
        return self._last_iteration_s + self._last_eval_s

    def _first_iteration_guess(self, eval_s: float, eval_steps: int) -> float:
        """Before any iteration is timed: the evaluation's time per step of all sandboxes at
        once, times the steps of an iteration whose episodes all run to the step cap (greedy
        evaluation often stops sooner than sampled training), so that a deadline close after
        the first evaluation is not met with a first iteration it cannot hold."""
        size = max(1, len(self.parts.pool))
        per_step = eval_s / max(1, -(-eval_steps // size))
        batches = -(-self.config.tasks_per_iteration * self.config.group_size // size)
        cap = getattr(self.parts.rollout_config, "max_steps", None) or 1
        return per_step * batches * cap

    def _final_evaluation(self) -> None:
        """The learning curve's last point. An iteration evaluates when it expects to be the
        last; when the loop then ended by the clock after one that did not (its estimate
        said another would fit, then the next check said not), evaluate now: every start
        of an iteration kept the time of one evaluation free for this."""
        if self.cursor.iteration == 0 or not self.parts.plan.heldout():
            return
        records = list(JsonlFile(self.run.path / HELDOUT_FILE).read())
        if records and records[-1]["iteration"] == self.cursor.iteration:
            return
        t0 = time.monotonic()
        if self._evaluate(self.cursor.iteration) is not None:
            self._last_eval_s = time.monotonic() - t0
            self._count_lines()
            self._checkpoint()  # replaces this iteration's checkpoint: the cursor counts the evaluation

    def _wall(self) -> float:
        return self._wall_at_start + (time.monotonic() - self._session_start)

    # --- one iteration ---------------------------------------------------------

    def _iteration(self, iteration: int) -> None:
        started = time.monotonic()
        cfg = self.config
        start_plan = self.parts.plan.state_dict()
        start_rng = rng_states()
        policy = self.parts.learner.policy
        start_calls = policy.rng_state()
        start_logged = len(self.cursor.logged_task_ids)
        # a line of its own only when the iteration is long (its bar line comes at its end)
        line = self._phase_line(f"iteration {iteration}", cfg.tasks_per_iteration * cfg.group_size,
                                unit="episodes", delay_s=HEARTBEAT_S, transient=True)
        line.update(0, info="proposing tasks")
        try:
            t0 = time.monotonic()
            tasks = self.parts.plan.propose(cfg.tasks_per_iteration)
            admission_s = time.monotonic() - t0  # drawing tasks: admission checks of new ones, mostly
            admissions = self._log_admissions()
            self._log_tasks(tasks)
            episodes = [(task, f"it{iteration:05d}-t{k:02d}-g{g:02d}")
                        for k, task in enumerate(tasks) for g in range(cfg.group_size)]
            timing = Timing()
            line.update(0, info="rolling out")
            played, members_of, explored = self._play_groups(tasks, episodes, timing, line)
            if self._stop.is_set():
                raise StopRequested
        except BaseException as exc:
            line.close()
            if not isinstance(exc, StopRequested):
                raise
            # abandon: the plan and RNGs go back to how the iteration found them
            self.parts.plan.load_state_dict(start_plan)
            set_rng_states(start_rng)
            if start_calls is not None:
                policy.set_rng_state(start_calls)
            del self.cursor.logged_task_ids[start_logged:]
            raise

        groups, errors = [], 0
        for k, task in enumerate(tasks):
            valid = [(p.task, p.trajectory, p.verdict) for p in members_of[k] if p.verdict is not None]
            errors += len(members_of[k]) - len(valid)
            if valid:
                groups.append(valid)
        line.update(len(played), info="GRPO update")
        t0 = time.monotonic()
        try:
            update = self.parts.learner.update(groups)
            self._publish(iteration)
        finally:
            line.close()
        timing.train = time.monotonic() - t0
        outcomes = list(update.groups) or [
            GroupOutcome(g[0][0], tuple(v.success for _, _, v in g), 0.0, False) for g in groups]
        retired_before = len(self.parts.plan.snapshot().get("retired", ()))
        self.parts.plan.record(outcomes, iteration=iteration)
        snapshot = self.parts.plan.snapshot()
        retired = len(snapshot.get("retired", ())) - retired_before
        # the scheduler labels each level move with its iteration; its history is bounded,
        # so the count is kept here, per iteration, where nothing drops it
        moves = [m for m in snapshot.get("moves", ()) if m.get("iteration") == iteration]

        steps = sum(len(p.trajectory.steps) for p in played)
        self.cursor.iteration = iteration
        self.cursor.env_steps += steps
        self.cursor.trajectory_ids.extend(p.trajectory.id for p in played)
        heldout = None
        eval_s = 0.0
        next_iteration_s = time.monotonic() - started + self._last_eval_s
        if iteration % cfg.eval.every == 0 or self._is_last_iteration(next_iteration_s):
            t0 = time.monotonic()
            heldout = self._evaluate(iteration)
            eval_s = self._last_eval_s = time.monotonic() - t0

        valid_played = [p for p in played if p.verdict is not None]
        tokens = sum(len(s.token_ids) for p in played for s in p.trajectory.steps)
        stats = update.stats
        line = metrics_line(
            iteration=iteration, time=time.time(), wall_s=round(self._wall(), 3), env_steps=self.cursor.env_steps,
            train_success=mean([float(p.verdict.success) for p in valid_played]),
            heldout_success=heldout["success"] if heldout else None,
            success_by_family=success_table((p.task.family, p.task.level, p.verdict.success) for p in valid_played),
            heldout_by_family=heldout["by_family"] if heldout else None,
            reward_mean=stats.reward_mean if stats.reward_mean is not None else
            mean([p.verdict.score for p in valid_played]),
            grounding=mean([p.verdict.grounding for p in valid_played if p.verdict.grounding is not None]),
            adv_mean_abs=mean([abs(a) for a in update.advantages]) if update.advantages else
            mean([o.mean_abs_advantage for o in outcomes]),
            adv_std=std(list(update.advantages)),
            loss=stats.loss, kl=stats.kl, entropy=stats.entropy, clip_frac=stats.clip_fraction,
            tokens_per_s=tokens / timing.rollout if timing.rollout > 0 else None,
            env_steps_per_s=steps / timing.rollout if timing.rollout > 0 else None,
            time_split={"rollout": round(timing.rollout, 3), "judge": round(timing.judge, 3),
                        "train": round(timing.train, 3), "admission": round(admission_s, 3)},
            replayed=stats.replayed, rehearsed=stats.rehearsed, retired=retired,
            promotions=sum(m["to"] > m["from"] for m in moves), demotions=sum(m["to"] < m["from"] for m in moves),
            admitted=sum(bool(a["admitted"]) for a in admissions),
            rejected=sum(not a["admitted"] for a in admissions),
            groups_used=stats.groups_used, groups_dropped=len(tasks) - stats.groups_used,
            errors=errors, explored=explored if cfg.explore_failed_only else None)
        self.run.jsonl("metrics.jsonl").append(line)
        write_atomic(self.run.path / "curriculum.json",
                     json.dumps(self.parts.plan.snapshot(), indent=1).encode(), fsync=False)
        self.tb.write(line)
        self.cursor.wall_s = self._wall()
        self._count_lines()
        self.progress.update(line)
        self._last_iteration_s = time.monotonic() - started - eval_s
        if iteration % cfg.checkpoint_every == 0 or self._budget_spent():
            self._checkpoint()
        self._write_status(force=True)

    def _is_last_iteration(self, iteration_s: float) -> bool:
        budget = self.config.budget
        if budget.iterations is not None and self.cursor.iteration >= budget.iterations:
            return True
        if budget.wall_seconds is not None and self._wall() + iteration_s > budget.wall_seconds:
            return True
        if self.deadline is not None and time.monotonic() + iteration_s > self.deadline:
            return True
        return budget.env_steps is not None and self.cursor.env_steps >= budget.env_steps

    def _log_admissions(self) -> list[dict[str, Any]]:
        """Write the admission checks the plan ran while proposing to tasks.jsonl (each with
        its task, so an admitted task is not logged again by ``_log_tasks``)."""
        records = self.parts.plan.drain_admissions()
        for record in records:
            self.run.jsonl("tasks.jsonl").append(record)
            self.cursor.logged_task_ids.append(record["task"]["id"])
        return records

    def _log_tasks(self, tasks: Sequence[Task]) -> None:
        logged = set(self.cursor.logged_task_ids)
        for task in tasks:
            if task.id not in logged:
                self.run.jsonl("tasks.jsonl").append(task)
                self.cursor.logged_task_ids.append(task.id)
                logged.add(task.id)

    # --- playing and judging ---------------------------------------------------

    def _phase_line(self, label: str, total: int, **options: Any) -> ProgressLine:
        """A progress line for part of the run, on the iteration bar's stream: after the
        bar's line (a terminal keeps both), or over it when the line is ``transient``."""
        if not options.get("transient"):
            self.progress.close()
        return ProgressLine(label, total, stream=self.progress.stream, **options)

    def _play_groups(self, tasks: Sequence[Task], episodes: Sequence[tuple[Task, str]], timing: Timing,
                     line: ProgressLine | None) -> tuple[list[Played], list[list[Played]], int]:
        """Play the iteration's groups: what was played, each task's members, and how many
        groups were played again exploring. With ``explore_failed_only`` the episodes are
        played without exploration first, then each task whose rollouts all failed once
        more, as many episodes (ids ``...-g{G + g}``), exploring (at ``explore_failed_rate``);
        its group is all of them."""
        size = self.config.group_size
        if not self.config.explore_failed_only:
            played = self._play(episodes, timing, line)
            return played, [played[k * size:(k + 1) * size] for k in range(len(tasks))], 0
        policy = self.parts.learner.policy
        try:
            policy.set_exploring(False)
            played = self._play(episodes, timing, line)
            members_of = [played[k * size:(k + 1) * size] for k in range(len(tasks))]
            failed = [] if self._stop.is_set() else [
                k for k, members in enumerate(members_of)
                if not any(p.verdict is not None and p.verdict.success for p in members)]
            again = [(task, f"{tid[:tid.rindex('-g')]}-g{size + g:02d}") for k in failed
                     for g, (task, tid) in enumerate(episodes[k * size:(k + 1) * size])]
            policy.set_exploring(True, rate=self.config.explore_failed_rate)
            if again and line is not None and line.total is not None:
                line.total += len(again)  # the bar counts the episodes played again too
            replayed = self._play(again, timing, line, counted=len(played)) if again else []
        finally:
            policy.set_exploring(True)
        for n, k in enumerate(failed):
            members_of[k] = members_of[k] + replayed[n * size:(n + 1) * size]
        return played + replayed, members_of, len(failed)

    def _play(self, episodes: Sequence[tuple[Task, str]], timing: Timing,
              line: ProgressLine | None = None, *, greedy: bool = False, counted: int = 0) -> list[Played]:
        """Roll out ``episodes`` (task, trajectory id) in batches of the pool's size; judge
        each batch while its sandboxes still show the final state. ``line`` counts the
        episodes played and judged (after ``counted`` it counted before), and the successes.
        With a Ray fleet the workers play them (``greedy``: how they decode; here the
        learner's ``evaluation`` sets it)."""
        parts = self.parts
        if parts.fleet is not None:
            return self._play_on_ray(episodes, timing, line, greedy=greedy)
        played: list[Played] = []
        size = len(parts.pool)
        for start in range(0, len(episodes), size):
            batch = episodes[start:start + size]
            sandboxes = [parts.pool[i] for i in range(len(batch))]
            self._slots = [{"name": s.name, "socket": s.control_socket,
                            "task_id": t.id, "instruction": t.instruction, "step": 0, "last_action": None,
                            "trajectory": f"trajectories/{tid}"} for i, ((t, tid), s) in enumerate(zip(batch, sandboxes))]
            ids = iter([tid for _, tid in batch])
            t0 = time.monotonic()
            trajectories = parts.rollout(
                parts.learner.policy, [t for t, _ in batch], sandboxes,
                lambda _tid, task, policy_id: self.run.trajectory_writer(next(ids), task.id, policy_id),
                config=parts.rollout_config, probe=parts.probe, on_step=self._on_step, stop=self._poll_stop)
            timing.rollout += time.monotonic() - t0
            if self._stop.is_set():
                return played
            t0 = time.monotonic()
            judged = self._judge_batch([t for t, _ in batch], trajectories, sandboxes)
            for (task, _), trajectory, (verdict, error), sandbox in zip(batch, trajectories, judged, sandboxes):
                if trajectory.end is not EndReason.ERROR:
                    task = shown_task(sandbox, task)  # what the policy was told: the learner's prompt too
                if error is not None:  # the sandbox failed under the judge: the episode is an error
                    trajectory = self.run.trajectory_writer(trajectory.id, task.id, trajectory.policy_id).finish(
                        EndReason.ERROR, error=error)
                if verdict is not None:
                    self.run.jsonl("verdicts.jsonl").append(verdict)
                played.append(Played(task, trajectory, verdict))
            timing.judge += time.monotonic() - t0
            if line is not None:
                wins = sum(1 for p in played if p.verdict is not None and p.verdict.success)
                line.update(counted + len(played), info=f"{wins} succeeded")
            parts.pool.check_health()  # replace sandboxes that died during the batch
        return played

    def _play_on_ray(self, episodes: Sequence[tuple[Task, str]], timing: Timing, line: ProgressLine | None,
                     *, greedy: bool) -> list[Played]:
        """The workers play and judge; each episode is written here as it arrives, in the
        files a local run writes, and the verdicts in episode order at the end. Episodes of
        an older policy version are refused (see ``ray_workers.record_episode``)."""
        from deskdojo.evolve.ray_workers import record_episode

        version = self.cursor.iteration  # the weights published after the last completed update
        recorded: dict[int, Played] = {}
        self._slots = []

        def arrived(index: int, result: Any) -> None:
            task = episodes[index][0]
            trajectory, verdict = record_episode(self.run, task, result, version=version)
            recorded[index] = Played(task, trajectory, verdict)
            if line is not None:
                wins = sum(1 for p in recorded.values() if p.verdict is not None and p.verdict.success)
                line.update(len(recorded), info=f"{wins} succeeded")

        t0 = time.monotonic()
        done = self.parts.fleet.play(episodes, greedy=greedy, stop=self._poll_stop, on_result=arrived)
        timing.rollout += time.monotonic() - t0  # played and judged on the workers, overlapped
        if done is None:
            return [recorded[i] for i in sorted(recorded)]
        played = [recorded[i] for i in range(len(episodes))]
        for p in played:
            if p.verdict is not None:
                self.run.jsonl("verdicts.jsonl").append(p.verdict)
        return played

    def _publish(self, version: int) -> None:
        """Hand the learner's weights to the Ray workers as policy ``version`` (no fleet: nothing)."""
        if self.parts.fleet is not None:
            self.parts.fleet.publish(self.parts.learner.policy, version)

    def _judge_batch(self, tasks: Sequence[Task], trajectories: Sequence[Trajectory],
                     sandboxes: Sequence[Any]) -> list[tuple[Verdict | None, str | None]]:
        """Judge a batch, one thread per sandbox: the state judge mostly waits for each
        sandbox's screen and apps to settle, and those waits overlap. Results keep the
        batch's order, so verdicts.jsonl does not depend on thread timing. Each result is
        (verdict, None), or (None, why) when the sandbox failed under the judge or a model
        judge gave no answer that parses (neither is the agent's failure: the episode
        becomes an error); an ``error`` episode is (None, None). Any other exception (a bug
        in a check: ``JudgeError``) stops the run."""
        def judge_one(slot: int) -> tuple[Verdict | None, str | None]:
            if trajectories[slot].end is EndReason.ERROR:
                return None, None
            try:
                return self.parts.judge.judge(tasks[slot], trajectories[slot], sandboxes[slot]), None
            except SandboxError as exc:
                return None, f"the sandbox failed while the episode was judged: {exc}"
            except JudgeUnanswered as exc:
                return None, f"the judge gave no verdict: {exc}"

        if len(tasks) == 1:
            return [judge_one(0)]
        with ThreadPoolExecutor(max_workers=len(tasks), thread_name_prefix="judge") as threads:
            return list(threads.map(judge_one, range(len(tasks))))

    def _evaluate(self, iteration: int) -> dict[str, Any] | None:
        """Held-out tasks, once each, greedy or sampled as configured; never trained on.
        None when a stop cut it short (its trajectories are then never counted)."""
        tasks = self.parts.plan.heldout()
        self._log_tasks(tasks)
        episodes = [(task, f"ev{iteration:05d}-{k:03d}") for k, task in enumerate(tasks)]
        timing = Timing()
        with self._phase_line(f"held-out evaluation (iteration {iteration})", len(episodes), unit="tasks") as line, \
                self.parts.learner.evaluation(self.config.eval.greedy):
            played = self._play(episodes, timing, line, greedy=self.config.eval.greedy)
        if self._stop.is_set() and len(played) < len(episodes):
            return None
        judged = [p for p in played if p.verdict is not None]
        steps = sum(len(p.trajectory.steps) for p in played)
        self.cursor.eval_env_steps += steps
        self.cursor.trajectory_ids.extend(p.trajectory.id for p in played)
        record = {"iteration": iteration, "env_steps": self.cursor.env_steps, "time": time.time(),
                  "success": mean([float(p.verdict.success) for p in judged]),
                  "by_family": success_table((p.task.family, p.task.level, p.verdict.success) for p in judged),
                  "tasks": len(tasks), "errors": len(played) - len(judged), "eval_env_steps": steps,
                  "greedy": self.config.eval.greedy,
                  # per task, so a reader can bootstrap intervals over tasks (success null: error)
                  "outcomes": [{"task": p.task.id, "family": p.task.family, "level": p.task.level,
                                "success": None if p.verdict is None else bool(p.verdict.success)}
                               for p in played]}
        JsonlFile(self.run.path / HELDOUT_FILE).append(record)
        heldout = list(JsonlFile(self.run.path / HELDOUT_FILE).read())
        try:
            plot_learning_curve(self.run.path / "learning_curve.png",
                                list(self.run.jsonl("metrics.jsonl").read()), heldout)
        except ImportError as exc:
            self.progress.note(f"learning curve not drawn ({exc})")
        return record

    # --- status, control, signals ----------------------------------------------

    def _on_step(self, slot: int, task: Task, step: Step) -> None:
        if slot < len(self._slots):
            self._slots[slot]["step"] = step.index + 1
            self._slots[slot]["last_action"] = action_to_dict(step.action) if step.action is not None else None
        self._write_status()

    def _poll_stop(self) -> bool:
        """Between steps: act on control commands; block while paused."""
        self._handle_command(self.control.poll())
        while self.state == "paused" and not self._stop.is_set():
            time.sleep(PAUSE_POLL_S)
            self._handle_command(self.control.poll())
        return self._stop.is_set()

    def _handle_command(self, command: str | None) -> None:
        if command == "stop":
            self.request_stop("stop requested through control.json")
        elif command == "pause" and self.state == "running":
            self.state = "paused"
            self._write_status(force=True)
        elif command == "resume" and self.state == "paused":
            self.state = "running"
            self._write_status(force=True)

    def request_stop(self, reason: str) -> None:
        self.stop_reason = self.stop_reason or reason
        self._stop.set()
        if self.state in ("running", "paused"):
            self.state = "stopping"
            self._write_status(force=True)

    def _write_status(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._status_at < STATUS_INTERVAL_S:
            return
        self._status_at = now
        write_status(self.run.path, {"state": self.state, "pid": os.getpid(), "iteration": self.cursor.iteration,
                                     "env_steps": self.cursor.env_steps, "sandboxes": self._slots})

    def _install_signals(self) -> dict[int, Any]:
        if not self.handle_signals or threading.current_thread() is not threading.main_thread():
            return {}

        def handler(signum: int, frame: Any) -> None:
            self._signals += 1
            if self._signals > 1:
                raise KeyboardInterrupt  # a second Ctrl-C: stop now, sandboxes still close
            self.request_stop(f"{signal.Signals(signum).name} received")
            self.progress.note("stopping after this step (Ctrl-C again to stop at once)")

        previous = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)
        return previous

    @staticmethod
    def _restore_signals(previous: dict[int, Any]) -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    # --- checkpoints ------------------------------------------------------------

    def _count_lines(self) -> None:
        self.cursor.lines = {name: count_lines(self.run.path / name) for name in LOGS}

    def _checkpoint(self) -> None:
        """Checkpoint the cursor as it stands: log line counts are taken when an iteration
        completes, so lines of an abandoned iteration never count."""
        self.cursor.wall_s = self._wall()
        write_checkpoint(self.run, self.cursor, learner=self.parts.learner,
                         plan_state=self.parts.plan.state_dict(), rng=rng_states())
        self._checkpointed = self.cursor.iteration


def final_table(result: RunResult) -> str:
    return learning_curve_table(result.heldout)
