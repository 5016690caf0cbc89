"""The VLM world-state judge: a model reads what an episode left on screen and answers one
strict JSON verdict, for what no executable check covers.

What it reads (``judge_view``): the instruction; keyframes (the first frame, the last, and
the frames where the screen changed, at most ``keyframes`` of them); the actions as text,
a click on an element named by its role and name; and the element changes between
consecutive listings (rows that appeared, went, or changed state). It never reads the
state the practice apps publish for checks: a judge distilled from checks must learn to
see the outcome, not to copy the check's input.

What it answers (``parse_judge_answer``), exactly these keys, in any order (a distilled
judge writes them in ``ANSWER_ORDER``, the verdict last)::

    {"error_type": "none", "first_error_step": null, "redundant_steps": [],
     "correct_action": null, "rationale": "...", "score": 1.0, "success": true}

An answer that does not parse is a judge error: the vote is asked again up to
``retries`` times, then ``JudgeUnanswered`` (a ``JudgeError``; the loop makes that
episode an error and goes on). It is never a silent success or failure.
Votes: ``k`` samples; with ``rule="unanimous"`` success needs every vote (ZeroGUI's
rule), with ``"majority"`` more than half.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence

from deskdojo.core.elements import Element, ElementList
from deskdojo.core.errors import ConfigError, JudgeUnanswered, RecordError, SandboxError
from deskdojo.core.types import CheckEvidence, StepLabel, Task, Trajectory, Verdict
from deskdojo.perception.relevance import CONTAINER_ROLES, task_relevance

ERROR_TYPES = ("none", "wrong_target", "missing_step", "premature_done", "undone", "no_effect", "other")
"""What went wrong, when something did: ``none`` for a success."""
ANSWER_KEYS = ("success", "score", "first_error_step", "redundant_steps", "error_type", "correct_action",
               "rationale")
ANSWER_ORDER = ("error_type", "first_error_step", "redundant_steps", "correct_action", "rationale", "score",
                "success")
"""The keys in the order a judge writes them: what went wrong and where before the verdict,
so that a model that generates left to right decides success last, conditioned on its
own evidence (a tiny judge that wrote ``success`` first answered it against the failure
its later fields described). The parser takes the keys in any order."""
RULES = ("unanimous", "majority")
MAX_ANSWER_CHARS = 4096
MAX_RATIONALE_CHARS = 1000
VLM_EVIDENCE = "vlm"
"""``CheckEvidence.check`` of a VLM verdict's evidence (one entry per vote)."""


class JudgeAnswerError(ValueError):
    """A judge model's answer is not one valid verdict; the message says what is wrong."""


# --- the answer ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JudgeAnswer:
    """One vote: the verdict a judge model answered, parsed and checked."""

    success: bool
    score: float
    first_error_step: int | None = None
    redundant_steps: tuple[int, ...] = ()
    error_type: str = "none"
    correct_action: str | None = None
    rationale: str = ""

    def to_json(self) -> dict[str, Any]:
        """The answer in ``ANSWER_ORDER``: the evidence first, the verdict last."""
        return {"error_type": self.error_type, "first_error_step": self.first_error_step,
                "redundant_steps": list(self.redundant_steps), "correct_action": self.correct_action,
                "rationale": self.rationale, "score": self.score, "success": self.success}


def format_judge_answer(answer: JudgeAnswer) -> str:
    """The canonical text of an answer (what a distilled judge is trained to say)."""
    return json.dumps(answer.to_json(), ensure_ascii=False, separators=(", ", ": "))


def parse_judge_answer(text: str, *, steps: int) -> JudgeAnswer:
    """Parse one answer strictly: one JSON object (a ```json fence around it is allowed),
    exactly ``ANSWER_KEYS``, each of its type; step numbers within the ``steps`` of the
    trajectory. Raises ``JudgeAnswerError`` naming the first problem."""
    if not isinstance(text, str):
        raise JudgeAnswerError(f"the answer must be text, got {type(text).__name__}")
    if len(text) > MAX_ANSWER_CHARS:
        raise JudgeAnswerError(f"the answer has {len(text)} characters, more than {MAX_ANSWER_CHARS}")
    body = text.strip()
    if body.startswith("```"):
        first_line, _, rest = body.partition("\n")
        if first_line.strip() not in ("```", "```json") or not rest.rstrip().endswith("```"):
            raise JudgeAnswerError("a fenced answer must be ```json, the object, then ``` and nothing else")
        body = rest.rstrip()[:-3].strip()
    if not body.startswith("{"):
        raise JudgeAnswerError(f"the answer must be one JSON object, it starts with {body[:20]!r}")
    try:
        data, end = json.JSONDecoder().raw_decode(body)
    except json.JSONDecodeError as exc:
        raise JudgeAnswerError(f"not valid JSON: {exc.msg} at character {exc.pos}") from None
    if body[end:].strip():
        raise JudgeAnswerError(f"text after the JSON object: {body[end:].strip()[:20]!r}")
    missing = [key for key in ANSWER_KEYS if key not in data]
    if missing:
        raise JudgeAnswerError(f"the answer lacks {missing[0]!r} (keys: {', '.join(ANSWER_KEYS)})")
    extra = sorted(set(data) - set(ANSWER_KEYS))
    if extra:
        raise JudgeAnswerError(f"the answer has an unknown key {extra[0]!r} (keys: {', '.join(ANSWER_KEYS)})")

    success, score = data["success"], data["score"]
    if not isinstance(success, bool):
        raise JudgeAnswerError(f"success must be true or false, got {success!r}")
    if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score) \
            or not 0.0 <= score <= 1.0:
        raise JudgeAnswerError(f"score must be a number within [0, 1], got {score!r}")

    def step_number(value: Any, what: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < max(steps, 1):
            raise JudgeAnswerError(f"{what} must be a step number within 0..{max(steps, 1) - 1}, got {value!r}")
        return value

    first_error = data["first_error_step"]
    first_error = None if first_error is None else step_number(first_error, "first_error_step")
    redundant = data["redundant_steps"]
    if not isinstance(redundant, list):
        raise JudgeAnswerError(f"redundant_steps must be a list of step numbers, got {redundant!r}")
    redundant_steps = tuple(sorted({step_number(v, "each of redundant_steps") for v in redundant}))
    error_type = data["error_type"]
    if error_type not in ERROR_TYPES:
        raise JudgeAnswerError(f"error_type must be one of {', '.join(ERROR_TYPES)}, got {error_type!r}")
    correct_action, rationale = data["correct_action"], data["rationale"]
    if correct_action is not None and not isinstance(correct_action, str):
        raise JudgeAnswerError(f"correct_action must be text or null, got {correct_action!r}")
    if not isinstance(rationale, str):
        raise JudgeAnswerError(f"rationale must be text, got {rationale!r}")
    if success and error_type != "none":
        raise JudgeAnswerError(f"a success has error_type 'none', got {error_type!r}")
    return JudgeAnswer(success=success, score=float(score), first_error_step=first_error,
                       redundant_steps=redundant_steps, error_type=error_type,
                       correct_action=correct_action, rationale=rationale[:MAX_RATIONALE_CHARS])


def combine_votes(votes: Sequence[JudgeAnswer], rule: str = "unanimous") -> JudgeAnswer:
    """One answer from k votes. Success: every vote (``unanimous``) or more than half
    (``majority``). The score is the votes' mean; the first error step is the earliest
    any failing vote names; a step is redundant when most votes say so; the error type,
    correct action and rationale come from the first vote that agrees with the outcome."""
    if not votes:
        raise ValueError("combine_votes needs at least one vote")
    if rule not in RULES:
        raise ConfigError(f"voting rule {rule!r} is not one of: {', '.join(RULES)}")
    yes = sum(v.success for v in votes)
    success = yes == len(votes) if rule == "unanimous" else yes * 2 > len(votes)
    agreeing = next(v for v in votes if v.success == success) if any(v.success == success for v in votes) \
        else votes[0]
    errors = [v.first_error_step for v in votes if not v.success and v.first_error_step is not None]
    counts: dict[int, int] = {}
    for vote in votes:
        for step in vote.redundant_steps:
            counts[step] = counts.get(step, 0) + 1
    return JudgeAnswer(
        success=success, score=sum(v.score for v in votes) / len(votes),
        first_error_step=None if success or not errors else min(errors),
        redundant_steps=tuple(sorted(s for s, n in counts.items() if n * 2 > len(votes))),
        error_type="none" if success else (agreeing.error_type if agreeing.error_type != "none" else "other"),
        correct_action=None if success else agreeing.correct_action, rationale=agreeing.rationale)


# --- what the judge reads --------------------------------------------------------------------


def names_whole(element: Element, instruction: str) -> bool:
    """The task says this element's whole name, and it is not a container (as the
    reader's ``named`` state): what a judge checks first."""
    return bool(instruction) and element.role not in CONTAINER_ROLES and task_relevance(element.name,
                                                                                         instruction) >= 2.0


def element_line(element: Element, instruction: str = "") -> str:
    """``role "name" [states]``; ``named`` among the states when the task says the name."""
    states = sorted(element.states - {"enabled", "focused"}) + (["named"] if names_whole(element, instruction)
                                                                 else [])
    return f'{element.role} "{element.name}"' + (f" [{','.join(states)}]" if states else "")


def element_changes(before: ElementList | None, after: ElementList | None, *, limit: int = 12,
                    instruction: str = "") -> list[str]:
    """What changed between two listings, by role and name (ids change between listings):
    ``+ row`` appeared, ``- row`` went, ``~ row: +checked -selected`` changed state.
    Focus moves are left out (every click moves focus); at most ``limit`` lines, then a
    count of the rest."""
    if before is None or after is None:
        return []

    def keyed(listing: ElementList) -> dict[tuple[str, str], list[Element]]:
        rows: dict[tuple[str, str], list[Element]] = {}
        for element in listing.elements:
            rows.setdefault((element.role, element.name), []).append(element)
        return rows

    old, new = keyed(before), keyed(after)
    lines: list[str] = []
    for key in list(old) + [k for k in new if k not in old]:
        was, now = old.get(key, []), new.get(key, [])
        for element in now[len(was):]:
            lines.append(f"+ {element_line(element, instruction)}")
        for element in was[len(now):]:
            lines.append(f"- {element_line(element, instruction)}")
        for a, b in zip(was, now):
            gained = sorted(b.states - a.states - {"focused"})
            lost = sorted(a.states - b.states - {"focused"})
            if gained or lost:
                change = " ".join([f"+{s}" for s in gained] + [f"-{s}" for s in lost])
                lines.append(f"~ {element_line(b, instruction).split(' [')[0]}: {change}"
                             + (" [named]" if names_whole(b, instruction) else ""))
    if len(lines) > limit:
        lines = lines[:limit] + [f"(and {len(lines) - limit} more changes)"]
    return lines


@dataclass(frozen=True, slots=True)
class JudgeView:
    """What the judge is shown of one episode. ``frames`` are (step index, path) of the
    keyframes; index ``len(actions)`` is the screen after the last action."""

    instruction: str
    actions: tuple[str, ...]
    frames: tuple[tuple[int, Path], ...] = ()
    changes: tuple[tuple[int, tuple[str, ...]], ...] = ()  # (step, lines): what step's action changed
    end: str = ""
    final_elements: tuple[str, ...] = ()
    final_screenshot: Any = None  # the screen after the last action (an RGB array), when it was read
    asked: tuple[str, ...] = ()  # the evidence: what the actions did with each asked text (asked_lines)
    kinds: tuple[str, ...] = ()  # each action's kind alone (action_kind), for the evidence view


def _read_listing(folder: Path, name: str | None) -> ElementList | None:
    if not name:
        return None
    path = folder / name
    try:
        return ElementList.from_json(json.loads(path.read_text()))
    except (OSError, json.JSONDecodeError, RecordError):
        return None  # a missing or torn listing shows no changes; the frames still do


def action_line(step: Any, listing: ElementList | None, instruction: str = "") -> str:
    """A step's action as the judge reads it: a click or scroll on an element names its role
    and name (a scroll, its wheel clicks too)."""
    from deskdojo.core.actions import describe, element_of

    if step.action is None:
        return "(an answer that did not parse)"
    element_id = element_of(step.action)
    element = listing.by_id(element_id) if listing is not None and element_id is not None else None
    line = (f"{step.action.kind} {element_line(element, instruction)}" if element is not None
            else describe(step.action))
    if getattr(step.action, "kind", "") == "type":
        line += f" text={step.action.text!r}"
    if getattr(step.action, "kind", "") == "scroll" and element is not None:  # which way it turned
        line += "".join(f" {axis}={getattr(step.action, axis)}" for axis in ("dx", "dy") if getattr(step.action, axis))
    return line + (f" (refused: {step.action_error})" if step.action_error else "")


def action_kind(step: Any) -> str:
    """A step's action as the evidence view lists it: its kind, and whether it was refused."""
    if step.action is None:
        return "(an answer that did not parse)"
    return step.action.kind + (" (refused)" if step.action_error else "")


QUOTED = re.compile(r'"([^"]{1,80})"|“([^”]{1,80})”')
MENU_PATH = re.compile(r"[A-Z][\w.\-]*(?: [\w.\-]+)*(?: > [A-Z][\w.\-]*(?: [\w.\-]+)*)+")
"""A path through menus, ``File > Export > PNG``: each part is a target as a quoted text is."""


CAPITALISED = re.compile(r"\b[A-Z][\w\-]*")
NAME_WORDS = 4  # the longest unquoted name looked up: a capitalised word and the words after it


FOLLOWING = re.compile(r"\S+(?:\s+\S+){0,%d}" % (NAME_WORDS - 1))


def _starts_sentence(text: str, at: int) -> bool:
    """Whether the word at ``at`` begins a sentence: nothing before it, or a full stop,
    question mark, colon or semicolon, then a space."""
    end = at
    while end > 0 and text[end - 1].isspace():
        end -= 1
    return end == 0 or (text[end - 1] in ".!?:;" and end < at)


def asked_texts(instruction: str, names: frozenset[str] = frozenset()) -> list[str]:
    """The texts a task asks about: what it quotes, each part of a menu path, then each
    capitalised word inside a sentence (``open the Puzzle menu and click Stone``: the names
    a task gives without quotes). A path's first and last parts run into the sentence
    around them (``choose File > Save As and close it.``), so a part, as a capitalised
    word and the words after it, is cut to its longest run of words that names a row in
    ``names`` (case-folded), else to its first word (without a full stop)."""
    texts = [(m.group(1) or m.group(2)).strip() for m in QUOTED.finditer(instruction)]
    rest = QUOTED.sub(lambda m: " " * len(m.group(0)), instruction)
    for path in MENU_PATH.findall(rest):
        for number, part in enumerate(path.split(" > ")):
            texts.append(_named_run(part, names, trim=number > 0))
    rest = MENU_PATH.sub(lambda m: " " * len(m.group(0)), rest)
    taken = 0
    for match in CAPITALISED.finditer(rest):
        if match.start() < taken or _starts_sentence(rest, match.start()):
            continue
        following = FOLLOWING.match(rest, match.start()).group(0).split()
        text = _named_run(" ".join(following), names, trim=True, from_start=True)
        texts.append(text)
        taken = match.start() + len(text)
    return list(dict.fromkeys(t for t in texts if t))


def _named_run(part: str, names: frozenset[str], *, trim: bool, from_start: bool = False) -> str:
    """The longest run of ``part``'s words that names a row (``from_start``: a run that
    begins with its first word), else its first word."""
    words = part.split()
    runs = [" ".join(words[i:j]) for i in (range(1) if from_start else range(len(words)))
            for j in range(len(words), i, -1)]
    # a run that ends the sentence carries its full stop or comma ("click Beige rabbit.")
    runs = [candidate for run in runs for candidate in dict.fromkeys((run, run.rstrip(".,;:!?")))]
    named = [run for run in runs if run.casefold() in names]
    if named:
        return max(named, key=len)
    if trim and not words[0].endswith("..."):
        return words[0].rstrip(".,")  # "pick Piano > Sail." ends a sentence
    return words[0]


def bare(name: str) -> str:
    """A name as a label and a task both say it: "Note:" and "Note" are one name."""
    return name.strip().rstrip(":").strip().casefold()


PLACE_ROLES = CONTAINER_ROLES | {"label"}
"""Rows a task names to say where, not what: a container, or the label beside a field
("type "Bea" into the Note field" types into the field, never acts on "Note")."""


def asked_lines(instruction: str, steps: Sequence[Any], listings: Sequence[ElementList | None],
                last: ElementList | None) -> tuple[str, ...]:
    """For each text the task asks about (``asked_texts``), what the episode did with it:
    typed, clicked (an element of that name), and the states of that element at the end;
    or that no action touched it (a text that names only containers or labels, on any
    screen, is a place, not a target); then whether every target was acted on, and any
    dialog still open. Read from the actions and listings the judge already sees,
    never from app state: a rule such as "everything asked for was done" then holds in any
    family, where the raw listing only shows a family's own signs of success."""
    from deskdojo.core.actions import element_of

    lines: list[str] = []
    untouched: list[str] = []
    targets = 0
    names = frozenset(e.name.strip().casefold() for listing in (*listings, last) if listing is not None
                      for e in listing.elements)
    for quoted in asked_texts(instruction, names):
        wanted = quoted.casefold()
        did: list[str] = []
        for number, (step, listing) in enumerate(zip(steps, listings)):
            action = step.action
            if action is None or step.action_error:
                continue
            if action.kind == "type" and wanted in str(getattr(action, "text", "")).casefold():
                did.append(f"typed at step {number}")
            element_id = element_of(action)
            element = listing.by_id(element_id) if listing is not None and element_id is not None else None
            # a scroll over a row turns a view, it does not act on the row (nor finish a target)
            if action.kind not in ("type", "scroll") and element is not None \
                    and element.name.strip().casefold() == wanted:
                did.append(f"{action.kind} at step {number}")
        seen = [e for listing in (*listings, last) if listing is not None for e in listing.elements
                if bare(e.name) == bare(quoted)]
        if seen and all(e.role in PLACE_ROLES for e in seen):
            lines.append(f'"{quoted}": names a {seen[0].role}, a place rather than a target')
            continue
        rows = [e for e in (last.elements if last is not None else ()) if e.name.strip().casefold() == wanted]
        states = sorted({state for e in rows for state in e.states - {"enabled", "focused", "editable"}})
        end = (f"; at the end {rows[0].role}" + (f" [{','.join(states)}]" if states else "")) if rows \
            else "; not on the last screen"
        lines.append(f'"{quoted}": ' + (", ".join(did) if did else "no action on it") + end)
        targets += 1
        if not did:
            untouched.append(quoted)
    if targets:  # the rule that holds in every family, said once: was every target acted on
        lines.append("not acted on: " + ", ".join(f'"{t}"' for t in untouched) if untouched
                     else "every target the task names was acted on")
    dialogs = [e for e in (last.elements if last is not None else ()) if e.role in ("dialog", "alert")]
    if dialogs:  # a dialog left open is work left unfinished in most tasks
        lines.append("still open at the end: " + ", ".join(f'{e.role} "{e.name}"' for e in dialogs[:3]))
    return tuple(dict.fromkeys(lines))


def keyframe_indices(changed: Sequence[bool], *, cap: int) -> list[int]:
    """Frames to show, of ``len(changed)`` (``changed[i]``: frame i differs from frame i-1):
    the first, the last and the changed ones, thinned evenly to ``cap`` keeping both ends."""
    count = len(changed)
    if count == 0 or cap < 1:
        return []
    chosen = sorted({0, count - 1} | {i for i, c in enumerate(changed) if c and i > 0})
    if len(chosen) <= cap:
        return chosen
    if cap == 1:
        return [count - 1]
    middle = chosen[1:-1]
    keep = cap - 2
    picked = [middle[round(j * (len(middle) - 1) / max(keep - 1, 1))] for j in range(keep)] if keep else []
    return sorted({chosen[0], chosen[-1], *picked})


def judge_view(task: Task, trajectory: Trajectory, folder: Path | None, *, keyframes: int = 6,
               final: Any | None = None) -> JudgeView:
    """Build what the judge reads from a trajectory folder (frames and listings) and, when
    given, ``final``: the Observation after the last action (the sandbox's screen at
    judging time)."""
    listings = [(_read_listing(folder, s.prompt.elements if s.prompt else None) if folder else None)
                for s in trajectory.steps]
    final_listing = getattr(final, "elements", None)
    after = listings[1:] + [final_listing]
    said = task.instruction
    actions = tuple(action_line(step, listing, said) for step, listing in zip(trajectory.steps, listings))
    changes = tuple((i, tuple(lines)) for i, (a, b) in enumerate(zip(listings, after))
                    if (lines := element_changes(a, b, instruction=said)))
    frames: list[tuple[int, Path]] = []
    if folder is not None:
        paths = [(i, folder / s.frame) for i, s in enumerate(trajectory.steps) if s.frame]
        sizes = [p.stat().st_size if p.exists() else -1 for _, p in paths]
        changed = [i == 0 or sizes[i] != sizes[i - 1] or _differs(paths[i - 1][1], paths[i][1])
                   for i in range(len(paths))]
        cap = keyframes - 1 if getattr(final, "screenshot", None) is not None else keyframes
        frames = [paths[i] for i in keyframe_indices(changed, cap=max(cap, 1)) if sizes[i] >= 0]
    last = final_listing if final_listing is not None else (listings[-1] if listings else None)
    return JudgeView(instruction=task.instruction, actions=actions, frames=tuple(frames), changes=changes,
                     end=trajectory.end.value if trajectory.end is not None else "",
                     final_elements=final_rows(last, said),
                     final_screenshot=getattr(final, "screenshot", None),
                     asked=asked_lines(said, trajectory.steps, listings, last),
                     kinds=tuple(action_kind(step) for step in trajectory.steps))


def final_rows(listing: ElementList | None, instruction: str) -> tuple[str, ...]:
    """The last screen's rows, those the task names first (then the listing's order)."""
    if listing is None:
        return ()
    rows = sorted(listing.elements, key=lambda e: not names_whole(e, instruction))
    return tuple(element_line(e, instruction) for e in rows)


def _differs(a: Path, b: Path) -> bool:
    try:
        return a.read_bytes() != b.read_bytes()
    except OSError:
        return True


JUDGE_SYSTEM = (
    "You judge whether a computer-use agent did its task. You see the task, the agent's actions, "
    "what each action changed on screen, and the screen's elements at the end. Answer with one JSON "
    "object and nothing else, with exactly these keys, the evidence first and the verdict last: "
    "error_type (one of " + ", ".join(ERROR_TYPES) + "; none when the task is done), first_error_step "
    "(the number of the first wrong action, or null), redundant_steps (numbers of actions that did "
    "nothing useful), correct_action (what should have been done at the first error, or null), "
    "rationale (one sentence), score (0 to 1: how much of the task is done) and success (true/false).")


JUDGE_VIEWS = ("full", "evidence")
"""What a judge reads: ``full`` (the evidence, the ending, every action with what it
changed, the last screen's rows) or ``evidence`` (the evidence, each action's number and
kind, and the ending: the lines that hold in every family; a tiny judge fits the seen families
through the listing and reads unseen ones at chance, see the README)."""


def judge_text(view: JudgeView, *, final_rows: int = 10, layout: str = "full") -> str:
    """The user message's text (the keyframes come before it as images).

    The evidence and how the episode ended come right after the task, before the
    action-by-action listing: a small judge attends best to what is near the question,
    and those lines carry the rule that transfers across families (everything asked for
    was acted on, nothing left open, the agent said done); the listing below carries
    each family's own signs. ``layout`` ``evidence`` stops after the evidence, with each
    action's number and kind in place of the listing (``JUDGE_VIEWS``).
    """
    if layout not in JUDGE_VIEWS:
        raise ValueError(f"judge view {layout!r} is not one of: {', '.join(JUDGE_VIEWS)}")
    lines = [f"Task: {view.instruction}"]
    if view.asked:
        lines.append("Evidence:")
        lines += view.asked
    if layout == "evidence":  # each action's number and kind, so the answer's step numbers can be right
        lines.append("Actions:")
        kinds = view.kinds if len(view.kinds) == len(view.actions) else ("action",) * len(view.actions)
        lines += [f"{i}. {kind}" for i, kind in enumerate(kinds)] or ["(none)"]
        lines.append(f"The episode ended: {view.end or 'unknown'}.")
        return "\n".join(lines) + "\n"
    lines.append(f"The episode ended: {view.end or 'unknown'}.")
    lines.append("Actions:")
    changes = dict(view.changes)
    for i, action in enumerate(view.actions):
        lines.append(f"{i}. {action}")
        lines += [f"   {change}" for change in changes.get(i, ())]
    if not view.actions:
        lines.append("(none)")
    if view.final_elements:
        shown = view.final_elements[:final_rows]
        lines.append("Elements at the end:")
        lines += shown
        if len(view.final_elements) > len(shown):
            lines.append(f"(and {len(view.final_elements) - len(shown)} more)")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class JudgePrompt:
    """One question to a judge model: the system and user text and the keyframe images."""

    system: str
    text: str
    images: tuple[Any, ...] = ()


def judge_prompt(view: JudgeView, *, images: bool = True, layout: str = "full") -> JudgePrompt:
    loaded: list[Any] = []
    if images:
        from PIL import Image

        for _, path in view.frames:
            with Image.open(path) as image:
                loaded.append(image.convert("RGB"))
        if view.final_screenshot is not None:
            loaded.append(Image.fromarray(view.final_screenshot))
    return JudgePrompt(system=JUDGE_SYSTEM, text=judge_text(view, layout=layout), images=tuple(loaded))


# --- the model and the judge -----------------------------------------------------------------


class JudgeModel(Protocol):
    """Answers judge prompts: one text per prompt, sampled at ``temperature`` (0: greedy)."""

    model_id: str

    def answer(self, prompts: Sequence[JudgePrompt], *, temperature: float) -> list[str]: ...


class ScriptedJudgeModel:
    """A fake judge model for tests: answers from a list, in order (a callable gets the
    prompt). Records every prompt it was asked."""

    model_id = "scripted"

    def __init__(self, answers: Sequence[str] | Any):
        self._answers = answers if callable(answers) else list(answers)
        self.asked: list[JudgePrompt] = []

    def answer(self, prompts: Sequence[JudgePrompt], *, temperature: float) -> list[str]:
        out = []
        for prompt in prompts:
            self.asked.append(prompt)
            if callable(self._answers):
                out.append(self._answers(prompt))
            elif self._answers:
                out.append(self._answers.pop(0))
            else:
                raise RuntimeError("the scripted judge model ran out of answers")
        return out


class PolicyJudgeModel:
    """A judge model on a loaded ``VLMPolicy`` (any Qwen-VL checkpoint or the tiny preset):
    its processor and weights, the judge's own prompt. ``images`` off sends text only (a
    model whose vision tower is untrained reads nothing from pixels)."""

    def __init__(self, policy: Any, *, max_new_tokens: int = 160, images: bool = True, view: str = "full"):
        if view not in JUDGE_VIEWS:
            raise ConfigError(f"judge view {view!r} is not one of: {', '.join(JUDGE_VIEWS)}")
        self.policy = policy
        self.max_new_tokens = max_new_tokens
        self.images = images
        self.view = view  # what it was trained to read (judge.json)
        self.model_id = f"policy:{getattr(policy, 'policy_id', 'model')}"

    def chat_text(self, prompt: JudgePrompt) -> str:
        content: list[dict[str, Any]] = [{"type": "image"} for _ in (prompt.images if self.images else ())]
        content.append({"type": "text", "text": prompt.text})
        messages = [{"role": "system", "content": prompt.system}, {"role": "user", "content": content}]
        return self.policy.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def answer(self, prompts: Sequence[JudgePrompt], *, temperature: float) -> list[str]:
        texts = [self.chat_text(p) for p in prompts]
        images = [list(p.images) if self.images else [] for p in prompts]
        return self.policy.generate_texts(texts, images, temperature=temperature,
                                          max_new_tokens=self.max_new_tokens)


@dataclass(frozen=True, slots=True)
class VLMJudgeConfig:
    votes: int = field(default=1, metadata={"help": "samples per verdict (k)"})
    rule: str = field(default="unanimous", metadata={"help": "unanimous | majority"})
    retries: int = field(default=2, metadata={"help": "re-asks of a vote whose answer did not parse"})
    temperature: float = field(default=0.7, metadata={"help": "sampling temperature when votes > 1"})
    keyframes: int = field(default=6, metadata={"help": "frames shown at most (first, last, changed)"})
    images: bool = field(default=True, metadata={"help": "show the keyframes (off: text only)"})

    def __post_init__(self) -> None:
        if self.votes < 1 or self.retries < 0 or self.keyframes < 1:
            raise ConfigError(f"votes and keyframes must be >= 1 and retries >= 0, got votes={self.votes}, "
                              f"retries={self.retries}, keyframes={self.keyframes}")
        if self.rule not in RULES:
            raise ConfigError(f"voting rule {self.rule!r} is not one of: {', '.join(RULES)}")
        if not (math.isfinite(self.temperature) and self.temperature >= 0):
            raise ConfigError(f"temperature must be >= 0, got {self.temperature}")


class VLMJudge:
    """The ``Judge`` protocol on a judge model. ``trajectories`` is the folder that holds
    the trajectory folders (by trajectory id), where the frames and listings are; with a
    sandbox, its screen after the last action is read too (never its app state)."""

    def __init__(self, model: JudgeModel, trajectories: str | Path | None, config: VLMJudgeConfig | None = None,
                 *, judge_id: str = "vlm"):
        self.model = model
        self.trajectories = Path(trajectories) if trajectories is not None else None
        self.config = config or VLMJudgeConfig()
        self.judge_id = judge_id
        self.retried = 0  # answers asked again because they did not parse (all verdicts)

    def view(self, task: Task, trajectory: Trajectory, sandbox: Any | None) -> JudgeView:
        final = None
        if sandbox is not None and trajectory.end is not None and trajectory.end.value != "done":
            import dataclasses

            final = sandbox.observe()  # the last action's effect; a done step's frame already shows it
            try:
                final = dataclasses.replace(final, elements=sandbox.elements())
            except SandboxError:
                raise
            except Exception:  # noqa: BLE001 - a provider without elements: frames and actions only
                pass
        folder = self.trajectories / trajectory.id if self.trajectories is not None else None
        return judge_view(task, trajectory, folder, keyframes=self.config.keyframes, final=final)

    def votes(self, prompt: JudgePrompt, steps: int) -> list[JudgeAnswer]:
        """k parsed votes; each unparsed answer is asked again (``retries``), then JudgeUnanswered."""
        config = self.config
        temperature = config.temperature if config.votes > 1 else 0.0
        pending, answers, problems = config.votes, [], []
        for attempt in range(config.retries + 1):
            if attempt:
                self.retried += pending
                temperature = max(temperature, 0.7)  # greedy would say the same again
            for text in self.model.answer([prompt] * pending, temperature=temperature):
                try:
                    answers.append(parse_judge_answer(text, steps=steps))
                except JudgeAnswerError as exc:
                    problems.append(f"{exc} (answer: {text[:120]!r})")
            pending = config.votes - len(answers)
            if not pending:
                return answers
        raise JudgeUnanswered(f"judge model {self.model.model_id} gave {pending} of {config.votes} answers that "
                         f"do not parse, after {config.retries} retries; the last problem: {problems[-1]}")

    def judge(self, task: Task, trajectory: Trajectory, sandbox: Any | None) -> Verdict:
        return self.verdict_for(task, trajectory, self.view(task, trajectory, sandbox))

    def judge_folder(self, task: Task, folder: str | Path) -> Verdict:
        """Judge a stored trajectory (a run's or a demo's folder) from its frames alone."""
        from deskdojo.core.rundir import read_trajectory

        trajectory = read_trajectory(folder)
        return self.verdict_for(task, trajectory, judge_view(task, trajectory, Path(folder),
                                                             keyframes=self.config.keyframes))

    def verdict_for(self, task: Task, trajectory: Trajectory, view: JudgeView) -> Verdict:
        prompt = judge_prompt(view, images=self.config.images, layout=getattr(self.model, "view", "full"))
        votes = self.votes(prompt, len(trajectory.steps))
        answer = combine_votes(votes, self.config.rule)
        return verdict_from_answer(task, trajectory, answer, votes, judge_id=self.judge_id)


def answer_labels(trajectory: Trajectory, answer: JudgeAnswer) -> tuple[StepLabel, ...]:
    """Step labels from a judge's answer over the syntactic ones: an action that did not
    parse or was refused stays ``error``; the first error step is ``error``; a redundant
    step is ``no-op`` (it did nothing the task needed)."""
    from deskdojo.world_model.judge import step_labels

    labels = list(step_labels(trajectory)[0])
    for step in answer.redundant_steps:
        if step < len(labels) and labels[step] is StepLabel.PROGRESS:
            labels[step] = StepLabel.NO_OP
    if answer.first_error_step is not None and answer.first_error_step < len(labels):
        labels[answer.first_error_step] = StepLabel.ERROR
    return tuple(labels)


def verdict_from_answer(task: Task, trajectory: Trajectory, answer: JudgeAnswer,
                        votes: Sequence[JudgeAnswer] = (), *, judge_id: str = "vlm") -> Verdict:
    labels = answer_labels(trajectory, answer)
    first_error = next((i for i, label in enumerate(labels) if label is StepLabel.ERROR), None)
    evidence = tuple(CheckEvidence(VLM_EVIDENCE, vote.success, vote.score, observed=vote.to_json(),
                                   message=vote.rationale) for vote in (votes or [answer]))
    return Verdict(task_id=task.id, trajectory_id=trajectory.id, success=answer.success, score=answer.score,
                   judge_id=judge_id, evidence=evidence, step_labels=labels, first_error_step=first_error)


def answer_of(verdict: Verdict) -> Mapping[str, Any] | None:
    """The first VLM vote a verdict carries (its evidence), or None for a checks verdict."""
    return next((e.observed for e in verdict.evidence if e.check == VLM_EVIDENCE), None)
