"""Typed, closed sandbox configuration (unknown keys are errors that name the key)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from deskdojo.core.configs import closed_from_dict
from deskdojo.core.errors import ConfigError

PROVIDERS = ("docker", "xvfb", "fake", "host")


def parse_screen(text: str) -> tuple[int, int]:
    """``"1024x768"`` -> (1024, 768)."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"screen must look like 1024x768, got {text!r}") from None
    return width, height


@dataclass(frozen=True, slots=True, kw_only=True)
class SandboxConfig:
    """How to start sandboxes. Field docs are the CLI's ``--help``."""

    provider: str = field(default="docker", metadata={"help": "docker | xvfb | fake | host"})
    screen: tuple[int, int] = field(default=(1024, 768), metadata={"help": "screen size WxH"})
    image: str | None = field(default=None, metadata={
        "help": "docker image tag (default: the tag `deskdojo image build` makes)"})
    flavor: str = field(default="desktop", metadata={
        "help": "docker image flavour: desktop | web (adds Chromium and the MiniWoB++ pages)"})
    memory_mb: int = field(default=1024, metadata={"help": "docker memory limit per sandbox"})
    cpus: float = field(default=1.0, metadata={"help": "docker CPU limit per sandbox"})
    pids_limit: int = field(default=512, metadata={"help": "docker process limit per sandbox"})
    start_timeout_s: float = field(default=60.0, metadata={"help": "seconds to wait for a new sandbox"})
    request_timeout_s: float = field(default=30.0, metadata={"help": "seconds per guest request"})
    fake_frames: str | None = field(default=None, metadata={
        "help": "fake provider: a folder of PNG frames to replay"})
    i_understand_this_controls_my_desktop: bool = field(default=False, metadata={
        "help": "host provider only: act on the real screen of $DISPLAY"})

    def __post_init__(self) -> None:
        if self.provider not in PROVIDERS:
            raise ConfigError(f"provider {self.provider!r} is not one of: {', '.join(PROVIDERS)}")
        if self.flavor not in ("desktop", "web"):
            raise ConfigError(f"flavor {self.flavor!r} is not one of: desktop, web")
        width, height = self.screen
        if not (64 <= width <= 7680 and 64 <= height <= 4320):
            raise ConfigError(f"screen {width}x{height} is outside 64x64..7680x4320")
        if self.memory_mb < 128:
            raise ConfigError(f"memory_mb must be >= 128, got {self.memory_mb}")
        if not 0.1 <= self.cpus <= 64:
            raise ConfigError(f"cpus must be within 0.1..64, got {self.cpus}")
        if self.pids_limit < 32:
            raise ConfigError(f"pids_limit must be >= 32, got {self.pids_limit}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SandboxConfig":
        values = dict(data) if isinstance(data, Mapping) else data
        if isinstance(values, dict) and isinstance(values.get("screen"), str):
            values["screen"] = parse_screen(values["screen"])  # "1024x768" as well as [1024, 768]
        return closed_from_dict(cls, values, "sandbox config")

    def replace(self, **changes: Any) -> "SandboxConfig":
        return dataclasses.replace(self, **changes)
