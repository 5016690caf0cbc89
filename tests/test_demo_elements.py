"""Oracle demos keep each step's element listing and the element a click landed on, so one
recording trains every observation mode (SFT in a11y_tree mode runs on it, its targets name
the element; screenshot mode's name the point) and still replays by its points."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from deskdojo.agent.demos import load_demo, record_oracle_demos, with_pointed_element
from deskdojo.core.actions import Click, Done, Scroll, Type
from deskdojo.core.elements import Element, ElementList

FAMILIES = ("click_button", "toggle_choices", "select_list")


def listing(*boxes: tuple[int, int, int, int]) -> ElementList:
    return ElementList(tuple(Element(id=i, role="button", name=f"e{i}", box=box) for i, box in enumerate(boxes)))


def test_a_click_by_its_point_gets_the_smallest_listed_element_holding_it():
    elements = listing((0, 0, 400, 300), (100, 100, 50, 20), (90, 90, 100, 60), (500, 500, 10, 10))
    assert with_pointed_element(Click(110, 105), elements) == Click(110, 105, element=1)
    assert with_pointed_element(Click(95, 95), elements) == Click(95, 95, element=2)
    assert with_pointed_element(Click(150, 100), elements).element == 2  # x + w is outside the box
    assert with_pointed_element(Click(450, 450), elements) == Click(450, 450)  # on no element
    assert with_pointed_element(Click(110, 105, element=3), elements).element == 3  # named: kept
    assert with_pointed_element(Type("hi"), elements) == Type("hi")
    assert with_pointed_element(Done(), listing()) == Done()


def test_a_scroll_by_its_point_gets_the_element_that_scrolls_under_it_not_the_label_it_was_over():
    canvas = Element(id=2, role="canvas", name="", box=(40, 427, 275, 175))
    bar = Element(id=3, role="scroll bar", name="", box=(315, 427, 10, 175))
    elements = ElementList((Element(id=0, role="frame", name="app", box=(0, 0, 800, 700)),
                            Element(id=1, role="label", name="Lantern", box=(53, 436, 54, 17)), canvas, bar,
                            Element(id=4, role="label", name="Archive", box=(40, 391, 88, 28))))
    assert with_pointed_element(Scroll(60, 440, dy=3), elements) == Scroll(60, 440, dy=3, element=2)  # on a label
    assert with_pointed_element(Scroll(200, 550, dx=-2), elements).element == 2
    assert with_pointed_element(Scroll(318, 500, dy=1), elements).element == 3  # the bar, not the frame
    assert with_pointed_element(Scroll(50, 400, dy=1), elements).element == 4  # nothing scrolls here: the smallest
    assert with_pointed_element(Scroll(790, 690, dy=1), listing((0, 0, 10, 10))) == Scroll(790, 690, dy=1)
    assert with_pointed_element(Scroll(element=1, dy=1), elements) == Scroll(element=1, dy=1)  # named: kept
    assert with_pointed_element(Click(60, 440), elements).element == 1  # a click still takes the smallest


def test_bench_sft_takes_modes_as_a_comma_list_or_repeated_and_checks_them():
    import argparse

    from deskdojo.commands.bench_sft import SFTBenchConfig, add_bench_sft_parser
    from deskdojo.core.errors import ConfigError

    parser = argparse.ArgumentParser()
    add_bench_sft_parser(parser.add_subparsers())
    args = parser.parse_args(["sft", "--observation", "screenshot,a11y_tree", "--observation", "som", "--no-before"])
    assert args.observation == ["screenshot,a11y_tree", "som"] and args.before is False
    assert SFTBenchConfig().observations == ("screenshot",)
    with pytest.raises(ConfigError, match="a11y_tree"):
        SFTBenchConfig(observations=("a11y",))
    with pytest.raises(ConfigError, match="name each once"):
        SFTBenchConfig(observations=("som", "som"))


@pytest.fixture(scope="module")
def oracle_demos(box: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two oracle demos per family, recorded in a real Xvfb sandbox."""
    from deskdojo.curriculum.families import get_family

    tasks = [get_family(name).generate(0, seed, "train") for name in FAMILIES for seed in range(2)]
    folder = tmp_path_factory.mktemp("oracle") / "demos"
    record_oracle_demos(tasks, box, folder)
    return folder


@pytest.mark.display
def test_oracle_demos_record_listings_and_the_clicked_element(oracle_demos: Path):
    clicks = 0
    for folder in sorted(oracle_demos.iterdir()):
        demo = load_demo(folder)
        for step in demo.trajectory.steps:
            assert step.prompt is not None and step.prompt.window == (step.frame,)
            shown = ElementList.from_json(json.loads((folder / step.prompt.elements).read_text()))
            assert shown.sources["tk"].ok and shown.elements
            if isinstance(step.action, Click):
                clicks += 1
                hit = shown.by_id(step.action.element)
                x, y, w, h = hit.box
                assert x <= step.action.x < x + w and y <= step.action.y < y + h
                assert hit.role in ("button", "check box", "radio button", "list item"), hit
                assert hit.name and hit.name.lower() in demo.task.instruction.lower(), (hit, demo.task.instruction)
    assert clicks >= len(FAMILIES) * 2


@pytest.mark.display
@pytest.mark.timeout(900)  # a few tiny-model steps; far longer when the machine is shared
def test_sft_in_a11y_tree_mode_trains_on_oracle_demos_with_element_targets(oracle_demos: Path, tmp_path: Path):
    from deskdojo.agent.policy import PolicyConfig, load_policy
    from deskdojo.agent.train.sft import SFTConfig, read_demos, sft, to_samples

    examples = [e for e in read_demos(oracle_demos) if e.action.kind == "click"]
    for mode, pattern in (("a11y_tree", r"click #\d+"), ("screenshot", r"click <x\d+> <y\d+>")):
        [sample] = to_samples(load_policy("tiny-scratch", PolicyConfig(observation=mode)), examples[:1])
        assert re.fullmatch(pattern, sample.target_text), (mode, sample.target_text)
    assert to_samples(load_policy("tiny-scratch", PolicyConfig(observation="a11y_tree")), examples[:1])[0].target_text \
        == f"click #{examples[0].action.element}"
    result = sft(SFTConfig(demos=str(oracle_demos), out=str(tmp_path / "sft"), steps=3, batch_size=4, lr=1e-3,
                           observation="a11y_tree", log_every=1), log=lambda line: None)
    assert result.policy.observation == "a11y_tree" and result.last_loss < result.first_loss


@pytest.mark.display
def test_a_demo_with_element_clicks_replays_by_its_points(oracle_demos: Path, box: Any):
    from deskdojo.agent.replay import replay
    from deskdojo.world_model.judge import StateJudge

    for folder in sorted(oracle_demos.iterdir())[::2]:  # one demo per family
        report = replay(folder, box, judge=StateJudge())
        assert report.first_divergent is None and not any(s.action_error for s in report.steps), report
        assert report.verdict.success, (folder.name, report.verdict)


@pytest.mark.display
@pytest.mark.timeout(600)
def test_a_scroll_find_demo_names_the_list_it_scrolls_trains_on_it_and_replays_by_its_points(box: Any,
                                                                                            tmp_path: Path):
    from deskdojo.agent.policy import PolicyConfig, load_policy
    from deskdojo.agent.replay import replay
    from deskdojo.agent.train.sft import read_demos, to_samples
    from deskdojo.core.elements import SCROLL_ROLES
    from deskdojo.curriculum.families import get_family
    from deskdojo.world_model.judge import StateJudge

    task = get_family("scroll_find").generate(1, 4, "train")
    [folder] = record_oracle_demos([task], box, tmp_path / "demos")
    wheels = [s for s in load_demo(folder).trajectory.steps if isinstance(s.action, Scroll)]
    assert wheels
    for step in wheels:  # the oracle turned the wheel by its point, over the list: the demo names the list
        shown = ElementList.from_json(json.loads((folder / step.prompt.elements).read_text()))
        assert shown.by_id(step.action.element).role in SCROLL_ROLES and step.action.x is not None
    examples = [e for e in read_demos(tmp_path / "demos") if isinstance(e.action, Scroll)]
    for config, pattern in ((PolicyConfig(observation="a11y_tree"), rf"scroll #{wheels[0].action.element} down \d+"),
                            (PolicyConfig(observation="a11y_tree", element_order="task"), r"scroll #\d+ down \d+"),
                            (PolicyConfig(observation="screenshot"), r"scroll <x\d+> <y\d+> down \d+")):
        [sample] = to_samples(load_policy("tiny-scratch", config), examples[:1])
        assert re.fullmatch(pattern, sample.target_text), (config, sample.target_text)
    report = replay(folder, box, judge=StateJudge())  # by the recorded points: the ids were that listing's
    assert report.first_divergent is None and not any(s.action_error for s in report.steps), report
    assert report.verdict.success, report.verdict


def test_the_recorder_keeps_the_listing_the_error_line_and_both_targets(tmp_path: Path):
    from deskdojo.agent.demos import DemoRecorder
    from deskdojo.core.types import Task
    from deskdojo.vm.fake import FakeSandbox, synthetic_frames

    sandbox = FakeSandbox(synthetic_frames(200, 120))
    sandbox.set_elements(listing((10, 10, 80, 30), (100, 60, 60, 40)).elements)
    recorder = DemoRecorder(sandbox, Task(id="t", instruction="click", family="test"), tmp_path, settle_s=0)
    assert not recorder.act(Click(900, 900)).ok  # off screen: refused
    recorder.act(Click(120, 70))
    recorder.act(Click(element=0))  # named: recorded where the sandbox resolved it
    steps = load_demo(recorder.finish("d")).trajectory.steps
    assert [s.action for s in steps] == [Click(900, 900), Click(120, 70, element=1), Click(50, 25, element=0),
                                         Done()]
    assert steps[0].prompt.error is None and steps[1].prompt.error == steps[0].action_error is not None
    assert all(s.prompt.elements == f"frames/{s.index:04d}.elements.json" for s in steps)
    bare = DemoRecorder(sandbox, Task(id="t", instruction="click", family="test"), tmp_path, settle_s=0,
                        elements=False)
    bare.act(Click(120, 70))
    assert load_demo(bare.finish("bare")).trajectory.steps[0].action == Click(120, 70)


@pytest.mark.display
@pytest.mark.timeout(900)  # two tiny policies, one SFT step each; far longer when the machine is shared
def test_bench_sft_trains_one_policy_per_mode_on_one_recording_and_resumes(tmp_path: Path):
    from deskdojo.commands.bench_sft import SFTBenchConfig, print_sft_bench_table, run_sft_bench

    config = SFTBenchConfig(families=("click_button",), demos=2, heldout=2, steps=1, batch_size=2, sandboxes=2,
                            max_steps=2, before=False, observations=("a11y_tree", "screenshot"),
                            out=str(tmp_path / "bench"))
    lines: list[str] = []
    result = run_sft_bench(config, log=lines.append)
    assert list(result["modes"]) == ["a11y_tree", "screenshot"] and result["demo_steps"] == 4
    for mode, row in result["modes"].items():
        assert row["families"]["click_button"]["heldout"] == 2 and row["families"]["click_button"]["before"] is None
        assert any(line.startswith(f"bench sft: {mode}: after click_button ") for line in lines)
    trajectories = list((tmp_path / "bench" / "after-a11y_tree").rglob("steps.jsonl"))
    assert len(trajectories) == 2  # both modes were judged on the same held-out tasks, each in its own folder
    lines.clear()
    again = run_sft_bench(config, log=lines.append)  # everything kept: nothing is recorded or trained again
    assert again["modes"] == result["modes"] and any("reusing the demos" in line for line in lines)
    assert not any(line.startswith("sft:") for line in lines)
    print_sft_bench_table(again)


def first_listing(sandbox: Any, run: Any, config: Any, instruction: str = "look") -> ElementList:
    """The element listing the first step of a one-step a11y_tree rollout on ``sandbox`` saw."""
    from deskdojo.agent.rollout import rollout
    from deskdojo.core.fakes import ScriptedPolicy
    from deskdojo.core.types import Task

    policy = ScriptedPolicy([Done()])
    policy.observation = "a11y_tree"
    task = Task(id="t", instruction=instruction, family="test")
    [trajectory] = rollout(policy, [task], [sandbox], run, config=config)
    return ElementList.from_json(json.loads((run.path / "trajectories" / trajectory.id /
                                             trajectory.steps[0].prompt.elements).read_text()))


def test_the_first_observation_in_an_element_mode_waits_for_the_apps_listing(tmp_path: Path):
    """Apps show their window a moment before they publish their widget walk; a rollout
    that acted on that first, empty table would face a screen no demo ever showed."""
    from deskdojo.agent.rollout import RolloutConfig
    from deskdojo.core.rundir import RunDir
    from deskdojo.vm.fake import FakeSandbox, synthetic_frames

    class LateWalk(FakeSandbox):
        reads = 0

        def elements(self, sources: Any = None) -> ElementList:
            self.reads += 1
            return listing() if self.reads <= 3 else listing((10, 10, 30, 20))

    run = RunDir.create(tmp_path / "run", {"test": "late walk"})
    assert len(first_listing(LateWalk(synthetic_frames(64, 48)), run, RolloutConfig(max_steps=1)).elements) == 1
    no_wait = RolloutConfig(max_steps=1, first_listing_s=0)
    assert not first_listing(LateWalk(synthetic_frames(64, 48)), run, no_wait).elements


def test_a_refused_element_click_has_no_point_to_ground():
    """A click by an element the sandbox refused stays unresolved (no x, y): the judge's
    grounding counts it as pointing nowhere instead of crashing the verdict."""
    from deskdojo.world_model.grounding import Target, grounding

    box = {"x": 100, "y": 100, "w": 40, "h": 20}
    assert grounding([Click(element=9)], [Target(box)]) == 0.0
    assert grounding([Click(element=9), Click(120, 110, element=2)], [Target(box)]) == 1.0


def test_the_first_observation_waits_past_text_read_off_the_screen_for_the_widget_walk(tmp_path: Path):
    """OCR answers as soon as the window shows; the app's walk comes a moment later. A
    first table of text lines only hides every menu, tab and button as such."""
    from deskdojo.agent.rollout import RolloutConfig, lists_widgets
    from deskdojo.core.elements import SourceReport
    from deskdojo.core.rundir import RunDir
    from deskdojo.vm.fake import FakeSandbox, synthetic_frames

    text_only = ElementList((Element(id=0, role="text line", name="Panda Tulip", box=(0, 0, 40, 8)),),
                            sources={"tk": SourceReport(ok=True), "ocr": SourceReport(ok=True, count=1)})
    walked = ElementList((Element(id=0, role="menu", name="Panda", box=(0, 0, 20, 8)),
                          Element(id=1, role="text line", name="Panda Tulip", box=(0, 0, 40, 8))),
                         sources={"tk": SourceReport(ok=True, count=1), "ocr": SourceReport(ok=True, count=1)})
    assert not lists_widgets(text_only) and lists_widgets(walked) and lists_widgets(listing((0, 0, 1, 1)))

    class OcrFirst(FakeSandbox):
        reads = 0

        def elements(self, sources: Any = None) -> ElementList:
            self.reads += 1
            return text_only if self.reads <= 3 else walked

    run = RunDir.create(tmp_path / "run", {"test": "ocr first"})
    first = first_listing(OcrFirst(synthetic_frames(64, 48)), run, RolloutConfig(max_steps=1),
                          "Choose Tulip from the Panda menu")
    assert [e.role for e in first.elements] == ["menu", "text line"]
