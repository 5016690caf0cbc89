"""The Sandbox contract: ONE module that every provider passes (fake, xvfb, docker).

The real providers run real desktops (Xvfb, openbox, xterm; in docker, a locked-down
container). Tests that need a real desktop (windows, typing into an app) are skipped
only for the fake, which has none by design.
"""

from __future__ import annotations

import io
import shutil

import numpy as np
import pytest

from deskdojo.core import (
    Click, Drag, GuestRequestError, Key, Move, Observation, Sandbox, SandboxDied,
    SandboxError, Scroll, SetupStep, Task, Type, Wait,
)
from deskdojo.vm.config import SandboxConfig
from deskdojo.vm.pool import make_provider
from waiting import wait_for

SCREEN = (640, 480)
SAME_SCREEN = 0.001  # two screens differing in at most this fraction of pixels show the same
PROVIDERS = [
    pytest.param("fake", id="fake"),
    pytest.param("xvfb", id="xvfb", marks=pytest.mark.display),
    pytest.param("docker", id="docker", marks=pytest.mark.docker),
]


def _config(provider: str) -> SandboxConfig:
    return SandboxConfig(provider=provider, screen=SCREEN)


@pytest.fixture(scope="module", params=PROVIDERS)
def sandbox(request):
    box = make_provider(_config(request.param)).start()
    box.provider_name = request.param
    try:
        yield box
    finally:
        box.close()


def test_satisfies_the_protocol(sandbox):
    assert isinstance(sandbox, Sandbox)
    assert sandbox.screen_size == SCREEN


def test_reset_returns_a_first_observation(sandbox):
    obs = sandbox.reset()
    assert isinstance(obs, Observation)
    assert obs.screenshot.shape == (SCREEN[1], SCREEN[0], 3)
    assert obs.screenshot.dtype == np.uint8
    assert obs.step == 0 and obs.action_error is None


def test_every_action_kind_is_accepted(sandbox):
    sandbox.reset()
    for action in (Move(100, 100), Click(120, 110), Click(5, 5, button="right"), Key(("escape",)),
                   Drag(50, 50, 80, 90), Scroll(300, 200, dy=2), Type("abc"), Key(("shift", "a")),
                   Wait(0.01)):
        result = sandbox.act(action)
        assert result.ok, (action, result.error)
    assert sandbox.observe().step == 9


def test_off_screen_action_is_refused_and_reported_in_the_next_observation(sandbox):
    sandbox.reset()
    result = sandbox.act(Click(SCREEN[0] + 5, 10))
    assert not result.ok
    assert f"off the {SCREEN[0]}x{SCREEN[1]} screen" in result.error
    obs = sandbox.observe()
    assert obs.action_error and "off the" in obs.action_error and obs.step == 1
    assert sandbox.act(Click(10, 10)).ok
    assert sandbox.observe().action_error is None


def test_png_screenshot_matches_the_screen(sandbox):
    from PIL import Image

    sandbox.reset()
    image = Image.open(io.BytesIO(sandbox.screenshot_png()))
    assert image.size == SCREEN


def test_files_round_trip_and_missing_file_is_a_404(sandbox):
    sandbox.reset()
    assert sandbox.write_file("/tmp/contract.txt", b"caf\xc3\xa9\n") == 6
    assert sandbox.read_file("/tmp/contract.txt") == b"caf\xc3\xa9\n"
    with pytest.raises(GuestRequestError) as info:
        sandbox.read_file("/tmp/definitely-missing.txt")
    assert info.value.status == 404


def test_exec_reports_return_codes_and_output(sandbox):
    assert sandbox.exec(["true"]).returncode == 0
    assert sandbox.exec(["false"]).returncode == 1
    result = sandbox.exec(["echo", "hello", "dojo"])
    assert result.returncode == 0 and result.stdout == "hello dojo\n"
    with pytest.raises(GuestRequestError, match="'/no/such/program' not found"):
        sandbox.exec(["/no/such/program"])


def test_reset_runs_task_setup_and_restores_the_home_folder(sandbox):
    task = Task(id="setup-check", instruction="nothing", family="contract",
                setup=(SetupStep("write_file", {"path": "~/Documents/setup.txt", "content": "ready"}),))
    sandbox.reset(task)
    assert sandbox.read_file("~/Documents/setup.txt") == b"ready"
    sandbox.reset()
    with pytest.raises(GuestRequestError) as info:
        sandbox.read_file("~/Documents/setup.txt")
    assert info.value.status == 404


def test_app_state_is_a_mapping_with_apps(sandbox):
    state = sandbox.app_state()
    assert isinstance(state["apps"], dict)


def test_windows_and_typing_into_a_real_app(sandbox):
    if sandbox.provider_name == "fake":  # it replays frames: no apps, and says so
        assert sandbox.windows() == ()
        return
    task = Task(id="xterm", instruction="type", family="contract",
                setup=(SetupStep("launch", {"argv": ["xterm", "-geometry", "60x10+20+20", "-title",
                                                     "contract-term"], "wait_window": "contract-term"}),))
    before = sandbox.reset(task).screenshot
    windows = sandbox.windows()
    term = next(w for w in windows if w.title == "contract-term")
    assert term.width > 100 and term.height > 50
    assert sandbox.act(Click(term.x + 30, term.y + 30)).ok
    assert sandbox.act(Type("echo typed > /tmp/typed.txt")).ok
    assert sandbox.act(Key(("enter",))).ok
    for _ in range(50):
        try:
            if sandbox.read_file("/tmp/typed.txt") == b"typed\n":
                break
        except GuestRequestError:
            pass
        sandbox.act(Wait(0.05))
    assert sandbox.read_file("/tmp/typed.txt") == b"typed\n"
    assert not np.array_equal(before, sandbox.observe().screenshot)
    sandbox.reset()
    assert not any(w.title == "contract-term" for w in sandbox.windows()), "reset must close apps"


def test_elements_and_actions_that_name_an_element(sandbox):
    """elements() lists what shows; a click on an element runs at its centre now and comes
    back resolved; unknown and stale ids are refused actions that say what is wrong."""
    import time

    from deskdojo.core.elements import ElementList
    from deskdojo.vm.guest.apps import launch_step

    if sandbox.provider_name == "fake":  # it lists each synthetic frame's square
        sandbox.reset()
        listing = sandbox.elements()
    else:
        sandbox.reset(Task(id="elements", instruction="press", family="contract",
                           setup=(launch_step("buttons", {"seed": 2}),)))
        deadline = time.monotonic() + 10
        listing = sandbox.elements()
        while not any(e.role == "button" for e in listing.elements):
            assert time.monotonic() < deadline, f"no buttons listed: {listing}"
            time.sleep(0.05)
            listing = sandbox.elements()
    assert isinstance(listing, ElementList) and listing.sources
    target = next(e for e in listing.elements if e.role == "button")
    result = sandbox.act(Click(element=target.id))
    assert result.ok, result.error
    assert result.resolved == Click(x=target.center[0], y=target.center[1], element=target.id)
    assert (result.element.role, result.element.name) == (target.role, target.name)
    if sandbox.provider_name != "fake":
        deadline = time.monotonic() + 5
        while sandbox.app_state()["apps"]["buttons"]["widgets"][f"button:{target.name}"]["clicks"] != 1:
            assert time.monotonic() < deadline, "the element click did not press the button"
            time.sleep(0.05)
    unknown = sandbox.act(Click(element=999))
    assert not unknown.ok and unknown.error.startswith("no element 999 in the last listing (ids 0-")
    assert "no element 999" in sandbox.observe().action_error
    if sandbox.provider_name != "fake":
        sandbox.reset()  # the app is gone (the fake's square moved when the frame advanced)
    stale = sandbox.act(Click(element=target.id))
    assert not stale.ok and stale.error.endswith("is no longer on screen; look at the screen again")


def test_a_scroll_that_names_an_element_turns_the_wheel_at_its_centre(sandbox):
    """A scroll over element N (``scroll #N down 2``) is resolved at its centre when it runs,
    comes back resolved, and in a real desktop moves the list under it."""
    from deskdojo.vm.guest.apps import launch_step

    if sandbox.provider_name == "fake":  # its synthetic square stands in for a list
        sandbox.reset()
        target = sandbox.elements().elements[0]
    else:
        sandbox.reset(Task(id="element-scroll", instruction="scroll", family="contract",
                           setup=(launch_step("scroll_find", {"seed": 3, "n_rows": 60, "viewport_rows": 6}),)))
        wait_for(lambda: any(e.role == "canvas" for e in sandbox.elements().elements), 10, "the list's canvas listed")
        target = next(e for e in sandbox.elements().elements if e.role == "canvas")
        assert wait_for(lambda: sandbox.app_state()["apps"].get("scroll_find"), 10, "its state")["scroll"][0] == 0
    result = sandbox.act(Scroll(element=target.id, dy=2))
    assert result.ok, result.error
    assert result.resolved == Scroll(x=target.center[0], y=target.center[1], dy=2, element=target.id)
    assert (result.element.role, result.element.box) == (target.role, target.box)
    if sandbox.provider_name != "fake":
        wait_for(lambda: sandbox.app_state()["apps"]["scroll_find"]["scroll"][0] > 0, 5, "the list scrolled down")
    refused = sandbox.act(Scroll(element=999, dx=1))
    assert not refused.ok and refused.error.startswith("no element 999 in the last listing (ids 0-")


def _settled_screen(sandbox, app: str) -> np.ndarray:
    """The screen once ``app`` has published its state and two frames in a row agree."""
    wait_for(lambda: app in sandbox.app_state()["apps"], 10, f"{app}'s first state")
    frames = [sandbox.observe().screenshot]

    def still() -> bool:
        frames.append(sandbox.observe().screenshot)
        return np.array_equal(frames[-2], frames[-1])

    wait_for(still, 10, "the screen to hold still")
    return frames[-1]


def _differing_fraction(a: np.ndarray, b: np.ndarray) -> float:
    return float((a != b).any(axis=-1).mean())


def _free_desktop_spot(sandbox, margin: int = 40) -> tuple[int, int] | None:
    """A corner of the screen that no window (nor its frame, within ``margin``) covers."""
    width, height = SCREEN
    for x, y in ((width - 10, height - 10), (10, height - 10), (width - 10, 10), (10, 10)):
        if not any(w.x - margin <= x < w.x + w.width + margin and w.y - margin <= y < w.y + w.height + margin
                   for w in sandbox.windows()):
            return x, y
    return None


@pytest.fixture(params=[p for p in PROVIDERS if p.values[0] != "fake"])
def desktop(request):
    """A sandbox with a window manager (every provider but the fake one)."""
    if request.param == "xvfb" and shutil.which("openbox") is None:
        pytest.skip("openbox is not installed, so the xvfb sandbox runs without a window manager")
    box = make_provider(_config(request.param)).start()
    try:
        yield box
    finally:
        box.close()


def test_reset_closes_the_window_managers_menus(desktop):
    """A menu the window manager has open (alt+space's window menu with a submenu, the
    desktop's menu) does not outlive reset: it would take the next episode's first click."""
    from deskdojo.vm.guest.apps import launch_step

    sandbox = desktop
    task = Task(id="wm-menus", instruction="nothing", family="contract",
                setup=(launch_step("buttons", {"seed": 2, "x": 20, "y": 20}),))
    sandbox.reset(task)
    clean = _settled_screen(sandbox, "buttons")
    openers = {"window menu": (Key(("alt", "space")), Key(("down",)), Key(("right",)))}
    spot = _free_desktop_spot(sandbox)
    if spot is not None:  # the app leaves some desktop showing: right-click it
        openers["desktop menu"] = (Click(*spot, button="right"), Key(("down",)))
    for menu, actions in openers.items():
        for action in actions:
            assert sandbox.act(action).ok, (menu, action)
        wait_for(lambda: _differing_fraction(sandbox.observe().screenshot, clean) > SAME_SCREEN, 5,
                 f"the {menu} to open")
        sandbox.reset(task)
        after = _settled_screen(sandbox, "buttons")
        assert _differing_fraction(after, clean) <= SAME_SCREEN, f"the {menu} outlived reset"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_killed_sandbox_raises_sandbox_died_and_close_still_works(provider):
    box = make_provider(_config(provider)).start()
    try:
        box.reset()
        assert box.alive()
        box.kill()
        with pytest.raises(SandboxDied):
            box.act(Click(10, 10))
        assert not box.alive()
        with pytest.raises(SandboxError):
            box.observe()
    finally:
        box.close()
        box.close()
    with pytest.raises(SandboxError, match="closed"):
        box.observe()
