"""The main job (`deskdojo run`) keeps its deadline on a slow machine: the warm start
(oracle demos, then SFT) ends by its share of the budget with fewer demos and steps,
evolving still runs and ends with a held-out evaluation, and the whole job ends within
a minute of --minutes. SFT is made slow as in the issue that asked for this (2.3 to
10.7 s per step with a second process keeping one of the two cores busy): each step
waits SLOW_STEP_S more. An injected wait, not a CPU hog, so the test neither depends on
nor adds to what else the machine runs."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import pytest

from deskdojo.core.rundir import JsonlFile

pytestmark = [pytest.mark.display, pytest.mark.timeout(600)]

BUDGET_S = 100.0
GRACE_S = 60.0  # the bound: never more than a minute past --minutes
SLOW_STEP_S = 3.0


def test_the_main_job_keeps_its_deadline_when_sft_is_slow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from deskdojo.agent.train import sft as sft_module
    from deskdojo.evolve import cli

    real_config = cli.main_job_config
    real_batch_order = sft_module.batch_order

    def slow_batch_order(*args: Any, **kwargs: Any) -> list[int]:  # called once per SFT step
        time.sleep(SLOW_STEP_S)
        return real_batch_order(*args, **kwargs)

    def scaled_down(wall_seconds: float, **overrides: object) -> object:
        # the warm start asks for far more than its 40 s allow (96 demos, 240 steps of 16);
        # evolving is made small enough to show iterations in a minute (one family), on random
        # weights (what is timed here does not depend on them)
        return real_config(wall_seconds, **overrides, model="tiny-scratch", group_size=2, tasks_per_iteration=1,
                           max_steps=2, sandbox={"screen": [640, 480]},
                           curriculum={"families": ["click_button"]}, sft={"families": ["click_button"], "demos_per_family": 96, "steps": 240},
                           eval={"levels": [0], "tasks_per_level": 1, "every": 100})

    monkeypatch.setattr(cli, "main_job_config", scaled_down)
    monkeypatch.setattr(sft_module, "batch_order", slow_batch_order)
    run_dir = tmp_path / "run"
    args = argparse.Namespace(provider="xvfb", sandboxes=2, minutes=BUDGET_S / 60, run_dir=str(run_dir),
                              runs_root=str(tmp_path))
    started_at, started = time.time(), time.monotonic()
    code = cli.cmd_run(args)
    took = time.monotonic() - started
    out, err = capsys.readouterr()
    assert code == 0, out[-3000:]
    assert took <= BUDGET_S + GRACE_S, f"the main job took {took:.0f} s on a {BUDGET_S:.0f} s budget"

    # the warm start shrank to its share: fewer demos and steps, ended near 40% of the budget
    recorded = [p for p in (run_dir / "demos").iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert recorded and f"sft warm start: {len(recorded)} of " in out  # "N of M demos recorded in the time given"
    [checkpoint] = [p for p in (run_dir / "sft" / "checkpoints").iterdir() if p.name.isdigit()]
    assert 0 < int(checkpoint.name) < 240, checkpoint.name  # the default is 240 steps
    warm_start_s = (run_dir / "sft" / "policy" / "deskdojo_policy.json").stat().st_mtime - started_at
    # past its share only by the error of the last step's time as the next one's estimate, and the writing
    assert warm_start_s <= cli.WARM_START_SHARE * BUDGET_S + 15, f"the warm start ended after {warm_start_s:.0f} s"
    assert "recording oracle demos [" in err and "\nsft [" in err  # the progress lines
    assert "time limit" in out and f"stopped at step {int(checkpoint.name)} of" in out

    # evolving got the rest: iterations, and the learning curve's last point is the last iteration
    metrics = list(JsonlFile(run_dir / "metrics.jsonl").read())
    assert metrics, "evolve ran no iteration"
    heldout = list(JsonlFile(run_dir / "heldout.jsonl").read())
    assert heldout[0]["iteration"] == 0 and heldout[-1]["iteration"] == metrics[-1]["iteration"], heldout
    assert (run_dir / "learning_curve.png").stat().st_size > 0
