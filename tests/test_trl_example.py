"""The TRL example: GRPOTrainer trains the tiny policy on docker sandboxes through
``DesktopEnv`` (CPU, two updates), and its LoRA weights move."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from conftest import own_containers

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "trl_grpo.py"


def load_example():
    spec = importlib.util.spec_from_file_location("trl_grpo_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dataset_rows_name_tasks_the_environment_builds():
    example = load_example()
    rows = example.task_rows(4, seed=2)
    tasks = [example.task_of(row["prompt"]) for row in rows]
    assert [t.family for t in tasks] == ["click_button", "toggle_choices", "menu_command", "switch_tab"]
    assert len({t.id for t in tasks}) == 4


@pytest.mark.docker
def test_grpo_trainer_moves_the_adapter_on_docker_sandboxes(tmp_path):
    before = own_containers()
    result = load_example().main(["--provider", "docker", "--steps", "2", "--generations", "3",
                                  "--tasks-per-step", "2", "--out", str(tmp_path / "run")])
    assert result["episodes"] == 2 * 6 and all(0.0 <= r <= 1.0 for r in result["rewards"])
    groups = [result["rewards"][i:i + 3] for i in range(0, len(result["rewards"]), 3)]
    assert any(max(g) > min(g) for g in groups), f"no group's rewards differed: {groups}"
    assert result["lora_tensors"] > 0 and result["lora_max_change"] > 0.0
    assert own_containers() - before == set()
