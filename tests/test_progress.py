"""The progress line of long phases: plain lines now and then in a log or pipe, one line
redrawn in place on a terminal, and the words a person needs (done/total, rate, time left)."""

from __future__ import annotations

import io

from deskdojo.agent.progress import ProgressLine, bar, duration


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
