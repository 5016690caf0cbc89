"""Observation modes on the policy side: the element table and its budget rule, set-of-marks
drawing, the tiny VLM acting in each mode, and training prompts rebuilt from the record
equal to the prompts that acted (a11y_tree and som)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from deskdojo.agent.observation import element_row, element_table, shown_elements
from deskdojo.core.actions import Click, Scroll, Type
from deskdojo.core.elements import OBSERVATION_MODES, Element, ElementList
from deskdojo.core.rundir import RunDir, read_trajectory
from deskdojo.core.types import Observation, Task
from deskdojo.vm.fake import FakeSandbox, synthetic_frames

SCREEN = (1024, 768)
IMAGE = (448, 336)


def element(i: int, x: int, y: int, *, w: int = 40, h: int = 20, states: tuple[str, ...] = ("enabled",)) -> Element:
    return Element(id=i, role="button", name=f"B{i}", box=(x, y, w, h), states=frozenset(states))


def observation(listing: ElementList | None, screen: tuple[int, int] = SCREEN) -> Observation:
    return Observation(screenshot=np.zeros((screen[1], screen[0], 3), np.uint8), screen_size=screen,
                       elements=listing)


# --- the budget rule ------------------------------------------------------------------


def test_a_cut_table_keeps_on_screen_elements_nearest_the_focus_and_says_how_many_it_left_out():
    focus = element(5, 800, 600, states=("enabled", "focused"))
    near = [element(1, 760, 600), element(7, 840, 640), element(9, 800, 560)]
    far = [element(0, 0, 0), element(2, 100, 100), element(3, 200, 50)]
    off_screen = element(4, 790, 2000)  # nearer the focus than `far`, but not on the screen
    listing = ElementList(tuple(sorted([focus, *near, *far, off_screen], key=lambda e: e.id)))
    row = len(element_table(shown_elements(observation(ElementList((focus,))), budget=10_000, image=IMAGE),
                            screen=SCREEN, image=IMAGE).splitlines()[1]) + 1
    shown = shown_elements(observation(listing), budget=4 * row, image=IMAGE)
    assert [e.id for e in shown.elements] == [1, 5, 7, 9]  # id order; the focus and its neighbours
    assert shown.left_out == 4
    table = element_table(shown, screen=SCREEN, image=IMAGE)
    assert "(4 more elements left out" in table
    assert [line.split()[0] for line in table.splitlines()[1:5]] == ["1", "5", "7", "9"]
    assert '5 button "B5" enabled,focused 350,263,18,8' in table  # box in the 448x336 view's pixels

    whole = shown_elements(observation(listing), budget=10_000, image=IMAGE)
    assert whole.left_out == 0 and "left out" not in element_table(whole, screen=SCREEN, image=IMAGE)
    # with room for every on-screen row, the off-screen element is the one left out
    on_screen = sum(len(element_row(e, screen=SCREEN, image=IMAGE)) + 1 for e in listing.elements if e.id != 4)
    rest = shown_elements(observation(listing), budget=on_screen, image=IMAGE)
    assert [e.id for e in rest.elements] == [0, 1, 2, 3, 5, 7, 9] and rest.left_out == 1


def test_names_cannot_break_the_table_and_missing_listings_are_said():
    tricky = Element(id=0, role="text", name='a"b\n9 button "fake" enabled 0,0,1,1', box=(1, 1, 50, 10))
    table = element_table(shown_elements(observation(ElementList((tricky,))), budget=1000, image=IMAGE),
                          screen=SCREEN, image=IMAGE)
    assert len(table.splitlines()) == 2 and "\\n9 button" in table
    assert "none listed" in element_table(shown_elements(observation(None), budget=9, image=IMAGE),
                                          screen=SCREEN, image=IMAGE)
    cut = ElementList((tricky,), truncated="cut to 400 of 900 elements")
    assert "cut to 400 of 900" in element_table(shown_elements(observation(cut), budget=1000, image=IMAGE),
                                                screen=SCREEN, image=IMAGE)


# --- set-of-marks ---------------------------------------------------------------------


def test_marks_are_drawn_on_the_boxes_with_their_ids_and_nowhere_else():
    from deskdojo.perception.marks import OUTLINE_PX, PALETTE, draw_marks

    frame = np.full((300, 400, 3), 128, np.uint8)
    boxes = [Element(id=3, role="button", name="OK", box=(100, 120, 80, 40)),
             Element(id=12, role="text", name="", box=(250, 5, 100, 60))]  # at the top: its tag goes inside
    marked = draw_marks(frame, boxes)
    assert marked.shape == frame.shape and (frame == 128).all()  # a copy; the input is untouched
    for e in boxes:
        x, y, w, h = e.box
        color = PALETTE[e.id % len(PALETTE)]
        for px, py in ((x + w // 2, y), (x + w // 2, y + h - 1), (x, y + h // 2), (x + w - 1, y + h // 2)):
            assert tuple(marked[py, px]) == color, (e.id, px, py)
        assert tuple(marked[y + h // 2 + 5, x + w // 2]) == (128, 128, 128)  # the inside stays clear
    # the id tag: above box 3 (room there), inside box 12 (none above it)
    assert (marked[105:119, 101:110] == PALETTE[3]).all(axis=-1).mean() > 0.3
    assert (marked[5 + OUTLINE_PX:15, 251:265] == PALETTE[12 % len(PALETTE)]).all(axis=-1).mean() > 0.3
    untouched = np.ones(frame.shape[:2], bool)
    untouched[95:165, 95:185] = False
    untouched[0:70, 245:355] = False
    assert (marked[untouched] == 128).all()
    assert not np.array_equal(draw_marks(frame, boxes[:1])[105:119, 101:110],
                              draw_marks(frame, [Element(id=4, role="button", name="OK", box=(100, 120, 80, 40))])
                              [105:119, 101:110])  # a different id draws a different tag


# --- the tiny VLM in each mode --------------------------------------------------------


class ListingSandbox(FakeSandbox):
    """A FakeSandbox whose element listing moves the focus each step (so each step's listing
    matters to its prompt), until the real ``Sandbox.elements`` lands in FakeSandbox."""

    def elements(self, sources: Any = None) -> ElementList:
        width, height = self.screen_size
        focus = self._step % 6
        return ElementList(tuple(
            Element(id=i, role="button", name=f"Button {i}", box=(8 + 24 * i, 10 + 11 * i, 22, 10),
                    states=frozenset({"enabled", "focused"} if i == focus else {"enabled"}))
            for i in range(min(12, (width - 30) // 24))) + (
            Element(id=12, role="label", name="below the screen", box=(5, height + 50, 30, 10)),),
            listing=self._step)


def tiny_policy(mode: str, **settings: Any) -> Any:
    from deskdojo.agent.policy import PolicyConfig, load_policy

    return load_policy("tiny-scratch", PolicyConfig(observation=mode, max_new_tokens=6, temperature=0.7, seed=5,
                                            element_budget=220, **settings))


TASK = Task(id="pick", instruction="Click Button 3", family="click_button", max_steps=3)


@pytest.mark.parametrize("mode", OBSERVATION_MODES)
def test_the_tiny_vlm_rolls_out_in_each_mode_and_records_what_it_was_shown(mode: str, tmp_path: Path):
    from deskdojo.agent.rollout import RolloutConfig, rollout

    policy = tiny_policy(mode)
    assert policy.observation == mode
    prompts: list[Any] = []
    build = policy._prompt
    policy._prompt = lambda *a: prompts.append(build(*a)) or prompts[-1]
    run = RunDir.create(tmp_path / "run", {"test": mode})
    sandboxes = [ListingSandbox(synthetic_frames(320, 240), name=f"s{i}") for i in range(2)]
    trajectories = rollout(policy, [TASK, TASK], sandboxes, run, config=RolloutConfig(max_steps=3))
    assert [len(t.steps) for t in trajectories] == [3, 3]
    for trajectory in trajectories:
        folder = run.path / "trajectories" / trajectory.id
        again = read_trajectory(folder)
        for step in again.steps:
            assert step.token_ids and step.prompt.window == (step.frame,)
            if mode == "screenshot":
                assert step.prompt.elements is None
            else:
                listing = ElementList.from_json(json.loads((folder / step.prompt.elements).read_text()))
                assert listing.listing == step.index and len(listing.elements) == 13
    with_images = {p.text.count("<|image_pad|>") for p in prompts}
    assert with_images == ({0} if mode == "a11y_tree" else {1})
    assert all(len(p.images) == (0 if mode == "a11y_tree" else 1) for p in prompts)
    tables = ["Elements (id role" in p.text for p in prompts]
    assert all(tables) if mode != "screenshot" else not any(tables)
    if mode != "screenshot":
        assert all("more elements left out" in p.text and "click #id" in p.text for p in prompts)


def test_som_marks_the_image_the_model_sees_and_screenshot_mode_does_not():
    listing = ListingSandbox(synthetic_frames(320, 240)).elements()
    obs = Observation(screenshot=np.full((240, 320, 3), 90, np.uint8), screen_size=(320, 240), elements=listing)
    som = tiny_policy("som")._prompt([obs], TASK, [])
    plain = tiny_policy("screenshot_a11y_tree")._prompt([obs], TASK, [])
    assert som.text == plain.text  # the same table; only the pixels differ
    assert not np.array_equal(np.asarray(som.images[0]), np.asarray(plain.images[0]))
    assert (np.asarray(plain.images[0]) == 90).all()


def test_render_target_writes_the_point_without_a_listing_and_the_element_with_one():
    resolved = Click(120, 60, element=4)
    obs = observation(None)
    assert tiny_policy("screenshot").render_target(resolved, obs) == "click <x7> <y3>"
    assert tiny_policy("som").render_target(resolved, obs) == "click #4"
    assert tiny_policy("a11y_tree").render_target(Type("hi", element=2), obs) == 'type #2 "hi"'
    wheel = Scroll(120, 60, dy=3, element=4)  # a recorded scroll that named the list under it
    assert tiny_policy("screenshot").render_target(wheel, obs) == "scroll <x7> <y3> down 3"
    assert tiny_policy("a11y_tree").render_target(wheel, obs) == "scroll #4 down 3"


def test_the_mode_is_checked_and_saved_with_the_policy(tmp_path: Path):
    from deskdojo.agent.policy import PolicyConfig, load_policy
    from deskdojo.core.errors import ConfigError

    with pytest.raises(ConfigError, match="a11y_tree"):
        PolicyConfig(observation="a11y")
    tiny_policy("som").save(tmp_path / "p")
    assert load_policy(str(tmp_path / "p")).observation == "som"
    assert load_policy(str(tmp_path / "p"), PolicyConfig(observation="a11y_tree")).observation == "a11y_tree"
    assert load_policy("tiny-scratch").observation == "screenshot"


# --- the training prompt is the acting prompt -----------------------------------------


@pytest.mark.parametrize("mode", ["a11y_tree", "som"])
def test_training_rebuilds_the_prompt_that_acted_from_the_record(mode: str, tmp_path: Path):
    import dataclasses

    import torch

    from deskdojo.agent.rollout import RolloutConfig, rollout
    from deskdojo.evolve.learner import StepPrompts

    policy = tiny_policy(mode)
    acted: list[Any] = []
    build = policy._prompt
    policy._prompt = lambda *a: acted.append(build(*a)) or acted[-1]
    run = RunDir.create(tmp_path / "run", {"test": mode})
    (trajectory,) = rollout(policy, [TASK], [ListingSandbox(synthetic_frames(320, 240))], run,
                            config=RolloutConfig(max_steps=3))
    policy._prompt = build
    trajectory = read_trajectory(run.path / "trajectories" / trajectory.id)
    prompts = StepPrompts(run.path / "trajectories", policy.history_k)

    def sample(trajectory: Any, index: int) -> Any:
        return SimpleNamespace(trajectory=trajectory, step_index=index, task=TASK,
                               token_ids=trajectory.steps[index].token_ids)

    samples = [sample(trajectory, i) for i in range(len(trajectory.steps))]
    for i, s in enumerate(samples):
        rebuilt = policy._prompt(*_prompt_args(prompts.policy_sample(s)))
        assert rebuilt.text == acted[i].text
        assert [np.asarray(a).tobytes() for a in rebuilt.images] == [np.asarray(a).tobytes() for a in acted[i].images]
    with torch.no_grad():
        logp, _ = prompts.logprobs(policy, samples)
    for i, step in enumerate(trajectory.steps):
        gap = (logp[i, :len(step.logprobs)] - torch.tensor(step.logprobs)).abs().max()
        assert float(gap) < 1e-4, (i, float(gap))

    # the control: without the recorded listing the rebuilt prompt is not the one that acted
    bare = dataclasses.replace(trajectory, steps=tuple(
        dataclasses.replace(st, prompt=dataclasses.replace(st.prompt, elements=None)) for st in trajectory.steps))
    assert policy._prompt(*_prompt_args(prompts.policy_sample(sample(bare, 1)))).text != acted[1].text


def _prompt_args(policy_sample: Any) -> tuple[Any, Any, Any]:
    return policy_sample.observations, policy_sample.task, policy_sample.history
