"""Distilling checks into a judge and calibrating it: labels from check verdicts, the
split by family and seed, the agreement figures on a fixed set with a known answer, the
adversarial sets in a real sandbox, and `deskdojo judge train` / `calibrate` end to end
on the real tiny model."""

from __future__ import annotations

import json

import pytest

from deskdojo.core.actions import Click, Done
from deskdojo.core.errors import ConfigError
from deskdojo.core.records import to_json
from deskdojo.core.rundir import JsonlFile
from deskdojo.core.types import Check, EndReason, Step, StepLabel, Task, Trajectory, Verdict
from deskdojo.world_model.distill import (
    JudgeExample, agreement, answer_from_checks, calibration_report, run_examples, task_split,
)
from deskdojo.world_model.vlm_judge import JudgeAnswer, format_judge_answer


def _task(family="toggle_choices", seed=1, level=0) -> Task:
    return Task(id=f"{family}-L{level}-train-{seed}", instruction="Tick “sail”.", family=family, level=level,
                seed=seed, checks=(Check(getter="app_state", args={"app": "choices", "path": "checked.sail"},
                                         metric="equals", expected=True),))


def _trajectory(end=EndReason.DONE, actions=(Click(3, 3, element=1), Done())) -> Trajectory:
    return Trajectory(id="t1", task_id="x", end=end, steps=tuple(Step(index=i, action=a) for i, a in enumerate(actions)))


def _verdict(success, labels, score=None, first_error=None) -> Verdict:
    return Verdict(task_id="x", trajectory_id="t1", success=success, score=float(success) if score is None else score,
                   judge_id="state", step_labels=tuple(labels), first_error_step=first_error)


def test_check_verdicts_become_judge_answers():
    progress, noop, error = StepLabel.PROGRESS, StepLabel.NO_OP, StepLabel.ERROR
    ok = answer_from_checks(_trajectory(), _verdict(True, [progress, progress]))
    assert ok == JudgeAnswer(True, 1.0, None, (), "none", None, "the task is done")
    early = answer_from_checks(_trajectory(), _verdict(False, [progress, progress], score=0.5))
    assert (early.success, early.score, early.first_error_step, early.error_type) == (False, 0.5, 1, "premature_done")
    idle = answer_from_checks(_trajectory(), _verdict(False, [noop, progress]))
    assert (idle.first_error_step, idle.redundant_steps, idle.error_type) == (0, (0,), "no_effect")
    limit = answer_from_checks(_trajectory(EndReason.STEP_LIMIT, (Click(1, 1), None, Click(2, 2))),
                               _verdict(False, [progress, error, progress], first_error=1))
    assert (limit.first_error_step, limit.error_type) == (1, "missing_step")
    assert json.loads(format_judge_answer(limit))["first_error_step"] == 1


def test_a_task_is_in_one_split_whichever_run_it_came_from():
    tasks = [_task(seed=s) for s in range(400)]
    splits = [task_split(t, unseen=["switch_tab"], heldout_share=0.25) for t in tasks]
    assert splits == [task_split(t, unseen=["switch_tab"], heldout_share=0.25) for t in tasks]
    assert 0.15 < splits.count("heldout") / len(splits) < 0.35 and set(splits) == {"train", "heldout"}
    assert task_split(_task("switch_tab"), unseen=["switch_tab"], heldout_share=0.25) == "unseen"
    assert task_split(_task(), unseen=[], heldout_share=1.0) == "heldout"


def test_agreement_figures_on_a_set_with_a_known_answer():
    # judge vs checks: 6 true positives, 2 false positives, 1 false negative, 11 true negatives
    pairs = [(True, True)] * 6 + [(True, False)] * 2 + [(False, True)] * 1 + [(False, False)] * 11
    figures = agreement(pairs)
    assert (figures["tp"], figures["fp"], figures["fn"], figures["tn"]) == (6, 2, 1, 11)
    assert figures["precision"] == 0.75 and figures["recall"] == pytest.approx(6 / 7, abs=1e-4)
    assert figures["npv"] == pytest.approx(11 / 12, abs=1e-4) and figures["accuracy"] == 0.85
    # kappa: p_o = 0.85, p_e = (8*7 + 12*13) / 400 = 0.53
    assert figures["kappa"] == pytest.approx((0.85 - 0.53) / (1 - 0.53), abs=1e-4)
    assert agreement([])["precision"] is None and agreement([(False, False)])["precision"] is None
    assert agreement([(True, True), (False, False)])["kappa"] == 1.0


def test_the_report_counts_adversarial_false_successes_and_unparsed_answers():
    def example(split, success, family="toggle_choices"):
        return JudgeExample(task=_task(family), trajectory_id="t", text="", answer=JudgeAnswer(success, float(success)),
                            split=split, steps=2)

    yes, no = JudgeAnswer(True, 1.0), JudgeAnswer(False, 0.0)
    judged = [(example("heldout", True), yes, 0.1), (example("heldout", False), None, 0.3),
              (example("unseen", True, "switch_tab"), no, 0.2),
              (example("adversarial:done_nothing", False), yes, 0.1),
              (example("adversarial:done_nothing", False), no, 0.1)]
    report = calibration_report(judged)
    assert report["heldout"]["overall"]["precision"] == 1.0 and report["heldout"]["overall"]["unparsed"] == 1
    assert report["heldout"]["overall"]["median_s_per_verdict"] == 0.3
    assert report["unseen"]["families"]["switch_tab"]["recall"] == 0.0
    assert report["adversarial"]["done_nothing"] == {"episodes": 2, "checks_fail": 2, "judge_says_success": 1,
                                                     "false_success_rate": 0.5, "unparsed": 0}


def test_the_evidence_view_shows_the_evidence_the_action_count_and_the_ending_only(tmp_path):
    from deskdojo.world_model.vlm_judge import PolicyJudgeModel, judge_text

    examples = run_examples([_fake_run(tmp_path / "run")], log=lambda _: None)
    short = run_examples([tmp_path / "run"], layout="evidence", log=lambda _: None)
    for full, evidence in zip(examples, short):
        assert evidence.text.startswith("Task: Tick “sail”.\nEvidence:\n")
        assert evidence.text.endswith("Actions:\n0. click\n1. done\nThe episode ended: done.\n")
        assert "0. click(" in full.text and "0. click(" not in evidence.text
    with pytest.raises(ValueError, match="judge view 'short'"):
        judge_text(None, layout="short")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="judge train: view"):
        distill_config(view="short")
    with pytest.raises(ConfigError, match="judge view 'short'"):
        PolicyJudgeModel(object(), view="short")


def distill_config(**options):
    from deskdojo.world_model.distill import JudgeTrainConfig

    return JudgeTrainConfig(**options)


def _fake_run(root, count=12):
    """A run folder as evolve writes it: tasks.jsonl, verdicts.jsonl, trajectories/<id>/."""
    from deskdojo.core.rundir import TrajectoryWriter

    root.mkdir(parents=True)
    tasks, verdicts = JsonlFile(root / "tasks.jsonl"), JsonlFile(root / "verdicts.jsonl")
    for i in range(count):
        task = _task("toggle_choices" if i % 3 else "switch_tab", seed=i)
        tasks.append({"task": to_json(task)})
        writer = TrajectoryWriter(root / "trajectories" / f"traj-{i}", f"traj-{i}", task.id, "test")
        writer.append_step(Step(index=0, action=Click(3, 3)))
        writer.append_step(Step(index=1, action=Done()))
        writer.finish(EndReason.DONE)
        success = i % 2 == 0
        verdicts.append(Verdict(task_id=task.id, trajectory_id=f"traj-{i}", success=success, score=float(success),
                                judge_id="state", step_labels=(StepLabel.PROGRESS, StepLabel.PROGRESS)))
    verdicts.append({"task_id": "torn"})  # a torn line of a killed run is skipped
    return root


def test_runs_become_examples_with_their_labels(tmp_path):
    run = _fake_run(tmp_path / "run")
    examples = run_examples([run], unseen=["switch_tab"], heldout_share=0.25, log=lambda _: None)
    assert len(examples) == 12
    assert {e.split for e in examples if e.task.family == "switch_tab"} == {"unseen"}
    assert all(("Task: Tick “sail”." in e.text and "0. click(" in e.text) for e in examples)
    assert [e.answer.success for e in examples] == [i % 2 == 0 for i in range(12)]
    with pytest.raises(ConfigError, match="verdicts.jsonl"):
        run_examples([tmp_path], log=lambda _: None)


@pytest.mark.parametrize("view", ["full", "evidence"])
def test_judge_train_and_calibrate_on_the_real_tiny_model(tmp_path, capsys, view):
    """End to end, small: the loss falls, the judge folder loads (asked the way it was
    trained), calibration writes its figures (the few steps here teach the answer's
    shape, not judging)."""
    from deskdojo.cli import main
    from deskdojo.evolve.build import load_judge_model

    run = _fake_run(tmp_path / "run", count=24)
    out = tmp_path / "judge"
    assert main(["judge", "train", "--runs", str(run), "--out", str(out), "--steps", "12", "--batch-size", "4",
                 "--unseen", "switch_tab", "--adversarial", "1", "--view", view]) == 0
    report = json.loads((out / "train_report.json").read_text())
    assert report["adversarial_train"] == 4  # one episode of each set and one oracle, on training tasks
    assert report["train"]["loss_last"] < report["train"]["loss_first"]
    settings = json.loads((out / "judge.json").read_text())
    assert settings["images"] is False and settings["view"] == view
    assert load_judge_model(str(out)).view == view
    figures = tmp_path / "calibration.json"
    assert main(["judge", "calibrate", "--judge", str(out), "--runs", str(run), "--unseen", "switch_tab",
                 "--adversarial", "0", "--out", str(figures)]) == 0
    result = json.loads(figures.read_text())
    assert result["unseen"]["overall"]["n"] == 8 and "median_s_per_verdict" in result["unseen"]["overall"]
    assert "| unseen | all | 8 |" in capsys.readouterr().out


def test_the_adversarial_sets_fail_their_checks_in_a_real_sandbox(box, tmp_path):
    from deskdojo.commands.judge import ADVERSARIAL, adversarial_tasks, record_adversarial

    for kind in ADVERSARIAL:
        tasks = adversarial_tasks(kind, families=["toggle_choices", "switch_tab"], count=2)
        assert len(tasks) == 2 and all(t.split.value == "heldout" for t in tasks)
        examples = record_adversarial(kind, tasks, box, tmp_path / kind, log=lambda _: None)
        assert [e.answer.success for e in examples] == [False, False], kind
        assert all(e.split == f"adversarial:{kind}" for e in examples)
        if kind == "done_nothing":
            assert all("0. done" in e.text and "   ~" not in e.text for e in examples)
        if kind == "undone":
            assert all("+checked" in e.text and "-checked" in e.text for e in examples), examples[0].text
    with pytest.raises(ConfigError, match="adversarial set"):
        adversarial_tasks("sideways", families=["toggle_choices"], count=1)
    (oracle,) = record_adversarial("oracle", adversarial_tasks("oracle", families=["switch_tab"], count=1,
                                                              split="train"), box, tmp_path / "oracle",
                                   log=lambda _: None)
    assert oracle.answer.success and oracle.answer.error_type == "none"
    train = adversarial_tasks("half_done", families=["toggle_choices"], count=2, split="train")
    assert all(t.split.value == "train" for t in train)
    assert not {t.seed for t in train} & {t.seed for t in adversarial_tasks("half_done", families=["toggle_choices"],
                                                                          count=2)}


def test_the_adversarial_families_never_include_an_unseen_one():
    from deskdojo.commands.judge import adversarial_families
    from deskdojo.curriculum.families import all_families

    everything = adversarial_families("all", [], unseen=["confirm_dialog", "switch_tab"])
    assert set(everything) == set(all_families()) - {"confirm_dialog", "switch_tab"}
    assert adversarial_families("switch_tab,click_button", [], unseen=["switch_tab"]) == ["click_button"]
    with pytest.raises(ConfigError, match="no task family 'nope'"):
        adversarial_families("nope", [], unseen=[])
    with pytest.raises(ConfigError, match="no family left"):
        adversarial_families("switch_tab", [], unseen=["switch_tab"])
