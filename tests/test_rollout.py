"""Rollouts: lock-step batching, every way an episode ends, files written step by step."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pytest

from deskdojo.agent.rollout import STOPPED_MESSAGE, RolloutConfig, RolloutStats, rollout
from deskdojo.core.actions import Click, Done, Fail, Wait
from deskdojo.core.errors import ConfigError
from deskdojo.core.fakes import WAITING, ScriptedPolicy
from deskdojo.core.protocols import Decision, DeterministicPolicy
from deskdojo.core.rundir import RunDir, read_trajectory
from deskdojo.core.types import EndReason, Locator, Observation, OracleStep, Task
from deskdojo.vm.fake import FakeSandbox, synthetic_frames

LABELS = ["apple", "pear", "plum", "fig"]


def task(task_id: str = "t", max_steps: int = 15, **fields: Any) -> Task:
    return Task(id=task_id, instruction="do it", family="test", max_steps=max_steps, **fields)


def fakes(n: int) -> list[FakeSandbox]:
    return [FakeSandbox(synthetic_frames(64, 48), name=f"fake-{i}") for i in range(n)]


class PerSlotPolicy(DeterministicPolicy):
    """Plays ``scripts[slot]``, telling slots apart by task id; records every batch."""

    policy_id = "per-slot"

    def __init__(self, scripts: dict[str, Sequence[Any]], delay_s: float = 0.0):
        self.scripts = scripts
        self.delay_s = delay_s
        self.batches: list[list[str]] = []
        self.seen: list[Observation] = []

    def act(self, observations, tasks, histories) -> list[Decision]:
        self.batches.append([t.id for t in tasks])
        self.seen.extend(observations)
        time.sleep(self.delay_s)
        out = []
        for task_, history in zip(tasks, histories):
            item = self.scripts[task_.id][len(history)]
            if isinstance(item, str):  # garbage: an answer that did not parse
                out.append(Decision(text=item, action=None, parse_error=f"cannot parse {item!r}"))
            else:
                out.append(Decision(text=repr(item), action=item, token_ids=(1, 2), logprobs=(-0.1, -0.2)))
        return out


def test_config_is_closed_and_checked() -> None:
    with pytest.raises(ConfigError, match="bogus"):
        RolloutConfig.from_dict({"bogus": 1})
    with pytest.raises(ConfigError, match="max_steps"):
        RolloutConfig(max_steps=0)
    assert RolloutConfig.from_dict({"max_steps": 4}).max_steps == 4


def test_lockstep_batches_and_every_end(tmp_path: Path) -> None:
    tasks = [task("done"), task("fail"), task("cap", max_steps=3), task("garbage")]
    policy = PerSlotPolicy({
        "done": [Click(5, 5), Done()],
        "fail": [Fail("cannot")],
        "cap": [Click(1, 1)] * 10,
        "garbage": ["blah", Click(3, 3), Done()],
    })
    run = RunDir.create(tmp_path / "run", {})
    stats = RolloutStats()
    seen_steps: list[tuple[int, str, int]] = []
    trajectories = rollout(policy, tasks, fakes(4), run, config=RolloutConfig(max_steps=8), stats=stats,
                           on_step=lambda slot, t, step: seen_steps.append((slot, t.id, step.index)))
    ends = {t.task_id: t.end for t in trajectories}
    assert ends == {"done": EndReason.DONE, "fail": EndReason.FAIL, "cap": EndReason.STEP_LIMIT,
                    "garbage": EndReason.DONE}
    # one batched call per step, only for the episodes still running
    assert policy.batches == [["done", "fail", "cap", "garbage"], ["done", "cap", "garbage"],
                              ["cap", "garbage"]]
    assert len(stats.generate) == 3 and stats.env_steps == 2 + 1 + 3 + 3 == stats.decisions
    assert sorted(seen_steps) == sorted({(s, t, i) for s, t, i in seen_steps})
    assert len(seen_steps) == stats.env_steps
    # garbage: an invalid step with the error, and the next observation carries it
    garbage = next(t for t in trajectories if t.task_id == "garbage")
    assert garbage.steps[0].action is None and "cannot parse 'blah'" in garbage.steps[0].action_error
    errors_seen = [o.action_error for o in policy.seen if o.action_error]
    assert errors_seen == ["cannot parse 'blah'"]
    # files: one frame per step, named by the step, readable back
    for trajectory in trajectories:
        folder = run.path / "trajectories" / trajectory.id
        on_disk = read_trajectory(folder)
        assert on_disk.end == trajectory.end and on_disk.steps == trajectory.steps
        assert [s.frame for s in on_disk.steps] == [f"frames/{i:04d}.png" for i in range(len(on_disk.steps))]
        assert all((folder / s.frame).exists() for s in on_disk.steps)
    assert len({t.id for t in trajectories}) == 4
    done = next(t for t in trajectories if t.task_id == "done")
    assert done.steps[0].token_ids == (1, 2) and done.steps[0].logprobs == (-0.1, -0.2)


def test_time_limit_and_stop(tmp_path: Path) -> None:
    slow = PerSlotPolicy({"slow": [Click(1, 1)] * 50}, delay_s=0.05)
    [trajectory] = rollout(slow, [task("slow", max_steps=50)], fakes(1), tmp_path / "a",
                           config=RolloutConfig(max_steps=50, time_limit_s=0.2))
    assert trajectory.end is EndReason.TIME_LIMIT and 1 <= len(trajectory.steps) < 10

    calls = []
    stopper = PerSlotPolicy({"a": [Click(1, 1)] * 20, "b": [Click(1, 1)] * 20})
    trajectories = rollout(stopper, [task("a"), task("b")], fakes(2), tmp_path / "b",
                           stop=lambda: calls.append(1) or len(calls) > 2)
    assert [t.end for t in trajectories] == [EndReason.ERROR, EndReason.ERROR]
    assert all(t.error == STOPPED_MESSAGE and len(t.steps) == 2 for t in trajectories)


def test_dead_sandbox_ends_only_its_episode(tmp_path: Path) -> None:
    sandboxes = fakes(3)
    policy = PerSlotPolicy({name: [Click(2, 2)] * 3 + [Done()] for name in "abc"})

    def kill_b(slot: int, t: Task, step: Any) -> None:
        if t.id == "b" and step.index == 1:
            sandboxes[1].kill()

    trajectories = rollout(policy, [task("a"), task("b"), task("c")], sandboxes, tmp_path, on_step=kill_b)
    assert [t.end for t in trajectories] == [EndReason.DONE, EndReason.ERROR, EndReason.DONE]
    assert "died" in trajectories[1].error and len(trajectories[1].steps) == 2
    assert len(trajectories[0].steps) == len(trajectories[2].steps) == 4


def test_probe_deltas_and_writer_factory(tmp_path: Path) -> None:
    class CountingProbe:
        def __init__(self) -> None:
            self.n = 0

        def snapshot(self, sandbox: Any) -> dict[str, Any]:
            self.n += 1
            return {"n": self.n, "actions": len(sandbox.actions)}

        def delta(self, before: Any, after: Any) -> dict[str, Any]:
            return {"actions": after["actions"] - before["actions"]}

    made = []

    def factory(tid: str, t: Task, policy_id: str):
        from deskdojo.core.rundir import TrajectoryWriter

        made.append(tid)
        return TrajectoryWriter(tmp_path / "custom" / tid, tid, t.id, policy_id)

    [trajectory] = rollout(ScriptedPolicy([Click(1, 1), Wait(0.0), Done()]), [task()], fakes(1), factory,
                           probe=CountingProbe())
    assert made == [trajectory.id] and (tmp_path / "custom" / trajectory.id / "steps.jsonl").exists()
    assert [s.delta for s in trajectory.steps] == [{"actions": 1}, {"actions": 1}, None]


def test_killed_mid_episode_leaves_readable_steps(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import sys, time
        from deskdojo.agent.rollout import rollout
        from deskdojo.core.actions import Click
        from deskdojo.core.protocols import Decision, DeterministicPolicy
        from deskdojo.core.types import Task
        from deskdojo.vm.fake import FakeSandbox, synthetic_frames

        class Slow(DeterministicPolicy):
            policy_id = "slow"
            def act(self, observations, tasks, histories):
                if len(histories[0]) == 3:
                    print("three", flush=True)
                time.sleep(0.05)
                return [Decision(text="c", action=Click(1, 1)) for _ in observations]

        rollout(Slow(), [Task(id="k", instruction="x", family="f", max_steps=1000)],
                [FakeSandbox(synthetic_frames(64, 48))], {str(tmp_path)!r},
                config=__import__("deskdojo.agent.rollout", fromlist=["x"]).RolloutConfig(max_steps=1000))
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "three"
        time.sleep(0.1)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    [folder] = list(tmp_path.iterdir())
    trajectory = read_trajectory(folder)
    assert trajectory.end is None and len(trajectory.steps) >= 3
    assert all((folder / s.frame).exists() for s in trajectory.steps)


# --- real sandboxes ----------------------------------------------------------------


def buttons_task(task_id: str, clicks: Sequence[str]) -> Task:
    from deskdojo.vm.guest.apps import launch_step

    oracle = tuple(OracleStep(Click(0, 0), at=Locator("buttons", path=f"widgets.button:{label}"))
                   for label in clicks) + (OracleStep(Done()),)
    return task(task_id, setup=(launch_step("buttons", {"seed": 3, "labels": LABELS}),), oracle=oracle)


def wait_history(sandbox: Any, expected: list[str], timeout: float = 5.0) -> None:
    """The app publishes its state a moment after a click is handled."""
    deadline = time.monotonic() + timeout
    while (history := sandbox.app_state()["apps"]["buttons"]["history"]) != expected:
        assert time.monotonic() < deadline, f"history {history}, expected {expected}"
        time.sleep(0.05)


@pytest.mark.display
def test_real_sandboxes_oracle_policy_and_a_crash(tmp_path: Path) -> None:
    from deskdojo.vm.config import SandboxConfig
    from deskdojo.vm.pool import SandboxPool

    tasks = [buttons_task("first", ["apple", "plum"]), buttons_task("second", ["fig", "pear", "fig"]),
             buttons_task("crash", ["pear", "apple", "fig"])]
    with SandboxPool(SandboxConfig(provider="xvfb"), 3) as pool:
        def crash_third(slot: int, t: Task, step: Any) -> None:
            if t.id == "crash" and step.index == 0:
                pool[2].kill()

        stats = RolloutStats()
        trajectories = rollout(ScriptedPolicy(), tasks, list(pool), tmp_path,
                               config=RolloutConfig(observe_app_state=True, wait_stable=True),
                               on_step=crash_third, stats=stats)
        assert [t.end for t in trajectories] == [EndReason.DONE, EndReason.DONE, EndReason.ERROR]
        wait_history(pool[0], ["apple", "plum"])
        wait_history(pool[1], ["fig", "pear", "fig"])
    assert "died" in trajectories[2].error and len(trajectories[2].steps) == 1
    assert [s.action.kind for s in trajectories[1].steps if not s.model_text.startswith(WAITING)] == ["click"] * 3 + ["done"]
    # the frames are the real screens the policy saw
    from PIL import Image

    first = Image.open(tmp_path / trajectories[0].id / "frames" / "0000.png")
    colours = {tuple(p) for p in np.asarray(first.convert("RGB")).reshape(-1, 3)[::31].tolist()}
    assert first.size == (1024, 768) and len(colours) > 3
    summary = stats.summary()
    assert summary["env_steps"] == sum(len(t.steps) for t in trajectories) and summary["median_ms"]["action"] > 0
    header = json.loads((tmp_path / trajectories[2].id / "trajectory.json").read_text())
    assert header["end"] == "error"


class LaggingListing:
    """A sandbox whose element walk shows the new page only from its ``lag``-th read on,
    as a practice app publishes its walk a moment after the change."""

    def __init__(self, lag: int):
        from deskdojo.core.elements import Element, ElementList

        self.reads = 0
        self.lag = lag
        self.before = ElementList((Element(1, "page tab", "Tomato", (0, 0, 10, 10)),))
        self.after = ElementList((Element(1, "page tab", "Parrot", (0, 0, 10, 10)),
                                  Element(2, "check box", "Enable parrot", (0, 20, 10, 10))))

    def elements(self, sources: Any = None) -> Any:
        self.reads += 1
        return self.after if self.reads >= self.lag else self.before


def test_after_an_action_the_listing_is_read_once_it_holds_still():
    from deskdojo.agent.rollout import _settled_listing
    from deskdojo.core.elements import Element, ElementList

    sandbox = LaggingListing(lag=4)  # the walk changes 0.15 s after the first read
    config = RolloutConfig(listing_quiet_s=0.2, listing_timeout_s=2.0)
    started = time.monotonic()
    listing = _settled_listing(sandbox, config)
    assert [e.name for e in listing.elements] == ["Parrot", "Enable parrot"]
    assert 0.2 <= time.monotonic() - started < 1.5  # held still for 0.2 s, well before the 2 s limit
    # off: the first read, whatever it shows
    assert _settled_listing(LaggingListing(lag=4), RolloutConfig(listing_quiet_s=0)).elements[0].name == "Tomato"
    # a walk that never holds still is read until the timeout, then taken as it is
    ticks = iter(range(10**6))

    class Clock:
        def elements(self, sources: Any = None) -> Any:
            return ElementList((Element(1, "label", f"clock {next(ticks)}", (0, 0, 1, 1)),))

    started = time.monotonic()
    last = _settled_listing(Clock(), RolloutConfig(listing_quiet_s=0.2, listing_timeout_s=0.5))
    assert time.monotonic() - started < 1.5 and last.elements[0].name != "clock 0"


def test_listing_waits_must_not_be_negative():
    with pytest.raises(ConfigError, match="listing_quiet_s"):
        RolloutConfig(listing_quiet_s=-1)
