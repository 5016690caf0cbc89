"""One element listing from several sources: each source reads in its own worker thread
under a deadline, then the answers are merged, de-duplicated, numbered in reading order
and capped. The collector keeps its last listing, against which actions that name an
element are resolved (and re-checked against a fresh read of that element's source).

A source is any object with ``name``, ``unavailable() -> str | None`` and
``read(*, deadline, grab) -> list[dict]`` (raw elements: role, name, box, states,
window; no id). ``grab()`` returns ``(pixels, width, height)``, RGB or the X server's
BGRX (see ``ocr.Grab``). Standard library only: this runs in the guest.
"""

from __future__ import annotations

import importlib
import queue
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from deskdojo.core.elements import (
    MAX_ELEMENTS, MAX_NAME_CHARS, MAX_ROLE_CHARS, MAX_WINDOW_CHARS, SOURCES, STATES,
    Element, ElementList, SourceReport, iou,
)

DEFAULT_DEADLINE_S = 0.5  # per request, for every source at once
RECHECK_DEADLINE_S = 2.0  # re-reading one source to check an element before acting on it
FOCUS_WAIT_S = 2.0  # typing into an element waits this long at most for it to take the focus
FOCUS_SOURCES = frozenset({"tk", "atspi"})  # the sources that say which element has the focus
WARM_EVERY_S = 0.5  # a source that asks for it (keep_warm) reads on its own after this long idle
WARM_DEADLINE_S = 2.0
WARM_AT_START = ("atspi",)  # loaded when the server starts (the rest on first use)
MATCH_IOU = 0.5  # two boxes this similar are the same element (merge; re-check)
# Where each source lives; imported on first use, so a missing module is a report, not a crash.
SOURCE_CLASSES = {
    "tk": "deskdojo.vm.guest.elements.tk:TkSource",
    "atspi": "deskdojo.vm.guest.elements.atspi:AtspiSource",
    "ocr": "deskdojo.vm.guest.elements.ocr:OcrSource",
}
SOURCE_RANK = {"tk": 0, "atspi": 1, "ocr": 2}  # which source wins a tie between duplicates
# Roles that name the same kind of thing across toolkits (for de-duplication).
ROLE_FAMILIES = {
    "push button": "button", "toggle button": "button",
    "check menu item": "check box", "radio menu item": "radio button",
    "entry": "text", "password text": "text", "text area": "text", "document text": "text",
    "terminal": "text", "spin button": "text",
    "text line": "label", "static": "label", "heading": "label", "paragraph": "label", "caption": "label",
    "menu": "menu item", "list item": "item", "table cell": "item", "tree item": "item",
    "page tab": "item", "frame": "window", "dialog": "window", "window": "window",
}
# Roles whose name is their value (an entry's text, a slider's position): a change of
# name is not a change of element when re-checking one before acting on it.
VALUE_ROLES = frozenset({"text", "text area", "combo box", "slider", "spin button", "terminal",
                         "document text", "password text", "entry", "progress bar", "scroll bar"})
GrabFn = Callable[[], tuple[bytes, int, int]]


class ElementRefused(Exception):
    """An action names an element that cannot be acted on; the message is for the model."""


# --- one worker thread per source ---------------------------------------------------


@dataclass
class _Job:
    deadline: float
    grab: GrabFn
    started: float
    done: threading.Event
    result: list[dict[str, Any]] | None = None
    error: str = ""
    ms: float = 0.0


class SourceWorker:
    """Runs one source's reads in a long-lived daemon thread. A read that outlives its
    deadline keeps the worker busy; until it returns, new requests are answered at once
    with ``busy`` instead of queueing behind it (a hung accessibility bus must not hang
    every later listing)."""

    def __init__(self, source: Any) -> None:
        self.source = source
        self.name = str(source.name)
        self._lock = threading.Lock()
        self._current: _Job | None = None
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        threading.Thread(target=self._run, name=f"elements-{self.name}", daemon=True).start()

    def submit(self, deadline: float, grab: GrabFn) -> _Job | str:
        """Start a read; a busy worker returns why it cannot, as a string."""
        now = time.monotonic()
        with self._lock:
            if self._current is not None:
                return (f"busy: an earlier read has not returned after "
                        f"{now - self._current.started:.1f} s (the source hangs); skipped")
            job = self._current = _Job(deadline=deadline, grab=grab, started=now, done=threading.Event())
        self._jobs.put(job)
        return job

    def _run(self) -> None:
        warm = bool(getattr(self.source, "keep_warm", False))
        while True:
            try:
                job = self._jobs.get(timeout=WARM_EVERY_S if warm else None)
            except queue.Empty:
                self._warm()
                continue
            start = time.perf_counter()
            try:
                job.result = list(self.source.read(deadline=job.deadline, grab=job.grab))
            except Exception as error:  # noqa: BLE001 - a source's failure is a report, never a crash
                job.error = f"{type(error).__name__}: {error}"
            job.ms = (time.perf_counter() - start) * 1000
            with self._lock:
                self._current = None
            job.done.set()


    def _warm(self) -> None:
        """An idle read whose answer nobody waits for: it keeps a source's cache warm, so the
        first listing after an app starts does not pay the cold walk (AT-SPI: ~250 D-Bus
        calls for mousepad). A request that comes meanwhile runs right after it."""
        try:
            self.source.read(deadline=time.monotonic() + WARM_DEADLINE_S, grab=None)
        except Exception:  # noqa: BLE001 - the next real read reports what is wrong
            pass


def load_source(name: str) -> Any:
    """The source called ``name``, or a string saying why it cannot be used."""
    module_name, _, class_name = SOURCE_CLASSES[name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        return f"source module {module_name} cannot be imported ({error})"
    try:
        return getattr(module, class_name)()
    except Exception as error:  # noqa: BLE001 - a broken source is reported, not fatal
        return f"{class_name}() failed: {type(error).__name__}: {error}"


# --- the collector --------------------------------------------------------------------


class ElementCollector:
    """Lists elements from the sources asked for and remembers the last listing.

    ``sources`` maps a name to a source object (tests pass fakes); names not given are
    loaded from ``SOURCE_CLASSES`` on first use.
    """

    def __init__(self, *, grab: GrabFn, screen_size: tuple[int, int],
                 sources: Mapping[str, Any] | None = None, deadline_s: float = DEFAULT_DEADLINE_S,
                 max_elements: int = MAX_ELEMENTS, warm_up: Sequence[str] = ()) -> None:
        self.grab = grab
        self.screen_size = screen_size
        self.deadline_s = deadline_s
        self.max_elements = max_elements
        self._given = dict(sources or {})
        self._workers: dict[str, SourceWorker | str] = {}
        self._lock = threading.Lock()  # guards the workers, the serial and the last listing
        self._serial = 0
        self.last: ElementList | None = None
        if warm_up:
            self.warm_up(warm_up)

    @property
    def known(self) -> tuple[str, ...]:
        return tuple(name for name in SOURCES if name in SOURCE_CLASSES or name in self._given)

    def parse_sources(self, text: str | None) -> list[str] | None:
        """``"tk,ocr"`` -> ["tk", "ocr"]; None or empty means every source. Unknown names
        are a ValueError that lists the known ones."""
        if text is None or not text.strip():
            return None
        names = [part.strip() for part in text.split(",") if part.strip()]
        unknown = [name for name in names if name not in self.known]
        if unknown:
            raise ValueError(f"no element source {unknown[0]!r}; the sources are: {', '.join(self.known)}")
        return list(dict.fromkeys(names))

    def _worker(self, name: str) -> SourceWorker | str:
        with self._lock:
            worker = self._workers.get(name)
            if worker is None:
                source = self._given[name] if name in self._given else load_source(name)
                if not isinstance(source, str):
                    try:
                        why = source.unavailable()
                    except Exception as error:  # noqa: BLE001
                        why = f"unavailable() failed: {type(error).__name__}: {error}"
                    source = SourceWorker(source) if why is None else str(why)
                # an unusable source stays unusable for this server's life: asked once
                worker = self._workers[name] = source
            return worker

    def expire(self, name: str) -> None:
        """Make source ``name`` (if loaded and it keeps a cache) read afresh next time."""
        with self._lock:
            worker = self._workers.get(name)
        expire = getattr(worker.source, "expire", None) if isinstance(worker, SourceWorker) else None
        if expire is not None:
            expire()

    def warm_up(self, names: Sequence[str] = WARM_AT_START) -> None:
        """Load ``names`` now, in the background, so sources that keep warm start walking
        before the first listing (the first app's tree is ready when the agent looks)."""
        def load() -> None:
            for name in names:
                if name in self.known:
                    self._worker(name)

        threading.Thread(target=load, name="elements-warm-up", daemon=True).start()

    def read(self, names: Sequence[str], *, deadline_s: float | None = None
             ) -> tuple[dict[str, list[dict[str, Any]]], dict[str, SourceReport]]:
        """Every named source's raw elements (read in parallel) and how each answered."""
        deadline = time.monotonic() + (self.deadline_s if deadline_s is None else deadline_s)
        jobs: dict[str, _Job] = {}
        reports: dict[str, SourceReport] = {}
        for name in names:
            worker = self._worker(name)
            started = worker.submit(deadline, self.grab) if isinstance(worker, SourceWorker) else worker
            if isinstance(started, str):
                reports[name] = SourceReport(ok=False, error=started)
            else:
                jobs[name] = started
        raw: dict[str, list[dict[str, Any]]] = {}
        for name, job in jobs.items():
            if not job.done.wait(max(0.0, deadline - time.monotonic())):
                waited = (time.monotonic() - job.started) * 1000
                reports[name] = SourceReport(ok=False, ms=waited, error=(
                    f"timeout: no answer within {waited:.0f} ms; the listing goes on without it"))
            elif job.result is None:
                reports[name] = SourceReport(ok=False, ms=job.ms, error=job.error)
            else:
                raw[name] = job.result
                reports[name] = SourceReport(ok=True, count=len(job.result), ms=job.ms)
        return raw, reports

    def listing(self, names: Sequence[str] | None = None) -> ElementList:
        """A new listing (and the one actions resolve against from now on)."""
        names = list(self.known if names is None else names)
        raw, reports = self.read(names)
        candidates: list[dict[str, Any]] = []
        for name in names:
            kept, dropped = clean(raw.get(name, []), name, self.screen_size)
            candidates.extend(kept)
            if dropped:
                report = reports[name]
                reports[name] = SourceReport(ok=report.ok, count=report.count, ms=report.ms,
                                             error=f"dropped {dropped} malformed element(s)")
        merged = order(merge(candidates))
        notes = []
        if len(merged) > self.max_elements:
            notes.append(f"cut to {self.max_elements} of {len(merged)} elements (reading order: "
                         f"the rest are lower on the screen or in later windows)")
            merged = merged[:self.max_elements]
        cut_names = sum(1 for e in merged if e.pop("cut", False))
        if cut_names:
            notes.append(f"{cut_names} name(s) cut to {MAX_NAME_CHARS} characters")
        with self._lock:
            self._serial += 1
            elements = tuple(Element(id=i, role=e["role"], name=e["name"], box=e["box"],
                                     states=e["states"], window=e["window"], source=e["source"])
                             for i, e in enumerate(merged))
            result = ElementList(elements=elements, sources={n: reports[n] for n in names if n in reports},
                                 truncated="; ".join(notes), listing=self._serial)
            self.last = result
        return result

    def resolve(self, element_id: int) -> Element:
        """The element ``element_id`` of the last listing where it is on screen now (its
        current box); ElementRefused says why not."""
        element = lookup(self.last, element_id)
        raw, reports = self.read([element.source], deadline_s=RECHECK_DEADLINE_S)
        if element.source not in raw:
            raise ElementRefused(f"{describe_element(element)} could not be re-checked ({element.source}: "
                                 f"{reports[element.source].error}); look at the screen again")
        return relocate(element, clean(raw[element.source], element.source, self.screen_size)[0])


    def wait_focused(self, element: Element, *, timeout: float = FOCUS_WAIT_S) -> bool:
        """Wait until a fresh read of ``element``'s source shows it focused: keys typed
        before the widget takes the focus (a loaded app handles the click late) would go
        to the widget that had it. False if it never did, or its source cannot say."""
        if element.source not in FOCUS_SOURCES:
            return False
        deadline = time.monotonic() + timeout
        while True:
            raw, _ = self.read([element.source], deadline_s=RECHECK_DEADLINE_S)
            if element.source in raw:
                match = find_same(element, clean(raw[element.source], element.source, self.screen_size)[0])
                if match is not None and "focused" in match["states"]:
                    return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.03)


def describe_element(element: Element) -> str:
    return f"element {element.id} ({element.role} {element.name[:40]!r})"


def lookup(last: ElementList | None, element_id: int) -> Element:
    """Element ``element_id`` of listing ``last``; ElementRefused names what ids there are."""
    if last is None:
        raise ElementRefused(f"no element {element_id}: there is no element listing yet; "
                             f"look at the screen (list its elements) first")
    element = last.by_id(element_id)
    if element is None:
        ids = f"ids 0-{len(last.elements) - 1}" if last.elements else "it is empty"
        raise ElementRefused(f"no element {element_id} in the last listing ({ids}); look at the screen again")
    return element


def relocate(element: Element, fresh: Sequence[Mapping[str, Any]]) -> Element:
    """``element`` where a fresh read of its source shows it now (``find_same``);
    ElementRefused if it is no longer on screen."""
    match = find_same(element, fresh)
    if match is None:
        raise ElementRefused(f"{describe_element(element)} is no longer on screen; look at the screen again")
    return Element(id=element.id, role=element.role, name=match["name"], box=tuple(match["box"]),
                   states=frozenset(match["states"]), window=element.window, source=element.source)


# --- cleaning, merging, ordering -------------------------------------------------------


def clean(raw: Sequence[Any], source: str, screen_size: tuple[int, int]) -> tuple[list[dict[str, Any]], int]:
    """Valid raw elements that show on the screen, with capped strings (and a ``cut``
    mark where a name was cut); and how many were malformed."""
    width, height = screen_size
    kept, dropped = [], 0
    for item in raw:
        try:
            role, name, window = str(item["role"]), str(item.get("name", "")), str(item.get("window", ""))
            box = [int(v) for v in item["box"]]
            if len(box) != 4 or any(isinstance(v, bool) for v in item["box"]):
                raise ValueError
            states = frozenset(str(s) for s in item.get("states", ())) & frozenset(STATES)
        except (KeyError, TypeError, ValueError, AttributeError):
            dropped += 1
            continue
        x, y, w, h = box
        if w <= 0 or h <= 0 or x >= width or y >= height or x + w <= 0 or y + h <= 0 or not role:
            continue  # nothing of it on the screen
        cut = len(name) > MAX_NAME_CHARS
        kept.append({"role": role[:MAX_ROLE_CHARS], "name": name[:MAX_NAME_CHARS - 1] + "…" if cut else name,
                     "box": (x, y, w, h), "states": states, "source": source, "cut": cut,
                     "window": window if len(window) <= MAX_WINDOW_CHARS else window[:MAX_WINDOW_CHARS - 1] + "…"})
    return kept, dropped


def family(role: str) -> str:
    return ROLE_FAMILIES.get(role, role)


def _words(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


def _richness(e: Mapping[str, Any]) -> tuple[int, int, int]:
    return (len(e["states"]) + (1 if e["name"] else 0), -SOURCE_RANK.get(e["source"], 9), len(e["name"]))


def _covers_text(e: Mapping[str, Any], ocr: Mapping[str, Any]) -> bool:
    """Whether structured element ``e`` already says what OCR line ``ocr`` read there."""
    text = _words(ocr["name"])
    if not text or text not in _words(e["name"] + " " + e["window"]):
        return False
    ox, oy, ow, oh = ocr["box"]
    ex, ey, ew, eh = e["box"]
    inter = max(0, min(ox + ow, ex + ew) - max(ox, ex)) * max(0, min(oy + oh, ey + eh) - max(oy, ey))
    return inter >= 0.5 * ow * oh


def merge(elements: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop duplicates between sources: the same role family with boxes of IoU >= 0.5
    keeps the richer element; an OCR line whose text a tk or AT-SPI element near it
    already carries is dropped."""
    structured = [e for e in elements if e["source"] != "ocr"]
    kept: list[dict[str, Any]] = []
    for element in sorted(elements, key=_richness, reverse=True):
        if element["source"] == "ocr" and any(_covers_text(e, element) for e in structured):
            continue
        if any(other["source"] != element["source"] and family(other["role"]) == family(element["role"])
               and iou(other["box"], element["box"]) >= MATCH_IOU for other in kept):
            continue
        kept.append(element)
    return kept


def order(elements: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Reading order: window by window (ordered by where each window's own element, or
    its first element, sits), each window's frame first, then top to bottom, left to right."""
    def position(e: Mapping[str, Any]) -> tuple[int, int]:
        return e["box"][1], e["box"][0]

    anchors: dict[str, tuple[int, int, int]] = {}
    for e in elements:
        rank = 0 if family(e["role"]) == "window" else 1
        anchor = (rank, *position(e))
        if e["window"] not in anchors or anchor < anchors[e["window"]]:
            anchors[e["window"]] = anchor
    windows = {w: i for i, w in enumerate(sorted(anchors, key=lambda w: (anchors[w][1:], w)))}
    return sorted(elements, key=lambda e: (windows[e["window"]], 0 if family(e["role"]) == "window" else 1,
                                           *position(e), -e["box"][2] * e["box"][3], e["role"], e["name"]))


def find_same(element: Element, fresh: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The fresh raw element that is ``element`` now: same role and window, a box with
    IoU >= 0.5, and the same name (unless the role's name is its value)."""
    best, best_iou = None, MATCH_IOU
    for candidate in fresh:
        if candidate["role"] != element.role or candidate["window"] != element.window:
            continue
        if element.role not in VALUE_ROLES and candidate["name"] != element.name:
            continue
        overlap = iou(candidate["box"], element.box)
        if overlap >= best_iou:
            best, best_iou = candidate, overlap
    return best
