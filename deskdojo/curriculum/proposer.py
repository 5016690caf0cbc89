"""The model-based proposer: ask a model for new tasks, grounded in what exploring an app
found (its guidebook), its first screen (a screenshot and its elements), how recent tasks
went (their verdicts) and what the next ones should be to them (ACuRL's rule, ``Relation``).

Any ``generate(prompt, images) -> text`` callable is a model here (``PolicyProposerModel``
on a loaded Qwen-VL policy or the tiny preset, a remote API, a fake in tests). The answer
is parsed leniently: JSON in code fences or bare, one object, several objects, a list or
``{"tasks": [...]}``, trailing commas; unknown fields are dropped and missing optional
ones filled; ids are assigned. Each object becomes a
``ProposedTask``: tasks with checks go to admission like any other task, tasks without
checks are judge-only (a VLM judge must decide them). Provenance is always
``model-proposed``: a model cannot claim to be a template.

Curriculum does not import the world model: pass the check validator as ``validate``
(e.g. ``deskdojo.core.checks.validate_checks``).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

from deskdojo.core.errors import RecordError
from deskdojo.core.records import from_json, to_json
from deskdojo.core.types import Provenance, SetupStep, Split, Task, Verdict
from deskdojo.curriculum.explore import Guidebook
from deskdojo.curriculum.families.base import launch

TASK_FIELDS = ("id", "instruction", "family", "level", "seed", "split", "setup", "checks", "combine", "oracle",
               "max_steps", "provenance", "format_version")
DROPPABLE = ("oracle", "setup", "checks")  # a malformed one is dropped (with a problem noted), not the task
MAX_CHANGES_SHOWN = 40
MAX_VERDICTS_SHOWN = 20
MAX_ELEMENTS_SHOWN = 60
RELATIONS = ("harder", "sibling", "prerequisite")
ACURL_HIGH, ACURL_LOW = 0.7, 0.3
_FENCE = re.compile(r"```[a-zA-Z0-9_-]*\s*\n?(.*?)```", re.DOTALL)
_TRAILING_COMMA = re.compile(r",(\s*[}\]])")


@dataclass(frozen=True, slots=True)
class ProposedTask:
    """A task a model proposed. ``judge_only``: it has no checks, so admission cannot test
    it and a judge must decide its episodes. ``problems``: what parsing had to fix or drop."""

    task: Task
    judge_only: bool
    problems: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Proposals:
    """One round of proposing: the prompt, the model's answer, what parsed and what did not."""

    prompt: str
    response: str
    proposed: tuple[ProposedTask, ...]
    rejected: tuple[str, ...] = ()  # one line per object (or answer) that gave no task

    @property
    def for_admission(self) -> list[Task]:
        return [p.task for p in self.proposed if not p.judge_only]

    @property
    def judge_only(self) -> list[Task]:
        return [p.task for p in self.proposed if p.judge_only]


# --- what to ask for: ACuRL's rule ------------------------------------------------------


def acurl_relation(rate: float, *, high: float = ACURL_HIGH, low: float = ACURL_LOW) -> str:
    """What the next task should be to the one the agent was measured on (ACuRL): above
    ``high`` success a harder task, between the bounds a sibling, below ``low`` a prerequisite.

    >>> [acurl_relation(r) for r in (0.9, 0.5, 0.1)]
    ['harder', 'sibling', 'prerequisite']
    """
    if not 0 <= rate <= 1:
        raise ValueError(f"a success rate is within [0, 1], got {rate}")
    return "harder" if rate > high else "sibling" if rate >= low else "prerequisite"


@dataclass(frozen=True, slots=True)
class Relation:
    """Ask for tasks that are ``kind`` to ``reference``, on which the agent succeeded at ``rate``."""

    kind: str
    reference: Task
    rate: float

    def __post_init__(self) -> None:
        if self.kind not in RELATIONS:
            raise ValueError(f"relation {self.kind!r} is not one of: {', '.join(RELATIONS)}")

    @classmethod
    def of(cls, reference: Task, rate: float) -> "Relation":
        return cls(acurl_relation(rate), reference, rate)

    def describe(self) -> str:
        what = json.dumps(self.reference.instruction)
        rate = f"{self.rate:.0%} of attempts"
        if self.kind == "harder":
            return (f"The agent now succeeds at {what} (level {self.reference.level}, {rate}). Propose harder "
                    f"tasks in the same app: more steps, deeper menus, more targets (level {self.reference.level + 1}).")
        if self.kind == "sibling":
            return (f"The agent succeeds at {what} in {rate}. Propose tasks of the same difficulty (level "
                    f"{self.reference.level}) that practise the same skill on other elements.")
        return (f"The agent fails at {what} (it succeeds in {rate}). Propose easier tasks (level "
                f"{max(0, self.reference.level - 1)}) that practise one step towards it.")


# --- the prompt ------------------------------------------------------------------------


EXAMPLE_TASK = {
    "instruction": "Click the \"Apple\" button.",
    "level": 0,
    "checks": [{"getter": "app_state", "metric": "equals", "args": {"app": "buttons", "path": "clicks.Apple"},
                "expected": 1}],
    "oracle": [{"action": {"kind": "click", "x": 0, "y": 0}, "at": {"app": "buttons", "path": "widgets.button:Apple"}}],
    "max_steps": 5,
}


def describe_guidebook(guidebook: Guidebook) -> str:
    """What exploring the app found, one state-changing path per line."""
    lines = [f"App: {guidebook.app} (launched with params {json.dumps(dict(guidebook.params), sort_keys=True)})",
             f"Widgets seen: {', '.join(guidebook.widgets_seen)}",
             "Clicks that changed the app state (path -> changed values):"]
    for entry in guidebook.state_changing[:MAX_CHANGES_SHOWN]:
        path = " > ".join(f"{p.kind} \"{p.label}\"" for p in guidebook.shortest(entry))
        changes = "; ".join(f"{'.'.join(c.path)}: {json.dumps(c.before)} -> {json.dumps(c.after)}"
                            for c in entry.changes[:4])
        lines.append(f"- {path} -> {changes}")
    return "\n".join(lines)


def describe_verdicts(verdicts: Sequence[Verdict], tasks: Mapping[str, Task]) -> str:
    lines = []
    for verdict in list(verdicts)[-MAX_VERDICTS_SHOWN:]:
        task = tasks.get(verdict.task_id)
        what = json.dumps(task.instruction) if task is not None else verdict.task_id
        lines.append(f"- {'succeeded' if verdict.success else 'failed'} (score {verdict.score:.2f}): {what}")
    return "\n".join(lines)


def describe_elements(elements: Sequence[Any]) -> str:
    """The app's first screen as the screenshot shows it, one element per line."""
    lines = ["Elements on the app's first screen (the screenshot):"]
    for element in list(elements)[:MAX_ELEMENTS_SHOWN]:
        states = f" [{', '.join(sorted(element.states))}]" if element.states else ""
        lines.append(f"- {element.role} {json.dumps(element.name)}{states}")
    return "\n".join(lines)


def build_prompt(n: int, *, guidebook: Guidebook | None = None, verdicts: Sequence[Verdict] = (),
                 tasks: Mapping[str, Task] | None = None, relation: Relation | None = None,
                 elements: Sequence[Any] = ()) -> str:
    """The request for ``n`` new tasks, with what exploration found, the app's first screen,
    how recent tasks went and what the next ones should be to them (``relation``)."""
    parts = [f"You write practice tasks for a desktop agent. Propose {n} new tasks."]
    if guidebook is not None:
        parts.append(describe_guidebook(guidebook))
    if elements:
        parts.append(describe_elements(elements))
    if relation is not None:
        parts.append(relation.describe())
    if verdicts:
        parts.append("Recent results (propose tasks a little harder than those that succeed, "
                     "and easier steps towards those that fail):\n" + describe_verdicts(verdicts, tasks or {}))
    parts.append(
        "Answer with a JSON list of task objects and nothing else. Fields: instruction (required), level, "
        "checks (getter app_state|file|windows|command, metric equals|not_equals|contains|not_contains|regex|"
        "approx|includes|excludes|exists, args, expected), oracle (steps: action and a locator 'at' naming a "
        "state path, a menu label or a widget text), max_steps. Checks must fail before the task is done and "
        "pass after. Example:\n" + json.dumps([EXAMPLE_TASK], indent=1))
    return "\n\n".join(parts)


# --- parsing ---------------------------------------------------------------------------


def json_values(text: str) -> list[Any]:
    """Every JSON value in ``text``: inside code fences if there are any, else anywhere;
    trailing commas forgiven. Objects inside a found value are not listed again."""
    chunks = _FENCE.findall(text) or [text]
    decoder = json.JSONDecoder()
    found: list[Any] = []
    for chunk in chunks:
        chunk = _TRAILING_COMMA.sub(r"\1", chunk)
        index = 0
        while index < len(chunk):
            if chunk[index] in "[{":
                try:
                    value, end = decoder.raw_decode(chunk, index)
                except ValueError:
                    index += 1
                    continue
                found.append(value)
                index = end
            else:
                index += 1
    return found


def task_objects(values: Iterable[Any]) -> list[Any]:
    """Flatten lists and ``{"tasks": [...]}`` wrappers into candidate task objects."""
    objects: list[Any] = []
    for value in values:
        if isinstance(value, list):
            objects.extend(task_objects(value))
        elif isinstance(value, Mapping) and "instruction" not in value and isinstance(value.get("tasks"), list):
            objects.extend(task_objects(value["tasks"]))
        else:
            objects.append(value)
    return objects


def _default_id(data: Mapping[str, Any], index: int) -> str:
    digest = hashlib.sha1(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return f"model-{digest}-{index}"


def to_task(data: Any, index: int, *, family: str, setup: Sequence[SetupStep] = (),
            validate: Callable[[Task], None] | None = None) -> ProposedTask:
    """One object as a ProposedTask (RecordError when no task can be made of it)."""
    if not isinstance(data, Mapping):
        raise RecordError(f"item {index}: expected a task object, got {type(data).__name__}")
    instruction = data.get("instruction")
    if not isinstance(instruction, str) or not instruction.strip():
        raise RecordError(f"item {index}: no instruction")
    problems: list[str] = []
    unknown = sorted(set(data) - set(TASK_FIELDS))
    if unknown:
        problems.append(f"dropped unknown fields: {', '.join(unknown)}")
    fields = {k: v for k, v in data.items() if k in TASK_FIELDS}
    fields.update(provenance=Provenance.MODEL.value, split=Split.TRAIN.value, instruction=instruction.strip())
    fields.pop("format_version", None)
    fields.setdefault("id", _default_id(data, index))
    fields.setdefault("family", family)
    if not fields.get("setup") and setup:
        fields["setup"] = to_json(list(setup))
    for name, kind in (("id", str), ("family", str)):
        if not isinstance(fields[name], kind) or not fields[name]:
            problems.append(f"replaced a bad {name} {fields[name]!r}")
            fields[name] = _default_id(data, index) if name == "id" else family
    for name in ("level", "seed", "max_steps"):
        if name in fields and (isinstance(fields[name], bool) or not isinstance(fields[name], int)):
            problems.append(f"dropped a bad {name} {fields[name]!r}")
            del fields[name]
    task = _build(fields, problems, index)
    if task.checks and validate is not None:
        try:
            validate(task)
        except RecordError as exc:
            problems.append(f"dropped the checks: {exc}")
            task = _build({**fields, "checks": []}, problems, index)
    return ProposedTask(task=task, judge_only=not task.checks, problems=tuple(problems))


def _build(fields: dict[str, Any], problems: list[str], index: int) -> Task:
    """``from_json`` with each malformed droppable field (oracle, setup, checks) removed in turn."""
    fields = dict(fields)
    while True:
        try:
            return from_json(Task, fields, where=f"item {index}")
        except RecordError as exc:
            message = str(exc)
            culprit = next((name for name in DROPPABLE if name in fields and
                            re.search(rf"\b{name}\b", message)), None)
            if culprit is None:
                raise
            problems.append(f"dropped {culprit}: {message}")
            del fields[culprit]


def parse_proposals(text: str, *, family: str, setup: Sequence[SetupStep] = (),
                    validate: Callable[[Task], None] | None = None) -> tuple[list[ProposedTask], list[str]]:
    """The tasks in a model's answer, and one line per object that gave none."""
    objects = task_objects(json_values(text))
    if not objects:
        return [], [f"no JSON task objects in the answer (starts {text[:80]!r})"]
    proposed, rejected = [], []
    seen: set[str] = set()
    for index, data in enumerate(objects):
        try:
            item = to_task(data, index, family=family, setup=setup, validate=validate)
        except RecordError as exc:
            rejected.append(str(exc))
            continue
        if item.task.id in seen:
            rejected.append(f"item {index}: duplicate id {item.task.id!r}")
            continue
        seen.add(item.task.id)
        proposed.append(item)
    return proposed, rejected


# --- the proposer ----------------------------------------------------------------------


PROPOSER_SYSTEM = ("You design short practice tasks for an agent that uses a desktop with mouse and keyboard. "
                   "You answer with JSON only.")


class PolicyProposerModel:
    """A proposer model on a loaded ``VLMPolicy`` (any Qwen-VL checkpoint or the tiny preset):
    its processor and weights, the proposer's prompt, the app's screenshot as the image."""

    def __init__(self, policy: Any, *, max_new_tokens: int = 512, temperature: float = 0.7):
        self.policy = policy
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature

    def __call__(self, prompt: str, images: Sequence[Any] = ()) -> str:
        content: list[dict[str, Any]] = [{"type": "image"} for _ in images]
        content.append({"type": "text", "text": prompt})
        messages = [{"role": "system", "content": PROPOSER_SYSTEM}, {"role": "user", "content": content}]
        text = self.policy.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        (answer,) = self.policy.generate_texts([text], [list(images)], temperature=self.temperature,
                                               max_new_tokens=self.max_new_tokens)
        return answer


@dataclass
class ModelProposer:
    """Proposes tasks by asking ``generate`` (prompt text, images -> answer text)."""

    generate: Callable[[str, Sequence[Any]], str]
    validate: Callable[[Task], None] | None = None
    family: str = "model"

    def propose(self, n: int, *, guidebook: Guidebook | None = None, verdicts: Sequence[Verdict] = (),
                tasks: Mapping[str, Task] | None = None, relation: Relation | None = None,
                screenshot: Any | None = None, elements: Sequence[Any] = ()) -> Proposals:
        """Ask for ``n`` tasks. With a guidebook, tasks default to launching its app (its
        family is ``model_<app>``); the screenshot (an image) and its elements show the app."""
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        prompt = build_prompt(n, guidebook=guidebook, verdicts=verdicts, tasks=tasks, relation=relation,
                              elements=elements)
        response = self.generate(prompt, [screenshot] if screenshot is not None else [])
        if not isinstance(response, str):
            raise TypeError(f"the model returned {type(response).__name__}, not text")
        family = f"{self.family}_{guidebook.app}" if guidebook is not None else self.family
        setup = (launch(guidebook.app, guidebook.params),) if guidebook is not None else ()
        proposed, rejected = parse_proposals(response, family=family, setup=setup, validate=self.validate)
        result = Proposals(prompt=prompt, response=response, proposed=tuple(proposed[:n]),
                           rejected=tuple(rejected + [f"item beyond the {n} asked for: dropped"
                                                      for _ in proposed[n:]]))
        return result
