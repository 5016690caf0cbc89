"""The host desktop provider: refused without the opt-in; with it, acts on $DISPLAY.

"The user's desktop" here is a private Xvfb display the test starts, never a real one.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from deskdojo.core import Click, ConfigError, Move, SandboxError, Type
from deskdojo.vm.config import SandboxConfig
from deskdojo.vm.host import FailSafeTriggered, HostProvider

pytestmark = pytest.mark.display


@pytest.fixture
def user_display(monkeypatch):
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "400x300x24",
                             "-nolisten", "tcp"], pass_fds=(write_fd,), stderr=subprocess.DEVNULL,
                            start_new_session=True)
    os.close(write_fd)
    try:
        with os.fdopen(read_fd) as pipe:  # the whole line: closing early kills Xvfb
            number = pipe.readline().strip()
        monkeypatch.setenv("DISPLAY", f":{number}")
        yield f":{number}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_refused_without_the_explicit_opt_in(user_display):
    with pytest.raises(ConfigError, match="i-understand-this-controls-my-desktop"):
        HostProvider(SandboxConfig(provider="host"))


def test_acts_on_the_display_and_never_runs_commands(user_display):
    config = SandboxConfig(provider="host", i_understand_this_controls_my_desktop=True)
    with HostProvider(config).start() as box:
        assert box.screen_size == (400, 300)
        assert box.reset().screenshot.shape == (300, 400, 3)
        assert box.act(Move(123, 45)).ok
        assert box._executor.pointer_position() == (123, 45)
        assert box.act(Type("hi")).ok
        refused = box.act(Click(500, 10))
        assert not refused.ok and "off the 400x300 screen" in refused.error
        for forbidden in (lambda: box.exec(["true"]), lambda: box.read_file("/etc/passwd"),
                          lambda: box.write_file("/tmp/x", b"x")):
            with pytest.raises(SandboxError, match="never"):
                forbidden()


def test_pointer_in_a_corner_stops_the_agent(user_display):
    config = SandboxConfig(provider="host", i_understand_this_controls_my_desktop=True)
    box = HostProvider(config).start()
    try:
        box.act(Move(0, 0))  # the "user" slams the mouse into the corner
        with pytest.raises(FailSafeTriggered, match="corner"):
            box.act(Click(200, 150))
        assert not box.alive()
    finally:
        box.close()
