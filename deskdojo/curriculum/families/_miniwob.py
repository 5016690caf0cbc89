"""MiniWoB++ as a task source: one family per task page of the ``miniwob`` package.

Each task loads the page in the web image's browser with the task's seed (setup step
``web``); the instruction is the page's own utterance, read after the page loads
(``PageState.utterance``; the Task carries a stand-in until then); the check is the
page's own verdict: its episode ended with a raw reward above 0 (MiniWoB++'s success),
read inside the guest and published as the ``web`` app's state. Tasks in ORACLE_TASKS
have a scripted solver in the guest that reads the DOM; their oracle follows the action
it publishes, performed through the ordinary action path.

Not discovered by ``all_families()`` (the leading underscore): these need the web image
(``deskdojo image build --flavor web``), so the desktop loops never draw them;
``web_families()`` lists them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from deskdojo.core.actions import Wait
from deskdojo.core.types import Check, Locator, OracleStep, Provenance, SetupStep, Split, Task
from deskdojo.curriculum.families.base import Family, task_id

PREFIX = "miniwob."
APP = "chromium"
WEB_APP = "web"  # the name the guest publishes a loaded page's state under

# Every task page in miniwob 1.1.0 (miniwob/html/miniwob/*.html).
MINIWOB_TASKS: tuple[str, ...] = (
    "ascending-numbers", "bisect-angle", "book-flight", "book-flight-nodelay", "button-delay",
    "buy-ticket", "chase-circle", "choose-date", "choose-date-easy", "choose-date-medium",
    "choose-date-nodelay", "choose-list", "circle-center", "click-button",
    "click-button-sequence", "click-checkboxes", "click-checkboxes-large",
    "click-checkboxes-soft", "click-checkboxes-transfer", "click-collapsible",
    "click-collapsible-2", "click-collapsible-2-nodelay", "click-collapsible-nodelay",
    "click-color", "click-dialog", "click-dialog-2", "click-link", "click-menu",
    "click-menu-2", "click-option", "click-pie", "click-pie-nodelay", "click-scroll-list",
    "click-shades", "click-shape", "click-tab", "click-tab-2", "click-tab-2-easy",
    "click-tab-2-hard", "click-tab-2-medium", "click-test", "click-test-2",
    "click-test-transfer", "click-widget", "copy-paste", "copy-paste-2", "count-shape",
    "count-sides", "daily-calendar", "drag-box", "drag-circle", "drag-cube", "drag-items",
    "drag-items-grid", "drag-shapes", "drag-shapes-2", "drag-single-shape",
    "drag-sort-numbers", "draw-circle", "draw-line", "email-inbox", "email-inbox-delete",
    "email-inbox-forward", "email-inbox-forward-nl", "email-inbox-forward-nl-turk",
    "email-inbox-important", "email-inbox-nl-turk", "email-inbox-noscroll",
    "email-inbox-reply", "email-inbox-star-reply", "enter-date", "enter-password",
    "enter-text", "enter-text-2", "enter-text-dynamic", "enter-time", "find-greatest",
    "find-midpoint", "find-word", "focus-text", "focus-text-2", "form-sequence",
    "form-sequence-2", "form-sequence-3", "generate-number", "grid-coordinate", "guess-number",
    "highlight-text", "highlight-text-2", "hot-cold", "hover-shape", "identify-shape",
    "login-user", "login-user-popup", "moving-items", "multi-layouts", "multi-orderings",
    "navigate-tree", "number-checkboxes", "odd-or-even", "order-food", "phone-book",
    "read-table", "read-table-2", "resize-textarea", "right-angle", "scroll-text",
    "scroll-text-2", "search-engine", "sign-agreement", "simon-says", "simple-algebra",
    "simple-arithmetic", "social-media", "social-media-all", "social-media-some",
    "stock-market", "terminal", "text-editor", "text-transform", "tic-tac-toe", "unicode-test",
    "use-autocomplete", "use-autocomplete-nodelay", "use-colorwheel", "use-colorwheel-2",
    "use-slider", "use-slider-2", "use-spinner", "visual-addition",
)

# Tasks whose guest-side solver (deskdojo/vm/guest/web.py, SOLVERS) gives them an oracle.
ORACLE_TASKS: tuple[str, ...] = (
    "choose-list", "click-button", "click-button-sequence", "click-checkboxes", "click-collapsible",
    "click-dialog", "click-dialog-2", "click-link", "click-option", "click-tab", "click-tab-2",
    "click-test", "click-test-2", "enter-password", "enter-text", "focus-text", "focus-text-2",
    "login-user", "use-slider",
)


def success_check() -> Check:
    """The page's own verdict: done, with a raw reward above 0."""
    return Check(getter="app_state", metric="equals", args={"app": WEB_APP, "path": "success"},
                 expected=True)


@dataclass(frozen=True)
class MiniWobFamily(Family):
    """One MiniWoB++ task page; level 0 only (the page draws its own variation from the seed)."""

    page: str = ""

    def make(self, level: int, seed: int, split: Split, rng: random.Random) -> Task:
        oracle = (OracleStep(Wait(0), follow=Locator(WEB_APP, path="next")),) if self.page in ORACLE_TASKS else ()
        return Task(
            id=task_id(self.name, level, seed, split),
            instruction=f"Do the MiniWoB++ task {self.page!r} shown on the page (its instruction is at the top).",
            family=self.name, level=level, seed=seed, split=split,
            setup=(SetupStep("web", {"task": self.page, "seed": seed}),),
            checks=(success_check(),), oracle=oracle, max_steps=15, provenance=Provenance.IMPORTED)


FAMILIES = [MiniWobFamily(name=f"{PREFIX}{page}", app=APP, levels=1, page=page,
                          description=f"MiniWoB++ {page}: the page's utterance, reward and done flag"
                                      + (" (oracle)" if page in ORACLE_TASKS else ""),
                          knobs=("the page's own seeded variation",))
            for page in MINIWOB_TASKS]
