"""The shared vocabulary: Observation, Task, Trajectory, Verdict.

Frozen and validated on construction; ``deskdojo.core.records`` turns them into JSON
and back. Standard library only (numpy arrays are passed in, never imported here).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Mapping

from deskdojo.core.actions import Action
from deskdojo.core.elements import ElementList
from deskdojo.core.errors import RecordError

TASK_FORMAT_VERSION = 1
TRAJECTORY_FORMAT_VERSION = 2  # 2: steps record what the policy's prompt was built from (Step.prompt)
VERDICT_FORMAT_VERSION = 1


# --- what the sandbox shows ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Window:
    """A top-level window as the window manager sees it."""

    id: int
    title: str
    wm_class: str
    x: int
    y: int
    width: int
    height: int
    focused: bool = False


@dataclass(frozen=True, slots=True, eq=False)
class Observation:
    """What the policy sees after a step.

    ``screenshot`` is an (H, W, 3) uint8 RGB array. ``action_error`` carries why the
    previous action was refused or did not parse: model mistakes are observations.
    ``elements`` is the screen's element listing when the observation mode asks for it.
    """

    screenshot: Any
    screen_size: tuple[int, int]
    step: int = 0
    windows: tuple[Window, ...] | None = None
    app_state: Mapping[str, Any] | None = None
    action_error: str | None = None
    timestamp: float = 0.0
    elements: ElementList | None = None

    def __post_init__(self) -> None:
        shape = getattr(self.screenshot, "shape", None)
        width, height = self.screen_size
        if shape is None or len(shape) != 3 or shape[2] != 3:
            raise RecordError(f"Observation.screenshot must be an (H, W, 3) array, got shape {shape}")
        if (shape[1], shape[0]) != (width, height):
            raise RecordError(f"Observation.screenshot is {shape[1]}x{shape[0]} but "
                              f"screen_size says {width}x{height}")


# --- tasks ---------------------------------------------------------------------


class Split(str, enum.Enum):
    TRAIN = "train"
    HELDOUT = "heldout"


class Provenance(str, enum.Enum):
    TEMPLATE = "template"
    EXPLORATION = "exploration"
    MODEL = "model-proposed"
    DEMONSTRATION = "demonstration"
    IMPORTED = "imported"


@dataclass(frozen=True, slots=True)
class SetupStep:
    """One step that prepares a sandbox: ``launch`` an app, ``write_file``, ``run``, or
    ``web``: load a MiniWoB++ task page with a seed in the web image's browser.

    ``args`` are the step's parameters (argv, path and content, app parameters).
    """

    kind: str
    args: Mapping[str, Any] = field(default_factory=dict)

    KINDS = ("launch", "write_file", "run", "wait", "web")
    # kind -> (required args, optional args); checked here so a bad task file fails when
    # it is loaded, not in a sandbox (an argv string would run letter by letter)
    ARGS = {"launch": (("argv",), ("wait_window", "timeout")), "run": (("argv",), ("timeout",)),
            "write_file": (("path",), ("content", "content_b64")), "wait": ((), ("seconds",)),
            "web": (("task",), ("seed", "episode_s"))}

    def __post_init__(self) -> None:
        if self.kind not in self.KINDS:
            raise RecordError(f"SetupStep.kind {self.kind!r} is not one of: {', '.join(self.KINDS)}")
        if not isinstance(self.args, Mapping):
            raise RecordError("SetupStep.args must be an object")
        required, optional = self.ARGS[self.kind]
        for key in self.args:
            if key not in required + optional:
                raise RecordError(f"args: a {self.kind} step has no argument {key!r} "
                                  f"(known: {', '.join(required + optional)})")
        for key in required:
            if key not in self.args:
                raise RecordError(f"args.{key} is required for a {self.kind} step")
        argv = self.args.get("argv", ["-"])
        if not isinstance(argv, (list, tuple)) or not argv or not all(isinstance(a, str) for a in argv):
            raise RecordError(f"args.argv must be a non-empty list of strings, one per argument "
                              f"(e.g. [\"mkdir\", \"-p\", \"notes\"]), got {argv!r}")
        for key in ("path", "content", "content_b64", "wait_window", "task"):
            if key in self.args and not isinstance(self.args[key], str):
                raise RecordError(f"args.{key} must be a string, got {self.args[key]!r}")
        seed = self.args.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise RecordError(f"args.seed must be an integer >= 0, got {seed!r}")
        if "episode_s" in self.args and not (isinstance(self.args["episode_s"], (int, float))
                                             and not isinstance(self.args["episode_s"], bool)
                                             and self.args["episode_s"] > 0):
            raise RecordError(f"args.episode_s must be a number of seconds > 0, got {self.args['episode_s']!r}")
        for key in ("timeout", "seconds"):
            value = self.args.get(key, 0)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise RecordError(f"args.{key} must be a number of seconds >= 0, got {value!r}")


@dataclass(frozen=True, slots=True)
class Check:
    """An OSWorld-style check: a getter reads sandbox state, a metric compares it."""

    getter: str
    metric: str
    args: Mapping[str, Any] = field(default_factory=dict)
    expected: Any = None
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not self.getter or not self.metric:
            raise RecordError("Check needs a getter and a metric")
        if not self.weight > 0:
            raise RecordError(f"Check.weight must be > 0, got {self.weight}")


@dataclass(frozen=True, slots=True)
class Locator:
    """Where an oracle step acts, read from an app's published state when the step runs.

    Practice apps lay themselves out at run time, so an oracle names a thing instead of
    a pixel. Exactly one of: ``path``, a dotted path into the app's state to anything
    with ``x, y, w, h`` (``widgets.submit``, ``widgets.fruits.rows.3``); ``menu``, the
    label of a menu entry now on screen; ``text``, the one widget showing this text.
    ``dx, dy`` shift the point from the centre, in pixels.
    """

    app: str
    path: str | None = None
    menu: str | None = None
    text: str | None = None
    dx: int = 0
    dy: int = 0

    def __post_init__(self) -> None:
        given = [name for name in ("path", "menu", "text") if getattr(self, name) is not None]
        if len(given) != 1:
            raise RecordError(f"Locator for {self.app!r} needs exactly one of path, menu, text; got {given or 'none'}")


@dataclass(frozen=True, slots=True)
class StateCondition:
    """Holds when ``path`` in ``app``'s published state equals ``equals`` (or exists, when
    ``equals`` is None). Oracle steps wait for one before acting, e.g. for keyboard focus."""

    app: str
    path: str
    equals: Any = None


@dataclass(frozen=True, slots=True)
class OracleStep:
    """One step of a scripted solution: ``action``, with its point taken from ``at`` (and a
    drag's end from ``to``) when given, performed once ``wait`` holds.

    ``follow`` is for apps that publish their own solver's next action (a web page's
    solver, which reads the DOM): the step performs the action found at ``follow.path``,
    re-read after each one, until it is null; ``action`` is then unused (Wait by convention).
    """

    action: Action
    at: Locator | None = None
    to: Locator | None = None
    wait: StateCondition | None = None
    timeout: float = 8.0
    follow: Locator | None = None

    def __post_init__(self) -> None:
        if self.follow is not None and (self.follow.path is None or self.at or self.to):
            raise RecordError("OracleStep: follow needs a Locator with a path, and no at or to")
        has_point = hasattr(self.action, "x")
        if self.at is not None and not has_point:
            raise RecordError(f"OracleStep: a {self.action.kind} action has no point for 'at'")
        if self.to is not None and not hasattr(self.action, "to_x"):
            raise RecordError(f"OracleStep: only a drag has an end point for 'to', not {self.action.kind}")


@dataclass(frozen=True, slots=True)
class Task:
    """A task: an instruction, how to set it up, how to check it, and how to solve it."""

    id: str
    instruction: str
    family: str
    level: int = 0
    seed: int = 0
    split: Split = Split.TRAIN
    setup: tuple[SetupStep, ...] = ()
    checks: tuple[Check, ...] = ()
    combine: str = "all"  # "all": every check must pass (score = weighted share); "any": one suffices
    oracle: tuple[OracleStep, ...] = ()
    max_steps: int = 15
    provenance: Provenance = Provenance.TEMPLATE
    format_version: int = TASK_FORMAT_VERSION

    def __post_init__(self) -> None:
        if not self.id or not isinstance(self.id, str):
            raise RecordError("Task.id must be a non-empty string")
        if not self.instruction:
            raise RecordError(f"Task {self.id}: instruction must not be empty")
        if not 1 <= self.max_steps <= 1000:
            raise RecordError(f"Task {self.id}: max_steps must be within 1..1000, got {self.max_steps}")
        if self.format_version != TASK_FORMAT_VERSION:
            raise RecordError(f"Task {self.id}: format_version {self.format_version} is not "
                              f"supported (this deskdojo reads {TASK_FORMAT_VERSION})")
        if self.combine not in ("all", "any"):
            raise RecordError(f"Task {self.id}: combine must be 'all' or 'any', got {self.combine!r}")
        object.__setattr__(self, "split", Split(self.split))
        object.__setattr__(self, "provenance", Provenance(self.provenance))


# --- trajectories --------------------------------------------------------------


class EndReason(str, enum.Enum):
    DONE = "done"
    FAIL = "fail"
    STEP_LIMIT = "step_limit"
    TIME_LIMIT = "time_limit"
    ERROR = "error"  # infrastructure failure: excluded from GRPO groups, never a failure


@dataclass(frozen=True, slots=True)
class PromptInputs:
    """What a step's prompt was built from, besides the task and the earlier decisions, so
    training rebuilds the prompt that acted bit for bit: the frames of the observation
    window (oldest first, the step's own frame last; paths relative to the trajectory
    folder), the error line exactly as the policy's Observation carried it, and the
    temperature T the stored log-probs are ``log_softmax(logits / T)`` of (1 for greedy).
    ``elements`` is the element listing the newest frame came with (a JSON file, path
    relative to the trajectory folder), in observation modes that carry elements."""

    window: tuple[str, ...] = ()
    error: str | None = None
    temperature: float | None = None  # None: the policy did not say (its own T applies)
    elements: str | None = None  # None: no listing was shown (screenshot mode, older records)

    def __post_init__(self) -> None:
        if self.temperature is not None and not self.temperature > 0:
            raise RecordError(f"PromptInputs.temperature must be > 0 or null, got {self.temperature}")


@dataclass(frozen=True, slots=True)
class Step:
    """One decision and its effect. ``action`` is None when the model output did not parse.

    ``action_error`` is why THIS step's action was refused; ``prompt`` says what the policy
    saw before deciding (None in records older than trajectory format 2: the prompt is
    then rebuilt from the previous step's ``action_error`` and the policy's window size).
    """

    index: int
    action: Action | None
    frame: str | None = None  # path of the observed frame, relative to the trajectory folder
    model_text: str = ""
    token_ids: tuple[int, ...] = ()
    logprobs: tuple[float, ...] = ()
    action_error: str | None = None
    started_at: float = 0.0
    duration_s: float = 0.0
    delta: Mapping[str, Any] | None = None  # what the action changed (a WorldProbe's delta)
    prompt: PromptInputs | None = None

    def __post_init__(self) -> None:
        if self.index < 0:
            raise RecordError(f"Step.index must be >= 0, got {self.index}")
        if self.logprobs and len(self.logprobs) != len(self.token_ids):
            raise RecordError(f"Step {self.index}: {len(self.logprobs)} logprobs for "
                              f"{len(self.token_ids)} token ids")


@dataclass(frozen=True, slots=True)
class Trajectory:
    """An episode: the steps a policy took on a task and how it ended."""

    id: str
    task_id: str
    steps: tuple[Step, ...] = ()
    end: EndReason | None = None
    policy_id: str = ""
    error: str | None = None
    format_version: int = TRAJECTORY_FORMAT_VERSION

    def __post_init__(self) -> None:
        for expected, step in enumerate(self.steps):
            if step.index != expected:
                raise RecordError(f"Trajectory {self.id}: step {expected} has index {step.index}")


# --- verdicts ------------------------------------------------------------------


class StepLabel(str, enum.Enum):
    PROGRESS = "progress"
    NO_OP = "no-op"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class CheckEvidence:
    """What one check saw: the value its getter read and whether the metric passed."""

    check: str
    passed: bool
    score: float
    observed: Any = None
    message: str = ""


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the judge decided about a trajectory."""

    task_id: str
    trajectory_id: str
    success: bool
    score: float
    judge_id: str
    evidence: tuple[CheckEvidence, ...] = ()
    step_labels: tuple[StepLabel, ...] = ()
    first_error_step: int | None = None
    grounding: float | None = None  # how near the clicks landed to the task's targets; None: no targets
    format_version: int = VERDICT_FORMAT_VERSION

    def __post_init__(self) -> None:
        if not 0.0 <= self.score <= 1.0:
            raise RecordError(f"Verdict.score must be within [0, 1], got {self.score}")
        if self.grounding is not None and not 0.0 <= self.grounding <= 1.0:
            raise RecordError(f"Verdict.grounding must be within [0, 1] or null, got {self.grounding}")
