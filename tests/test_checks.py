"""Checks: every getter and metric, partial credit, combining, failing getters, validation,
and task files (load/save, errors that name the file and the field)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from deskdojo.core.errors import GuestRequestError, RecordError, SandboxDied, SandboxError
from deskdojo.core.protocols import ExecResult
from deskdojo.core.types import Check, Task, Window
from deskdojo.core.checks import validate_checks
from deskdojo.world_model.checks import GETTERS, METRICS, evaluate, run_check, Probes


class StubSandbox:
    """Just the probe surface the getters read, with knobs for failures."""

    def __init__(self, apps: dict[str, Any] | None = None, files: dict[str, bytes] | None = None,
                 titles: tuple[str, ...] = ("deskdojo buttons", "xterm"), state_error: Exception | None = None):
        self.apps = apps if apps is not None else {"buttons": {"clicks": {"pepper": 1, "salt": 0},
                                                               "history": ["pepper"], "last": "pepper",
                                                               "value": 0.52, "title": "  Hello World  "}}
        self.files = files if files is not None else {"~/notes.txt": b"dear diary\n"}
        self.titles = titles
        self.state_error = state_error
        self.state_calls = 0

    def app_state(self) -> dict[str, Any]:
        self.state_calls += 1
        if self.state_error is not None:
            raise self.state_error
        return {"apps": self.apps, "errors": {"broken": "broken.json: Expecting value"}}

    def read_file(self, path: str) -> bytes:
        if path == "~/secret":
            raise GuestRequestError("GET /v1/files: the sandbox user may not read it", 403)
        if path not in self.files:
            raise GuestRequestError(f"no such file in the sandbox: {path}", 404)
        return self.files[path]

    def windows(self) -> tuple[Window, ...]:
        return tuple(Window(i, t, "x", 0, 0, 10, 10) for i, t in enumerate(self.titles))

    def exec(self, argv: list[str], *, timeout: float = 30.0, **_: Any) -> ExecResult:
        if argv[0] == "sleep":
            return ExecResult(returncode=None, timed_out=True)
        return ExecResult(returncode=0, stdout=" ".join(argv[1:]) + "\n")


def check(getter: str = "app_state", metric: str = "equals", expected: Any = None, weight: float = 1.0,
          **args: Any) -> Check:
    if getter == "app_state":
        args.setdefault("app", "buttons")
    return Check(getter, metric, args, expected, weight)


def one(c: Check, sandbox: Any = None) -> tuple[bool, float, Any, str]:
    evidence = run_check(c, Probes(sandbox or StubSandbox()))
    return evidence.passed, evidence.score, evidence.observed, evidence.message


# --- getters ---------------------------------------------------------------------


def test_app_state_getter_reads_dotted_paths_and_whole_states():
    assert one(check(path="clicks.pepper", expected=1))[:3] == (True, 1.0, 1)
    assert one(check(path="history.0", expected="pepper"))[0]
    assert one(check(path="clicks.salt", expected=1))[:2] == (False, 0.0)
    whole = one(check(metric="contains", expected="clicks"))
    assert whole[0] and whole[2]["last"] == "pepper"


def test_app_state_getter_fails_with_a_reason_for_missing_apps_and_paths():
    passed, score, _, message = one(check(path="clicks.cumin", expected=0))
    assert (passed, score) == (False, 0.0) and "clicks.cumin" in message
    passed, _, _, message = one(check(app="form", path="values", expected={}))
    assert not passed and "'form' has published no state" in message and "buttons" in message
    passed, _, _, message = one(check(app="broken", path="x", expected=1))
    assert not passed and "Expecting value" in message


def test_file_getter_reads_text_and_gives_none_for_a_missing_file():
    assert one(check("file", "equals", "dear diary\n", path="~/notes.txt"))[0]
    assert one(check("file", "equals", None, path="~/gone.txt"))[:3] == (True, 1.0, None)
    passed, _, _, message = one(check("file", "contains", "x", path="~/gone.txt"))
    assert not passed and "null" in message
    passed, _, _, message = one(check("file", "equals", "", path="~/secret"))
    assert not passed and "may not read" in message


def test_windows_and_command_getters():
    assert one(check("windows", "contains", "xterm"))[0]
    assert not one(check("windows", "contains", "mousepad"))[0]
    assert one(check("command", "equals", "a b", argv=["echo", "a", "b"]))[:3] == (True, 1.0, "a b")
    passed, _, _, message = one(check("command", "equals", "", argv=["sleep", "99"], timeout=1))
    assert not passed and "did not finish" in message


def test_a_refused_state_request_is_evidence_but_a_failing_sandbox_propagates():
    sandbox = StubSandbox(state_error=GuestRequestError("GET /v1/app_state: state folder unreadable", 403))
    passed, score, _, message = one(check(path="clicks.pepper", expected=1), sandbox)
    assert (passed, score) == (False, 0.0) and "unreadable" in message and "app state endpoint" in message
    task = Task(id="t", instruction="x", family="f", checks=(check(path="last", expected="pepper"),))
    for error in (SandboxError("the guest server failed GET /v1/app_state (500)"), SandboxDied("gone")):
        with pytest.raises(type(error)):  # infrastructure: never a score
            evaluate(task, StubSandbox(state_error=error))


def test_a_bug_in_a_check_is_raised_not_scored():
    with pytest.raises(RecordError, match="unknown metric"):  # a check that skipped validation
        one(check(metric="equal", path="last", expected="pepper"))


# --- metrics ---------------------------------------------------------------------


@pytest.mark.parametrize("metric, path, expected, passed", [
    ("equals", "last", "pepper", True), ("equals", "last", "salt", False),
    ("not_equals", "last", "salt", True), ("not_equals", "last", "pepper", False),
    ("contains", "title", "World", True), ("contains", "title", "world", False),
    ("contains", "history", "pepper", True), ("contains", "clicks", "salt", True),
    ("not_contains", "history", "salt", True), ("not_contains", "title", "Hello", False),
    ("regex", "title", r"^\s+Hello\s+W", True), ("regex", "title", r"^Hello", False),
    ("regex", "clicks", r'"salt": 0', True),
    ("approx", "value", 0.5, False), ("exists", "last", True, True), ("exists", "nothing", False, True),
    ("exists", "nothing", True, False), ("exists", "last", False, False),
])
def test_each_metric_passes_and_fails(metric, path, expected, passed):
    assert one(check(metric=metric, path=path, expected=expected))[0] is passed


def test_approx_uses_the_tolerance_and_reads_numbers_from_text():
    assert one(check(metric="approx", path="value", expected=0.5, tolerance=0.05))[0]
    assert not one(check(metric="approx", path="value", expected=0.5, tolerance=0.01))[0]
    sandbox = StubSandbox(apps={"form": {"values": {"Age": "41.9"}}})
    assert one(check(app="form", metric="approx", path="values.Age", expected=42, tolerance=0.2), sandbox)[0]
    passed, _, _, message = one(check(metric="approx", path="last", expected=1), None)
    assert not passed and "needs a number" in message


def test_strip_and_casefold_options_normalise_strings_and_lists():
    assert not one(check(path="title", expected="hello world"))[0]
    assert one(check(path="title", expected="hello world", strip=True, casefold=True))[0]
    assert one(check(metric="includes", path="history", expected=["PEPPER"], casefold=True))[0]


def test_includes_and_excludes_give_partial_credit():
    sandbox = StubSandbox(apps={"lists": {"selected": ["Oslo", "Lima", "Rome"]}})
    passed, score, _, _ = one(check(app="lists", metric="includes", path="selected",
                                    expected=["Oslo", "Lima", "Cairo", "Quito"]), sandbox)
    assert (passed, score) == (False, 0.5)
    assert one(check(app="lists", metric="includes", path="selected", expected=["Rome", "Oslo"]), sandbox)[:2] == (True, 1.0)
    passed, score, _, _ = one(check(app="lists", metric="excludes", path="selected",
                                    expected=["Oslo", "Cairo", "Quito", "Perth"]), sandbox)
    assert (passed, score) == (False, 0.75)
    assert one(check(app="lists", metric="excludes", path="selected", expected=["Cairo"]), sandbox)[0]


def test_a_metric_on_the_wrong_kind_of_value_fails_with_a_message():
    passed, _, observed, message = one(check(metric="contains", path="clicks.pepper", expected=1))
    assert not passed and observed == 1 and "contains needs" in message


# --- combining ---------------------------------------------------------------------


def task_with(*checks: Check, combine: str = "all") -> Task:
    return Task(id="t", instruction="do it", family="f", checks=checks, combine=combine)


def test_all_combines_by_weighted_mean_and_any_by_max():
    good = check(path="last", expected="pepper", weight=3.0)
    bad = check(path="last", expected="salt", weight=1.0)
    half = check(metric="includes", path="history", expected=["pepper", "salt"], weight=1.0)
    sandbox = StubSandbox()
    success, score, evidence = evaluate(task_with(good, bad), sandbox)
    assert not success and score == pytest.approx(0.75) and [e.passed for e in evidence] == [True, False]
    success, score, _ = evaluate(task_with(good, half), sandbox)
    assert not success and score == pytest.approx((3 + 0.5) / 4)
    success, score, _ = evaluate(task_with(bad, good, combine="any"), sandbox)
    assert success and score == 1.0
    success, score, _ = evaluate(task_with(bad, half, combine="any"), sandbox)
    assert not success and score == 0.5
    assert evaluate(task_with(good), sandbox)[:2] == (True, 1.0)
    assert evaluate(task_with(), sandbox)[:2] == (False, 0.0)


def test_one_evaluation_reads_the_app_state_once():
    sandbox = StubSandbox()
    evaluate(task_with(*[check(path="last", expected="pepper")] * 5), sandbox)
    assert sandbox.state_calls == 1


# --- validation ----------------------------------------------------------------------


@pytest.mark.parametrize("bad, message", [
    (check(metric="equal", path="x"), "Task.checks[1].metric: unknown metric 'equal' (known: equals,"),
    (Check("clipboard", "equals", {}), "Task.checks[1].getter: unknown getter 'clipboard' (known: app_state,"),
    (check(path="x", tolerence=1), "Task.checks[1].args: unknown argument 'tolerence'"),
    (Check("app_state", "equals", {"path": "x"}), "Task.checks[1].args.app is required"),
    (Check("file", "equals", {"path": "notes.txt"}), "must be absolute or start with ~/"),
    (Check("command", "equals", {"argv": "ls -l"}), "argv must be a non-empty list of strings"),
    (check(metric="includes", path="x", expected="a"), "expected must be a non-empty list"),
    (check(metric="regex", path="x", expected="(unclosed"), "not a valid regex"),
    (check(metric="approx", path="x", expected="1"), "must be a number for approx"),
])
def test_validation_names_the_check_index_and_the_known_names(bad, message):
    with pytest.raises(RecordError) as err:
        validate_checks(task_with(check(path="last", expected="pepper"), bad))
    assert message in str(err.value)


def test_every_getter_and_metric_is_documented_in_the_module_docstring():
    import deskdojo.world_model.checks as module

    for name in [*GETTERS, *METRICS]:
        assert f"``{name}``" in module.__doc__, name


# --- task files ------------------------------------------------------------------------

from deskdojo.core.actions import Click  # noqa: E402
from deskdojo.core.records import to_json  # noqa: E402
from deskdojo.core.types import Locator, OracleStep  # noqa: E402
from deskdojo.curriculum.spec import load_task, load_tasks, save_task  # noqa: E402

GOOD = Task(id="buttons-demo", instruction="Click the button labelled “pepper”.", family="click_button",
            level=1, seed=7, checks=(check(path="clicks.pepper", expected=1),),
            oracle=(OracleStep(Click(0, 0), at=Locator("buttons", path="widgets.button:pepper")),))


def test_a_saved_task_loads_back_equal(tmp_path):
    path = save_task(GOOD, tmp_path / "tasks" / "one.json")
    assert load_task(path) == GOOD
    assert load_tasks(path) == [GOOD]
    other = Task(id="second", instruction="x", family="f", checks=GOOD.checks)
    (tmp_path / "many.jsonl").write_text("\n".join(json.dumps(to_json(t)) for t in (GOOD, other)) + "\n\n")
    assert load_tasks(tmp_path / "many.jsonl") == [GOOD, other]
    save_task(other, tmp_path / "tasks" / "two.json")
    assert [t.id for t in load_tasks(tmp_path / "tasks")] == ["buttons-demo", "second"]


def _bad_file(tmp_path, edit) -> str:
    data = to_json(GOOD)
    edit(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(RecordError) as err:
        load_task(path)
    return str(err.value)


def test_bad_task_files_name_the_file_and_the_field(tmp_path):
    where = str(tmp_path / "bad.json")
    message = _bad_file(tmp_path, lambda d: d["checks"][0].update(metric="equal"))
    assert message.startswith(f"{where}: Task.checks[0].metric: unknown metric 'equal' (known: equals,")
    message = _bad_file(tmp_path, lambda d: d.update(colour="red"))
    assert message.startswith(f"{where}: Task has no key 'colour'")
    message = _bad_file(tmp_path, lambda d: d.update(level="two"))
    assert message == f"{where}: Task.level: expected an integer, got 'two'"
    message = _bad_file(tmp_path, lambda d: d["checks"][0].update(weight="heavy"))
    assert message.startswith(f"{where}: Task.checks[0].weight: expected a number")
    message = _bad_file(tmp_path, lambda d: d["oracle"][0]["at"].update(path=None, menu=None))
    assert message.startswith(where) and "Locator for 'buttons' needs exactly one of path, menu, text" in message
    message = _bad_file(tmp_path, lambda d: d.update(format_version=99))
    assert where in message and "format_version 99 is not supported" in message
    (tmp_path / "broken.json").write_text('{"id": "x",\n "instruction": }')
    with pytest.raises(RecordError, match=r"broken.json: not valid JSON \(Expecting value at line 2"):
        load_task(tmp_path / "broken.json")


def test_a_bad_line_in_a_jsonl_file_is_named_by_its_number(tmp_path):
    bad = to_json(GOOD) | {"id": "b"}
    bad["checks"] = [{"getter": "app_state", "metric": "equals", "args": {"app": "buttons"}, "expected": 1,
                      "colour": 1}]
    path = tmp_path / "tasks.jsonl"
    path.write_text(json.dumps(to_json(GOOD)) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(RecordError) as err:
        load_tasks(path)
    assert str(err.value).startswith(f"{path}:2: Task.checks[0] has no key 'colour'")
    path.write_text(json.dumps(to_json(GOOD)) + "\n\n{oops\n")
    with pytest.raises(RecordError, match=r"tasks.jsonl:3: not valid JSON"):
        load_tasks(path)
    path.write_text(json.dumps(to_json(GOOD)) + "\n" + json.dumps(to_json(GOOD)) + "\n")
    with pytest.raises(RecordError, match="appears twice"):
        load_tasks(path)
