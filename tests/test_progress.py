"""The progress line of long phases: plain lines now and then in a log or pipe, one line
redrawn in place on a terminal, and the words a person needs (done/total, rate, time left)."""

from __future__ import annotations

import io
import time

import pytest

from deskdojo.core import progress
from deskdojo.core.progress import ProgressLine, bar, duration


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_pipe_gets_plain_lines_now_and_then_with_rate_and_eta() -> None:
    clock, out = Clock(), io.StringIO()
    line = ProgressLine("recording oracle demos", 100, unit="demos", stream=out, plain_every_s=10, clock=clock)
    for done in range(1, 43):  # 4 demos per second
        clock.now += 0.25
        line.update(done)
    line.close()
    text = out.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    # the first update, the first one 10 s after it, and the last state on close: not 42 lines
    assert len(lines) == 3, lines
    assert lines[0].startswith("recording oracle demos [") and " 1/100 demos" in lines[0]
    assert " 41/100 demos" in lines[1] and "4.00/s" in lines[1] and "ETA 15s" in lines[1]  # 59 left at 4/s
    assert " 42/100 demos" in lines[2] and "[########............]" in lines[2]


def test_close_writes_nothing_twice_and_reports_done() -> None:
    clock, out = Clock(), io.StringIO()
    line = ProgressLine("sft", 3, unit="steps", stream=out, plain_every_s=10, clock=clock)
    for done in range(1, 4):
        clock.now += 2.0
        line.update(done, info="loss 0.5000")
    line.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2, lines  # the first step, then the last state once
    assert " 3/3 steps" in lines[-1] and "2.0 s each" in lines[-1] and "done in 6s" in lines[-1]
    assert lines[-1].endswith("loss 0.5000")


def test_a_terminal_gets_one_line_redrawn_in_place() -> None:
    clock, out = Clock(), Terminal()
    line = ProgressLine("sft", 10, unit="steps", stream=out, clock=clock)
    for done in range(1, 11):
        clock.now += 1.0
        line.update(done)
    line.note("a message of its own")
    text = out.getvalue()
    assert text.count("\r") == 10  # each step redrawn in place
    assert text.endswith("done in 10s\na message of its own\n") and text.count("\n") == 2  # the note ends it


def test_a_time_limit_before_the_end_is_what_the_line_says() -> None:
    clock, out = Clock(), io.StringIO()
    line = ProgressLine("sft", 100, unit="steps", stream=out, deadline=clock.now + 30, clock=clock)
    clock.now += 10.0
    line.update(10)  # 90 steps left at 1/s: the 20 s left of the limit come first
    assert "time limit in 20s" in out.getvalue() and "ETA" not in out.getvalue()
    resumed = ProgressLine("sft", 100, unit="steps", stream=io.StringIO(), start=50, clock=clock)
    clock.now += 10.0
    resumed.update(60)  # the rate counts the 10 steps done now, not the 50 before
    assert "1.00/s" in resumed.text() and "ETA 40s" in resumed.text()


def test_bar_and_duration() -> None:
    assert bar(0.5, 10) == "[#####.....]" and bar(2.0, 4) == "[####]" and bar(-1, 4) == "[....]"
    assert [duration(s) for s in (4.4, 65, 3725)] == ["4s", "1m05s", "1h02m"]


def test_a_long_single_step_still_shows_in_a_log_every_heartbeat() -> None:
    """No update for a minute (one long SFT step, one docker build step): the heartbeat writes
    the line again every ``heartbeat_s`` with how long it has run, and not more often."""
    clock, out = Clock(), io.StringIO()
    line = ProgressLine("held-out evaluation", 48, unit="tasks", stream=out, heartbeat_s=20, clock=clock)
    line.update(0)
    for _ in range(60):  # the thread's ticks, one a second, with this test's clock
        clock.now += 1.0
        line.heartbeat()
    line.close()
    lines = out.getvalue().splitlines()
    # at 0 s, then at 20, 40 and 60 s; close adds nothing (the count did not move since)
    assert len(lines) == 4, lines
    assert lines[0] == "held-out evaluation [....................] 0/48 tasks"
    assert lines[1].endswith("0/48 tasks  20s so far") and lines[3].endswith("1m00s so far")


def test_plain_lines_never_come_closer_than_the_interval_and_never_further_than_the_heartbeat() -> None:
    clock, out = Clock(), io.StringIO()
    written: list[float] = []

    class Log(io.StringIO):
        def write(self, text: str) -> int:
            written.append(clock.now)
            return super().write(text)

    out = Log()
    line = ProgressLine("sft", 1000, unit="steps", stream=out, plain_every_s=10, heartbeat_s=20, clock=clock)
    done = 0
    for second in range(1, 301):
        clock.now += 1.0
        if second < 100 or second > 200:  # 100 s without a step in the middle
            done += 1
            line.update(done)
        line.heartbeat()
    gaps = [b - a for a, b in zip(written, written[1:])]
    assert min(gaps) >= 10 and max(gaps) <= 20, gaps
    line.close()


def test_an_activity_of_unknown_size_says_how_long_it_has_run() -> None:
    clock, out = Clock(), io.StringIO()
    line = ProgressLine("starting 4 docker sandboxes", None, stream=out, heartbeat_s=20, clock=clock)
    line.update(0)
    clock.now += 21
    line.heartbeat()
    clock.now += 4
    line.close()
    assert out.getvalue().splitlines() == ["starting 4 docker sandboxes", "starting 4 docker sandboxes  21s so far",
                                           "starting 4 docker sandboxes  done in 25s"]


def test_a_delayed_line_leaves_nothing_when_the_phase_is_short() -> None:
    clock, out = Clock(), io.StringIO()
    short = ProgressLine("iteration 3", 16, unit="episodes", stream=out, delay_s=20, clock=clock)
    for done in range(1, 17):
        clock.now += 1.0
        short.update(done)
        short.heartbeat()
    short.close()
    assert out.getvalue() == ""
    long = ProgressLine("iteration 4", 16, unit="episodes", stream=out, delay_s=20, clock=clock)
    clock.now += 25
    long.heartbeat()
    long.update(16)
    long.close()
    assert out.getvalue().splitlines() == ["iteration 4 [....................] 0/16 episodes  25s so far",
                                           "iteration 4 [####################] 16/16 episodes  1.6 s each  done in 25s"]


def test_a_transient_line_on_a_terminal_is_erased_at_close() -> None:
    clock, out = Clock(), Terminal()
    line = ProgressLine("iteration 1", 4, unit="episodes", stream=out, transient=True, clock=clock)
    clock.now += 1
    line.update(2)
    line.close()
    assert out.getvalue().endswith("\r" + " " * len(line.text()) + "\r") and "\n" not in out.getvalue()


def test_an_outer_line_that_does_not_redraw_writes_whole_lines_on_a_terminal() -> None:
    clock, out = Clock(), Terminal()
    line = ProgressLine("bench sft", 3, unit="modes", stream=out, plain_every_s=0, redraw=False, clock=clock)
    for done in range(3):
        clock.now += 1
        line.update(done, info=f"mode {done + 1}")
    assert "\r" not in out.getvalue() and len(out.getvalue().splitlines()) == 3


def test_quiet_silences_progress_but_not_notes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress, "_quiet", False)
    progress.set_quiet(True)
    out = io.StringIO()
    line = ProgressLine("sft", 3, unit="steps", stream=out)
    line.update(1)
    line.heartbeat()
    line.note("sft: a message")
    line.close()
    progress.say("image: step 1/9 FROM base", stream=out)
    assert out.getvalue() == "sft: a message\n"
    progress.set_quiet(False)
    progress.say("image: step 1/9 FROM base", stream=out)
    assert out.getvalue().endswith("image: step 1/9 FROM base\n")


def test_the_heartbeat_thread_writes_while_nothing_moves(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress, "TICK_S", 0.02)
    out = io.StringIO()
    with ProgressLine("docker build", None, stream=out, heartbeat_s=0.05) as line:
        line.update(0)
        time.sleep(0.5)
    lines = out.getvalue().splitlines()
    assert len(lines) >= 4 and lines[0] == "docker build" and lines[-1].startswith("docker build  done in")


def test_a_log_function_can_take_progress_lines() -> None:
    said: list[str] = []
    stream = progress.LineStream(said.append)
    stream.write("image  12 output lines")
    assert said == []
    stream.write("  20s so far\nnext")
    assert said == ["image  12 output lines  20s so far"]


def test_quiet_before_or_after_the_command_keeps_the_results_and_drops_the_progress(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from deskdojo.cli import main

    monkeypatch.setattr(progress, "_quiet", False)  # restored after the test, whatever main sets
    command = ["bench", "parse", "--repeats", "1", "--format", "grid", "--json"]
    assert main(command) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["formats"]["grid"]["rows"]
    assert "bench parse [" in err and "cases" in err.splitlines()[-1]  # stderr, not stdout
    for quiet in (["--quiet", *command], [*command, "--quiet"], ["bench", "--quiet", *command[1:]]):
        assert main(quiet) == 0
        out, err = capsys.readouterr()
        assert json.loads(out)["formats"]["grid"]["rows"] and err == "", quiet
    assert main(command) == 0 and "bench parse [" in capsys.readouterr().err  # each run sets it anew
    # called in-process, `--quiet` does not outlive its command (it silenced later tests' lines)
    assert main(["--quiet", *command]) == 0 and not progress.is_quiet()


def test_a_silent_image_build_step_is_reported_while_it_runs(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One docker build step (apt-get inside it) can run for minutes without a line: the
    build's log says which step still runs, every heartbeat, and nothing when it is short."""
    from deskdojo.vm import image

    monkeypatch.setattr(progress, "TICK_S", 0.05)
    monkeypatch.setattr(image, "HEARTBEAT_S", 0.6)
    said: list[str] = []
    image._run_logged(["sh", "-c", "echo 'Step 2/9 : RUN apt-get install -y xvfb'; sleep 2.6; echo done"],
                      tmp_path / "build.log", log=said.append, timeout=30, what="image")
    assert said[0] == "image: step 2/9 RUN apt-get install -y xvfb"
    still = said[1:-1]
    assert 2 <= len(still) <= 6, said  # every 0.6 s of the 2.6 s step
    assert all(line.startswith("image  1 output lines  ") and line.endswith("on step 2/9 RUN apt-get install -y xvfb")
               for line in still), still
    assert "s so far  on step" in still[-1] and "output lines  done in" in said[-1]
    quick: list[str] = []
    image._run_logged(["sh", "-c", "echo 'Step 1/9 : FROM base'"], tmp_path / "quick.log", log=quick.append,
                      timeout=30, what="image")
    assert quick == ["image: step 1/9 FROM base"]
