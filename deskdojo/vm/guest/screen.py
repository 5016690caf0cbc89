"""The screen and what is kept of it: fast grabs and PNGs of the whole root window, and
the action recording (each action with the screen just before it) for demonstrations.
Standard library plus what the sandbox image holds (mss, Pillow where present).
"""

from __future__ import annotations

import struct
import threading
import time
import zlib
from typing import Any

MAX_RECORDED_ACTIONS = 500  # ~50 kB of PNG each: a bound on the server's memory


# --- screenshots ---------------------------------------------------------------------


class PngEncoder:
    """RGB PNGs with no row filters, deflated at level 1 with run-length matching.

    Fast (UI screens are long runs of one colour) and small; reuses its scanline buffer,
    so one encoder serves one thread at a time.
    """

    def __init__(self) -> None:
        self._scanlines = bytearray()

    def encode(self, rgb: bytes | memoryview, width: int, height: int) -> bytes:
        line = width * 3
        if len(self._scanlines) != (line + 1) * height:
            self._scanlines = bytearray((line + 1) * height)  # each row starts with filter byte 0
        scanlines, pixels = self._scanlines, memoryview(rgb)
        for y in range(height):
            start = y * (line + 1) + 1
            scanlines[start:start + line] = pixels[y * line:(y + 1) * line]
        compressor = zlib.compressobj(1, zlib.DEFLATED, 15, 9, zlib.Z_RLE)
        data = compressor.compress(scanlines) + compressor.flush()
        header = struct.pack(">2I5B", width, height, 8, 2, 0, 0, 0)
        return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")


def _chunk(tag: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + tag + payload + struct.pack(">I", zlib.crc32(tag + payload))


def bgrx_to_rgb(bgrx: bytearray, width: int, height: int) -> bytes:
    """Drop the padding byte and swap to RGB (Pillow's C unpacker; slicing as a fallback)."""
    try:
        from PIL import Image
    except ImportError:
        rgb = bytearray(width * height * 3)
        rgb[0::3], rgb[1::3], rgb[2::3] = bgrx[2::4], bgrx[1::4], bgrx[0::4]
        return bytes(rgb)
    try:
        return Image.frombuffer("RGB", (width, height), bgrx, "raw", "BGRX", 0, 1).tobytes()
    except TypeError:  # Pillow < 10 (Debian bookworm's 9.4) decodes only read-only bytes
        return Image.frombuffer("RGB", (width, height), bytes(bgrx), "raw", "BGRX", 0, 1).tobytes()


class ScreenGrabber:
    """Grabs the whole root window with mss (XShmGetImage): BGRX bytes, no per-pixel Python."""

    def __init__(self, display_name: str, width: int, height: int) -> None:
        import mss

        self._mss = mss.MSS(display=display_name)
        self._region = {"left": 0, "top": 0, "width": width, "height": height}
        self._lock = threading.Lock()
        self._png = PngEncoder()

    def raw(self) -> tuple[bytearray, int, int]:
        with self._lock:
            shot = self._mss.grab(self._region)
        return shot.raw, shot.width, shot.height

    def png(self) -> bytes:
        with self._lock:
            shot = self._mss.grab(self._region)
            rgb = bgrx_to_rgb(shot.raw, shot.width, shot.height)
            return self._png.encode(rgb, shot.width, shot.height)

    def settled_png(self, *, same_grabs: int = 3, interval_s: float = 0.03, timeout_s: float = 0.5) -> bytes:
        """A PNG of the screen once ``same_grabs`` grabs in a row are byte-identical, or
        of the last grab after ``timeout_s`` (a blinking caret never settles).

        The recording's frame before an action: an app can publish its state before X
        has drawn it (seen in CI: a status label a click behind), and a replay compares
        against the settled screen it waits for.
        """
        deadline = time.monotonic() + timeout_s
        with self._lock:
            shot = self._mss.grab(self._region)
            previous, same = bytes(shot.raw), 1
            while same < same_grabs and time.monotonic() < deadline:
                time.sleep(interval_s)
                shot = self._mss.grab(self._region)
                current = bytes(shot.raw)
                same = same + 1 if current == previous else 1
                previous = current
            rgb = bgrx_to_rgb(shot.raw, shot.width, shot.height)
            return self._png.encode(rgb, shot.width, shot.height)

    def close(self) -> None:
        with self._lock:
            self._mss.close()


# --- recording (demonstrations) -------------------------------------------------------


class ActionRecording:
    """The actions performed while recording is on, each with a PNG of the screen just
    before it: a demonstration, whoever sent the actions (panel, CLI, a recorder).

    Kept in memory and bounded: past ``MAX_RECORDED_ACTIONS`` actions still run but
    are only counted as ``dropped``. Turning recording on starts a new recording; the
    last one stays readable after it is turned off.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()  # one grab-act-append at a time, so frames match actions
        self.on = False
        self.started: float | None = None
        self.entries: list[tuple[float, dict[str, Any], bytes]] = []
        self.dropped = 0

    def switch(self, on: bool) -> None:
        with self.lock:
            if on:
                self.started, self.entries, self.dropped = time.time(), [], 0
            self.on = on

    def add(self, action: dict[str, Any], frame_before: bytes, at: float) -> None:
        if len(self.entries) >= MAX_RECORDED_ACTIONS:
            self.dropped += 1
        else:
            self.entries.append((at, action, frame_before))

    def summary(self) -> dict[str, Any]:
        return {"recording": self.on, "started": self.started, "dropped": self.dropped,
                "limit": MAX_RECORDED_ACTIONS,
                "actions": [{"index": i, "time": at, "action": action}
                            for i, (at, action, _frame) in enumerate(self.entries)]}

    def frame(self, index: int) -> bytes:
        if not 0 <= index < len(self.entries):
            raise LookupError(f"the recording has {len(self.entries)} frames; no frame {index}")
        return self.entries[index][2]
