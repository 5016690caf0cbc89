"""Chromium in the guest, driven over the DevTools protocol on a pipe (never a TCP port).

The guest server owns one ``WebPages``: it starts Chromium on first use as a full-screen
app window, loads MiniWoB++ task pages (``file://`` pages copied into the web image) with
a seed, and reads what the page itself says: its utterance, its reward and done flag,
and, for the tasks that have one, the next action of a scripted solver (an oracle that
reads the DOM). The DevTools channel is the browser's fds 3 and 4: only this process
holds the other ends, so nothing else in the sandbox, and nothing outside it, can drive
the browser. Standard library only.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import threading
import time
from pathlib import Path
from typing import Any

MINIWOB_ROOT = Path(os.environ.get("DESKDOJO_MINIWOB_HTML", "/opt/deskdojo-web/miniwob/html"))
CHROMIUM = os.environ.get("DESKDOJO_CHROMIUM", "/usr/bin/chromium")
PROFILE_DIR = "/tmp/deskdojo-chromium"
# The accessibility bridge's socket goes to $XDG_RUNTIME_DIR (else ~/.cache, which a reset
# wipes: AT-SPI then loses the page until its periodic re-walk).
RUNTIME_DIR = "/tmp/deskdojo-chromium-runtime"
LOG_PATH = "/tmp/deskdojo-chromium.log"
START_TIMEOUT_S = 30.0
CALL_TIMEOUT_S = 10.0
LOAD_TIMEOUT_S = 15.0
MAX_MESSAGE_BYTES = 8 * 1024 * 1024
TASK_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
DEFAULT_EPISODE_S = 300.0  # MiniWoB's own default is 10 s: too short for a model thinking per step
BLANK = "about:blank"


class WebError(Exception):
    """The browser or a page did not do what was asked (the server answers 4xx/5xx)."""


def chromium_argv(width: int, height: int) -> list[str]:
    """Chromium's command line: a kiosk window over the whole screen, accessibility on."""
    return [
        CHROMIUM,
        # Chromium's own sandbox needs user namespaces or a setuid helper, which the
        # container forbids (all capabilities dropped, no-new-privileges). The container
        # is the sandbox here: no network, no host files, a non-root user.
        "--no-sandbox",
        "--remote-debugging-pipe",  # DevTools on fds 3/4: no port, no socket file
        "--force-renderer-accessibility",  # AT-SPI lists the page's elements
        "--kiosk", f"--window-size={width},{height}", "--window-position=0,0",
        f"--user-data-dir={PROFILE_DIR}",
        "--disable-dev-shm-usage",  # docker's /dev/shm is 64 MB
        "--disable-gpu", "--no-first-run", "--no-default-browser-check",
        "--disable-extensions", "--disable-sync", "--disable-background-networking",
        "--disable-component-update", "--disable-default-apps", "--disable-crash-reporter",
        "--disable-features=Translate,MediaRouter,OptimizationHints,DialMediaRouteProvider",
        "--password-store=basic", "--noerrdialogs", "--disable-session-crashed-bubble",
        "--allow-file-access-from-files",  # some task pages read their data files
        "--lang=en-US", "--force-device-scale-factor=1",
        BLANK,
    ]


class DevToolsPipe:
    """One Chromium process and its DevTools pipe: JSON messages ended by a NUL byte."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        to_browser_r, self._write_fd = os.pipe()
        self._read_fd, from_browser_w = os.pipe()
        log_fd = os.open(LOG_PATH, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            self.pid = os.posix_spawn(argv[0], argv, env, setsid=True, file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, log_fd, 1), (os.POSIX_SPAWN_DUP2, log_fd, 2),
                (os.POSIX_SPAWN_DUP2, to_browser_r, 3), (os.POSIX_SPAWN_DUP2, from_browser_w, 4),
            ])
        finally:
            for fd in (to_browser_r, from_browser_w, log_fd):
                os.close(fd)
        self._lock = threading.Lock()
        self._next_id = 0
        self._waiting: dict[int, list[Any]] = {}  # id -> [threading.Event, reply]
        self._closed = False
        self._reader = threading.Thread(target=self._read_loop, name="devtools-pipe", daemon=True)
        self._reader.start()

    def alive(self) -> bool:
        if self._closed:
            return False
        try:
            pid, _ = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            return False
        return pid == 0

    def _read_loop(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = os.read(self._read_fd, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                break
            buffer += chunk
            if len(buffer) > MAX_MESSAGE_BYTES:
                break
            while b"\0" in buffer:
                raw, buffer = buffer.split(b"\0", 1)
                try:
                    message = json.loads(raw)
                except ValueError:
                    continue
                slot = self._waiting.get(message.get("id")) if isinstance(message, dict) else None
                if slot is not None:
                    slot[1] = message
                    slot[0].set()
        self._closed = True
        for slot in list(self._waiting.values()):
            slot[0].set()

    def call(self, method: str, params: dict[str, Any] | None = None, *, session: str | None = None,
             timeout: float = CALL_TIMEOUT_S) -> dict[str, Any]:
        """Send one command and wait for its reply's ``result``; WebError on an error reply."""
        if self._closed:
            raise WebError("the browser has exited")
        with self._lock:
            self._next_id += 1
            message_id = self._next_id
            slot: list[Any] = [threading.Event(), None]
            self._waiting[message_id] = slot
            message: dict[str, Any] = {"id": message_id, "method": method, "params": params or {}}
            if session:
                message["sessionId"] = session
            data = json.dumps(message).encode() + b"\0"
            try:
                while data:
                    data = data[os.write(self._write_fd, data):]
            except OSError as error:
                self._waiting.pop(message_id, None)
                raise WebError(f"the browser's DevTools pipe is closed ({error})") from None
        try:
            if not slot[0].wait(timeout) or slot[1] is None:
                raise WebError(f"the browser did not answer {method} within {timeout:g} s"
                               if not self._closed else "the browser has exited")
        finally:
            self._waiting.pop(message_id, None)
        reply = slot[1]
        if "error" in reply:
            raise WebError(f"{method}: {reply['error'].get('message', reply['error'])}")
        return reply.get("result", {})

    def close(self) -> None:
        """End the browser (its own session: the whole group) and reap it."""
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass
        self._closed = True
        for fd in (self._write_fd, self._read_fd):
            try:
                os.close(fd)
            except OSError:
                pass


# The page-side reader. It keeps the first result of the episode (MiniWoB starts a new
# episode when the START cover is clicked again, which would wipe the reward).
_START_JS = """(() => {
  const seed = %(seed)s, maxMs = %(max_ms)d;
  if (typeof core === 'undefined' || typeof genProblem === 'undefined') return {error: 'not a MiniWoB page'};
  // a few tasks return {utterance, fields} instead of the text
  window.__deskdojoUtterance = () => { const u = core.getUtterance();
    return String(u !== null && typeof u === 'object' ? u.utterance : u); };
  Math.seedrandom(seed);
  core.EPISODE_MAX_TIME = maxMs;
  window.__deskdojoResult = null;
  const end = core.endEpisode;
  core.endEpisode = function (reward, timeProportional, reason) {
    const before = core.EP_TIMER;
    end.apply(this, arguments);
    if (before !== null && window.__deskdojoResult === null) {
      window.__deskdojoResult = {reward: WOB_REWARD_GLOBAL, raw_reward: WOB_RAW_REWARD_GLOBAL,
                                 reason: WOB_REWARD_REASON == null ? null : String(WOB_REWARD_REASON)};
    }
  };
  core.startEpisodeReal();
  // DOM changes of the task area counted (not the timer beside it), so that an oracle
  // sees the page react to its last action
  window.__deskdojoChanges = 0;
  new MutationObserver(() => { window.__deskdojoChanges++; }).observe(
    document.getElementById('wrap') || document.body,
    {subtree: true, childList: true, attributes: true, characterData: true});
  return {utterance: __deskdojoUtterance()};
})()"""

_STATE_JS = """(() => {
  const r = window.__deskdojoResult;
  let next = null, solverError = null;
  if (!r && typeof window.__deskdojoSolve === 'function') {
    try { next = window.__deskdojoSolve(); } catch (e) { solverError = String(e); }
  }
  return {utterance: __deskdojoUtterance(), done: r !== null && r !== undefined,
          reward: r ? r.reward : 0, raw_reward: r ? r.raw_reward : 0, reason: r ? r.reason : null,
          next: next, solver_error: solverError, changes: window.__deskdojoChanges || 0,
          origin: [window.screenX, window.screenY + window.outerHeight - window.innerHeight],
          scale: window.devicePixelRatio};
})()"""


def _js_string(value: str) -> str:
    return json.dumps(value)


class WebPages:
    """The browser of one sandbox and the task page it shows (one page at a time)."""

    def __init__(self, *, display: str, env: dict[str, str], screen: tuple[int, int],
                 on_page: Any = None) -> None:
        self.display, self.env, self.screen = display, env, screen
        # Called after each page load and blanking: from the browser's events alone, the
        # AT-SPI element cache learns of a new page late (at its periodic re-walk).
        self._on_page = on_page or (lambda: None)
        self._pipe: DevToolsPipe | None = None
        self._session: str | None = None
        self._lock = threading.RLock()
        self.page: dict[str, Any] | None = None  # {"task", "seed", "url"} of the loaded page

    # --- the browser --------------------------------------------------------------

    def browser_pid(self) -> int | None:
        """The browser's pid while it runs (reset spares its process tree and window)."""
        pipe = self._pipe
        return pipe.pid if pipe is not None and pipe.alive() else None

    def _ensure_browser(self) -> None:
        if self._pipe is not None and self._pipe.alive() and self._session:
            return
        self.close()
        if not os.access(CHROMIUM, os.X_OK):
            raise WebError(f"no browser at {CHROMIUM}: web pages need the web image "
                           f"(`deskdojo image build --flavor web`, sandbox flavor: web)")
        env = {**self.env, "DISPLAY": self.display}
        env.pop("NO_AT_BRIDGE", None)  # the page's elements go to AT-SPI
        os.makedirs(RUNTIME_DIR, mode=0o700, exist_ok=True)
        env["XDG_RUNTIME_DIR"] = RUNTIME_DIR
        width, height = self.screen
        self._pipe = DevToolsPipe(chromium_argv(width, height), env)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                self._pipe.call("Browser.getVersion", timeout=max(0.5, deadline - time.monotonic()))
                break
            except WebError as error:
                if time.monotonic() > deadline or not self._pipe.alive():
                    tail = _log_tail()
                    self.close()
                    raise WebError(f"the browser did not start: {error}; its log ends: {tail}") from None
        while True:
            targets = self._pipe.call("Target.getTargets")["targetInfos"]
            pages = [t for t in targets if t.get("type") == "page"]
            if pages:
                break
            if time.monotonic() > deadline:
                self.close()
                raise WebError("the browser opened no page")
            time.sleep(0.05)
        self._session = self._pipe.call("Target.attachToTarget", {"targetId": pages[0]["targetId"],
                                                                  "flatten": True})["sessionId"]

    def _evaluate(self, expression: str, *, timeout: float = CALL_TIMEOUT_S) -> Any:
        assert self._pipe is not None
        result = self._pipe.call("Runtime.evaluate", {"expression": expression, "returnByValue": True},
                                 session=self._session, timeout=timeout)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise WebError(f"the page raised: {str(text)[:300]}")
        return result.get("result", {}).get("value")

    def _navigate(self, url: str) -> None:
        """Go to ``url`` and wait until its document has loaded (a fresh one, not the old)."""
        marker = secrets.token_hex(8)
        self._evaluate(f"window.__deskdojoMarker = {_js_string(marker)}")
        self._pipe.call("Page.navigate", {"url": url}, session=self._session)  # type: ignore[union-attr]
        deadline = time.monotonic() + LOAD_TIMEOUT_S
        ready = (f"window.__deskdojoMarker !== {_js_string(marker)} && document.readyState === 'complete'"
                 f" && (typeof WOB_TASK_READY === 'undefined' || WOB_TASK_READY === true)")
        while not self._evaluate(ready):
            if time.monotonic() > deadline:
                raise WebError(f"{url} did not finish loading within {LOAD_TIMEOUT_S:g} s")
            time.sleep(0.01)

    # --- pages ----------------------------------------------------------------------

    def load(self, body: dict[str, Any]) -> dict[str, Any]:
        """Load MiniWoB++ task ``task`` and start its episode with ``seed``; the utterance."""
        task, seed = body.get("task"), body.get("seed", 0)
        episode_s = body.get("episode_s", DEFAULT_EPISODE_S)
        if not isinstance(task, str) or not TASK_NAME.match(task):
            raise ValueError(f"task must be a MiniWoB++ task name like 'click-button', got {task!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2 ** 53:
            raise ValueError(f"seed must be an integer in [0, 2**53), got {seed!r}")
        if isinstance(episode_s, bool) or not isinstance(episode_s, (int, float)) or not 0 < episode_s <= 86400:
            raise ValueError(f"episode_s must be a number of seconds in (0, 86400], got {episode_s!r}")
        path = MINIWOB_ROOT / "miniwob" / f"{task}.html"
        if not path.is_file():
            raise LookupError(f"no MiniWoB++ task {task!r} in {MINIWOB_ROOT} (is this the web image?)")
        started = time.perf_counter()
        with self._lock:
            self.page = None
            url = path.as_uri()
            for attempt in (1, 2):  # a crashed page or browser: start it again, once
                try:
                    self._ensure_browser()
                    self._navigate(url)
                    break
                except WebError:
                    self.close()
                    if attempt == 2:
                        raise
            started_episode = self._evaluate(_START_JS % {"seed": _js_string(str(seed)),
                                                          "max_ms": int(episode_s * 1000)})
            if not isinstance(started_episode, dict) or "utterance" not in started_episode:
                why = started_episode.get("error") if isinstance(started_episode, dict) else "no episode"
                raise WebError(f"{task}: the page did not start an episode ({why})")
            solver = SOLVERS.get(task)
            if solver:
                self._evaluate(f"window.__deskdojoSolve = function () {{ {_SOLVER_HELPERS}\n{solver} }}")
            self.page = {"task": task, "seed": seed, "url": url}
        self._on_page()
        return {"task": task, "seed": seed, "utterance": str(started_episode["utterance"]),
                "has_solver": bool(solver), "elapsed_ms": round((time.perf_counter() - started) * 1000, 3)}

    def state(self) -> dict[str, Any] | None:
        """The loaded page's state (None when no page is loaded); ``next`` in screen pixels."""
        with self._lock:
            if self.page is None:
                return None
            if self._pipe is None or not self._pipe.alive():
                raise WebError("the browser has exited; load the page again")
            raw = self._evaluate(_STATE_JS)
            if not isinstance(raw, dict):
                raise WebError("the page returned no state")
            origin = raw.get("origin") or [0, 0]
            scale = raw.get("scale") or 1
            return {**self.page, "utterance": raw.get("utterance"), "done": bool(raw.get("done")),
                    "reward": raw.get("reward"), "raw_reward": raw.get("raw_reward"),
                    "success": bool(raw.get("done")) and _number(raw.get("raw_reward")) > 0,
                    "reason": raw.get("reason"), "next": _to_screen(raw.get("next"), origin, scale),
                    "changes": raw.get("changes"),
                    "solver_error": raw.get("solver_error")}

    def blank(self) -> None:
        """Forget the page and show a blank one (reset: the browser itself stays)."""
        with self._lock:
            self.page = None
            if self._pipe is not None and self._pipe.alive() and self._session:
                try:
                    self._navigate(BLANK)
                except WebError:
                    self.close()
        self._on_page()

    def close(self) -> None:
        with self._lock:
            if self._pipe is not None:
                self._pipe.close()
            self._pipe, self._session, self.page = None, None, None


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def _to_screen(action: Any, origin: list[Any], scale: Any) -> dict[str, Any] | None:
    """A solver's action with its CSS-pixel point moved to screen pixels."""
    if not isinstance(action, dict):
        return None
    out = dict(action)
    if "x" in out and "y" in out:
        out["x"] = int(round(_number(origin[0]) + _number(out["x"]) * _number(scale)))
        out["y"] = int(round(_number(origin[1]) + _number(out["y"]) * _number(scale)))
    return out


def _log_tail() -> str:
    try:
        return " | ".join(Path(LOG_PATH).read_text(errors="replace").strip().splitlines()[-5:])[-800:]
    except OSError:
        return "(no log)"


# --- scripted solvers --------------------------------------------------------------
# Each returns the NEXT action given the page as it is now ({kind: click, x, y} in CSS
# pixels, {kind: type, text}, {kind: key, keys}), or null when nothing is left to do. They
# read the DOM and the utterance (privileged, as an oracle may) and act only through the
# ordinary action path: the host performs what they return with the normal executor.

_SOLVER_HELPERS = r"""
const q = __deskdojoUtterance();
const quoted = () => { const m = q.match(/"([^"]*)"/); return m ? m[1] : ''; };
const allQuoted = () => Array.from(q.matchAll(/"([^"]*)"/g), m => m[1]);
const visible = el => { if (!el) return false; const b = el.getBoundingClientRect();
  return b.width > 0 && b.height > 0 && getComputedStyle(el).visibility !== 'hidden'; };
const click = el => {  // the centre, or else the point nearest it that el is not covered at
  const b = el.getBoundingClientRect(); const points = [];
  for (let i = 1; i < 8; i++) for (let j = 1; j < 8; j++)
    points.push([b.left + b.width * i / 8, b.top + b.height * j / 8]);
  const cx = b.left + b.width / 2, cy = b.top + b.height / 2;
  points.sort((p, r) => Math.hypot(p[0] - cx, p[1] - cy) - Math.hypot(r[0] - cx, r[1] - cy));
  const free = points.find(([x, y]) => { const hit = document.elementFromPoint(x, y);
    return hit !== null && (hit === el || el.contains(hit) || (el.labels && Array.from(el.labels).includes(hit))); });
  const [x, y] = free || [cx, cy];
  return {kind: 'click', x: x, y: y}; };
const byText = (selector, text) => Array.from(document.querySelectorAll(selector))
  .filter(el => el.textContent.trim() === text && visible(el));
const fill = (el, text) => {
  if (el.value === text) return null;
  if (document.activeElement !== el) return click(el);
  if (el.value !== '') return {kind: 'key', keys: ['ctrl', 'a']};
  return {kind: 'type', text: text};
};
const fillAll = (pairs, submit) => {
  for (const [el, text] of pairs) { const a = fill(el, text); if (a) return a; }
  return click(submit);
};
const chooseBoxes = (wanted, submit) => {
  for (const label of document.querySelectorAll('#boxes label')) {
    const box = label.querySelector('input');
    if (box.checked !== wanted.includes(label.textContent.trim())) return click(box);
  }
  return click(submit);
};
"""

SOLVERS: dict[str, str] = {
    "click-button": "return click(byText('#area button', quoted())[0]);",
    "click-test": "return click(document.getElementById('subbtn'));",
    "focus-text": "return click(document.getElementById('tt'));",
    "click-dialog": "return click(document.querySelector('.ui-dialog-titlebar-close'));",
    "click-link": "return click(byText('#area .alink', quoted())[0]);",
    "click-button-sequence": (
        "return click(document.getElementById(buttonsPushed.length ? 'subbtn2' : 'subbtn'));"),
    "enter-text": (
        "return fillAll([[document.getElementById('tt'), quoted()]], document.getElementById('subbtn'));"),
    "enter-password": (
        "const p = quoted(); return fillAll([[document.getElementById('password'), p],"
        " [document.getElementById('verify'), p]], document.getElementById('subbtn'));"),
    "login-user": (
        "const [user, password] = allQuoted(); return fillAll([[document.getElementById('username'), user],"
        " [document.getElementById('password'), password]], document.getElementById('subbtn'));"),
    "click-checkboxes": (
        "const m = q.match(/^Select (.*) and click Submit\\.$/); const names = m[1] === 'nothing' ? []"
        " : m[1].split(', '); return chooseBoxes(names, document.getElementById('subbtn'));"),
    "click-option": (
        "const m = q.match(/^Select (.*) and click Submit\\.$/);"
        " return chooseBoxes([m[1]], document.getElementById('subbtn'));"),
    "choose-list": (
        "const m = q.match(/^Select (.*) from the list and click Submit\\.$/); const want = m[1];"
        " const sel = document.getElementById('options');"
        " const submit = byText('#area button', 'Submit')[0];"
        " if (sel.options[sel.selectedIndex].textContent === want) return click(submit);"
        " if (document.activeElement !== sel) return click(sel);"
        " return {kind: 'type', text: want + '\\n'};"),
    "click-test-2": "return click(byText('button', 'ONE')[0]);",
    "click-tab": (
        "const n = q.match(/Tab #(\\d+)/)[1];"
        " return click(document.querySelector('#area ul a[href=\"#tabs-' + n + '\"]'));"),
    "focus-text-2": (
        "const n = ['1st', '2nd', '3rd'].findIndex(p => q.includes(p + ' input'));"
        " return click(document.getElementById('tt' + (n + 1)));"),
    "click-collapsible": (
        "if (!document.querySelectorAll('.ui-accordion-content-active').length)"
        " return click(document.querySelector('#area h3'));"
        " return click(document.getElementById('subbtn'));"),
    "click-dialog-2": (
        "const want = quoted(); if (want === 'x') return click(document.querySelector('.ui-dialog-titlebar-close'));"
        " return click(byText('.ui-dialog-buttonpane button', want)[0]);"),
    "use-slider": (
        "const n = Number(q.match(/Select (-?\\d+) with/)[1]); const slider = $('#slider');"
        " const value = slider.slider('value'); const submit = document.getElementById('subbtn');"
        " if (value === n) return click(submit);"
        " const handle = document.querySelector('#slider .ui-slider-handle');"
        " if (document.activeElement !== handle) return click(handle);"
        " const page = (slider.slider('option', 'max') - slider.slider('option', 'min')) / 5;"
        " if (Math.abs(n - value) >= page) return {kind: 'key', keys: [n > value ? 'pageup' : 'pagedown']};"
        " return {kind: 'key', keys: [n > value ? 'up' : 'down']};"),
    "click-tab-2": (
        "const want = quoted(); const links = Array.from(document.querySelectorAll('#area .alink'))"
        " .filter(el => el.textContent.trim() === want);"
        " const shown = links.filter(visible); if (shown.length) return click(shown[0]);"
        " const panel = links[0].closest('.ui-tabs-panel');"
        " return click(document.querySelector('#area a[href=\"#' + panel.id + '\"]'));"),
}
