"""Grounding credit (how near clicks landed to the oracle's targets): the Gaussian and the
recall/precision mean against hand-computed values, target resolution from app state, the
Verdict field, and the state judge computing it on a real xvfb sandbox."""

from __future__ import annotations

import math

import pytest

from deskdojo.core.actions import Click, Drag, Key, Move
from deskdojo.core.errors import GuestRequestError, RecordError
from deskdojo.core.oracle import locate, locate_box
from deskdojo.core.records import from_json, to_json
from deskdojo.core.types import Check, Locator, OracleStep, Step, Task, Trajectory, Verdict
from deskdojo.curriculum.families import get_family
from deskdojo.world_model.grounding import Target, grounding, point_credit, task_targets
from deskdojo.world_model.judge import StateJudge, settle

BOX_A = {"x": 100, "y": 100, "w": 80, "h": 20}  # centre (140, 110)
BOX_B = {"x": 400, "y": 300, "w": 40, "h": 40}  # centre (420, 320)


def gauss(dx: float, dy: float, sx: float, sy: float) -> float:
    return math.exp(-((dx / sx) ** 2 + (dy / sy) ** 2) / 2)


def test_point_credit_is_a_gaussian_scaled_by_the_box_size():
    assert point_credit(140, 110, BOX_A) == 1.0
    assert point_credit(140 + 80, 110, BOX_A) == pytest.approx(math.exp(-0.5))  # one width right
    assert point_credit(140, 110 - 40, BOX_A) == pytest.approx(math.exp(-2.0))  # two heights up
    assert point_credit(160, 120, BOX_A, sigma=0.5) == pytest.approx(gauss(20, 10, 40, 10))
    with pytest.raises(ValueError, match="sigma"):
        point_credit(0, 0, BOX_A, sigma=0)


def test_grounding_is_the_geometric_mean_of_recall_and_precision():
    targets = [Target(BOX_A), Target(BOX_B)]
    a, b = point_credit(150, 115, BOX_A), point_credit(420, 340, BOX_B)
    # one click near each target; a miss far from both counts against precision only
    assert grounding([Click(150, 115), Click(420, 340)], targets) == pytest.approx((a + b) / 2)
    miss = max(point_credit(900, 700, BOX_A), point_credit(900, 700, BOX_B))
    recall, precision = (a + b) / 2, (a + b + miss) / 3
    assert grounding([Click(150, 115), Key("enter"), Click(420, 340), Click(900, 700)], targets) == \
        pytest.approx(math.sqrt(recall * precision))
    # clicking only the first target: full precision, half the recall
    assert grounding([Click(140, 110)], targets) == pytest.approx(math.sqrt(0.5 * 1.0))
    # nothing that points: 0; no targets: None (nothing to ground)
    assert grounding([Key("enter"), Move(140, 110), None], targets) == 0.0
    assert grounding([Click(140, 110)], []) is None


def test_a_drag_is_credited_at_its_start_and_its_end():
    targets = [Target(BOX_A, "at"), Target(BOX_B, "to")]
    assert grounding([Drag(140, 110, 420, 320)], targets) == pytest.approx(1.0)
    # a click cannot land a drop: the "to" target gets nothing from it
    assert grounding([Click(140, 110)], targets) == pytest.approx(math.sqrt(0.5 * 1.0))


def apps_with(**widgets: dict) -> dict:
    return {"buttons": {"app": "buttons", "widgets": widgets}}


def test_targets_come_from_the_oracle_locators_on_screen():
    task = Task(id="t", instruction="i", family="test", checks=(Check("app_state", "exists", {"app": "buttons",
                                                                                            "path": "last"}),),
                oracle=(OracleStep(Click(0, 0), at=Locator("buttons", path="widgets.a", dx=5)),
                        OracleStep(Key("enter")),
                        OracleStep(Click(0, 0), at=Locator("buttons", menu="File")),  # no menu bar: skipped
                        OracleStep(Drag(0, 0, 0, 0), at=Locator("buttons", text="B"),
                                   to=Locator("buttons", path="widgets.a"))))
    apps = apps_with(a={**BOX_A, "text": "A"}, b={**BOX_B, "text": "B"})
    assert locate_box(apps, Locator("buttons", path="widgets.a", dx=5)) == {**BOX_A, "x": 105}
    assert locate(apps, Locator("buttons", path="widgets.a", dx=5)) == (145, 110)
    assert task_targets(task, apps) == [Target({**BOX_A, "x": 105}, "at"), Target(BOX_B, "at"),
                                        Target(BOX_A, "to")]
    assert task_targets(task, {}) == []  # the app is gone: nothing to ground against


def test_verdict_grounding_is_checked_and_round_trips():
    verdict = Verdict("t", "r", False, 0.0, "state", grounding=0.25)
    assert from_json(Verdict, to_json(verdict)).grounding == 0.25
    old = to_json(Verdict("t", "r", False, 0.0, "state"))
    del old["grounding"]  # verdicts written before the field existed still load
    assert from_json(Verdict, old).grounding is None
    with pytest.raises(RecordError, match="grounding must be within"):
        Verdict("t", "r", False, 0.0, "state", grounding=1.5)
    with pytest.raises(ValueError, match="grounding_sigma"):
        StateJudge(grounding_sigma=0)


@pytest.mark.display
def test_the_judge_grounds_clicks_against_a_real_practice_app(box):
    task = get_family("click_button").generate(level=1, seed=3)
    box.reset(task)
    assert settle(box, apps=["buttons"], timeout=8.0)
    apps = box.app_state()["apps"]
    (target,) = task_targets(task, apps)
    assert target.box == locate_box(apps, task.oracle[0].at)
    x, y = locate(apps, task.oracle[0].at)
    judge = StateJudge()

    def judged(*actions) -> Verdict:
        steps = tuple(Step(i, a) for i, a in enumerate(actions))
        return judge.judge(task, Trajectory(id="g", task_id=task.id, steps=steps), box)

    # nothing clicked yet: the checks fail, and no point means no grounding
    assert judged().grounding == 0.0
    # a click one box-width to the side of the target (the centre is rounded to a pixel)
    near = judged(Click(x + target.box["w"], y))
    assert near.grounding == pytest.approx(point_credit(x + target.box["w"], y, target.box))
    assert near.grounding == pytest.approx(math.exp(-0.5), abs=0.02)
    assert box.act(Click(x, y)).ok
    hit = judged(Click(x, y))
    assert hit.success and hit.grounding == pytest.approx(point_credit(x, y, target.box))
    assert hit.grounding > 0.99


class StateOnce:
    """A sandbox stand-in that counts app-state reads and can refuse them (a 4xx: the guest
    answered; a sandbox that does not answer is an error episode, see test_judge)."""

    def __init__(self, apps: dict, *, readable: bool = True):
        self.apps, self.readable, self.reads = apps, readable, 0

    def app_state(self) -> dict:
        self.reads += 1
        if not self.readable:
            raise GuestRequestError("GET /v1/app_state: the state folder is not readable", 403)
        return {"apps": self.apps}

    def windows(self) -> list:
        return [type("Window", (), {"title": "Buttons"})()]


def test_the_judge_grounds_in_the_state_its_checks_read_and_keeps_the_outcome_without_it(monkeypatch):
    import deskdojo.world_model.judge as judge_module

    monkeypatch.setattr(judge_module, "settle", lambda *args, **kwargs: True)
    oracle = (OracleStep(Click(0, 0), at=Locator("buttons", path="widgets.a")),)
    clicked = Trajectory(id="r", task_id="t", steps=(Step(0, Click(140, 110)),))
    by_state = Task(id="t", instruction="i", family="test", oracle=oracle,
                    checks=(Check("app_state", "exists", {"app": "buttons", "path": "widgets.a"}),))
    sandbox = StateOnce(apps_with(a=BOX_A))
    verdict = StateJudge().judge(by_state, clicked, sandbox)
    assert verdict.success and verdict.grounding == pytest.approx(1.0)
    assert sandbox.reads == 1  # the checks' read, shared with grounding
    # checks that need no app state still decide the outcome when that state cannot be read
    by_window = Task(id="t", instruction="i", family="test", oracle=oracle,
                     checks=(Check("windows", "contains", {}, "Buttons"),))
    verdict = StateJudge().judge(by_window, clicked, StateOnce({}, readable=False))
    assert verdict.success and verdict.grounding is None
