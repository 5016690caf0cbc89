"""OSWorld import: task JSON -> Tasks (setup, checks), refusals naming what is missing,
the report, and an imported terminal task judged in a real docker sandbox."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import pytest

from deskdojo.core.errors import RecordError
from deskdojo.core.types import Check, Provenance, SetupStep
from deskdojo.curriculum.osworld import IMAGE_PROGRAMS, Refused, convert, import_file, task_files

DATA = Path(__file__).parent / "data" / "osworld"
FILES = DATA / "files"
TERMINAL = DATA / "os" / "dd000001-notes-hello.json"
EDITOR = DATA / "gedit" / "dd000002-edit-todo.json"
CHROME = DATA / "chrome" / "dd000003-chrome-tab.json"
BROKEN = DATA / "broken" / "dd000004-no-func.json"


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def test_terminal_task_becomes_setup_steps_and_checks():
    task = import_file(TERMINAL).task
    assert task is not None and task.id == "osworld-dd000001-notes-hello"
    assert task.family == "osworld_os" and task.provenance is Provenance.IMPORTED and task.combine == "all"
    assert task.setup == (
        SetupStep("run", {"argv": ["sh", "-c", "mkdir -p $HOME/Desktop && rm -f ~/Desktop/notes.txt"],
                          "timeout": 60.0}),
        SetupStep("launch", {"argv": ["xterm"], "wait_window": "(?i)xterm"}),  # gnome-terminal -> xterm
        SetupStep("wait", {"seconds": 0.2}))
    assert task.checks == (
        Check("command", "exact_match", {"argv": ["sh", "-c", "cat $HOME/Desktop/notes.txt"], "timeout": 60.0},
              expected="hello"),  # our command getter strips the output, so the expected text is stripped too
        Check("file", "check_include_exclude", {"path": "~/Desktop/notes.txt"},
              expected={"include": ["hello"], "exclude": ["goodbye"]}))


def test_editor_task_inlines_local_files_and_opens_mousepad():
    task = import_file(EDITOR, files_dir=FILES).task
    assert task is not None
    write, launch, activate = task.setup
    assert write.kind == "write_file" and write.args["path"] == "~/Desktop/todo.txt"
    assert base64.b64decode(write.args["content_b64"]) == (FILES / "Desktop" / "todo.txt").read_bytes()
    assert launch == SetupStep("launch", {"argv": ["mousepad", "Desktop/todo.txt"], "wait_window": "(?i)mousepad"})
    assert activate.args["argv"][:2] == ["xdotool", "search"] and activate.args["argv"][-2:] == ["todo\\.txt",
                                                                                               "windowactivate"]
    (check,) = task.checks
    assert (check.getter, check.metric, check.args) == ("file", "compare_text_file",
                                                        {"path": "~/Desktop/todo.txt", "ignore_blanks": True})
    assert check.expected == "buy bread\nwalk the dog\n"


@pytest.mark.parametrize("change, reason, named", [
    (lambda t: t, "network", "--files"),  # a download with no local folder
    (lambda t: {**t, "related_apps": ["vlc"]}, "app:vlc", "vlc"),
    (lambda t: {**t, "proxy": True}, "network", "proxy"),
    (lambda t: {**t, "evaluator": {"func": "infeasible"}}, "infeasible", "FAIL"),
    (lambda t: {**t, "evaluator": {**t["evaluator"], "func": "compare_table"}}, "metric:compare_table", "compare_table"),
    (lambda t: {**t, "evaluator": {**t["evaluator"], "postconfig": [{"type": "activate_window",
                                                                      "parameters": {"window_name": "x"}}]}},
     "postconfig", "activate_window"),
    (lambda t: {**t, "config": [{"type": "execute", "parameters": {"command": "gsettings get a b", "shell": True}}]},
     "program:gsettings", "gsettings"),
    (lambda t: {**t, "config": [{"type": "execute", "parameters": {"command": ["libreoffice", "--calc"]}}]},
     "app:libreoffice", "libreoffice"),
    (lambda t: {**t, "config": [{"type": "open", "parameters": {"path": "/home/user/a.xlsx"}}]},
     "app:libreoffice", ".xlsx"),
    (lambda t: {**t, "config": [{"type": "login", "parameters": {}}]}, "network", "login"),
])
def test_refusals_name_what_is_missing(change, reason, named):
    with pytest.raises(Refused) as refused:
        convert(change(_load(EDITOR)), domain="gedit", files_dir=None if named == "--files" else FILES)
    assert refused.value.reason == reason and named in refused.value.detail


def test_a_missing_local_file_is_named_and_paths_stay_in_the_files_folder(tmp_path):
    (tmp_path / "Desktop").mkdir()
    (tmp_path / "Desktop" / "todo.txt").symlink_to("/etc/passwd")  # escapes the folder: not used
    (tmp_path / "todo_gold.txt").write_text("x")
    with pytest.raises(Refused) as refused:
        convert(_load(EDITOR), domain="gedit", files_dir=tmp_path)
    assert refused.value.reason == "file" and "todo.txt" in refused.value.detail
    escaping = _load(EDITOR)
    escaping["config"][0]["parameters"]["files"][0]["path"] = "/home/user/../../etc/passwd"
    with pytest.raises(RecordError, match=r"config\[0\]\.parameters\.files\[0\]\.path: .*'\.\.'"):
        convert(escaping, domain="gedit", files_dir=FILES)


def test_malformed_files_name_the_field():
    broken = import_file(BROKEN)
    assert broken.task is None and broken.reason == "malformed"
    assert "evaluator.func: must be a metric name or a list of them, got 3" in broken.detail
    with pytest.raises(RecordError, match=r"^instruction: must be a string"):
        convert({"id": "x", "evaluator": {}}, domain="os")
    with pytest.raises(RecordError, match=r"evaluator\.result: must be a list of 2 entries"):
        convert({**_load(TERMINAL), "evaluator": {**_load(TERMINAL)["evaluator"], "result": {"type": "vm_file"}}},
                domain="os")


def test_command_writes_task_files_that_load_and_reports_counts(tmp_path, capsys):
    from deskdojo.cli import main
    from deskdojo.curriculum.spec import load_tasks

    assert main(["tasks", "import-osworld", str(DATA), "--files", str(FILES), "--out", str(tmp_path),
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["tasks"], report["imported"], report["refused"]) == (4, 2, 2)
    assert report["refused_by_reason"] == {"app:chrome": 1, "malformed": 1}
    assert report["by_domain"]["os"] == {"tasks": 1, "imported": 1, "refused": 0, "runs": 0}
    loaded = {t.id: t for t in load_tasks(tmp_path)}
    assert loaded["osworld-dd000001-notes-hello"] == import_file(TERMINAL).task
    assert main(["tasks", "import-osworld", str(CHROME)]) == 1
    assert "refused (app:chrome)" in capsys.readouterr().out
    assert main(["tasks", "import-osworld", str(DATA), "--files", str(FILES), "--report"]) == 0
    table = capsys.readouterr().out
    assert "all" in table and "app:chrome" in table and "malformed" in table
    assert [p.name for p, _ in task_files(DATA)].count("dd000001-notes-hello.json") == 1


def test_osworld_metrics_by_name():
    from deskdojo.world_model.checks import METRICS

    assert METRICS["check_include_exclude"]("a b", {"include": ["a"], "exclude": ["c"]}, {}) == 1.0
    assert METRICS["check_include_exclude"]("a c", {"include": ["a"], "exclude": ["c"]}, {}) == 0.0
    assert METRICS["compare_text_file"]("x  y\n", "x y", {"ignore_blanks": True}) == 1.0
    assert METRICS["diff_text_file"]("a\nb\n", "a\nc\n", {}) == 0.5
    assert METRICS["fuzzy_match"]("abcd", "abce", {}) == 0.75
    assert METRICS["literal_match"](["a", 1], ["a", "1"], {}) == 1.0
    assert METRICS["is_in_list"](["x", "y"], "y", {}) == 1.0


@pytest.mark.docker
def test_imported_terminal_task_fails_before_and_passes_after_typing_in_xterm():
    from deskdojo.core.actions import Click, Type
    from deskdojo.vm.config import SandboxConfig
    from deskdojo.vm.docker import DockerProvider
    from deskdojo.world_model.checks import evaluate

    task = import_file(TERMINAL).task
    sandbox = DockerProvider(SandboxConfig(screen=(800, 600))).start()
    try:
        missing = sandbox.exec(["sh", "-c", "for p in " + " ".join(sorted(IMAGE_PROGRAMS - {"["}))
                                + '; do command -v "$p" >/dev/null || echo "$p"; done'], timeout=20)
        assert missing.stdout.split() == [], "IMAGE_PROGRAMS names programs the image lacks"
        sandbox.reset(task)
        success, _, evidence = evaluate(task, sandbox)
        assert not success and [e.passed for e in evidence] == [False, False]
        (window,) = [w for w in sandbox.windows() if "xterm" in (w.title + w.wm_class).lower()]
        sandbox.act(Click(x=window.x + window.width // 2, y=window.y + window.height // 2))
        sandbox.act(Type(text="echo hello > ~/Desktop/notes.txt\n"))
        deadline = time.monotonic() + 10
        while not (success := evaluate(task, sandbox)[0]) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert success, evaluate(task, sandbox)[2]
    finally:
        sandbox.close()


@pytest.mark.docker
def test_run_resets_a_real_sandbox_to_each_imported_task(capsys):
    from deskdojo.cli import main

    assert main(["--quiet", "tasks", "import-osworld", str(DATA), "--files", str(FILES), "--json", "--run"]) == 0
    report = json.loads(capsys.readouterr().out)
    runs = {row["osworld_id"]: row.get("run") for row in report["rows"] if row["status"] == "imported"}
    assert runs == {"dd000001-notes-hello": "runs", "dd000002-edit-todo": "runs"}  # setup ran, no-op fails
    assert report["runs"] == 2 and report["by_domain"]["gedit"]["runs"] == 1
