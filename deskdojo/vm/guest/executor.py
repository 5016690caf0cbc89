"""Carry out an Action on the sandbox's X display through the XTEST extension.

One python-xlib connection and one round trip per action: a click is a motion, a
press and a release, then a single sync (pyautogui syncs after every event). A
character or key the keymap lacks (``é``, ``✓``, ``F13``) is bound to a spare keycode
first, as ``xdotool type`` does, but kept bound (least recently used first to go)
so the next use needs no remap, and bound on both shift levels so ``Ü`` stays
upper-case (xdotool 3.2016 types it as ``ü``).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Sequence

from deskdojo.core.actions import Action, Click, Done, Drag, Fail, Key, Move, Scroll, Type, Wait
from deskdojo.core.errors import ActionError

# Our key names (after deskdojo.core.actions.normalize_key) -> X keysym names.
_KEYSYM_NAMES: dict[str, str] = {
    "enter": "Return", "return": "Return", "tab": "Tab", "space": "space",
    "backspace": "BackSpace", "delete": "Delete", "insert": "Insert",
    "escape": "Escape", "esc": "Escape", "home": "Home", "end": "End",
    "pageup": "Prior", "pagedown": "Next", "up": "Up", "down": "Down",
    "left": "Left", "right": "Right",
    "ctrl": "Control_L", "ctrlleft": "Control_L", "ctrlright": "Control_R",
    "shift": "Shift_L", "shiftleft": "Shift_L", "shiftright": "Shift_R",
    "alt": "Alt_L", "altleft": "Alt_L", "altright": "Alt_R",
    "super": "Super_L", "win": "Super_L", "meta": "Super_L", "cmd": "Super_L",
    "capslock": "Caps_Lock", "numlock": "Num_Lock", "scrolllock": "Scroll_Lock",
    "printscreen": "Print", "pause": "Pause", "menu": "Menu",
    "minus": "minus", "plus": "plus", "equal": "equal", "comma": "comma",
    "period": "period", "slash": "slash", "backslash": "backslash",
    "semicolon": "semicolon", "apostrophe": "apostrophe", "quote": "apostrophe",
    "grave": "grave", "bracketleft": "bracketleft", "bracketright": "bracketright",
    **{f"f{i}": f"F{i}" for i in range(1, 25)},
}
_SHIFT_NAMES = frozenset({"shift", "shiftleft", "shiftright"})

_BUTTONS = {"left": 1, "middle": 2, "right": 3}
_WHEEL_UP, _WHEEL_DOWN, _WHEEL_LEFT, _WHEEL_RIGHT = 4, 5, 6, 7
_DRAG_STEPS = 8
_DRAG_STEP_PAUSE_S = 0.002  # toolkits with drag thresholds want motion spread over time
# Tk drops the second of two clicks on neighbouring widgets that arrive within a few ms
# (measured: about 1 lost in 30 back-to-back scripted clicks); no person or model clicks
# that fast, so consecutive clicks are spaced at least this far apart.
_MIN_CLICK_GAP_S = 0.04
_REMAP_SETTLE_S = 0.01  # lets clients fetch a changed keymap before the key arrives
_REBIND_AFTER_S = 0.05  # a spare keycode is not rebound sooner after its last use


def char_keysym(char: str) -> int:
    """The X keysym that produces ``char`` (Latin-1 maps directly, the rest is 0x01000000+)."""
    from Xlib import XK

    if char in "\n\r":
        return XK.XK_Return
    if char == "\t":
        return XK.XK_Tab
    code = ord(char)
    if 0x20 <= code <= 0x7E or 0xA0 <= code <= 0xFF:
        return code
    return 0x01000000 | code


class Executor:
    """Executes actions on one X display. Thread-safe: actions never interleave."""

    def __init__(self, display_name: str) -> None:
        from Xlib import XK, X
        from Xlib.ext import xtest

        from deskdojo.vm.guest.xwindows import open_display

        self._X, self._XK, self._xtest = X, XK, xtest
        self._display = open_display(display_name)
        self._display.set_error_handler(lambda *args: None)  # e.g. releasing a released key
        if not self._display.has_extension("XTEST"):
            raise RuntimeError(f"X display {display_name} has no XTEST extension; "
                               f"start Xvfb without '-extension XTEST'")
        root_geometry = self._display.screen().root.get_geometry()
        self.width, self.height = int(root_geometry.width), int(root_geometry.height)
        self._lock = threading.Lock()
        self._last_click = 0.0
        self._first_keycode = int(self._display.display.info.min_keycode)
        self._rows: list[tuple[int, ...]] = []  # the keymap as the server has it, from _first_keycode
        self._keymap: dict[int, tuple[int, bool]] = {}  # keysym -> (keycode, needs shift)
        self._spare: list[int] = []  # keycodes with no keysym, free to bind
        self._bound: OrderedDict[int, int] = OrderedDict()  # keysym -> bound keycode, LRU first
        self._used_at: dict[int, float] = {}  # keycode -> when it was last pressed
        self._load_keymap()

    # --- keymap -------------------------------------------------------------------

    def _load_keymap(self) -> None:
        info = self._display.display.info
        count = info.max_keycode - self._first_keycode + 1
        self._rows = [tuple(row) for row in self._display.get_keyboard_mapping(self._first_keycode, count)]
        for column in (0, 1):  # prefer the unshifted level when a keysym sits on two keys
            for offset, syms in enumerate(self._rows):
                if column < len(syms) and syms[column] and syms[column] not in self._keymap:
                    self._keymap[syms[column]] = (self._first_keycode + offset, column == 1)
        # Keycode 8 is left alone: some toolkits ignore the lowest keycode.
        self._spare = [self._first_keycode + offset for offset, syms in enumerate(self._rows)
                       if not any(syms) and self._first_keycode + offset > 8]

    def _native(self, keysym: int) -> bool:
        """The keymap has this keysym on its own (not one of our bindings)."""
        if keysym in self._keymap:
            return keysym not in self._bound
        return 0x41 <= keysym <= 0x5A and keysym + 0x20 in self._keymap  # 'A' listed only as 'a'

    def _lookup(self, keysym: int) -> tuple[int, bool]:
        """The key for a keysym the keymap has (natively or bound by _bind)."""
        entry = self._keymap.get(keysym)
        if entry is not None:
            if keysym in self._bound:
                self._bound.move_to_end(keysym)
            return entry
        return self._keymap[keysym + 0x20][0], True  # an upper-case letter listed as lower case only

    def _plan(self, keysyms: Sequence[int], start: int) -> tuple[int, list[int], set[int]]:
        """How far from ``start`` we can go binding what is missing: (end, to bind, bound in use)."""
        missing: list[int] = []
        in_use: set[int] = set()
        end = start
        while end < len(keysyms):
            keysym = keysyms[end]
            if not self._native(keysym) and keysym not in missing:
                growing_use = keysym in self._bound and keysym not in in_use
                needed = len(missing) + (0 if keysym in self._bound else 1)
                free = len(self._spare) + len(self._bound) - len(in_use) - (1 if growing_use else 0)
                if needed > free:
                    break
                if keysym in self._bound:
                    in_use.add(keysym)
                else:
                    missing.append(keysym)
            end += 1
        if end == start:
            raise ActionError("the sandbox's keymap has no spare keycode to type this character")
        return end, missing, in_use

    def _bind(self, keysyms: Sequence[int], *, keep: set[int]) -> None:
        """Bind keysyms to spare keycodes (evicting least recently used bindings not in ``keep``)
        with one keymap change, so clients see one MappingNotify per action, not per character."""
        if not keysyms:
            return
        codes: list[int] = []
        settle_until = 0.0
        for _ in keysyms:
            if self._spare:
                code = self._spare.pop()
            else:
                victim = next(k for k in self._bound if k not in keep and k not in keysyms)
                code = self._bound.pop(victim)
                del self._keymap[victim]
                # clients may not have read the key under its old meaning yet
                settle_until = max(settle_until, self._used_at.get(code, 0.0) + _REBIND_AFTER_S)
            codes.append(code)
        if settle_until > time.monotonic():
            self._display.sync()
            time.sleep(settle_until - time.monotonic())
        width = len(self._rows[0])
        for keysym, code in zip(keysyms, codes, strict=True):
            self._rows[code - self._first_keycode] = (keysym, keysym) + (0,) * (width - 2)
            self._bound[keysym] = code
            self._keymap[keysym] = (code, False)  # both levels hold it: shift cannot change it
        low, high = min(codes) - self._first_keycode, max(codes) - self._first_keycode
        self._display.change_keyboard_mapping(low + self._first_keycode, self._rows[low:high + 1])
        self._display.sync()
        time.sleep(_REMAP_SETTLE_S)

    def _key_keysym(self, name: str) -> int:
        if len(name) == 1:
            return char_keysym(name)
        keysym = self._XK.string_to_keysym(_KEYSYM_NAMES.get(name, name))
        if not keysym:
            raise ActionError(f"key {name!r} has no X keysym")
        return keysym

    def _shift_keycode(self) -> int:
        return self._lookup(self._XK.XK_Shift_L)[0]

    # --- raw events -----------------------------------------------------------------

    def _fake(self, event_type: int, detail: int = 0, x: int = 0, y: int = 0) -> None:
        self._xtest.fake_input(self._display, event_type, detail, x=x, y=y)

    def _motion(self, x: int, y: int) -> None:
        self._fake(self._X.MotionNotify, x=x, y=y)

    def _button(self, button: int) -> None:
        self._fake(self._X.ButtonPress, button)
        self._fake(self._X.ButtonRelease, button)

    def _tap(self, code: int, needs_shift: bool, shift_code: int) -> None:
        if needs_shift:
            self._fake(self._X.KeyPress, shift_code)
        self._fake(self._X.KeyPress, code)
        self._fake(self._X.KeyRelease, code)
        if needs_shift:
            self._fake(self._X.KeyRelease, shift_code)
        self._used_at[code] = time.monotonic()

    def _sync(self) -> None:
        self._display.sync()

    # --- public -------------------------------------------------------------------

    def execute(self, action: Action) -> None:
        """Perform ``action``; returns once the X server has processed its events."""
        with self._lock:
            self._execute(action)

    def pointer_position(self) -> tuple[int, int]:
        with self._lock:
            reply = self._display.screen().root.query_pointer()
            return int(reply.root_x), int(reply.root_y)

    def move_to(self, x: int, y: int) -> None:
        with self._lock:
            self._motion(x, y)
            self._sync()

    def release_all(self) -> None:
        """Release every pressed key and button (after an interrupted drag or chord)."""
        with self._lock:
            for byte_index, bits in enumerate(self._display.query_keymap()):
                for bit in range(8):
                    if bits & (1 << bit):
                        self._fake(self._X.KeyRelease, byte_index * 8 + bit)
            mask = self._display.screen().root.query_pointer().mask
            for button, flag in ((1, self._X.Button1Mask), (2, self._X.Button2Mask),
                                 (3, self._X.Button3Mask)):
                if mask & flag:
                    self._fake(self._X.ButtonRelease, button)
            self._sync()

    def close(self) -> None:
        # Never hang shutdown on an action stuck in another thread (a long wait).
        locked = self._lock.acquire(timeout=2)
        try:
            self._display.close()
        except Exception:  # noqa: BLE001 - the X server may already be gone
            pass
        finally:
            if locked:
                self._lock.release()

    # --- actions --------------------------------------------------------------------

    def _execute(self, action: Action) -> None:
        if isinstance(action, Click):
            gap = self._last_click + _MIN_CLICK_GAP_S - time.monotonic()
            if gap > 0:
                time.sleep(gap)
            self._motion(action.x, action.y)
            for _ in range(action.count):
                self._button(_BUTTONS[action.button])
            self._sync()
            self._last_click = time.monotonic()
        elif isinstance(action, Move):
            self._motion(action.x, action.y)
            self._sync()
        elif isinstance(action, Drag):
            self._drag(action)
        elif isinstance(action, Scroll):
            self._motion(action.x, action.y)
            vertical = _WHEEL_DOWN if action.dy > 0 else _WHEEL_UP  # positive dy scrolls down
            horizontal = _WHEEL_RIGHT if action.dx > 0 else _WHEEL_LEFT
            for _ in range(abs(action.dy)):
                self._button(vertical)
            for _ in range(abs(action.dx)):
                self._button(horizontal)
            self._sync()
        elif isinstance(action, Type):
            self._type(action.text)
        elif isinstance(action, Key):
            self._chord(action.keys)
        elif isinstance(action, Wait):
            time.sleep(action.seconds)
        elif isinstance(action, (Done, Fail)):
            pass
        else:  # pragma: no cover - action_from_dict only yields the kinds above
            raise ActionError(f"the guest cannot execute {action!r}")

    def _drag(self, action: Drag) -> None:
        button = _BUTTONS[action.button]
        self._motion(action.x, action.y)
        self._fake(self._X.ButtonPress, button)
        self._sync()
        for step in range(1, _DRAG_STEPS + 1):
            time.sleep(_DRAG_STEP_PAUSE_S)
            x = round(action.x + (action.to_x - action.x) * step / _DRAG_STEPS)
            y = round(action.y + (action.to_y - action.y) * step / _DRAG_STEPS)
            self._motion(x, y)
            self._sync()
        self._fake(self._X.ButtonRelease, button)
        self._sync()

    def _chord(self, keys: Sequence[str]) -> None:
        """All keys down in order (adding shift for shifted symbols), then up in reverse."""
        keysyms = [self._key_keysym(name) for name in keys]
        end, missing, in_use = self._plan(keysyms, 0)
        if end < len(keysyms):
            raise ActionError("the sandbox's keymap has too few spare keycodes for this chord")
        self._bind(missing, keep=in_use)
        shift_code = self._shift_keycode()
        shift_in_chord = any(name in _SHIFT_NAMES for name in keys)
        pressed: list[int] = []
        for keysym in keysyms:
            code, needs_shift = self._lookup(keysym)
            if needs_shift and not shift_in_chord and shift_code not in pressed:
                self._fake(self._X.KeyPress, shift_code)
                pressed.append(shift_code)
            self._fake(self._X.KeyPress, code)
            pressed.append(code)
            self._used_at[code] = time.monotonic()
        for code in reversed(pressed):
            self._fake(self._X.KeyRelease, code)
        self._sync()

    def _type(self, text: str) -> None:
        """Tap each character's key; characters the keymap lacks are bound in batches first."""
        keysyms = [char_keysym(char) for char in text.replace("\r\n", "\n")]
        shift_code = self._shift_keycode()
        start = 0
        while start < len(keysyms):
            end, missing, in_use = self._plan(keysyms, start)
            if missing:
                self._sync()  # the keys typed so far go out under the current keymap
                self._bind(missing, keep=in_use)
            for keysym in keysyms[start:end]:
                code, needs_shift = self._lookup(keysym)
                self._tap(code, needs_shift, shift_code)
            start = end
        self._sync()
