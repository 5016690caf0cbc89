"""The Gymnasium environments: Gymnasium's own checker, real tasks solved through both
action spaces, the rules of an episode's end, bad input, and a vector environment of
docker sandboxes under random actions."""

from __future__ import annotations

import re

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import deskdojo.env
from deskdojo.core.errors import ConfigError
from deskdojo.core.types import Check, Task
from deskdojo.curriculum.families import get_family
from deskdojo.curriculum.spec import save_task
from deskdojo.env import DesktopEnv, DesktopVectorEnv, family_env_id
from deskdojo.env.spaces import KINDS, AnyText, action_from_sample

from conftest import own_containers

FAKE_TASK = Task(id="fake-task", instruction="Click anywhere, then say done.", family="fake")


def element_id(table: str, name: str) -> int:
    """The id of the table row named ``name`` (the environment's table uses the sandbox's ids)."""
    match = re.search(rf'^(\d+) \w[\w ]* "{re.escape(name)}"', table, flags=re.MULTILINE)
    assert match, f"no row named {name!r} in:\n{table}"
    return int(match.group(1))


def target_label(instruction: str) -> str:
    return re.search(r"“(.+?)”", instruction).group(1)


def dict_action(kind: str, **fields) -> dict:
    action = {"kind": KINDS.index(kind), "point": np.array([0, 0]), "to_point": np.array([0, 0]), "element": -1,
              "button": 0, "count": 1, "scroll": np.array([0, 1]), "text": "a", "key": 0,
              "modifiers": np.zeros(4, np.int8), "seconds": np.float32(0.0)}
    action.update(fields)
    return action


def test_ids_are_registered_one_per_family():
    ids = deskdojo.env.register_envs()
    assert "deskdojo/Desktop-v0" in gym.registry
    assert family_env_id("click_button") == "deskdojo/ClickButton-v0" and "deskdojo/ClickButton-v0" in ids
    assert gym.registry["deskdojo/SwitchTab-v0"].kwargs == {"families": ("switch_tab",)}


@pytest.mark.parametrize("action_space", ["text", "dict"])
def test_gymnasium_check_env_passes_on_fake_sandboxes(action_space):
    env = DesktopEnv(provider="fake", tasks=[FAKE_TASK], observation="screenshot_a11y_tree",
                     action_space=action_space, screen=(320, 240), max_steps=4)
    try:
        check_env(env, skip_render_check=False)
        assert env.observation_space["screenshot"].shape == (240, 320, 3)
        assert "elements" in env.observation_space.spaces
    finally:
        env.close()


@pytest.mark.docker
def test_gymnasium_check_env_passes_on_a_docker_sandbox_with_a_real_task():
    env = gym.make("deskdojo/ClickButton-v0", provider="docker", observation="a11y_tree", max_steps=3,
                   levels=(0,)).unwrapped
    try:
        check_env(env, skip_render_check=True)
    finally:
        env.close()


def test_any_text_holds_any_characters_and_samples_printable_ascii():
    space = AnyText(10, min_length=1)
    assert space.contains("“Tan” ✓") and not space.contains("") and not space.contains("x" * 11)
    assert not space.contains(b"bytes")
    assert all(ch.isprintable() and ord(ch) < 128 for ch in space.sample())


def test_dict_samples_become_schema_actions_or_say_which_field_is_wrong():
    click = action_from_sample(dict_action("click", point=np.array([5, 7]), count=2))
    assert (click.kind, click.x, click.y, click.count, click.element) == ("click", 5, 7, 2, None)
    assert action_from_sample(dict_action("click", element=4)).element == 4
    wheel = action_from_sample(dict_action("scroll", element=4, scroll=np.array([0, 3])))
    assert (wheel.x, wheel.y, wheel.dx, wheel.dy, wheel.element) == (None, None, 0, 3, 4)
    assert action_from_sample(dict_action("scroll", point=np.array([5, 7]), scroll=np.array([-1, 0]))).x == 5
    key = action_from_sample(dict_action("key", key=0, modifiers=np.array([1, 0, 0, 0])))
    assert key.keys == ("ctrl", "enter")
    with pytest.raises(Exception, match="scroll needs a non-zero"):
        action_from_sample(dict_action("scroll", scroll=np.array([0, 0])))
    with pytest.raises(Exception, match="needs 'kind'"):
        action_from_sample({"kind": 99})


@pytest.mark.display
def test_a_real_task_solved_through_text_answers_is_rewarded_and_recorded(tmp_path):
    env = DesktopEnv(provider="xvfb", families=["click_button"], observation="a11y_tree", record_dir=tmp_path)
    try:
        obs, info = env.reset(seed=3, options={"family": "click_button", "level": 0})
        assert env.observation_space.contains(obs)
        target = element_id(obs["elements"], target_label(obs["instruction"]))
        answer = f"Thought: the named button\nAction: click(element={target})"
        obs, reward, terminated, truncated, info = env.step(answer)
        assert (reward, terminated, truncated, obs["action_error"]) == (0.0, False, False, "")
        assert info["action"].element == target and env.last_step.model_text.startswith("Thought:")
        obs, reward, terminated, truncated, info = env.step("Action: done()")
        assert (reward, terminated, truncated) == (1.0, True, False)
        assert info["verdict"].success and info["end"] == "done"
        recorded = list(tmp_path.glob("click_button-L0-*/steps.jsonl"))
        assert len(recorded) == 1 and len(recorded[0].read_text().splitlines()) == 2
        with pytest.raises(ConfigError, match="call reset"):
            env.step("Action: done()")
    finally:
        env.close()


@pytest.mark.display
def test_dict_actions_bad_answers_and_the_step_cap(tmp_path):
    task = get_family("click_button").generate(0, 11)
    path = save_task(task, tmp_path / "task.json")
    env = DesktopEnv(provider="xvfb", observation="a11y_tree", action_space="dict", max_steps=3)
    try:
        obs, info = env.reset(options={"task": str(path)})
        assert info["task"] == task
        obs, reward, terminated, truncated, info = env.step({"kind": "nonsense"})
        assert "invalid action" in obs["action_error"] and not (terminated or truncated)
        target = element_id(obs["elements"], target_label(obs["instruction"]))
        env.step(dict_action("click", element=target))
        obs, reward, terminated, truncated, info = env.step(dict_action("wait"))
        assert (terminated, truncated, info["end"]) == (False, True, "step_limit")
        assert reward == 1.0 and info["verdict"].success  # the step cap ended it; the judge still scores it

        env.action_kind = "text"  # the same sandbox, text answers: a bad one is an observation, not an exception
        obs, _ = env.reset(options={"task": task})
        obs, *_ = env.step("I think I will click it")
        assert "Action:" in obs["action_error"]
    finally:
        env.close()


def test_bad_reset_options_and_settings_name_the_problem():
    env = DesktopEnv(provider="fake", tasks=[FAKE_TASK], screen=(320, 240))
    try:
        with pytest.raises(ConfigError, match="not known"):
            env.reset(options={"tsk": "click_button"})
        with pytest.raises(KeyError, match="no task family 'nope'"):
            env.reset(options={"task": "nope:1"})
        with pytest.raises(ConfigError, match="level after"):
            env.reset(options={"task": "click_button:x"})
    finally:
        env.close()
    with pytest.raises(ConfigError, match="action_space"):
        DesktopEnv(provider="fake", action_space="joystick")
    with pytest.raises(ConfigError, match="no task family"):
        DesktopEnv(provider="fake", families=["nope"])
    with pytest.raises(ConfigError, match="real desktop"):
        DesktopEnv(provider="host")


def test_a_sandbox_that_dies_truncates_its_episode_and_the_next_reset_gets_a_fresh_one():
    env = DesktopEnv(provider="fake", tasks=[FAKE_TASK], screen=(320, 240), observation="screenshot")
    try:
        env.reset(seed=0)
        first = env.sandbox
        first.kill()
        obs, reward, terminated, truncated, info = env.step("Action: click(x=3, y=4)")
        assert (reward, terminated, truncated, info["end"]) == (0.0, False, True, "error")
        assert "died" in info["error"] and "verdict" not in info
        env.reset(seed=1)
        assert env.sandbox is not first and env.sandbox.alive()
    finally:
        env.close()


def test_a_judge_that_cannot_read_the_final_state_truncates_the_episode_unscored():
    checked = Task(id="fake-checked", instruction="Say done.", family="fake",
                   checks=(Check("app_state", "equals", {"app": "buttons", "path": "last"}, "x"),))
    env = DesktopEnv(provider="fake", tasks=[checked], screen=(320, 240), observation="screenshot")
    try:
        env.reset(seed=0)
        env.sandbox.kill()  # "done" touches no sandbox; the judge's probe is the first to find it gone
        obs, reward, terminated, truncated, info = env.step("Action: done()")
        assert (reward, terminated, truncated) == (0.0, False, True)
        assert info["error"].startswith("judging failed") and "verdict" not in info
    finally:
        env.close()


@pytest.mark.docker
def test_a_vector_env_of_four_docker_sandboxes_runs_100_random_steps():
    before = own_containers()
    env = DesktopVectorEnv(4, provider="docker", observation="a11y_tree", action_space="dict",
                           families=["click_button", "toggle_choices"], max_steps=6)
    ended = 0
    try:
        assert len(own_containers() - before) == 4
        obs, info = env.reset(seed=0)
        assert env.observation_space.contains(obs)
        for _ in range(25):  # 4 sandboxes x 25 = 100 steps
            obs, rewards, terminated, truncated, infos = env.step(env.action_space.sample())
            assert env.observation_space.contains(obs)
            assert ((rewards >= 0) & (rewards <= 1)).all()
            ended += int((terminated | truncated).sum())
            assert "error" not in infos, infos.get("error")
    finally:
        env.close()
    assert ended >= 4  # random agents say done or fail, or hit the cap of 6 steps
    assert own_containers() - before == set()
