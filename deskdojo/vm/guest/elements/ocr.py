"""OCR element source: text lines read off the screen pixels, for what no toolkit
describes (xterm, canvas text).

Tesseract is slow (about 1 ms per character on this kind of machine), so the source
keeps the words it read and, on the next read, compares the new frame with the last
one: only the regions whose pixels changed (grown to cover the words they touch) are
read again. Lines are assembled from the cached words when a region was read.
Frames are compared in the grab's own pixel format (the server hands over the X
server's BGRX bytes): only the crops given to tesseract are converted to RGB.
Runs in the guest: standard library plus Debian's ``python3-tesserocr``, imported lazily.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

Box = tuple[int, int, int, int]  # x, y, width, height
Grab = Callable[[], tuple[bytes, int, int]]
"""(pixels, width, height): RGB (3 bytes a pixel) or BGRX (4, the X server's order, X
ignored), a new buffer on every call (the cache keeps the last one without copying)."""

CELL_W, CELL_H = 32, 16  # change-detection grid: a changed pixel dirties its whole cell
MARGIN = 4  # pixels around a changed region, so glyphs cut by a cell edge are read whole
FULL_READ_FRACTION = 0.4  # past this much changed area, read the whole screen in one go
MIN_CONFIDENCE = 40.0  # tesseract's word confidence (0-100); below it is mostly icon noise
LANGUAGE = "eng"


@dataclass(frozen=True, slots=True)
class Word:
    text: str
    box: Box
    confidence: float


Recognize = Callable[[bytes, int, int, Box], list[Word]]


def _intersects(a: Box, b: Box) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def _union(a: Box, b: Box) -> Box:
    x0, y0 = min(a[0], b[0]), min(a[1], b[1])
    x1, y1 = max(a[0] + a[2], b[0] + b[2]), max(a[1] + a[3], b[1] + b[3])
    return x0, y0, x1 - x0, y1 - y0


def _grow(box: Box, margin: int, width: int, height: int) -> Box:
    x0, y0 = max(0, box[0] - margin), max(0, box[1] - margin)
    x1, y1 = min(width, box[0] + box[2] + margin), min(height, box[1] + box[3] + margin)
    return x0, y0, max(0, x1 - x0), max(0, y1 - y0)


def pixel_bytes(frame: bytes, width: int, height: int) -> int:
    """Bytes a pixel in ``frame``: 3 (RGB) or 4 (BGRX); anything else is a ValueError."""
    if width > 0 and height > 0 and len(frame) in (width * height * 3, width * height * 4):
        return len(frame) // (width * height)
    raise ValueError(f"a {width}x{height} frame needs {width * height * 3} (RGB) or {width * height * 4} (BGRX) "
                     f"bytes, got {len(frame)}")


def _same(previous: bytes, current: memoryview, start: int, end: int) -> bool:
    # memcmp without copying either side (slicing bytes copies; comparing memoryviews
    # goes item by item, ~15x slower)
    return previous.startswith(current[start:end], start)


def changed_cells(previous: bytes, current: bytes, width: int, height: int) -> set[tuple[int, int]]:
    """(column, row) of every CELL_W x CELL_H cell whose pixels differ between two frames
    (same size and pixel format).

    Bands of CELL_H rows are compared first, then the rows of a band that differs, then
    the cells of a row that differs: a small change costs ~50 memcmps, not 768 row copies.
    """
    cells: set[tuple[int, int]] = set()
    if previous == current:
        return cells
    stride = width * pixel_bytes(current, width, height)
    cell_bytes = stride // width * CELL_W
    view = memoryview(current)
    for row, band in enumerate(range(0, height, CELL_H)):
        band_end = min(height, band + CELL_H)
        if _same(previous, view, band * stride, band_end * stride):
            continue
        for y in range(band, band_end):
            start = y * stride
            if _same(previous, view, start, start + stride):
                continue
            for column, offset in enumerate(range(start, start + stride, cell_bytes)):
                if (column, row) not in cells and not _same(previous, view, offset,
                                                            min(start + stride, offset + cell_bytes)):
                    cells.add((column, row))
    return cells


def cell_regions(cells: set[tuple[int, int]], width: int, height: int) -> list[Box]:
    """Bounding boxes (pixels) of the 8-connected groups of changed cells."""
    regions: list[Box] = []
    pending = set(cells)
    while pending:
        stack = [pending.pop()]
        c0 = c1 = stack[0][0]
        r0 = r1 = stack[0][1]
        while stack:
            column, row = stack.pop()
            c0, c1, r0, r1 = min(c0, column), max(c1, column), min(r0, row), max(r1, row)
            for dc in (-1, 0, 1):
                for dr in (-1, 0, 1):
                    neighbour = (column + dc, row + dr)
                    if neighbour in pending:
                        pending.remove(neighbour)
                        stack.append(neighbour)
        x0, y0 = c0 * CELL_W, r0 * CELL_H
        regions.append((x0, y0, min(width, (c1 + 1) * CELL_W) - x0, min(height, (r1 + 1) * CELL_H) - y0))
    return regions


def _tighten(previous: bytes, current: bytes, width: int, height: int, box: Box) -> Box:
    """``box`` cut down to the rows that differ (a changed cell often spans two text lines)."""
    x, y, w, h = box
    bpp = pixel_bytes(current, width, height)
    stride, view = width * bpp, memoryview(current)
    rows = [dy for dy in range(h)
            if not _same(previous, view, (y + dy) * stride + x * bpp, (y + dy) * stride + (x + w) * bpp)]
    if not rows:
        return x, y, w, 0
    return x, y + rows[0], w, rows[-1] - rows[0] + 1


def _uniform(frame: bytes, width: int, height: int, box: Box) -> bool:
    """True if every pixel in ``box`` has one colour (nothing to read there)."""
    x, y, w, h = box
    if w <= 0 or h <= 0:
        return True
    bpp = pixel_bytes(frame, width, height)
    stride = width * bpp
    plain = bytes(frame[y * stride + x * bpp:y * stride + (x + 1) * bpp]) * w
    return all(frame[(y + dy) * stride + x * bpp:(y + dy) * stride + (x + w) * bpp] == plain for dy in range(h))


def crop_rgb(frame: bytes, width: int, height: int, box: Box) -> bytes:
    """The pixels of ``box`` as packed RGB rows (tesseract's input), from an RGB or BGRX frame."""
    bx, by, bw, bh = box
    bpp = pixel_bytes(frame, width, height)
    stride = width * bpp
    crop = b"".join(frame[(by + dy) * stride + bx * bpp:(by + dy) * stride + (bx + bw) * bpp] for dy in range(bh))
    if bpp == 3:
        return crop
    rgb = bytearray(bw * bh * 3)
    rgb[0::3], rgb[1::3], rgb[2::3] = crop[2::4], crop[1::4], crop[0::4]
    return bytes(rgb)


def assemble_lines(words: Sequence[Word]) -> list[tuple[str, Box]]:
    """Group words into text lines, in reading order: a word joins the line on its left
    when their heights overlap by half the smaller one and the gap is under one line
    height (a single space joins words; a column gap or a separate label does not)."""
    bucket_h = 8
    buckets: dict[int, list[int]] = {}  # y bucket -> indexes into lines
    lines: list[tuple[list[Word], Box]] = []
    for word in sorted(words, key=lambda w: (w.box[0], w.box[1])):
        x, y, w, h = word.box
        best = None
        candidates = {i for b in range(y // bucket_h, (y + h) // bucket_h + 1) for i in buckets.get(b, ())}
        for index in sorted(candidates):
            members, box = lines[index]
            overlap = min(y + h, box[1] + box[3]) - max(y, box[1])
            gap = x - (box[0] + box[2])
            if overlap >= min(h, box[3]) / 2 and -h <= gap <= 1.5 * max(h, box[3]):
                best = index
                break
        if best is None:
            lines.append(([word], word.box))
            best = len(lines) - 1
        else:
            members, box = lines[best]
            members.append(word)
            lines[best] = (members, _union(box, word.box))
        box = lines[best][1]
        for b in range(box[1] // bucket_h, (box[1] + box[3]) // bucket_h + 1):
            if best not in buckets.setdefault(b, []):
                buckets[b].append(best)
    ordered = sorted(lines, key=lambda line: (line[1][1], line[1][0]))
    return [(" ".join(m.text for m in members), box) for members, box in ordered]


class OcrCache:
    """The words of the last frame read, and which parts of a new frame to read again.

    ``update`` re-reads only the regions that changed since the frame it last saw;
    a region not read before the deadline stays pending and is read on the next call.
    """

    def __init__(self, recognize: Recognize) -> None:
        self.recognize = recognize
        self.frame: bytes | None = None
        self.size = (0, 0)
        self.words: list[Word] = []
        self.pending: list[Box] = []
        self.last_regions: list[Box] = []  # what the last update read (for tests and the bench)

    def forget(self) -> None:
        self.frame, self.words, self.pending = None, [], []

    def regions_to_read(self, rgb: bytes, width: int, height: int) -> list[Box]:
        if self.frame is None or self.size != (width, height) or len(self.frame) != len(rgb):
            return [(0, 0, width, height)]
        regions = cell_regions(changed_cells(self.frame, rgb, width, height), width, height)
        if sum(w * h for _, _, w, h in regions) > FULL_READ_FRACTION * width * height:
            return [(0, 0, width, height)]
        regions = [_tighten(self.frame, rgb, width, height, r) for r in regions] + self.pending
        grown = [_grow(r, MARGIN, width, height) for r in regions if r[2] and r[3]]
        # Grow each region over the cached words it touches (a changed letter re-reads its
        # whole word) and merge regions that overlap, until nothing changes.
        changed = True
        while changed:
            changed = False
            for i, region in enumerate(grown):
                for word in self.words:
                    if _intersects(region, word.box) and _union(region, word.box) != region:
                        region = _union(region, word.box)  # no margin here: it would reach the next line
                        changed = True
                grown[i] = region
            merged: list[Box] = []
            for region in grown:
                for j, other in enumerate(merged):
                    if _intersects(region, other):
                        merged[j] = _union(region, other)
                        changed = True
                        break
                else:
                    merged.append(region)
            grown = merged
        return sorted(grown, key=lambda r: (r[1], r[0]))

    def update(self, rgb: bytes, width: int, height: int, *, deadline: float) -> list[Word]:
        regions = self.regions_to_read(rgb, width, height)
        self.last_regions = []
        self.pending = []
        words = [w for w in self.words if not any(_intersects(w.box, r) for r in regions)]
        for region in regions:
            if time.monotonic() >= deadline:
                self.pending.append(region)
                continue
            self.last_regions.append(region)
            if not _uniform(rgb, width, height, region):
                words.extend(self.recognize(rgb, width, height, region))
        if self.pending:  # keep the old words where the new frame was not read yet
            words.extend(w for w in self.words if any(_intersects(w.box, r) for r in self.pending)
                         and w not in words)
        self.frame, self.size, self.words = rgb, (width, height), words  # grab's buffer is new each call
        return words


class Tesseract:
    """One long-lived tesseract engine (loading it costs ~0.1 s); not thread-safe, so
    calls are serialised."""

    def __init__(self) -> None:
        tesserocr = _import_tesserocr()
        self._tesserocr = tesserocr
        self._api = tesserocr.PyTessBaseAPI(lang=LANGUAGE, psm=tesserocr.PSM.SINGLE_BLOCK,
                                            oem=tesserocr.OEM.LSTM_ONLY)
        self._lock = threading.Lock()

    def __call__(self, rgb: bytes, width: int, height: int, box: Box) -> list[Word]:
        tesserocr = self._tesserocr
        level = tesserocr.RIL.WORD
        words: list[Word] = []
        # Hand tesseract only the crop: SetImageBytes copies (and later thresholds) the
        # whole image it is given, which cost more than reading a few words.
        bx, by, bw, bh = box
        crop = crop_rgb(rgb, width, height, box)
        with self._lock:
            self._api.SetImageBytes(crop, bw, bh, 3, bw * 3)
            self._api.Recognize()
            iterator = self._api.GetIterator()
            if iterator is None:
                return words
            for result in tesserocr.iterate_level(iterator, level):
                try:
                    text = (result.GetUTF8Text(level) or "").strip()
                    bounds = result.BoundingBox(level)
                    confidence = float(result.Confidence(level))
                except RuntimeError:  # "No text returned" for an empty word
                    continue
                if not text or bounds is None or confidence < MIN_CONFIDENCE:
                    continue
                if not any(ch.isalnum() for ch in text):
                    continue
                x0, y0, x1, y1 = bounds
                words.append(Word(text, (bx + x0, by + y0, x1 - x0, y1 - y0), confidence))
        return words


def _import_tesserocr() -> Any:
    # OpenMP's worker threads spin for each recognised line; on two busy cores that made
    # tesseract 4-13x slower than one thread (measured here). libgomp reads the limit
    # when the library loads, so it is set before the first import.
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")
    import tesserocr

    return tesserocr


def tesseract_unavailable() -> str | None:
    """None if tesserocr and its English data load, else why not (and what to install)."""
    try:
        tesserocr = _import_tesserocr()
    except ImportError as error:
        return (f"tesserocr is not importable ({error}); install Debian's python3-tesserocr "
                f"and tesseract-ocr-eng in the sandbox image")
    try:
        _path, languages = tesserocr.get_languages()
    except Exception as error:  # noqa: BLE001 - a broken install says so
        return f"tesserocr cannot list its languages: {error}"
    if LANGUAGE not in languages:
        return f"tesseract has no {LANGUAGE!r} data (found {languages}); install tesseract-ocr-eng"
    return None


class OcrSource:
    """Text lines (role "text line") read by tesseract, through the change cache."""

    name = "ocr"

    def __init__(self, *, recognize: Recognize | None = None) -> None:
        self._recognize = recognize
        self._cache: OcrCache | None = None
        self._lock = threading.Lock()
        self._why_not: str | None = None
        self._checked = recognize is not None
        self._lines: list[tuple[str, Box]] | None = None  # the lines of the cache's words

    def unavailable(self) -> str | None:
        if not self._checked:
            self._why_not = tesseract_unavailable()
            self._checked = True
        return self._why_not

    def forget(self) -> None:
        """Drop the cache (the next read reads the whole screen)."""
        with self._lock:
            if self._cache is not None:
                self._cache.forget()
            self._lines = None

    def read(self, *, deadline: float, grab: Grab) -> list[dict]:
        why_not = self.unavailable()
        if why_not:
            raise RuntimeError(why_not)
        with self._lock:
            if self._cache is None:
                self._cache = OcrCache(self._recognize or Tesseract())
            rgb, width, height = grab()
            words = self._cache.update(rgb, width, height, deadline=deadline)
            if self._lines is None or self._cache.last_regions or self._cache.pending:
                self._lines = assemble_lines(words)
            lines = self._lines
        return [{"role": "text line", "name": text, "box": list(box), "states": [], "window": ""}
                for text, box in lines]

    @property
    def last_regions(self) -> list[Box]:
        return list(self._cache.last_regions) if self._cache else []
