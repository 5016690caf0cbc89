"""Executable checks: a getter reads sandbox state, a metric compares it with ``expected``.

OSWorld-style, over ground truth the sandbox exposes. Getters:

- ``app_state`` (args ``app``, optional ``path``): the value at the dotted ``path`` of
  that practice app's published state (the whole state without ``path``);
- ``file`` (args ``path``, e.g. ``"~/notes.txt"``): the file's text, None when missing;
- ``windows``: the list of window titles;
- ``command`` (args ``argv``, optional ``timeout``): the command's stdout, stripped.

Metrics: ``equals``, ``not_equals``, ``contains`` (substring, list member or key),
``not_contains``, ``regex`` (``re.search``), ``approx`` (option ``tolerance``, absolute),
``includes`` (every expected item is in the observed list; partial credit = the share
included), ``excludes`` (no expected item is in the observed list; partial credit = the
share left out), ``exists`` (expected true/false: whether the getter found a value).
Options ``strip`` and ``casefold`` normalise strings (also inside lists) before comparing.
OSWorld's metrics of the same names, for imported OSWorld tasks (our code, its meaning):
``exact_match``, ``check_include_exclude`` (expected ``{include, exclude}``),
``is_in_list``, ``fuzzy_match`` (similarity ratio as partial credit), ``literal_match``,
``compare_text_file`` (option ``ignore_blanks``) and ``diff_text_file`` (line similarity);
the last two compare a file's text with the expected file's text.

A task's score is the weighted mean of its checks' scores with ``combine="all"``
(success = every check passed) or the best check's score with ``combine="any"``
(success = one passed). What the agent left behind decides a check: a getter that finds
nothing or is refused by the guest (app not running, missing path or file, a 4xx) and a
value a metric cannot compare give evidence with ``passed=False``, score 0 and the reason
in ``message``. Nothing else is swallowed: a ``SandboxError`` (the sandbox died, timed
out or its server failed) propagates, so the episode is an infrastructure error and never
a score, and any other exception is a bug in a check (the judge names the task).
Unknown getter, metric or argument names are rejected by ``core.checks.validate_checks``
when a task is loaded, naming the check's index and the known names.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from typing import Any, Callable, Mapping, Sequence

from deskdojo.core.checks import GETTER_ARGS, METRIC_NAMES, METRIC_OPTIONS, describe_check, validate_check
from deskdojo.core.errors import GuestRequestError
from deskdojo.core.oracle import state_path
from deskdojo.core.types import Check, CheckEvidence, Task

MAX_OBSERVED_CHARS = 2000  # evidence keeps the start of long texts (verdicts stay small)


class GetterFailed(Exception):
    """A getter could not read what it was asked for (the reason is the message)."""


class Missing(GetterFailed):
    """The thing read does not exist (an ``exists`` check turns this into None)."""


class Incomparable(TypeError):
    """The observed value is not of a kind the metric compares (e.g. a text where a number
    belongs): the check fails with this message. Any other error in a metric is a bug."""


# --- getters ---------------------------------------------------------------------------


class Probes:
    """Reads sandbox state for one evaluation, each source at most once (checks share it)."""

    def __init__(self, sandbox: Any):
        self.sandbox = sandbox
        self._apps: Mapping[str, Any] | None = None
        self._windows: list[str] | None = None

    def apps(self) -> Mapping[str, Any]:
        if self._apps is None:
            self._apps = _guarded("the app state endpoint", self.sandbox.app_state)
        return self._apps

    def window_titles(self) -> list[str]:
        if self._windows is None:
            self._windows = [w.title for w in _guarded("the window list", self.sandbox.windows)]
        return self._windows


def _guarded(what: str, read: Callable[[], Any]) -> Any:
    """Call ``read``; a request the guest answered and refused (4xx) becomes GetterFailed.
    Any other SandboxError is the infrastructure's and propagates."""
    try:
        return read()
    except GuestRequestError as exc:
        raise GetterFailed(f"{what} failed: {exc}") from None


def get_app_state(probes: Probes, args: Mapping[str, Any]) -> Any:
    app = args["app"]
    published = probes.apps()
    states = published.get("apps", {})
    if app not in states:
        error = published.get("errors", {}).get(app)
        running = ", ".join(sorted(states)) or "none"
        raise Missing(f"app {app!r} has published no state"
                      + (f" ({error})" if error else f" (apps with state: {running})"))
    path = args.get("path")
    if not path:
        return states[app]
    try:
        return state_path(states[app], str(path))
    except KeyError as exc:
        raise Missing(f"app {app!r}: {exc.args[0]}") from None


def get_file(probes: Probes, args: Mapping[str, Any]) -> str | None:
    path = str(args["path"])
    try:
        data = probes.sandbox.read_file(path)
    except FileNotFoundError:
        return None
    except GuestRequestError as exc:
        if exc.status == 404:
            return None
        raise GetterFailed(f"reading {path} failed: {exc}") from None
    except OSError as exc:  # a provider that reads host-side: a folder or an unreadable file there
        raise GetterFailed(f"reading {path} failed: {type(exc).__name__}: {exc}") from None
    return data.decode("utf-8", errors="replace")


def get_windows(probes: Probes, args: Mapping[str, Any]) -> list[str]:
    return list(probes.window_titles())


def get_command(probes: Probes, args: Mapping[str, Any]) -> str:
    argv = args["argv"]
    timeout = float(args.get("timeout", 10.0))
    result = _guarded(f"running {argv!r}", lambda: probes.sandbox.exec(list(argv), timeout=timeout))
    if result.timed_out:
        raise GetterFailed(f"{argv!r} did not finish within {timeout:g} s")
    return result.stdout.strip()


GETTERS: dict[str, Callable[[Probes, Mapping[str, Any]], Any]] = {
    "app_state": get_app_state, "file": get_file, "windows": get_windows, "command": get_command,
}


# --- metrics ---------------------------------------------------------------------------
# Each takes (observed, expected, options) and returns a score in [0, 1]; 1.0 passes.


def _normalise(value: Any, options: Mapping[str, Any]) -> Any:
    if isinstance(value, str):
        if options.get("strip"):
            value = value.strip()
        if options.get("casefold"):
            value = value.casefold()
        return value
    if isinstance(value, (list, tuple)):
        return [_normalise(v, options) for v in value]
    if isinstance(value, Mapping):
        return {_normalise(k, options): v for k, v in value.items()}
    return value


def _score(passed: bool) -> float:
    return 1.0 if passed else 0.0


def _collection(observed: Any, metric: str) -> Any:
    if isinstance(observed, (str, list, tuple, Mapping)):
        return observed
    raise Incomparable(f"{metric} needs a text, a list or an object to look in, got {_kind(observed)}")


def _member(item: Any, container: Any) -> bool:
    if isinstance(container, str):
        return isinstance(item, str) and item in container
    return item in container  # list member, or object key


def metric_equals(observed: Any, expected: Any, options: Mapping[str, Any]) -> float:
    return _score(observed == expected)


def metric_not_equals(observed: Any, expected: Any, options: Mapping[str, Any]) -> float:
    return _score(observed != expected)


def metric_contains(observed: Any, expected: Any, options: Mapping[str, Any]) -> float:
    return _score(_member(expected, _collection(observed, "contains")))


def metric_not_contains(observed: Any, expected: Any, options: Mapping[str, Any]) -> float:
    return _score(not _member(expected, _collection(observed, "not_contains")))


def metric_regex(observed: Any, expected: Any, options: Mapping[str, Any]) -> float:
    if observed is None:
        raise Incomparable("regex needs a text, got null")
    text = observed if isinstance(observed, str) else json.dumps(observed)
    flags = re.IGNORECASE if options.get("casefold") else 0
    return _score(re.search(str(expected), text, flags) is not None)


def metric_approx(observed: Any, expected: Any, options: Mapping[str, Any]) -> float:
    tolerance = float(options.get("tolerance", 1e-6))
    try:
        value = float(observed)
    except (TypeError, ValueError, OverflowError):
        raise Incomparable(f"approx needs a number, got {_kind(observed)}") from None
    return _score(math.isfinite(value) and abs(value - float(expected)) <= tolerance)


def _items(expected: Any, metric: str) -> list[Any]:
    if not isinstance(expected, (list, tuple)) or not expected:
        raise TypeError(f"{metric} needs a non-empty list as expected, got {_kind(expected)}")
    return list(expected)


def metric_includes(observed: Any, expected: Any, options: Mapping[str, Any]) -> float:
    container = _collection(observed, "includes")
    items = _items(expected, "includes")
    return sum(_member(item, container) for item in items) / len(items)


def metric_excludes(observed: Any, expected: Any, options: Mapping[str, Any]) -> float:
    container = _collection(observed, "excludes")
    items = _items(expected, "excludes")
    return sum(not _member(item, container) for item in items) / len(items)


def metric_exists(observed: Any, expected: Any, options: Mapping[str, Any]) -> float:
    wanted = True if expected is None else bool(expected)
    return _score((observed is not None) == wanted)


# OSWorld's metrics by name (desktop_env.evaluators.metrics), written here over plain values:
# the getters give texts, not paths on a host, and its package imports every app's parsers.


def metric_check_include_exclude(observed: Any, expected: Any, options: Mapping[str, Any]) -> float:
    container = _collection(observed, "check_include_exclude")
    return _score(all(_member(item, container) for item in expected.get("include", []))
                  and not any(_member(item, container) for item in expected.get("exclude", [])))


def metric_fuzzy_match(observed: Any, expected: Any, options: Mapping[str, Any]) -> float:
    if not isinstance(observed, str):
        raise Incomparable(f"fuzzy_match needs a text, got {_kind(observed)}")
    return difflib.SequenceMatcher(None, observed, str(expected), autojunk=False).ratio()


def metric_literal_match(observed: Any, expected: Any, options: Mapping[str, Any]) -> float:
    if isinstance(expected, (list, tuple)):
        return _score(isinstance(observed, (list, tuple)) and len(observed) == len(expected)
                      and [str(v) for v in observed] == [str(v) for v in expected])
    return _score(str(observed) == str(expected))


def _file_text(observed: Any, metric: str) -> str:
    if observed is None:
        raise Incomparable(f"{metric}: the file does not exist")
    if not isinstance(observed, str):
        raise Incomparable(f"{metric} needs a file's text, got {_kind(observed)}")
    return observed


def metric_compare_text_file(observed: Any, expected: Any, options: Mapping[str, Any]) -> float:
    text, wanted = _file_text(observed, "compare_text_file"), str(expected)
    if options.get("ignore_blanks"):
        text, wanted = (re.sub(r"\s+", " ", t).strip() for t in (text, wanted))
    return _score(text == wanted)


def metric_diff_text_file(observed: Any, expected: Any, options: Mapping[str, Any]) -> float:
    lines = _file_text(observed, "diff_text_file").splitlines()
    return difflib.SequenceMatcher(None, lines, str(expected).splitlines(), autojunk=False).ratio()


METRICS: dict[str, Callable[[Any, Any, Mapping[str, Any]], float]] = {
    "equals": metric_equals, "not_equals": metric_not_equals, "contains": metric_contains,
    "not_contains": metric_not_contains, "regex": metric_regex, "approx": metric_approx,
    "includes": metric_includes, "excludes": metric_excludes, "exists": metric_exists,
    "exact_match": metric_equals, "check_include_exclude": metric_check_include_exclude,
    "is_in_list": metric_contains, "fuzzy_match": metric_fuzzy_match,
    "literal_match": metric_literal_match, "compare_text_file": metric_compare_text_file,
    "diff_text_file": metric_diff_text_file,
}
if set(GETTERS) != set(GETTER_ARGS) or set(METRICS) != set(METRIC_NAMES):
    raise AssertionError("world_model.checks must implement exactly the getters and metrics of core.checks")


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


# --- evaluation ---------------------------------------------------------------------------


def _clip(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_OBSERVED_CHARS:
        return value[:MAX_OBSERVED_CHARS] + f"... ({len(value)} characters)"
    return value


def run_check(check: Check, probes: Probes) -> CheckEvidence:
    """One check's evidence. Raises SandboxError (infrastructure) and whatever a bug raises
    (a malformed check is a RecordError), never for what the agent did."""
    name = describe_check(check)
    options = {k: v for k, v in check.args.items() if k in METRIC_OPTIONS}
    try:
        validate_check(check)
        observed = GETTERS[check.getter](probes, check.args)
    except Missing as exc:
        if check.metric != "exists":
            return CheckEvidence(check=name, passed=False, score=0.0, message=str(exc))
        observed = None
    except GetterFailed as exc:
        return CheckEvidence(check=name, passed=False, score=0.0, message=str(exc))
    try:
        score = float(METRICS[check.metric](_normalise(observed, options),
                                            _normalise(check.expected, options), options))
    except Incomparable as exc:
        return CheckEvidence(check=name, passed=False, score=0.0, observed=_clip(observed),
                             message=f"{check.metric}: {exc}")
    score = min(1.0, max(0.0, score))
    passed = score >= 1.0
    message = "" if passed else f"expected {check.metric} {json.dumps(check.expected)[:200]}"
    return CheckEvidence(check=name, passed=passed, score=score, observed=_clip(observed), message=message)


def combine(checks: Sequence[Check], evidence: Sequence[CheckEvidence], how: str) -> tuple[bool, float]:
    """(success, score) of a task from its checks' evidence (see the module docstring)."""
    if not evidence:
        return False, 0.0
    if how == "any":
        return any(e.passed for e in evidence), max(e.score for e in evidence)
    total = sum(c.weight for c in checks)
    score = sum(c.weight * e.score for c, e in zip(checks, evidence)) / total
    return all(e.passed for e in evidence), min(1.0, max(0.0, score))


def evaluate(task: Task, sandbox: Any, *,
             probes: Probes | None = None) -> tuple[bool, float, tuple[CheckEvidence, ...]]:
    """Run ``task``'s checks against ``sandbox`` now: (success, score, evidence per check).

    A task without checks is never a success. Raises SandboxError when the sandbox cannot
    be read (see ``run_check``). Pass ``probes``
    to read the state again afterwards without another request.
    """
    probes = probes or Probes(sandbox)
    evidence = tuple(run_check(check, probes) for check in task.checks)
    success, score = combine(task.checks, evidence, task.combine)
    return success, score, evidence
