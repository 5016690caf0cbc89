"""Shared types only: actions, observations, tasks, trajectories, verdicts, protocols,
errors and the run-directory format. Standard library only (the guest imports it)."""

from deskdojo.core.actions import (
    ACTION_TYPES, Action, Click, Done, Drag, Fail, Key, Move, Scroll, Type, Wait,
    action_from_dict, action_to_dict, describe,
)
from deskdojo.core.errors import (
    ActionError, ConfigError, DeskdojoError, EngineUnavailable, GuestRequestError,
    RecordError, RunDirError, SandboxDied, SandboxError, SandboxStartError, SandboxTimeout,
)
from deskdojo.core.protocols import (
    ActResult, Decision, ExecResult, Judge, Policy, Sandbox, TaskSource, WorldProbe,
)
from deskdojo.core.types import (
    Check, CheckEvidence, EndReason, Locator, Observation, OracleStep, PromptInputs, Provenance, SetupStep,
    Split, StateCondition, Step, StepLabel, Task, Trajectory, Verdict, Window,
)

__all__ = [
    "ACTION_TYPES", "Action", "ActResult", "ActionError", "Check", "CheckEvidence", "Click",
    "ConfigError", "Decision", "DeskdojoError", "Done", "Drag", "EndReason",
    "EngineUnavailable", "ExecResult", "Fail", "GuestRequestError", "Judge", "Key", "Locator", "Move",
    "Observation", "OracleStep", "Policy", "PromptInputs", "Provenance", "RecordError", "RunDirError", "Sandbox",
    "SandboxDied", "SandboxError", "SandboxStartError", "SandboxTimeout", "Scroll",
    "SetupStep", "Split", "StateCondition", "Step", "StepLabel", "Task", "TaskSource", "Trajectory", "Type",
    "Verdict", "Wait", "Window", "WorldProbe", "action_from_dict", "action_to_dict", "describe",
]
