"""The VLM judge: its answer format (strict parse and round trip), voting, what it reads of
an episode (keyframes, actions by element, element changes), retries and judge errors,
the hybrid judge, and the same paths on the real tiny model and a real sandbox."""

from __future__ import annotations

import dataclasses
import json

import pytest

from deskdojo.core.actions import Click, Done, Scroll, Type
from deskdojo.core.elements import Element, ElementList
from deskdojo.core.errors import ConfigError, JudgeError
from deskdojo.core.fakes import FixedJudge
from deskdojo.core.protocols import Judge
from deskdojo.core.rundir import JsonlFile, TrajectoryWriter
from deskdojo.core.types import Check, EndReason, PromptInputs, Step, StepLabel, Task, Trajectory
from deskdojo.world_model.hybrid import HybridJudge
from deskdojo.world_model.vlm_judge import (
    ANSWER_KEYS, ANSWER_ORDER, JudgeAnswer, JudgeAnswerError, ScriptedJudgeModel, VLMJudge, VLMJudgeConfig,
    action_line, asked_lines, asked_texts, combine_votes, element_changes, format_judge_answer, judge_prompt,
    judge_text, judge_view, keyframe_indices, parse_judge_answer,
)

CHECKED = Task(id="with-checks", instruction="Tick “sail”.", family="toggle_choices",
               checks=(Check(getter="app_state", args={"app": "choices", "path": "checked.sail"},
                             metric="equals", expected=True),))
UNCHECKED = Task(id="no-checks", instruction="Tick “sail”.", family="proposed")


def answer(success=True, **changes) -> str:
    data = {"success": success, "score": 1.0 if success else 0.0, "first_error_step": None,
            "redundant_steps": [], "error_type": "none" if success else "wrong_target",
            "correct_action": None, "rationale": "looked"}
    data.update(changes)
    return json.dumps(data)


# --- the answer ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [
    JudgeAnswer(True, 1.0, rationale="the box is ticked"),
    JudgeAnswer(False, 0.5, first_error_step=1, redundant_steps=(0, 2), error_type="undone",
                correct_action='click check box "sail"', rationale="ticked, then unticked “sail”"),
])
def test_an_answer_round_trips_through_its_text(value):
    assert parse_judge_answer(format_judge_answer(value), steps=3) == value


def test_the_canonical_answer_writes_its_evidence_before_its_verdict():
    text = format_judge_answer(JudgeAnswer(False, 0.0, first_error_step=0, error_type="no_effect",
                                           rationale="nothing changed"))
    assert list(json.loads(text)) == list(ANSWER_ORDER) and sorted(ANSWER_ORDER) == sorted(ANSWER_KEYS)
    assert text.startswith('{"error_type": "no_effect"') and text.endswith('"success": false}')


def test_a_fenced_answer_parses():
    assert parse_judge_answer("```json\n" + answer() + "\n```", steps=1).success is True


@pytest.mark.parametrize("text, problem", [
    ("click #1", "one JSON object"),
    ("{\"success\": true", "not valid JSON"),
    (answer() + " and more", "text after"),
    ("[1, 2]", "one JSON object"),
    (json.dumps({"success": True}), "lacks 'score'"),
    (answer(verdict="yes"), "unknown key 'verdict'"),
    (answer(success="yes"), "success must be true or false"),
    (answer(score=1.5), "score must be a number within [0, 1]"),
    (answer(score=float("nan")), "score must be"),
    (answer(False, first_error_step=7), "first_error_step must be a step number within 0..2"),
    (answer(False, first_error_step=True), "first_error_step must be a step number"),
    (answer(redundant_steps=3), "redundant_steps must be a list"),
    (answer(False, error_type="oops"), "error_type must be one of"),
    (answer(True, error_type="undone"), "a success has error_type 'none'"),
    (answer(correct_action=3), "correct_action must be text or null"),
    (answer(rationale=None), "rationale must be text"),
    ("```python\n" + answer() + "\n```", "fenced answer must be ```json"),
    ("x" * 5000, "more than 4096"),
])
def test_a_malformed_answer_is_refused_with_its_reason(text, problem):
    with pytest.raises(JudgeAnswerError, match=problem.replace("[", r"\[").replace("]", r"\]")
                       .replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        parse_judge_answer(text, steps=3)


def test_votes_unanimous_and_majority():
    yes = JudgeAnswer(True, 1.0, redundant_steps=(2,), rationale="done")
    no_late = JudgeAnswer(False, 0.5, first_error_step=2, redundant_steps=(2,), error_type="missing_step",
                          correct_action="click #3", rationale="half")
    no_early = JudgeAnswer(False, 0.0, first_error_step=1, error_type="wrong_target", rationale="wrong")
    unanimous = combine_votes([yes, yes, no_late])
    assert unanimous.success is False and unanimous.first_error_step == 2
    assert unanimous.error_type == "missing_step" and unanimous.correct_action == "click #3"
    assert unanimous.score == pytest.approx(2.5 / 3) and unanimous.redundant_steps == (2,)
    majority = combine_votes([yes, yes, no_late], "majority")
    assert majority.success is True and majority.first_error_step is None and majority.error_type == "none"
    assert combine_votes([no_late, no_early, yes]).first_error_step == 1
    assert combine_votes([yes]).success is True
    with pytest.raises(ConfigError, match="voting rule"):
        combine_votes([yes], "any")


def test_keyframes_keep_the_ends_and_the_changes_within_the_cap():
    assert keyframe_indices([True, False, False, True, False], cap=6) == [0, 3, 4]
    many = keyframe_indices([True] * 20, cap=5)
    assert len(many) == 5 and many[0] == 0 and many[-1] == 19 and many == sorted(set(many))
    assert keyframe_indices([True, True, True], cap=1) == [2]
    assert keyframe_indices([], cap=3) == []


def _el(i, role, name, *states, y=10):
    return Element(id=i, role=role, name=name, box=(10, y, 40, 12), states=frozenset({"enabled", *states}))


def test_element_changes_by_role_and_name_not_by_id():
    before = ElementList((_el(1, "check box", "sail"), _el(2, "button", "Open"), _el(3, "text", "x", "focused")))
    after = ElementList((_el(7, "check box", "sail", "checked"), _el(8, "button", "Save"), _el(9, "text", "x")))
    assert element_changes(before, after) == ['~ check box "sail": +checked', '- button "Open"',
                                              '+ button "Save"']
    assert element_changes(before, before) == [] and element_changes(None, after) == []
    crowd = ElementList(tuple(_el(i, "label", f"w{i}") for i in range(30)))
    lines = element_changes(ElementList(()), crowd, limit=5)
    assert len(lines) == 6 and lines[-1] == "(and 25 more changes)"


def test_the_evidence_says_what_the_actions_did_with_each_quoted_text():
    listing = ElementList((_el(1, "page tab", "Glove"), _el(2, "check box", "Enable star"), _el(3, "text", "")))
    last = ElementList((_el(4, "check box", "Enable star", "checked"), _el(5, "dialog", "Confirm")))
    steps = [Step(index=0, action=Click(element=2)), Step(index=1, action=Type(text="Turin!", element=3)),
             Step(index=2, action=Click(element=1), action_error="refused: outside the screen")]
    lines = asked_lines('Tick “Enable star”, type "Turin" and press "Apply".', steps, [listing] * 3, last)
    assert lines == ('"Enable star": click at step 0; at the end check box [checked]',
                     '"Turin": typed at step 1; not on the last screen',
                     '"Apply": no action on it; not on the last screen',
                     'not acted on: "Apply"',
                     'still open at the end: dialog "Confirm"')
    menus = ElementList((_el(1, "menu", "File"), _el(2, "menu item", "Save As..."), _el(3, "panel", "Piano colour")))
    clicks = [Step(index=0, action=Click(element=1)), Step(index=1, action=Click(element=2))]
    assert asked_lines('Choose File > Save As... in the “Piano colour” panel.', clicks, [menus] * 2, menus) == (
        '"Piano colour": names a panel, a place rather than a target',
        '"File": click at step 0; at the end menu', '"Save As...": click at step 1; at the end menu item',
        'every target the task names was acted on')
    assert asked_lines("Press the button and close it.", steps, [listing] * 3, listing) == ()
    # a scroll over a row of the asked name turns a view; the row is still to act on
    rows = ElementList((_el(1, "list item", "Lantern"),))
    turned = [Step(index=0, action=Scroll(element=1, dy=3))]
    assert asked_lines('Scroll to "Lantern" and click it.', turned, [rows], rows) == (
        '"Lantern": no action on it; at the end list item', 'not acted on: "Lantern"')
    assert action_line(turned[0], rows) == 'scroll list item "Lantern" dy=3'
    assert action_line(Step(index=0, action=Scroll(5, 6, dx=-2)), rows) == "scroll(x=5, y=6, dx=-2, dy=0)"


def test_a_task_names_targets_without_quotes_too():
    # capitalised words inside a sentence are names; a sentence's first word is not
    assert asked_texts("Open the Puzzle menu in the menu bar and click Stone.") == ["Puzzle", "Stone"]
    assert asked_texts("Drag the Dev tile onto the Teal box. Leave the rest.") == ["Dev", "Teal"]
    # a name of several words is cut to the longest run that names a row
    assert asked_texts("Click Save As and close it.", frozenset({"save as"})) == ["Save As"]
    assert asked_texts("Open the Zebra menu and click Beige rabbit.", frozenset({"beige rabbit"})) == [
        "Zebra", "Beige rabbit"]
    assert asked_texts("Choose Stamp > Gray rainbow.", frozenset({"stamp", "gray rainbow"})) == [
        "Stamp", "Gray rainbow"]
    assert asked_texts("Choose File > Save As...", frozenset({"file", "save as..."})) == ["File", "Save As..."]
    # quoted texts and menu paths are not read twice
    assert asked_texts('Press "Delete orchard", then pick File > Save.') == ["Delete orchard", "File", "Save"]
    menubar = ElementList((_el(1, "menu", "Puzzle"), _el(2, "button", "Help")))
    done = [Step(index=0, action=Done())]
    assert asked_lines("Open the Puzzle menu and click Stone.", done, [menubar], menubar) == (
        '"Puzzle": no action on it; at the end menu', '"Stone": no action on it; not on the last screen',
        'not acted on: "Puzzle", "Stone"')
    # the label beside a field ("Note:") is where to type, never a target; a row seen on
    # any screen says so, though the dialog is gone at the end
    dialog = ElementList((_el(1, "label", "Note:"), _el(2, "text", "", "editable"), _el(3, "button", "Delete")))
    typed = [Step(index=0, action=Type(text="Sami", element=2)), Step(index=1, action=Click(element=3))]
    assert asked_lines('Type "Sami" into the Note field, then press Delete.', typed, [dialog] * 2,
                       ElementList(())) == ('"Sami": typed at step 0; not on the last screen',
                                            '"Note": names a label, a place rather than a target',
                                            '"Delete": click at step 1; not on the last screen',
                                            'every target the task names was acted on')


def test_the_evidence_view_numbers_each_action_by_its_kind():
    steps = (Step(index=0, action=Click(element=2)), Step(index=1, action=None, model_text="click where?"),
             Step(index=2, action=Click(5000, 1), action_error="outside the screen"), Step(index=3, action=Done()))
    view = judge_view(CHECKED, Trajectory(id="t", task_id=CHECKED.id, steps=steps, end=EndReason.DONE), None)
    text = judge_text(view, layout="evidence")
    assert text.endswith("Actions:\n0. click\n1. (an answer that did not parse)\n2. click (refused)\n3. done\n"
                         "The episode ended: done.\n")
    assert judge_text(dataclasses.replace(view, kinds=()), layout="evidence").count(". action\n") == 4


# --- the judge over a stored episode ------------------------------------------------------


def _png(shade: int) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), (shade, shade, shade)).save(buffer, format="PNG")
    return buffer.getvalue()


def _episode(root, *, end=EndReason.DONE) -> Trajectory:
    """Three steps: click "sail" (it becomes checked), click "sail" again (unchecked), done."""
    listings = [ElementList((_el(4, "check box", "sail"), _el(5, "button", "Confirm", y=30))),
                ElementList((_el(4, "check box", "sail", "checked"), _el(5, "button", "Confirm", y=30))),
                ElementList((_el(4, "check box", "sail"), _el(5, "button", "Confirm", y=30)))]
    writer = TrajectoryWriter(root / "traj-1", "traj-1", CHECKED.id, "test")
    actions = [Click(30, 16, element=4), Click(30, 16, element=4), Done()]
    for index, (listing, action, shade) in enumerate(zip(listings, actions, (0, 80, 0))):
        frame = writer.write_frame(index, _png(shade))
        named = writer.write_elements(index, json.dumps(listing.to_json()).encode())
        writer.append_step(Step(index=index, action=action, frame=frame, model_text=f"step {index}",
                                prompt=PromptInputs(window=(frame,), elements=named)))
    return writer.finish(end)


def test_the_judge_reads_actions_by_element_and_what_they_changed(tmp_path):
    trajectory = _episode(tmp_path)
    model = ScriptedJudgeModel([answer(False, score=0.0, first_error_step=1, redundant_steps=[0],
                                       error_type="undone", correct_action="done")])
    judge = VLMJudge(model, tmp_path, VLMJudgeConfig(keyframes=6))
    verdict = judge.judge(CHECKED, trajectory, None)
    (prompt,) = model.asked
    assert '0. click check box "sail"' in prompt.text and '   ~ check box "sail": +checked' in prompt.text
    assert '1. click check box "sail"' in prompt.text and '   ~ check box "sail": -checked' in prompt.text
    assert "2. done" in prompt.text and "Task: Tick “sail”." in prompt.text
    # the evidence and the ending lead, right after the task, before the listing
    order = [prompt.text.index(part) for part in ("Task:", "Evidence:", "The episode ended: done.", "Actions:",
                                                  "Elements at the end:")]
    assert order == sorted(order)
    assert len(prompt.images) == 3  # every frame differs from the one before
    assert isinstance(judge, Judge)
    assert verdict.success is False and verdict.judge_id == "vlm"
    assert verdict.step_labels == (StepLabel.NO_OP, StepLabel.ERROR, StepLabel.PROGRESS)
    assert verdict.first_error_step == 1 and verdict.evidence[0].observed["error_type"] == "undone"


def test_an_answer_that_does_not_parse_is_asked_again_then_a_judge_error(tmp_path):
    trajectory = _episode(tmp_path)
    retried = VLMJudge(ScriptedJudgeModel(["click #1", answer()]), tmp_path, VLMJudgeConfig(retries=2))
    assert retried.judge(CHECKED, trajectory, None).success is True and retried.retried == 1
    failing = VLMJudge(ScriptedJudgeModel(["click #1"] * 3), tmp_path, VLMJudgeConfig(retries=2))
    with pytest.raises(JudgeError, match="3 of 3|1 of 1") as raised:
        failing.judge(CHECKED, trajectory, None)
    assert "one JSON object" in str(raised.value) and "click #1" in str(raised.value)


def test_k_votes_need_every_yes_for_a_success(tmp_path):
    trajectory = _episode(tmp_path)
    judge = VLMJudge(ScriptedJudgeModel([answer(), answer(), answer(False, first_error_step=1)]), tmp_path,
                     VLMJudgeConfig(votes=3))
    verdict = judge.judge(CHECKED, trajectory, None)
    assert verdict.success is False and len(verdict.evidence) == 3 and verdict.first_error_step == 1
    majority = VLMJudge(ScriptedJudgeModel([answer(), answer(), answer(False)]), tmp_path,
                        VLMJudgeConfig(votes=3, rule="majority"))
    assert majority.judge(CHECKED, trajectory, None).success is True


def test_a_stored_folder_is_judged_from_its_frames(tmp_path):
    _episode(tmp_path)
    model = ScriptedJudgeModel([answer()])
    verdict = VLMJudge(model, None).judge_folder(CHECKED, tmp_path / "traj-1")
    assert verdict.success is True and '0. click check box "sail"' in model.asked[0].text


def test_the_config_refuses_what_it_cannot_do():
    for bad in ({"votes": 0}, {"retries": -1}, {"rule": "any"}, {"temperature": -1.0}, {"keyframes": 0}):
        with pytest.raises(ConfigError):
            VLMJudgeConfig(**bad)


# --- the hybrid judge --------------------------------------------------------------------------


def test_the_hybrid_judge_uses_checks_where_a_task_has_them(tmp_path):
    trajectory = _episode(tmp_path)
    unchecked = Trajectory(id=trajectory.id, task_id=UNCHECKED.id, steps=trajectory.steps, end=trajectory.end)
    model = ScriptedJudgeModel([answer(False, first_error_step=1)])
    hybrid = HybridJudge(FixedJudge(success=True), VLMJudge(model, tmp_path))
    by_checks = hybrid.judge(CHECKED, trajectory, None)
    assert by_checks.judge_id == "hybrid" and by_checks.success is True and not model.asked
    by_vlm = hybrid.judge(UNCHECKED, unchecked, None)
    assert by_vlm.judge_id == "hybrid" and by_vlm.success is False and len(model.asked) == 1
    assert [e.check for e in by_vlm.evidence] == ["vlm"]
    assert hybrid.counts == {"checks": 1, "vlm": 1, "both": 0, "disagreements": 0}


def test_both_judges_write_every_disagreement_and_keep_the_checks_outcome(tmp_path):
    trajectory = _episode(tmp_path)
    path = tmp_path / "disagreements.jsonl"
    model = ScriptedJudgeModel([answer(False, first_error_step=1, redundant_steps=[0]), answer(True)])
    hybrid = HybridJudge(FixedJudge(success=True), VLMJudge(model, tmp_path), mode="both", disagreements=path)
    verdict = hybrid.judge(CHECKED, trajectory, None)
    assert verdict.success is True and verdict.judge_id == "hybrid"
    assert verdict.step_labels == (StepLabel.NO_OP, StepLabel.ERROR, StepLabel.PROGRESS)
    assert verdict.first_error_step == 1
    hybrid.judge(CHECKED, trajectory, None)  # the second time they agree
    (line,) = list(JsonlFile(path).read())
    assert line["task_id"] == CHECKED.id and line["checks"]["success"] is True
    assert line["vlm"]["success"] is False and line["vlm"]["answer"]["first_error_step"] == 1
    with pytest.raises(ConfigError, match="disagreements"):
        HybridJudge(FixedJudge(success=True), VLMJudge(model, tmp_path), mode="both")
    with pytest.raises(ConfigError, match="mode"):
        HybridJudge(FixedJudge(success=True), VLMJudge(model, tmp_path), mode="vote")


# --- real parts: the tiny model and a real sandbox --------------------------------------------


def test_the_real_tiny_model_answers_and_what_does_not_parse_is_a_judge_error(tmp_path):
    """The shipped reader was never taught to judge: its answers must not parse, and they
    must come back as a judge error after the retries, never as a verdict."""
    from deskdojo.agent.policy import PolicyConfig, load_policy
    from deskdojo.world_model.vlm_judge import PolicyJudgeModel

    policy = load_policy("tiny", PolicyConfig())
    model = PolicyJudgeModel(policy, max_new_tokens=24, images=False)
    trajectory = _episode(tmp_path)
    prompt = judge_prompt(VLMJudge(model, tmp_path).view(CHECKED, trajectory, None), images=False)
    texts = model.answer([prompt, prompt], temperature=0.0)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts) and texts[0] == texts[1]
    judge = VLMJudge(model, tmp_path, VLMJudgeConfig(retries=1, images=False))
    with pytest.raises(JudgeError, match="do not parse"):
        judge.judge(CHECKED, trajectory, None)
    assert judge.retried == 1


def test_a_real_oracle_episode_reads_as_clicks_on_named_elements(box, tmp_path):
    """An oracle demo recorded in a real xvfb sandbox: the judge's text names what was
    clicked and what changed, and after the last action it reads the sandbox's screen."""
    from deskdojo.agent.demos import record_oracle_demos
    from deskdojo.core.rundir import read_trajectory
    from deskdojo.curriculum.families import get_family

    task = get_family("toggle_choices").generate(0, 3, "train")
    (folder,) = record_oracle_demos([task], box, tmp_path / "demos")
    trajectory = read_trajectory(folder)
    model = ScriptedJudgeModel([answer()])
    verdict = VLMJudge(model, None).judge_folder(task, folder)
    text = model.asked[0].text
    target = task.oracle[0].at.path.rsplit(":", 1)[-1]
    assert f'0. click check box "{target}"' in text or f'0. click radio button "{target}"' in text, text
    assert f'"{target}": +checked' in text, text
    assert verdict.success is True and len(verdict.step_labels) == len(trajectory.steps)
    # judged live after a step limit, the screen after the last action is read from the sandbox
    cut = Trajectory(id=trajectory.id, task_id=task.id, steps=trajectory.steps[:1], end=EndReason.STEP_LIMIT)
    live = VLMJudge(ScriptedJudgeModel([answer()]), tmp_path / "demos", VLMJudgeConfig(keyframes=2))
    view = live.view(task, cut, box)
    assert view.final_screenshot is not None and view.final_elements
    assert any(target in line for line in view.final_elements)
