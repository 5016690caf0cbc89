"""The web image: real Chromium in a real docker sandbox, MiniWoB++ pages, their oracles,
their own reward, and the DevTools channel kept inside the guest."""

from __future__ import annotations

import time

import pytest

from deskdojo.core.actions import Click
from deskdojo.core.errors import GuestRequestError, SandboxError
from deskdojo.curriculum.families import get_family, web_families
from deskdojo.curriculum.families._miniwob import MINIWOB_TASKS, ORACLE_TASKS
from deskdojo.vm.web import PageState


def miniwob_task(name: str, seed: int):
    return get_family(f"miniwob.{name}").generate(0, seed, "train")


@pytest.fixture(scope="module")
def web_box():
    """One web-image sandbox for the module (closed even when tests fail)."""
    from deskdojo.vm.config import SandboxConfig
    from deskdojo.vm.docker import DockerProvider
    from deskdojo.vm.image import build_image

    build_image(flavor="web", log=lambda line: None)
    sandbox = DockerProvider(SandboxConfig(flavor="web", screen=(640, 480))).start()
    try:
        yield sandbox
    finally:
        sandbox.close()


# --- without a sandbox --------------------------------------------------------------


def test_every_miniwob_task_is_a_family_and_every_oracle_has_a_solver():
    from deskdojo.vm.guest.web import SOLVERS

    assert len(MINIWOB_TASKS) == 130 and len(web_families()) == 130
    assert set(ORACLE_TASKS) == set(SOLVERS) and len(ORACLE_TASKS) >= 10
    task = miniwob_task("click-button", 4)
    assert task.setup[0].kind == "web" and task.setup[0].args == {"task": "click-button", "seed": 4}
    assert task.oracle[0].follow is not None and not miniwob_task("use-colorwheel", 4).oracle


@pytest.mark.parametrize("page", [
    {"task": "click-button", "seed": 0, "utterance": "x", "done": False, "reward": 5, "raw_reward": 0},
    {"task": "../etc", "seed": 0, "utterance": "x", "done": False, "reward": 0, "raw_reward": 0},
    {"task": "click-button", "seed": 0, "utterance": {"a": 1}, "done": False, "reward": 0, "raw_reward": 0},
    {"task": "click-button", "seed": 0, "utterance": "x", "done": "yes", "reward": 0, "raw_reward": 0},
    {"task": "click-button", "seed": 0, "utterance": "x" * 5000, "done": False, "reward": 0, "raw_reward": 0},
    {"task": "click-button", "seed": 0, "utterance": "x", "done": True, "reward": float("nan"), "raw_reward": 1},
])
def test_the_host_refuses_web_state_it_cannot_trust(page):
    with pytest.raises(SandboxError):
        PageState.parse(page)
    with pytest.raises(SandboxError):
        PageState.parse_reply({"page": None, "extra": 1})


class PublishingApp:
    """A stand-in sandbox whose app publishes its solver's next action: each action done
    moves it one entry on (the last entry is null)."""

    def __init__(self, plan):
        self.plan, self.done = list(plan), []

    def app_state(self):
        return {"apps": {"web": {"next": self.plan[len(self.done)] if len(self.done) < len(self.plan) else None,
                                 "changes": len(self.done)}}}

    def act(self, action):
        self.done.append(action)


def test_a_follow_step_performs_what_the_app_publishes_until_null():
    from deskdojo.core.oracle import OracleError, run_oracle

    task = miniwob_task("enter-text", 1)
    app = PublishingApp([{"kind": "click", "x": 5, "y": 6}, {"kind": "type", "text": "Tora"}, None])
    assert [a.kind for a in run_oracle(app, task)] == ["click", "type"]
    with pytest.raises(OracleError, match="no valid action"):
        run_oracle(PublishingApp([{"kind": "rm -rf", "x": 1}]), task)


def test_bad_web_task_definitions_and_eval_arguments_are_refused():
    from deskdojo.commands.eval_miniwob import _tasks
    from deskdojo.core.actions import Wait
    from deskdojo.core.errors import ConfigError, RecordError
    from deskdojo.core.types import Locator, OracleStep, SetupStep

    for args in ({}, {"task": 3}, {"task": "click-button", "seed": -1}, {"task": "click-button", "seed": True},
                 {"task": "click-button", "episode_s": 0}, {"task": "click-button", "url": "http://x"}):
        with pytest.raises(RecordError):
            SetupStep("web", args)
    with pytest.raises(RecordError, match="follow"):
        OracleStep(Wait(0), follow=Locator("web", text="next"))
    with pytest.raises(ConfigError, match="no MiniWoB"):
        _tasks("click-buton", "oracle")
    with pytest.raises(ConfigError, match="no scripted oracle"):
        _tasks("use-colorwheel", "oracle")
    assert _tasks("miniwob.click-button,use-colorwheel", "tiny") == ["click-button", "use-colorwheel"]


def test_an_evolve_config_takes_miniwob_families_in_the_web_image():
    """``curriculum.families: [miniwob.<task>]`` selects the web families and makes the
    sandbox flavour web; a desktop flavour or a provider without a browser is refused."""
    from deskdojo.core.errors import ConfigError
    from deskdojo.evolve.build import check_settings, sandbox_config, select_families
    from deskdojo.evolve.config import EvolveConfig

    config = EvolveConfig.from_dict({"curriculum": {"families": ["miniwob.click-button", "miniwob.focus-text"]},
                                     "eval": {"levels": [0]}})
    assert list(select_families(config.curriculum.families)) == ["miniwob.click-button", "miniwob.focus-text"]
    assert sandbox_config(config, "docker").flavor == "web"
    check_settings(config, "docker")
    with pytest.raises(ConfigError, match="sandbox.flavor: web"):
        sandbox_config(config.replace(sandbox={"flavor": "desktop"}), "docker")
    with pytest.raises(ConfigError, match="docker provider"):
        sandbox_config(config, "xvfb")
    with pytest.raises(ConfigError, match="unknown families"):
        select_families(("miniwob.click-buton",))
    assert sandbox_config(config.replace(curriculum=config.curriculum.__class__(families=("click_button",))),
                          "docker").flavor == "desktop"


def test_shown_task_swaps_in_the_page_utterance_only_for_its_own_page():
    from deskdojo.core.protocols import shown_task
    from deskdojo.vm.web import PageLoad

    class Box:
        page_load = PageLoad(task="click-button", seed=4, utterance='Click on the "ok" button.',
                             has_solver=True, elapsed_ms=1.0)

    task = miniwob_task("click-button", 4)
    assert shown_task(Box(), task).instruction == 'Click on the "ok" button.'
    assert shown_task(Box(), task).id == task.id and shown_task(object(), task) is task
    with pytest.raises(SandboxError, match="not the task's"):
        shown_task(Box(), miniwob_task("click-button", 5))
    desktop = get_family("click_button").generate(0, 1, "train")
    assert shown_task(Box(), desktop) is desktop


# --- in a real web sandbox -------------------------------------------------------------


@pytest.mark.docker
def test_a_miniwob_task_loads_and_its_oracle_solves_it(web_box):
    """Admission runs the oracle (through the ordinary action path) and a do-nothing
    episode; the page's own reward decides both."""
    from deskdojo.curriculum.admission import admit
    from deskdojo.world_model.judge import StateJudge

    for name, seed in (("enter-text", 2), ("click-tab-2", 1)):
        task = miniwob_task(name, seed)
        result = admit(task, web_box, StateJudge())
        assert result.admitted, f"{task.id}: {result.reason}: {result.detail}"
        assert result.oracle_score == 1.0 and result.noop_score == 0.0
    web_box.reset(miniwob_task("enter-text", 2))
    state = web_box.page_state()
    assert state.utterance.startswith("Enter \"") and not state.done and state.reward == 0


@pytest.mark.docker
def test_a_wrong_click_ends_the_episode_without_success(web_box):
    """click-button with seed 0 asks for "No"; clicking another button (found by AT-SPI,
    which lists the new page's elements within a few seconds of a reset) ends the episode
    with reward -1."""
    web_box.reset(miniwob_task("click-button", 0))
    assert web_box.page_state().utterance == 'Click on the "No" button.'
    deadline = time.monotonic() + 3
    while True:
        buttons = [e for e in web_box.elements(["atspi"]).elements if e.role == "button" and e.name]
        if buttons or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    wrong = next(e for e in buttons if e.name.lower() != "no")
    x, y, w, h = wrong.box
    assert web_box.act(Click(x + w // 2, y + h // 2)).ok
    time.sleep(0.1)
    state = web_box.page_state()
    assert state.done and state.raw_reward == -1.0 and not state.success
    assert web_box.app_state()["apps"]["web"]["success"] is False


@pytest.mark.docker
def test_oracle_demos_record_and_reset_reloads_the_page_in_well_under_a_second(web_box, tmp_path):
    from deskdojo.agent.demos import load_demo, record_oracle_demos

    (path,) = record_oracle_demos([miniwob_task("login-user", 3)], web_box, tmp_path, settle_s=0.1)
    kinds = [step.action.kind for step in load_demo(path).trajectory.steps]
    assert kinds.count("type") == 2 and kinds[-1] == "done"
    times = []
    for seed in range(3):
        started = time.perf_counter()
        web_box.reset(miniwob_task("click-dialog", seed))
        times.append(time.perf_counter() - started)
    assert sorted(times)[1] < 0.8, times
    assert any(w.wm_class.lower() == "chromium" for w in web_box.windows())


@pytest.mark.docker
def test_bad_web_requests_get_clear_errors(web_box):
    with pytest.raises(GuestRequestError, match="no MiniWoB"):
        web_box.load_page("no-such-task")
    with pytest.raises(GuestRequestError, match="task name"):
        web_box.load_page("../../etc/passwd")


@pytest.mark.docker
def test_devtools_is_a_pipe_and_the_sandbox_keeps_no_network(web_box):
    """No TCP socket listens in the container (the browser's DevTools are fds 3/4 of the
    guest server's child), the engine publishes no port, and the network is none."""
    from deskdojo.vm.docker import describe_security, docker

    web_box.load_page("click-button", seed=1)
    assert describe_security(web_box.container_id)["network_mode"] == "none"
    assert docker("port", web_box.container_id).stdout.strip() == ""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        rows = web_box.exec(["cat", table]).stdout.splitlines()[1:]
        assert not [row for row in rows if row.split()[3] == "0A"], f"a listening socket in {table}: {rows}"
    listing = web_box.exec(["sh", "-c", "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done"]).stdout
    browser = [line for line in listing.splitlines() if "--remote-debugging-pipe" in line]
    assert browser and "--remote-debugging-port" not in listing
    sockets = web_box.exec(["cat", "/proc/net/unix"]).stdout.lower()
    assert "devtools" not in sockets
    assert web_box.exec(["sh", "-c", "ls /tmp/deskdojo-chromium"]).stdout.count("DevToolsActivePort") == 0


@pytest.mark.docker
def test_a_browser_that_died_is_started_again_by_the_next_load(web_box):
    web_box.load_page("click-test", seed=0)
    found = web_box.exec(["sh", "-c", "for p in /proc/[0-9]*; do grep -qa -- --remote-debugging-pipe $p/cmdline "
                                      "2>/dev/null && echo ${p#/proc/}; done"]).stdout.split()
    browser = min(int(pid) for pid in found)  # the browser process; the others are its children
    assert web_box.exec(["kill", "-9", str(browser)]).returncode == 0
    time.sleep(0.3)
    with pytest.raises(SandboxError):
        web_box.page_state()
    assert web_box.load_page("click-test", seed=1).utterance == "Click the button."
    assert web_box.page_state().done is False


@pytest.mark.docker
def test_a_rollout_and_a_demo_tell_the_policy_the_page_utterance(web_box, tmp_path):
    """The evolve loop's rollout hands the policy the page's own instruction (not the
    family's stand-in), and an oracle demo keeps it in its task.json for the warm start."""
    from deskdojo.agent.demos import load_demo, record_oracle_demos
    from deskdojo.agent.rollout import rollout
    from deskdojo.core.actions import Done
    from deskdojo.core.protocols import Decision, DeterministicPolicy

    class Recording(DeterministicPolicy):
        policy_id = "recording"

        def __init__(self):
            self.told = []

        def act(self, observations, tasks, histories=None):
            self.told += [t.instruction for t in tasks]
            return [Decision(text="done", action=Done()) for _ in tasks]

    policy = Recording()
    (trajectory,) = rollout(policy, [miniwob_task("click-button", 0)], [web_box], tmp_path / "traj")
    assert trajectory.end.value == "done" and policy.told == ['Click on the "No" button.']
    (path,) = record_oracle_demos([miniwob_task("click-button", 0)], web_box, tmp_path / "demos", settle_s=0.05)
    assert load_demo(path).task.instruction == 'Click on the "No" button.'
