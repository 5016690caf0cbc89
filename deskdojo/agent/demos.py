"""Demonstrations: recording them (by hand, from an oracle, or from the guest server's
recording), and moving them in and out (deskdojo's folder format, OSWorld trajectories).

A demo is a trajectory folder plus the task it solves (format: ``docs/demos.md``)::

    <demos>/<demo-id>/task.json          the Task (deskdojo.core.records JSON)
                      trajectory.json    header: id, task_id, end, policy_id, format_version
                      steps.jsonl        one Step per line
                      frames/NNNN.png    the screen just BEFORE step NNNN's action

OSWorld-style code is parsed with the ``ast``-whitelist parser of
``deskdojo.agent.formats.pyautogui_code``, never executed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import secrets
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence, TextIO

from deskdojo.core.progress import ProgressLine
from deskdojo.core.actions import Action, Click, Done, Fail, Scroll, by_point
from deskdojo.core.elements import SCROLL_ROLES, ElementList
from deskdojo.core.errors import RecordError
from deskdojo.core.protocols import ActResult, WorldProbe, shown_task
from deskdojo.core.records import from_json, to_json
from deskdojo.core.rundir import JsonlFile, TrajectoryWriter, read_trajectory, write_atomic
from deskdojo.core.types import EndReason, PromptInputs, Provenance, Step, Task, Trajectory

TASK_FILE = "task.json"
FORMATS = ("jsonl", "osworld")
OSWORLD_TRAJ = "traj.jsonl"
OSWORLD_INITIAL = "step_0.png"
DEFAULT_SETTLE_S = 1.0
_DEMO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_demo_id(name: str) -> str:
    """A demo id is a folder name: letters, digits, ``.``, ``_``, ``-``, not starting with a dot."""
    if not isinstance(name, str) or not _DEMO_ID.match(name):
        raise RecordError(f"demo name {name!r} is not usable as a folder name; use letters, digits, "
                          f"'.', '_' and '-' (at most 128, not starting with '.' or '-')")
    return name


def new_demo_id(task_id: str, kind: str = "demo") -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", task_id)[:80].lstrip("._-") or "task"
    return f"{stem}-{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def read_task(demo_dir: str | os.PathLike[str]) -> Task:
    path = Path(demo_dir) / TASK_FILE
    if not path.exists():
        raise RecordError(f"{demo_dir} is not a demo: it has no {TASK_FILE}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise RecordError(f"{path}: not valid JSON ({exc.msg})") from None
    try:
        return from_json(Task, data)
    except RecordError as exc:  # the file, then the field: `task.json: Task.level: ...`
        raise RecordError(f"{path}: {exc}") from None


@dataclass(frozen=True, slots=True)
class Demo:
    """A loaded demonstration."""

    path: Path
    task: Task
    trajectory: Trajectory

    @property
    def id(self) -> str:
        return self.path.name


def load_demo(demo_dir: str | os.PathLike[str], *, check_frames: bool = True) -> Demo:
    """Read a demo folder, checked before anything acts on it: a missing, empty or cut-off
    ``steps.jsonl``, steps out of order, and a frame that is missing, lies outside the
    folder or (``check_frames``) is not a readable PNG are RecordErrors naming the file."""
    folder = Path(demo_dir)
    if not folder.is_dir():
        raise RecordError(f"no demo folder {folder}")
    task = read_task(folder)
    if not (folder / "trajectory.json").exists():
        raise RecordError(f"{folder} has no trajectory.json: the recording was not finished")
    steps_file = folder / "steps.jsonl"
    if not steps_file.is_file():
        raise RecordError(f"{steps_file}: missing; a demo needs one step per line — record it again")
    body = steps_file.read_bytes()
    if not body.strip():
        raise RecordError(f"{steps_file}: empty, the demo has no steps — record it again")
    if not body.endswith(b"\n"):
        raise RecordError(f"{steps_file}: the last line is cut off (the file was truncated); "
                          f"record the demo again or delete that line")
    trajectory = read_trajectory(folder)
    for position, step in enumerate(trajectory.steps):
        if step.index != position:
            raise RecordError(f"{steps_file}: step {position} has index {step.index}; "
                              f"steps are missing or out of order — record the demo again")
        if step.frame is not None:
            frame = demo_frame(folder, step)
            if check_frames:
                check_png(frame, f"step {step.index}")
    return Demo(folder, task, trajectory)


def demo_frame(folder: Path, step: Step) -> Path:
    """The path of ``step``'s frame (``frames/NNNN.png`` when it names none), refused
    unless it is a file inside ``folder``: no absolute paths, ``..`` or symlinks out."""
    name = step.frame if step.frame is not None else f"frames/{step.index:04d}.png"
    where = f"{folder / 'steps.jsonl'}: step {step.index}: frame {name!r}"
    parts = Path(name).parts
    if not name or Path(name).is_absolute() or ".." in parts or "\\" in name:
        raise RecordError(f"{where} must be a path inside the demo folder, like frames/0000.png")
    path = folder / name
    if not path.exists():
        raise RecordError(f"{where} is missing")
    if not path.resolve().is_relative_to(folder.resolve()):
        raise RecordError(f"{where} is a link that leads out of the demo folder; refused")
    if not path.is_file():
        raise RecordError(f"{where} is not a file")
    return path


def check_png(path: Path, what: str) -> None:
    """Refuse an image file that does not decode (truncated, not an image)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.verify()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        reason = "not an image" if isinstance(exc, UnidentifiedImageError) else str(exc)
        raise RecordError(f"{path} ({what}) is not a readable PNG: {reason}; record the demo again "
                          f"or replace the file") from None


def list_demos(demos_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """One row per demo folder (unreadable ones carry ``error``), sorted by id."""
    root = Path(demos_dir)
    rows: list[dict[str, Any]] = []
    if not root.is_dir():
        return rows
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            demo = load_demo(folder, check_frames=False)  # a listing stays quick; a use checks them
        except RecordError as exc:
            rows.append({"id": folder.name, "error": str(exc)})
            continue
        end = demo.trajectory.end.value if demo.trajectory.end is not None else None
        rows.append({"id": demo.id, "task_id": demo.task.id, "steps": len(demo.trajectory.steps),
                     "end": end, "instruction": demo.task.instruction,
                     "provenance": demo.task.provenance.value})
    return rows


# --- recording ---------------------------------------------------------------------


class DemoRecorder:
    """Records a person's (or a script's) actions in a sandbox as a demo.

    The sandbox is reset to ``task`` on creation (``reset=False`` when it already is).
    Each ``act`` waits (at most ``settle_s``) for the screen to settle, keeps it as the
    step's frame, performs the action and writes the step. With ``elements`` (the default)
    each step also keeps the screen's element listing (``frames/NNNN.elements.json``, named
    in ``Step.prompt.elements`` as a rollout names it) and a click by its point is recorded
    with the listed element it landed on as well: one demo trains every observation mode
    and still replays by its points. The recording lives in a
    hidden folder until ``finish`` names it, so an abandoned one is never listed.
    """

    def __init__(self, sandbox: Any, task: Task, demos_dir: str | os.PathLike[str],
                 name: str | None = None, *, probe: WorldProbe | None = None, reset: bool = True,
                 settle_s: float = DEFAULT_SETTLE_S, policy_id: str = "demo", elements: bool = True):
        self.sandbox = sandbox
        self.elements = elements
        self.demos_dir = Path(demos_dir)
        self.name = check_demo_id(name) if name is not None else None
        self.probe = probe
        self.settle_s = settle_s
        if reset:
            sandbox.reset(task)
        self.task = task = shown_task(sandbox, task)  # the demo keeps what the policy will be told
        self.folder = self.demos_dir / f".recording-{secrets.token_hex(4)}"
        self.writer = TrajectoryWriter(self.folder, self.folder.name, task.id, policy_id)
        write_atomic(self.folder / TASK_FILE, json.dumps(to_json(task), indent=1).encode())
        self.steps: list[Step] = []
        self._snapshot = probe.snapshot(sandbox) if probe is not None else None
        self._finished = False

    def act(self, action: Action) -> ActResult:
        """Record the screen, perform ``action`` (done/fail are only recorded), record the step."""
        if self._finished:
            raise RecordError("this demo recording is finished; start a new DemoRecorder")
        index = len(self.steps)
        started_at, started = time.time(), time.perf_counter()
        frame = self.writer.write_frame(index, self._settled_png())
        prompt, recorded = None, action
        if self.elements:  # read after the screen settled, so the listing belongs to the frame
            listing = self.sandbox.elements()
            prompt = PromptInputs(window=(frame,), error=self.steps[-1].action_error if self.steps else None,
                                  elements=self.writer.write_elements(index, json.dumps(listing.to_json()).encode()))
            recorded = with_pointed_element(action, listing)
        if isinstance(action, (Done, Fail)):
            result = ActResult(ok=True)
        else:
            result = self.sandbox.act(action)  # as given: the element only says what the point hit
            if result.resolved is not None:
                recorded = result.resolved
        delta = None
        if self.probe is not None and not isinstance(action, (Done, Fail)):
            after = self.probe.snapshot(self.sandbox)
            delta = dict(self.probe.delta(self._snapshot or {}, after))
            self._snapshot = after
        step = Step(index=index, action=recorded, frame=frame, action_error=result.error,
                    started_at=started_at, duration_s=time.perf_counter() - started, delta=delta,
                    prompt=prompt)
        self.writer.append_step(step)
        self.steps.append(step)
        return result

    def _settled_png(self) -> bytes:
        from deskdojo.perception.png import encode_png

        if self.settle_s <= 0:
            return self.sandbox.screenshot_png()
        from deskdojo.perception.stable import wait_for_stable_screen

        frame, _waited, _stable = wait_for_stable_screen(lambda: self.sandbox.observe().screenshot,
                                                         timeout_s=self.settle_s)
        return encode_png(frame)

    def finish(self, name: str | None = None, *, done: bool = True) -> Path:
        """Save the demo as ``<demos_dir>/<name>`` and return its folder. With ``done`` a
        demo that does not end in done/fail gets a final ``Done()`` step (a policy learns
        to stop from it)."""
        if self._finished:
            raise RecordError("this demo recording is already finished")
        if done and not (self.steps and isinstance(self.steps[-1].action, (Done, Fail))):
            self.act(Done())
        demo_id = check_demo_id(name or self.name or new_demo_id(self.task.id))
        final = self.demos_dir / demo_id
        if final.exists():
            raise RecordError(f"a demo named {demo_id!r} already exists in {self.demos_dir}; pick another name")
        last = self.steps[-1].action if self.steps else None
        end = EndReason.FAIL if isinstance(last, Fail) else EndReason.DONE
        self.writer.trajectory_id = demo_id
        self.writer.finish(end)
        os.rename(self.folder, final)
        self._finished = True
        return final

    def discard(self) -> None:
        """Drop an unfinished recording."""
        self._finished = True
        shutil.rmtree(self.folder, ignore_errors=True)


def with_pointed_element(action: Action, listing: ElementList) -> Action:
    """``action``, and when it is a click or a scroll by its point, the id of the listed
    element it lands on, so a target can name it: for a click the smallest box holding the
    point; for a scroll the smallest holding one whose role scrolls (``SCROLL_ROLES``: the
    list, not the label inside it that the wheel happened to be over), else the smallest.
    None holds the point: ``action`` unchanged."""
    if not isinstance(action, (Click, Scroll)) or action.element is not None or action.x is None:
        return action
    x, y = action.x, action.y
    holding = [e for e in listing.elements
               if e.box[0] <= x < e.box[0] + e.box[2] and e.box[1] <= y < e.box[1] + e.box[3]]
    if isinstance(action, Scroll):
        holding = [e for e in holding if e.role in SCROLL_ROLES] or holding
    if not holding:
        return action
    hit = min(holding, key=lambda e: (e.box[2] * e.box[3], e.id))
    return dataclasses.replace(action, element=hit.id)


def record_oracle_demos(tasks: Sequence[Task], sandboxes: Any, demos_dir: str | os.PathLike[str], *,
                        probe: WorldProbe | None = None, settle_s: float = DEFAULT_SETTLE_S,
                        deadline: float | None = None, progress: TextIO | None = None) -> list[Path]:
    """Record each task's oracle as a demo ending in ``Done()``; ``sandboxes`` is one sandbox
    or a list (tasks are shared out round robin, the sandboxes work in parallel). An oracle
    that fails raises ``OracleError`` after the other demos are finished. With ``deadline``
    (a ``time.monotonic()`` value) a sandbox starts no demo that would likely end past it
    (by its last demo's time), so a slow machine records fewer: the ones recorded are
    returned. ``progress`` is a stream for a progress line."""
    from deskdojo.core.oracle import run_oracle

    pool = list(sandboxes) if isinstance(sandboxes, (list, tuple)) else [sandboxes]
    if not pool:
        raise RecordError("record_oracle_demos needs at least one sandbox")
    paths: list[Path | None] = [None] * len(tasks)
    line = (ProgressLine("recording oracle demos", len(tasks), unit="demos", stream=progress, deadline=deadline)
            if progress is not None else None)

    def record_share(lane: int) -> None:
        demo_s = 0.0
        for index in range(lane, len(tasks), len(pool)):
            if deadline is not None and time.monotonic() + demo_s > deadline:
                return
            started = time.monotonic()
            task = tasks[index]
            recorder = DemoRecorder(pool[lane], task, demos_dir, probe=probe, settle_s=settle_s,
                                    policy_id="oracle")
            try:
                run_oracle(pool[lane], task, act=recorder.act)
                paths[index] = recorder.finish(new_demo_id(task.id, "oracle"))
            except BaseException:
                recorder.discard()
                raise
            demo_s = time.monotonic() - started
            if line is not None:
                line.advance()

    try:
        with ThreadPoolExecutor(max_workers=len(pool)) as executor:
            futures = [executor.submit(record_share, lane) for lane in range(min(len(pool), len(tasks)))]
            errors = [f.exception() for f in futures if f.exception() is not None]
    finally:
        if line is not None:
            line.close()
    if errors:
        raise errors[0]
    return [p for p in paths if p is not None]


def demo_from_recording(task: Task, recorded: Sequence[tuple[Action, bytes]], demos_dir: str | os.PathLike[str],
                        name: str | None = None, *, done: bool = True) -> Path:
    """Save what a sandbox's guest recorded (``sandbox.stop_recording()``) as a demo."""
    steps: list[tuple[Action, bytes | None]] = list(recorded)
    if done and not (steps and isinstance(steps[-1][0], (Done, Fail))):
        steps.append((Done(), None))
    return _write_demo(task, steps, demos_dir, name or new_demo_id(task.id, "recorded"), policy_id="recorded")


def _write_demo(task: Task, steps: Sequence[tuple[Action, bytes | None]], demos_dir: str | os.PathLike[str],
                name: str, *, policy_id: str, texts: Sequence[str] | None = None) -> Path:
    demo_id = check_demo_id(name)
    final = Path(demos_dir) / demo_id
    if final.exists():
        raise RecordError(f"a demo named {demo_id!r} already exists in {demos_dir}; pick another name")
    folder = Path(demos_dir) / f".importing-{secrets.token_hex(4)}"
    try:
        writer = TrajectoryWriter(folder, demo_id, task.id, policy_id)
        write_atomic(folder / TASK_FILE, json.dumps(to_json(task), indent=1).encode())
        for index, (action, png) in enumerate(steps):
            frame = writer.write_frame(index, png) if png is not None else None
            writer.append_step(Step(index=index, action=action, frame=frame,
                                    model_text=texts[index] if texts else ""))
        last = steps[-1][0] if steps else None
        writer.finish(EndReason.FAIL if isinstance(last, Fail) else EndReason.DONE)
        os.rename(folder, final)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return final


# --- export ------------------------------------------------------------------------


def export_demo(demo_dir: str | os.PathLike[str], out: str | os.PathLike[str], format: str = "jsonl") -> Path:
    """Write the demo at ``demo_dir`` to the new folder ``out`` in ``format``: ``jsonl``
    (deskdojo's own folder format) or ``osworld`` (``traj.jsonl`` + screenshots)."""
    _check_format(format)
    demo = load_demo(demo_dir)
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise RecordError(f"{out} exists and is not empty; export into a new folder")
    if format == "jsonl":
        _copy_demo(demo, out)
        return out
    _export_osworld(demo, out)
    return out


def _copy_demo(demo: Demo, out: Path) -> None:
    """Copy what the demo consists of (checked by ``load_demo``), and nothing else: a
    stray link in the folder is never followed into the copy."""
    (out / "frames").mkdir(parents=True, exist_ok=True)
    for name in (TASK_FILE, "trajectory.json", "steps.jsonl"):
        shutil.copyfile(demo.path / name, out / name)
    for step in demo.trajectory.steps:
        if step.frame is not None:
            target = out / step.frame
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(demo_frame(demo.path, step), target)


def _export_osworld(demo: Demo, out: Path) -> None:
    """OSWorld's result layout: ``traj.jsonl`` with one line per step (``step_num`` from 1,
    ``action`` as pyautogui code or DONE/FAIL/WAIT, ``response``, ``screenshot_file`` =
    the screen AFTER the action, as OSWorld saves it) and ``step_0.png``, the first screen."""
    from deskdojo.agent.formats.pyautogui_code import PyAutoGUIFormat, extract_code

    fmt = PyAutoGUIFormat()
    steps = demo.trajectory.steps
    frames = [demo.path / s.frame if s.frame else None for s in steps]
    screen = _png_size(next((f for f in frames if f is not None), None)) if any(frames) else (1024, 768)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / TASK_FILE, json.dumps(to_json(demo.task), indent=1).encode())
    if frames and frames[0] is not None:
        shutil.copyfile(frames[0], out / OSWORLD_INITIAL)
    lines = JsonlFile(out / OSWORLD_TRAJ, fsync=False)
    started = steps[0].started_at if steps and steps[0].started_at else time.time()
    for number, step in enumerate(steps, start=1):
        if step.action is None:
            continue  # an unparsable answer performed nothing; OSWorld has no such step
        action = by_point(step.action)  # the export carries no listing: the point
        rendered = fmt.render(action, screen=screen, image=screen)
        code, _thought = extract_code(rendered)
        stamp = time.strftime("%Y%m%d@%H%M%S", time.localtime(step.started_at or started))
        after = next((f for f in frames[number:] if f is not None), None)
        if isinstance(step.action, (Done, Fail)):
            after = frames[number - 1]  # a terminal step changes nothing on screen
        shot = f"step_{number}_{stamp}.png"
        if after is not None:
            shutil.copyfile(after, out / shot)
        lines.append({"step_num": number, "action_timestamp": stamp, "action": code.strip(),
                      "response": step.model_text or rendered,
                      "done": isinstance(step.action, (Done, Fail)),
                      "screenshot_file": shot if after is not None else None})


def _png_size(path: Path | None) -> tuple[int, int]:
    from PIL import Image

    if path is None:
        raise RecordError("no frame to take the screen size from")
    with Image.open(path) as image:
        return image.size


# --- import ------------------------------------------------------------------------


def detect_format(path: str | os.PathLike[str]) -> str:
    folder = Path(path)
    if (folder / OSWORLD_TRAJ).exists():
        return "osworld"
    if (folder / "steps.jsonl").exists() and (folder / TASK_FILE).exists():
        return "jsonl"
    raise RecordError(f"{folder} is neither a deskdojo demo (steps.jsonl + task.json) nor an "
                      f"OSWorld trajectory ({OSWORLD_TRAJ}); give --format or check the path")


def import_demo(path: str | os.PathLike[str], demos_dir: str | os.PathLike[str], format: str | None = None,
                *, name: str | None = None, task: Task | None = None) -> Path:
    """Copy the demo at ``path`` into ``demos_dir`` (as ``name``, default the folder's name)
    and return the new folder. OSWorld trajectories take their task from a ``task.json``
    beside ``traj.jsonl``, else from ``task``, else a stub task (no setup: it cannot be
    replayed from scratch) whose instruction is ``instruction.txt`` if present."""
    source = Path(path)
    format = format or detect_format(source)
    _check_format(format)
    demo_id = check_demo_id(name or source.name)
    if format == "jsonl":
        demo = load_demo(source)
        final = Path(demos_dir) / demo_id
        if final.exists():
            raise RecordError(f"a demo named {demo_id!r} already exists in {demos_dir}; pick another name")
        folder = Path(demos_dir) / f".importing-{secrets.token_hex(4)}"
        try:
            _copy_demo(demo, folder)
            os.rename(folder, final)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return final
    return _import_osworld(source, demos_dir, demo_id, task)


def _import_osworld(source: Path, demos_dir: str | os.PathLike[str], demo_id: str, task: Task | None) -> Path:
    from deskdojo.agent.formats.pyautogui_code import PyAutoGUIFormat

    if task is None:
        task = read_task(source) if (source / TASK_FILE).exists() else _stub_task(source, demo_id)
    entries = _read_traj(source / OSWORLD_TRAJ)
    if not entries:
        raise RecordError(f"{source / OSWORLD_TRAJ} has no steps")
    shots = [_screenshot(source, entry, line) for line, entry in enumerate(entries, start=1)]
    initial = source / OSWORLD_INITIAL
    before: Path | None = _beside_traj(source, initial, "the first screen") if initial.exists() else None
    sized = next((s for s in [before, *shots] if s is not None), None)
    screen = _png_size(sized) if sized is not None else (1920, 1080)
    fmt = PyAutoGUIFormat()
    steps: list[tuple[Action, bytes | None]] = []
    texts: list[str] = []
    for line, (entry, after) in enumerate(zip(entries, shots), start=1):
        code = entry.get("action")
        if isinstance(code, dict):  # some agents log {"action_type", "command", ...}
            code = code.get("command")
        if not isinstance(code, str) or not code.strip():
            raise RecordError(f"{source / OSWORLD_TRAJ}:{line}: 'action' must be pyautogui code or "
                              f"DONE/FAIL/WAIT, got {entry.get('action')!r}")
        parsed = fmt.parse(code, screen=screen, image=screen)
        if parsed.error is not None:
            raise RecordError(f"{source / OSWORLD_TRAJ}:{line}: {parsed.error}")
        response = entry.get("response")
        text = response if isinstance(response, str) else code
        for k, action in enumerate(parsed.actions):  # one OSWorld step may hold several actions
            png = before.read_bytes() if (k == 0 and before is not None) else None
            steps.append((action, png))
            texts.append(text)
        before = after
    return _write_demo(task, steps, demos_dir, demo_id, policy_id="imported:osworld", texts=texts)


def _screenshot(source: Path, entry: Any, line: int) -> Path | None:
    if not isinstance(entry, dict):
        raise RecordError(f"{source / OSWORLD_TRAJ}:{line}: expected a JSON object")
    name = entry.get("screenshot_file")
    if name is None:
        return None
    if not isinstance(name, str) or "/" in name or "\\" in name or name.startswith("."):
        raise RecordError(f"{source / OSWORLD_TRAJ}:{line}: screenshot_file must be a file name "
                          f"beside traj.jsonl, got {name!r}")
    path = source / name
    if not path.exists():
        return None
    return _beside_traj(source, path, f"{OSWORLD_TRAJ} line {line}")


def _beside_traj(source: Path, path: Path, what: str) -> Path:
    """``path``, once it is a readable PNG inside ``source`` (a link out is refused)."""
    if not path.resolve().is_relative_to(source.resolve()) or not path.is_file():
        raise RecordError(f"{path} ({what}) is a link out of {source} or not a file; refused")
    check_png(path, what)
    return path


def _read_traj(path: Path) -> list[Any]:
    """The lines of an OSWorld ``traj.jsonl``; a last line without its newline is kept
    when it is whole JSON and refused when it is cut off."""
    entries: list[Any] = list(JsonlFile(path).read())
    body = path.read_bytes()
    tail = body[body.rfind(b"\n") + 1:]
    if tail.strip():
        try:
            entries.append(json.loads(tail))
        except json.JSONDecodeError:
            raise RecordError(f"{path}: the last line is cut off (the file was truncated); "
                              f"delete that line or export the trajectory again") from None
    return entries


def _stub_task(source: Path, demo_id: str) -> Task:
    note = source / "instruction.txt"
    instruction = note.read_text().strip() if note.exists() else f"(imported from {source.name})"
    return Task(id=demo_id, instruction=instruction or f"(imported from {source.name})",
                family="imported", provenance=Provenance.IMPORTED, max_steps=1000)


def _check_format(format: str) -> None:
    if format not in FORMATS:
        raise RecordError(f"demo format {format!r} is not one of: {', '.join(FORMATS)}")


__all__ = ["Demo", "DemoRecorder", "FORMATS", "check_demo_id", "check_png", "demo_frame", "demo_from_recording",
           "detect_format", "export_demo", "import_demo", "list_demos", "load_demo", "read_task",
           "record_oracle_demos", "with_pointed_element"]
