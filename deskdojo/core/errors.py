"""The error tree. Model mistakes are data (``action_error``); these are for the rest.

Standard library only: the guest imports it too.
"""


class DeskdojoError(Exception):
    """Base of every error deskdojo raises on purpose."""


class ConfigError(DeskdojoError, ValueError):
    """A config is malformed: unknown key, wrong type, value out of range."""


class ActionError(DeskdojoError, ValueError):
    """An action is malformed; the message names the field."""


class RecordError(DeskdojoError, ValueError):
    """A stored record (task, step, trajectory, verdict) is malformed."""


class CurriculumError(DeskdojoError, ValueError):
    """The curriculum cannot do what was asked: no family, no admissible task, a bad record."""


class RunDirError(DeskdojoError):
    """A run directory is missing, locked, or not in the expected format."""


class JudgeError(DeskdojoError, RuntimeError):
    """A judge's own code failed on a task (a bug in a check or the judge, neither the
    agent's doing nor the sandbox's); the message names the task. Never a score."""


class JudgeUnanswered(JudgeError):
    """A model judge gave no answer that parses, after its retries. Not a bug: the episode
    it judged gets no verdict and becomes an error episode (never a success or a failure,
    never trained on), and a run goes on."""


class SandboxError(DeskdojoError):
    """The sandbox (infrastructure) failed; the episode ends as ``error``."""


class SandboxDied(SandboxError):
    """The sandbox stopped answering or its container/process exited."""


class SandboxStartError(SandboxError):
    """A sandbox could not be started."""


class SandboxTimeout(SandboxError):
    """The sandbox did not answer in time."""


class EngineUnavailable(SandboxError):
    """The container engine (or X server) a provider needs is not reachable."""


class SandboxTrustError(SandboxError):
    """Something a guest can write failed a host-side check (a symlinked socket, a foreign
    peer, a forged state file): the host refuses to act on it."""


class GuestRequestError(SandboxError):
    """The guest server refused a request (4xx) that is not a model mistake."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status
