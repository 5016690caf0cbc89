"""The check schema: which getters, metrics and arguments a task's checks may name.

It is the shared vocabulary of the parts: task files and generators (curriculum)
validate against it, the judge (world_model) runs it. The getters and metrics
themselves live in ``world_model.checks``, which asserts it implements every name here.
"""

from __future__ import annotations

import json
import re

from deskdojo.core.errors import RecordError
from deskdojo.core.types import Check, Task

GETTER_ARGS: dict[str, tuple[frozenset[str], frozenset[str]]] = {  # name -> (required, optional)
    "app_state": (frozenset({"app"}), frozenset({"path"})),
    "file": (frozenset({"path"}), frozenset()),
    "windows": (frozenset(), frozenset()),
    "command": (frozenset({"argv"}), frozenset({"timeout"})),
}
METRIC_NAMES = ("equals", "not_equals", "contains", "not_contains", "regex", "approx",
                "includes", "excludes", "exists", *(
                    # OSWorld's metrics of these names, our own code (tasks imported from OSWorld)
                    "exact_match", "check_include_exclude", "is_in_list", "fuzzy_match",
                    "literal_match", "compare_text_file", "diff_text_file"))
METRIC_OPTIONS = frozenset({"tolerance", "strip", "casefold", "ignore_blanks"})


def validate_check(check: Check, where: str = "Check") -> None:
    """RecordError naming ``where.field`` and the known names if ``check`` cannot run."""
    if check.getter not in GETTER_ARGS:
        raise RecordError(f"{where}.getter: unknown getter {check.getter!r} (known: {', '.join(GETTER_ARGS)})")
    if check.metric not in METRIC_NAMES:
        raise RecordError(f"{where}.metric: unknown metric {check.metric!r} (known: {', '.join(METRIC_NAMES)})")
    required, optional = GETTER_ARGS[check.getter]
    known = required | optional | METRIC_OPTIONS
    for key in check.args:
        if key not in known:
            raise RecordError(f"{where}.args: unknown argument {key!r} for getter {check.getter!r} "
                              f"(known: {', '.join(sorted(known))})")
    missing = sorted(required - set(check.args))
    if missing:
        raise RecordError(f"{where}.args.{missing[0]} is required by getter {check.getter!r}")
    args = check.args
    if check.getter == "app_state" and not (isinstance(args["app"], str) and args["app"]):
        raise RecordError(f"{where}.args.app must be an app name, got {args['app']!r}")
    if check.getter == "app_state" and "path" in args and not isinstance(args["path"], str):
        raise RecordError(f"{where}.args.path must be a dotted path string, got {args['path']!r}")
    if check.getter == "file" and not (isinstance(args["path"], str) and
                                       (args["path"].startswith("/") or args["path"].startswith("~/"))):
        raise RecordError(f"{where}.args.path must be absolute or start with ~/, got {args['path']!r}")
    if check.getter == "command" and not (isinstance(args["argv"], list) and args["argv"]
                                          and all(isinstance(a, str) for a in args["argv"])):
        raise RecordError(f"{where}.args.argv must be a non-empty list of strings, got {args['argv']!r}")
    if "tolerance" in args and (isinstance(args["tolerance"], bool)
                                or not isinstance(args["tolerance"], (int, float)) or args["tolerance"] < 0):
        raise RecordError(f"{where}.args.tolerance must be a number >= 0, got {args['tolerance']!r}")
    if check.metric in ("includes", "excludes") and not (isinstance(check.expected, list) and check.expected):
        raise RecordError(f"{where}.expected must be a non-empty list for {check.metric}, "
                          f"got {check.expected!r}")
    if check.metric == "check_include_exclude" and not (
            isinstance(check.expected, dict) and set(check.expected) <= {"include", "exclude"}
            and all(isinstance(v, list) and all(isinstance(i, str) for i in v) for v in check.expected.values())):
        raise RecordError(f"{where}.expected must be {{\"include\": [texts], \"exclude\": [texts]}} "
                          f"for check_include_exclude, got {check.expected!r}")
    if check.metric in ("compare_text_file", "diff_text_file") and not isinstance(check.expected, str):
        raise RecordError(f"{where}.expected must be the expected file's text for {check.metric}, "
                          f"got {check.expected!r}")
    if check.metric == "regex":
        try:
            re.compile(str(check.expected))
        except re.error as exc:
            raise RecordError(f"{where}.expected: not a valid regex ({exc})") from None
    if check.metric == "approx" and (isinstance(check.expected, bool)
                                     or not isinstance(check.expected, (int, float))):
        raise RecordError(f"{where}.expected must be a number for approx, got {check.expected!r}")


def validate_checks(task: Task, where: str = "Task") -> None:
    """Reject a task whose checks name unknown getters, metrics or arguments."""
    for index, check in enumerate(task.checks):
        validate_check(check, f"{where}.checks[{index}]")


def describe_check(check: Check) -> str:
    """A short human-readable name: ``app_state(buttons, clicks.pepper) equals 1``."""
    shown = [str(v) if not isinstance(v, list) else " ".join(map(str, v))
             for k, v in check.args.items() if k not in METRIC_OPTIONS]
    return f"{check.getter}({', '.join(shown)}) {check.metric} {json.dumps(check.expected)}"


