"""What the host accepts from a guest's web endpoint: strictly checked, frozen values.

The guest writes these replies, so the host trusts nothing in them it has not checked:
exact keys, types, sizes and ranges (MiniWoB++ rewards lie in [-1, 1]); anything else is
a SandboxError naming the field.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Mapping

from deskdojo.core.errors import SandboxError

TASK_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
MAX_UTTERANCE = 2000


def _field(reply: Mapping[str, Any], key: str, kinds: type | tuple[type, ...], where: str) -> Any:
    value = reply.get(key) if isinstance(reply, Mapping) else None
    if isinstance(value, bool) and bool not in (kinds if isinstance(kinds, tuple) else (kinds,)):
        value = None
    if not isinstance(value, kinds):
        raise SandboxError(f"the guest's {where} reply has a bad {key!r}: {str(value)[:80]!r}")
    return value


def _text(reply: Mapping[str, Any], key: str, where: str, *, limit: int = MAX_UTTERANCE) -> str:
    value = _field(reply, key, str, where)
    if len(value) > limit:
        raise SandboxError(f"the guest's {where} reply has a {key!r} of {len(value)} characters (limit {limit})")
    return value


def _task(reply: Mapping[str, Any], where: str) -> str:
    task = _field(reply, "task", str, where)
    if not TASK_NAME.match(task):
        raise SandboxError(f"the guest's {where} reply names no MiniWoB++ task: {task[:80]!r}")
    return task


def _reward(reply: Mapping[str, Any], key: str, where: str) -> float:
    value = float(_field(reply, key, (int, float), where))
    if not math.isfinite(value) or not -1.0 <= value <= 1.0:
        raise SandboxError(f"the guest's {where} reply has {key} {value!r}, outside [-1, 1]")
    return value


@dataclass(frozen=True, slots=True)
class PageLoad:
    """A task page was loaded and its episode started: the page's own instruction."""

    task: str
    seed: int
    utterance: str
    has_solver: bool
    elapsed_ms: float

    @classmethod
    def parse(cls, reply: Any) -> "PageLoad":
        where = "web load"
        return cls(task=_task(reply, where), seed=int(_field(reply, "seed", int, where)),
                   utterance=_text(reply, "utterance", where),
                   has_solver=bool(_field(reply, "has_solver", bool, where)),
                   elapsed_ms=float(_field(reply, "elapsed_ms", (int, float), where)))


@dataclass(frozen=True, slots=True)
class PageState:
    """The page's reward and done flag as the page computed them (read in the guest).

    ``success`` is MiniWoB++'s rule: the episode ended with a raw reward above 0.
    ``reward`` carries the page's time discount; ``raw_reward`` does not.
    """

    task: str
    seed: int
    utterance: str
    done: bool
    reward: float
    raw_reward: float
    reason: str | None

    @property
    def success(self) -> bool:
        return self.done and self.raw_reward > 0

    @classmethod
    def parse(cls, page: Any) -> "PageState":
        where = "web state"
        reason = page.get("reason") if isinstance(page, Mapping) else None
        if reason is not None and not isinstance(reason, str):
            raise SandboxError(f"the guest's {where} reply has a bad 'reason': {str(reason)[:80]!r}")
        return cls(task=_task(page, where), seed=int(_field(page, "seed", int, where)),
                   utterance=_text(page, "utterance", where), done=bool(_field(page, "done", bool, where)),
                   reward=_reward(page, "reward", where), raw_reward=_reward(page, "raw_reward", where),
                   reason=None if reason is None else reason[:200])

    @classmethod
    def parse_reply(cls, reply: Any) -> "PageState | None":
        if not isinstance(reply, Mapping) or set(reply) != {"page"}:
            raise SandboxError("the guest's web state reply is not {\"page\": ...}")
        return None if reply["page"] is None else cls.parse(reply["page"])
