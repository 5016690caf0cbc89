"""OSWorld task JSON -> deskdojo Tasks, or a refusal naming what the sandbox lacks.

OSWorld (github.com/xlang-ai/OSWorld) describes a task as ``config`` (setup steps),
``evaluator`` (metric ``func`` over a ``result`` getter and an ``expected`` getter) and
``related_apps``. We map what deskdojo's guest can do and refuse the rest with a reason:
an app the image lacks (``app:chrome``), a download with no local file (``network``),
a setup type, getter, metric or option we do not map. Nothing from a task file runs on
the host: commands become argv for the guest (shell strings only as ``sh -c`` inside the
sandbox), files come from a local folder and must stay inside it.
"""

from __future__ import annotations

import base64
import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Mapping

from deskdojo.core.checks import validate_checks
from deskdojo.core.errors import RecordError
from deskdojo.core.types import Check, Provenance, SetupStep, Task

OSWORLD_HOME = "/home/user"
MAX_FILE_BYTES = 8 * 1024 * 1024  # a download is inlined into the task file as base64
COMMAND_TIMEOUT_S = 60.0
MAX_STEPS = 15  # OSWorld's default step budget

# On the sandbox image's PATH (checked with `command -v` inside the image; a docker test
# keeps this list honest). A task calling anything else is refused, naming the program.
IMAGE_PROGRAMS = frozenset(
    "bash sh python3 perl xterm mousepad xdotool xprop xwininfo xdpyinfo md5sum sha1sum sha256sum "
    "base64 find grep sed awk mawk xargs tar gzip gunzip zcat diff cmp stat touch realpath du df "
    "ps kill pkill whoami id chmod chown ln sort uniq wc head tail cut tr tee date sleep basename "
    "dirname readlink printf echo test [ cat cp mv rm mkdir rmdir ls true false env which seq nl "
    "rev fold od pwd expr yes comm join paste split tac mktemp timeout truncate".split())
SHELL_WORDS = frozenset(  # builtins and keywords: no program needed
    "cd export set unset source . if then else elif fi do done while until for in case esac "
    "function return exit local read shift eval exec ! { } [[ ]] : time".split())
ALIASES = {"python": "python3", "gedit": "mousepad", "gnome-terminal": "xterm"}  # OSWorld's Ubuntu -> ours
APP_OF_PROGRAM = {
    "google-chrome": "chrome", "chromium": "chrome", "chromium-browser": "chrome",
    "libreoffice": "libreoffice", "soffice": "libreoffice", "vlc": "vlc", "thunderbird": "thunderbird",
    "gimp": "gimp", "code": "vs_code", "nautilus": "nautilus", "eog": "image viewer",
    "evince": "pdf viewer", "firefox": "firefox",
}
RELATED_APPS_OK = frozenset({"os", "terminal", "gedit", "text_editor", "mousepad", "xterm"})
RELATED_APP_NAMES = {"vscode": "vs_code", "libreoffice_calc": "libreoffice", "libreoffice_writer": "libreoffice",
                     "libreoffice_impress": "libreoffice", "calc": "libreoffice", "writer": "libreoffice",
                     "browser": "chrome", "msoffice_excel": "libreoffice", "ubuntu_media_player": "vlc"}
TEXT_SUFFIXES = frozenset(".txt .md .py .sh .json .log .tex .bib .c .cpp .h .js .html .css .xml .yaml .yml "
                          ".ini .cfg .conf .rst".split())
APP_OF_SUFFIX = {**{s: "libreoffice" for s in ".docx .doc .odt .xlsx .xls .ods .csv .pptx .ppt .odp".split()},
                 **{s: "image viewer" for s in ".png .jpg .jpeg .gif .webp .svg .xcf".split()},
                 **{s: "vlc" for s in ".mp3 .mp4 .wav .avi .mkv .ogg .webm".split()}, ".pdf": "pdf viewer"}
SETUP_TYPE_REASON = {"chrome_open_tabs": "app:chrome", "chrome_close_tabs": "app:chrome",
                     "update_browse_history": "app:chrome", "login": "network", "googledrive": "network",
                     "proxy": "network"}
METRICS = frozenset({"exact_match", "check_include_exclude", "is_in_list", "fuzzy_match", "literal_match",
                     "compare_text_file", "diff_text_file"})
FILE_METRICS = frozenset({"compare_text_file", "diff_text_file"})  # expected: a file's text
WINDOW_OF_PROGRAM = {"mousepad": "(?i)mousepad", "xterm": "(?i)xterm"}


class Refused(Exception):
    """The task cannot become a deskdojo task: ``reason`` is a short category for the report
    (``app:chrome``, ``network``, ``setup:login``, ``metric:compare_table``, ...)."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Imported:
    """One OSWorld task file's outcome: a Task, or why not (``malformed`` for bad input)."""

    source: str
    osworld_id: str
    domain: str
    task: Task | None
    reason: str | None = None
    detail: str = ""


def _malformed(where: str, message: str) -> RecordError:
    return RecordError(f"{where}: {message}")


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise _malformed(where, f"must be a string, got {value!r}"[:300])
    return value


def _obj(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _malformed(where, f"must be an object, got {value!r}"[:300])
    return value


def _relative_parts(path: str, where: str) -> PurePosixPath | None:
    """``path`` relative to the OSWorld home (None when outside it); ``..`` is refused."""
    if ".." in PurePosixPath(path).parts:
        raise _malformed(where, f"{path!r} contains '..'; give a path without it")
    if path == OSWORLD_HOME or path == "~":
        return PurePosixPath(".")
    for prefix in (OSWORLD_HOME + "/", "~/"):
        if path.startswith(prefix):
            return PurePosixPath(path[len(prefix):])
    if not path.startswith("/"):
        return PurePosixPath(path)  # OSWorld's server resolves relative paths in the home
    return None


def guest_path(path: str, where: str) -> str:
    """An OSWorld path as deskdojo's guest reads it: ``/home/user/x`` -> ``~/x``; /tmp stays."""
    relative = _relative_parts(_str(path, where), where)
    if relative is not None:
        return "~" if str(relative) == "." else f"~/{relative}"
    if path.startswith("/tmp/"):
        return path
    raise Refused("path", f"{where}: {path!r} is outside the home folder and /tmp, "
                          f"where deskdojo's guest reads and writes files")


def _home_word(text: str) -> str:
    """``text`` as one shell word with /home/user replaced by the guest's ``$HOME``."""
    return '"$HOME"'.join(shlex.quote(piece) if piece else "" for piece in text.split(OSWORLD_HOME)) or "''"


def command_words(script: str, where: str) -> list[str]:
    """The words of a shell script that name programs (first word of each simple command).
    Conservative: anything unusual is a word, so it is checked, never silently allowed."""
    lexer = shlex.shlex(script.replace("\n", " ; "), posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        tokens = list(lexer)
    except ValueError as exc:
        raise _malformed(where, f"cannot read the shell command ({exc}): {script[:120]!r}") from None
    words, expect, skip = [], True, False
    for token in tokens:
        if skip:
            skip = False
        elif token and set(token) <= set("|&;()<>"):
            skip = token.endswith((">", "<")) and token not in ("<(", ">(")
            expect = not skip
        elif expect:
            if re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", token):
                continue  # VAR=value before a command
            if token in ("for", "case"):
                expect = False
                continue
            if not token.startswith("$"):
                words.append(token)
            expect = token in SHELL_WORDS and token not in ("cd", "export", "set", "unset", "read",
                                                            "return", "exit", "local", "shift")
    return words


def _check_program(word: str, where: str) -> None:
    if word in SHELL_WORDS or word in IMAGE_PROGRAMS:
        return
    if word.startswith(("./", "~/", OSWORLD_HOME + "/")):
        return  # a script the task put in the home folder: it runs in the sandbox, its calls show at --run
    name = PurePosixPath(word).name
    if name in APP_OF_PROGRAM:
        app = APP_OF_PROGRAM[name]
        raise Refused(f"app:{app}", f"{where}: runs {name}, and the sandbox image has no {app}")
    if name in IMAGE_PROGRAMS and word.startswith(("/usr/bin/", "/bin/")):
        return
    raise Refused(f"program:{name}", f"{where}: runs {name!r}, which the sandbox image lacks")


def to_argv(command: Any, shell: Any, where: str) -> list[str]:
    """OSWorld's ``command`` (a list, or a string run by a shell when ``shell``) as guest argv.
    Every program it names must be in the image; /home/user becomes the guest's home."""
    if isinstance(command, list) and command and all(isinstance(a, str) for a in command):
        argv = [ALIASES.get(command[0], command[0]), *command[1:]]
        _check_program(argv[0], where)
        if argv[0] in ("sh", "bash") and len(argv) > 2 and argv[1] == "-c":
            for word in command_words(argv[2], where):
                _check_program(word, where)
        if any(OSWORLD_HOME in a for a in argv):
            return ["sh", "-c", " ".join(_home_word(a) for a in argv)]
        return argv
    if isinstance(command, str) and command.strip():
        if shell is True:
            for word in command_words(command, where):
                _check_program(word, where)
            return ["sh", "-c", command.replace(OSWORLD_HOME, "$HOME")]
        try:
            return to_argv(shlex.split(command), False, where)
        except ValueError as exc:
            raise _malformed(where, f"cannot split {command!r} into arguments ({exc})") from None
    raise _malformed(where, f"must be a non-empty list of strings or a command string, got {command!r}"[:300])


# --- local files (OSWorld downloads them from URLs) -----------------------------------------


def local_file(files_dir: Path | None, names: list[str], where: str, *, url: str = "") -> bytes:
    """The bytes of the first of ``names`` found in ``files_dir``; names must stay inside it."""
    shown = names[0] if names else "?"
    if files_dir is None:
        raise Refused("network", f"{where}: downloads {shown!r} from {url[:80] or 'a URL'}; "
                                 f"give --files DIR with that file to import it offline")
    root = files_dir.resolve()
    for name in names:
        relative = PurePosixPath(name)
        if not name or relative.is_absolute() or ".." in relative.parts:
            continue
        candidate = (root / relative).resolve()
        if candidate != root and root in candidate.parents and candidate.is_file():
            size = candidate.stat().st_size
            if size > MAX_FILE_BYTES:
                raise Refused("file", f"{where}: {candidate} is {size} bytes; files over "
                                      f"{MAX_FILE_BYTES} bytes are not inlined into task files")
            return candidate.read_bytes()
    raise Refused("file", f"{where}: {shown!r} is not in {files_dir} (looked for: {', '.join(names)})")


def _download_names(path: str) -> list[str]:
    names = []
    relative = _relative_parts(path, "path") if not path.startswith("/tmp/") else None
    if relative is not None and str(relative) != ".":
        names.append(str(relative))
    names.append(PurePosixPath(path).name)
    return list(dict.fromkeys(names))


# --- setup -------------------------------------------------------------------------------------


def setup_steps(step: Any, where: str, files_dir: Path | None) -> list[SetupStep]:
    """One OSWorld ``config`` entry as deskdojo setup steps (or Refused)."""
    step = _obj(step, where)
    kind = _str(step.get("type"), f"{where}.type")
    params = _obj(step.get("parameters", {}), f"{where}.parameters")
    if kind in ("execute", "command"):
        argv = to_argv(params.get("command"), params.get("shell", False), f"{where}.parameters.command")
        return [SetupStep("run", {"argv": argv, "timeout": COMMAND_TIMEOUT_S})]
    if kind == "launch":
        argv = to_argv(params.get("command"), params.get("shell", False), f"{where}.parameters.command")
        args: dict[str, Any] = {"argv": argv}
        if argv[0] in WINDOW_OF_PROGRAM:
            args["wait_window"] = WINDOW_OF_PROGRAM[argv[0]]
        return [SetupStep("launch", args)]
    if kind == "open":
        path = guest_path(_str(params.get("path"), f"{where}.parameters.path"), f"{where}.parameters.path")
        suffix = PurePosixPath(path).suffix.lower()
        if suffix in APP_OF_SUFFIX:
            app = APP_OF_SUFFIX[suffix]
            raise Refused(f"app:{app}", f"{where}: opens a {suffix} file, and the sandbox image has no {app}")
        if suffix not in TEXT_SUFFIXES:
            raise Refused("setup:open", f"{where}: no app in the sandbox image opens {path!r}")
        # the guest runs commands in the home folder: a home path is relative to it
        opened = path[2:] if path.startswith("~/") else path
        return [SetupStep("launch", {"argv": ["mousepad", opened], "wait_window": WINDOW_OF_PROGRAM["mousepad"]})]
    if kind == "sleep":
        seconds = params.get("seconds", 1)
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds <= 600:
            raise _malformed(f"{where}.parameters.seconds", f"must be a number of seconds, got {seconds!r}")
        return [SetupStep("wait", {"seconds": seconds})]
    if kind == "download":
        files = params.get("files")
        if not isinstance(files, list) or not files:
            raise _malformed(f"{where}.parameters.files", f"must be a non-empty list, got {files!r}"[:300])
        steps = []
        for index, entry in enumerate(files):
            at = f"{where}.parameters.files[{index}]"
            entry = _obj(entry, at)
            path = _str(entry.get("path"), f"{at}.path")
            target = guest_path(path, f"{at}.path")
            data = local_file(files_dir, _download_names(path), at, url=str(entry.get("url", "")))
            steps.append(SetupStep("write_file", {"path": target, "content_b64": base64.b64encode(data).decode()}))
        return steps
    if kind == "activate_window":
        name = _str(params.get("window_name"), f"{where}.parameters.window_name")
        pattern = f"^{re.escape(name)}$" if params.get("strict") else re.escape(name)
        field = "--class" if params.get("by_class") else "--name"
        return [SetupStep("run", {"argv": ["xdotool", "search", "--limit", "1", field, pattern, "windowactivate"],
                                  "timeout": 10.0})]
    if kind in SETUP_TYPE_REASON:
        raise Refused(SETUP_TYPE_REASON[kind], f"{where}: setup type {kind!r} needs "
                                               f"{SETUP_TYPE_REASON[kind].removeprefix('app:')}")
    raise Refused(f"setup:{kind}", f"{where}: setup type {kind!r} has no deskdojo equivalent")


# --- evaluator ---------------------------------------------------------------------------------


def _as_list(value: Any, n: int, where: str) -> list[Any]:
    if n == 1 and not isinstance(value, list):
        return [value]
    if not isinstance(value, list) or len(value) != n:
        raise _malformed(where, f"must be a list of {n} entries, one per evaluator.func, got {value!r}"[:300])
    return value


def _getter(spec: Any, where: str) -> tuple[str, dict[str, Any]]:
    spec = _obj(spec, where)
    kind = _str(spec.get("type"), f"{where}.type")
    if kind == "vm_file":
        path = spec.get("path")
        if isinstance(path, list):
            raise Refused("getter:vm_file[list]", f"{where}: reads several files; deskdojo checks read one")
        return "file", {"path": guest_path(_str(path, f"{where}.path"), f"{where}.path")}
    if kind == "vm_command_line":
        argv = to_argv(spec.get("command"), spec.get("shell", False), f"{where}.command")
        return "command", {"argv": argv, "timeout": COMMAND_TIMEOUT_S}
    raise Refused(f"getter:{kind}", f"{where}: getter {kind!r} reads what deskdojo's guest does not expose")


def _expected(func: str, spec: Any, where: str, files_dir: Path | None, getter: str) -> Any:
    if spec is None:
        raise _malformed(where, f"is required for {func}")
    spec = _obj(spec, where)
    kind = _str(spec.get("type"), f"{where}.type")
    if func in FILE_METRICS:
        if kind != "cloud_file":
            raise Refused(f"getter:{kind}", f"{where}: {func} compares with a file; {kind!r} is not mapped")
        names = [n for n in (spec.get("dest"), PurePosixPath(str(spec.get("path", ""))).name) if isinstance(n, str) and n]
        data = local_file(files_dir, names, where, url=str(spec.get("path", "")))
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise Refused("file", f"{where}: {names[0]!r} is not UTF-8 text") from None
    if kind != "rule":
        raise Refused(f"getter:{kind}", f"{where}: expected getter {kind!r} is not mapped (only rule, cloud_file)")
    rules = _obj(spec.get("rules"), f"{where}.rules")
    if func == "check_include_exclude":
        value = {key: rules.get(key, []) for key in ("include", "exclude")}
        for key, items in value.items():
            if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
                raise _malformed(f"{where}.rules.{key}", f"must be a list of strings, got {items!r}"[:300])
        return value
    if "expected" not in rules:
        raise _malformed(f"{where}.rules.expected", f"is required for {func}")
    value = rules["expected"]
    if getter == "command" and isinstance(value, str):
        value = value.strip()  # deskdojo's command getter strips the output; OSWorld's keeps the newline
    return value


def _options(func: str, options: Any, where: str) -> dict[str, Any]:
    options = _obj(options if options is not None else {}, where)
    mapped: dict[str, Any] = {}
    for key, value in options.items():
        if key == "ignore_case" and func in ("literal_match", "compare_text_file"):
            mapped["casefold"] = bool(value)
        elif key == "ignore_blanks" and func == "compare_text_file":
            mapped["ignore_blanks"] = bool(value)
        elif key == "type" and func == "literal_match" and value in ("str", "list"):
            pass  # the expected value's kind decides
        else:
            raise Refused(f"option:{key}", f"{where}: option {key!r} of {func} is not mapped")
    return mapped


def checks_of(evaluator: Any, files_dir: Path | None) -> tuple[tuple[Check, ...], str]:
    """OSWorld's ``evaluator`` as deskdojo checks and their ``combine`` (conj and/or)."""
    evaluator = _obj(evaluator, "evaluator")
    funcs = evaluator.get("func")
    funcs = [funcs] if isinstance(funcs, str) else funcs
    if not isinstance(funcs, list) or not funcs or not all(isinstance(f, str) and f for f in funcs):
        raise _malformed("evaluator.func", f"must be a metric name or a list of them, got {evaluator.get('func')!r}")
    if "infeasible" in funcs:
        raise Refused("infeasible", "an infeasible task: the agent should answer FAIL, and deskdojo's checks "
                                    "read the sandbox, not the agent's answer")
    for index, step in enumerate(evaluator.get("postconfig") or []):
        kind = _obj(step, f"evaluator.postconfig[{index}]").get("type")
        if kind != "sleep":
            raise Refused("postconfig", f"evaluator.postconfig[{index}]: a {kind!r} step runs before "
                                        f"OSWorld's check; deskdojo judges the state the agent left")
    for func in funcs:
        if func not in METRICS:
            raise Refused(f"metric:{func}", f"evaluator.func: metric {func!r} is not mapped "
                                            f"(mapped: {', '.join(sorted(METRICS))})")
    n = len(funcs)
    results = _as_list(evaluator.get("result"), n, "evaluator.result")
    expecteds = _as_list(evaluator.get("expected"), n, "evaluator.expected")
    options = _as_list(evaluator.get("options"), n, "evaluator.options") if "options" in evaluator else [None] * n
    conj = evaluator.get("conj", "and")
    if conj not in ("and", "or"):
        raise _malformed("evaluator.conj", f"must be 'and' or 'or', got {conj!r}")
    checks = []
    for i, func in enumerate(funcs):
        at = (lambda key: f"evaluator.{key}" + (f"[{i}]" if n > 1 else ""))
        getter, args = _getter(results[i], at("result"))
        expected = _expected(func, expecteds[i], at("expected"), files_dir, getter)
        checks.append(Check(getter=getter, metric=func, args={**args, **_options(func, options[i], at("options"))},
                            expected=expected))
    return tuple(checks), ("all" if conj == "and" else "any")


# --- tasks ---------------------------------------------------------------------------------------


def convert(data: Any, *, domain: str, files_dir: Path | None = None) -> Task:
    """One OSWorld task (parsed JSON) as a deskdojo Task. Raises Refused (cannot run here)
    or RecordError (malformed: the message names the field)."""
    data = _obj(data, "task")
    osworld_id = _str(data.get("id"), "id")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", osworld_id):
        raise _malformed("id", f"must be letters, digits, '.', '_' or '-', got {osworld_id!r}")
    instruction = _str(data.get("instruction"), "instruction")
    if data.get("proxy"):
        raise Refused("network", "proxy: true (the task needs the network through a proxy)")
    related = data.get("related_apps") or []
    if not isinstance(related, list) or not all(isinstance(a, str) for a in related):
        raise _malformed("related_apps", f"must be a list of app names, got {related!r}"[:300])
    for app in related:
        name = app.strip().lower().replace(" ", "_")
        if name not in RELATED_APPS_OK:
            canonical = RELATED_APP_NAMES.get(name, name)
            raise Refused(f"app:{canonical}", f"related_apps: the task uses {app}, which the sandbox image lacks")
    config = data.get("config") or []
    if not isinstance(config, list):
        raise _malformed("config", f"must be a list of setup steps, got {config!r}"[:300])
    evaluator = data.get("evaluator")
    if evaluator is None:
        raise _malformed("evaluator", "is required (func, result, expected)")
    checks, combine = checks_of(evaluator, files_dir)
    setup = [s for index, step in enumerate(config) for s in setup_steps(step, f"config[{index}]", files_dir)]
    task = Task(id=f"osworld-{osworld_id}", instruction=instruction, family=f"osworld_{domain}",
                setup=tuple(setup), checks=checks, combine=combine, max_steps=MAX_STEPS,
                provenance=Provenance.IMPORTED)
    validate_checks(task)
    return task


def import_file(path: Path, *, files_dir: Path | None = None, domain: str | None = None) -> Imported:
    """One OSWorld task file: its Task, or the refusal (``malformed`` names the field)."""
    domain = domain or path.parent.name or "osworld"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        return Imported(str(path), path.stem, domain, None, "malformed", f"{path}: cannot read it ({exc})")
    except json.JSONDecodeError as exc:
        return Imported(str(path), path.stem, domain, None, "malformed",
                        f"{path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})")
    osworld_id = str(data.get("id", path.stem)) if isinstance(data, dict) else path.stem
    try:
        return Imported(str(path), osworld_id, domain, convert(data, domain=domain, files_dir=files_dir))
    except Refused as exc:
        return Imported(str(path), osworld_id, domain, None, exc.reason, f"{path}: {exc.detail}")
    except RecordError as exc:
        return Imported(str(path), osworld_id, domain, None, "malformed", f"{path}: {exc}")


def task_files(source: Path, index: Path | None = None) -> list[tuple[Path, str]]:
    """(file, domain) for a task file or a folder (``<domain>/<id>.json`` or flat), optionally
    only the tasks an OSWorld index (``test_all.json``: domain -> ids) lists."""
    if source.is_file():
        return [(source, source.parent.name)]
    if not source.is_dir():
        raise RecordError(f"{source}: no such OSWorld task file or folder")
    files = sorted(p for p in source.rglob("*.json") if p.is_file())
    found = [(p, p.parent.name if p.parent != source else source.name) for p in files]
    if index is None:
        return found
    try:
        listed = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RecordError(f"{index}: cannot read the OSWorld index ({exc})") from None
    if not isinstance(listed, dict) or not all(isinstance(v, list) for v in listed.values()):
        raise RecordError(f"{index}: an OSWorld index maps each domain to a list of task ids")
    wanted = {(domain, str(task_id)) for domain, ids in listed.items() for task_id in ids}
    chosen = [(p, d) for p, d in found if (d, p.stem) in wanted]
    missing = len(wanted) - len(chosen)
    if missing:
        raise RecordError(f"{index}: {missing} listed tasks have no <domain>/<id>.json under {source}")
    return chosen


def desktop_env_metrics() -> tuple[str, ...] | None:
    """Which of our OSWorld metric names the installed ``desktop-env`` defines (read from its
    source, not imported: its metrics package imports every app's parsers); None if absent."""
    import ast
    import importlib.util

    spec = importlib.util.find_spec("desktop_env")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "evaluators" / "metrics"
    names: set[str] = set()
    for file in folder.glob("*.py"):
        try:
            tree = ast.parse(file.read_text(encoding="utf-8"))
        except (OSError, SyntaxError, UnicodeDecodeError):
            continue
        names |= {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    return tuple(sorted(METRICS & names))


__all__ = ["Imported", "Refused", "convert", "desktop_env_metrics", "import_file", "task_files"]
