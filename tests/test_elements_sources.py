"""The guest's AT-SPI and OCR element sources without a sandbox: the OCR change cache
re-reads only what changed (synthetic frames, a recording fake recogniser), and an
AT-SPI walk whose app answers slowly stops at the deadline with what it has."""

from __future__ import annotations

import time

from deskdojo.vm.guest.elements.atspi import AtspiSource
from deskdojo.vm.guest.elements.ocr import OcrCache, OcrSource, Word, assemble_lines, changed_cells, crop_rgb

W, H = 320, 240


def blank() -> bytearray:
    return bytearray(b"\xff" * (W * H * 3))


def paint(frame: bytearray, box: tuple[int, int, int, int], colour: bytes = b"\x00\x00\x00") -> None:
    x, y, w, h = box
    for row in range(y, y + h):
        frame[(row * W + x) * 3:(row * W + x + w) * 3] = colour * w


class Recorder:
    """A recogniser that reports one word per painted block it is shown, and logs regions."""

    def __init__(self, blocks: dict[tuple[int, int, int, int], str]) -> None:
        self.blocks = blocks
        self.regions: list[tuple[int, int, int, int]] = []

    def __call__(self, rgb: bytes, width: int, height: int, box: tuple[int, int, int, int]) -> list[Word]:
        self.regions.append(box)
        x, y, w, h = box
        return [Word(text, b, 90.0) for b, text in self.blocks.items()
                if b[0] >= x and b[1] >= y and b[0] + b[2] <= x + w and b[1] + b[3] <= y + h]


def test_ocr_cache_rereads_only_the_changed_region() -> None:
    hello, world, new = (10, 10, 40, 12), (10, 200, 60, 12), (200, 100, 30, 12)
    recorder = Recorder({hello: "hello", world: "world"})
    cache = OcrCache(recorder)
    frame = blank()
    paint(frame, hello)
    paint(frame, world)
    words = cache.update(bytes(frame), W, H, deadline=time.monotonic() + 5)
    assert recorder.regions == [(0, 0, W, H)]  # nothing cached yet: the whole screen
    assert sorted(w.text for w in words) == ["hello", "world"]

    recorder.regions.clear()
    assert sorted(w.text for w in cache.update(bytes(frame), W, H, deadline=time.monotonic() + 5)) == ["hello", "world"]
    assert recorder.regions == []  # same pixels: nothing read

    recorder.blocks[new] = "new"
    paint(frame, new)
    words = cache.update(bytes(frame), W, H, deadline=time.monotonic() + 5)
    assert sorted(w.text for w in words) == ["hello", "new", "world"]
    assert len(recorder.regions) == 1
    x, y, w, h = recorder.regions[0]
    assert x <= new[0] and y <= new[1] and x + w >= new[0] + new[2] and y + h >= new[1] + new[3]
    assert w * h < 0.05 * W * H  # a small region, not the screen
    assert not any(x < b[0] + b[2] and b[0] < x + w and y < b[1] + b[3] and b[1] < y + h for b in (hello, world))


def test_ocr_cache_rereads_a_whole_word_when_one_letter_changes() -> None:
    word = (100, 50, 80, 12)
    recorder = Recorder({word: "cat"})
    cache = OcrCache(recorder)
    frame = blank()
    paint(frame, word)
    cache.update(bytes(frame), W, H, deadline=time.monotonic() + 5)
    recorder.blocks = {word: "cart"}
    paint(frame, (170, 52, 4, 4), b"\x80\x80\x80")  # one letter's pixels change
    words = cache.update(bytes(frame), W, H, deadline=time.monotonic() + 5)
    assert [w.text for w in words] == ["cart"]
    x, y, w, h = recorder.regions[-1]
    assert x <= word[0] and x + w >= word[0] + word[2]


def test_ocr_region_missed_by_the_deadline_is_read_next_time() -> None:
    block = (40, 40, 30, 12)
    recorder = Recorder({})
    cache = OcrCache(recorder)
    frame = blank()
    cache.update(bytes(frame), W, H, deadline=time.monotonic() + 5)
    recorder.blocks[block] = "late"
    paint(frame, block)
    assert cache.update(bytes(frame), W, H, deadline=time.monotonic() - 1) == []
    assert cache.pending
    assert [w.text for w in cache.update(bytes(frame), W, H, deadline=time.monotonic() + 5)] == ["late"]


def test_words_join_into_lines_in_reading_order() -> None:
    words = [Word("world", (60, 10, 40, 12), 90), Word("hello", (10, 11, 44, 11), 90),
             Word("far", (300, 10, 30, 12), 90), Word("below", (10, 40, 40, 12), 90)]
    assert [text for text, _ in assemble_lines(words)] == ["hello world", "far", "below"]


def test_ocr_source_lists_text_lines() -> None:
    frame = blank()
    paint(frame, (10, 10, 40, 12))
    source = OcrSource(recognize=Recorder({(10, 10, 40, 12): "hi"}))
    assert source.unavailable() is None
    listing = source.read(deadline=time.monotonic() + 5, grab=lambda: (bytes(frame), W, H))
    assert listing == [{"role": "text line", "name": "hi", "box": [10, 10, 40, 12], "states": [], "window": ""}]


def bgrx(rgb: bytes) -> bytes:
    """An RGB frame in the X server's BGRX order (the padding byte set, as X may leave it)."""
    out = bytearray(b"\xff" * (len(rgb) // 3 * 4))
    out[0::4], out[1::4], out[2::4] = rgb[2::3], rgb[1::3], rgb[0::3]
    return bytes(out)


def test_ocr_reads_bgrx_frames_as_it_reads_rgb_ones() -> None:
    # The server hands over BGRX as grabbed: the cache must find the same changes in it
    # and give tesseract the same RGB crop (a channel swap would change the grey image).
    old, new = blank(), blank()
    paint(old, (10, 10, 40, 12), b"\x10\x80\xf0")
    paint(new, (10, 10, 40, 12), b"\x10\x80\xf0")
    paint(new, (200, 100, 30, 12), b"\x20\x40\x60")
    paint(new, (319, 239, 1, 1))  # the last pixel: the last band, row and (narrow) cell
    assert changed_cells(bgrx(old), bgrx(new), W, H) == changed_cells(bytes(old), bytes(new), W, H) \
        == {(6, 6), (7, 6), (9, 14)}  # x 200-229 spans cells 6-7; y 100-111 is row 6
    assert changed_cells(bgrx(new), bgrx(new), W, H) == set()
    box = (5, 8, 60, 20)
    assert crop_rgb(bgrx(new), W, H, box) == crop_rgb(bytes(new), W, H, box)
    assert crop_rgb(bgrx(new), W, H, (10, 10, 1, 1)) == b"\x10\x80\xf0"
    recorder = Recorder({(10, 10, 40, 12): "hi", (200, 100, 30, 12): "new"})
    cache = OcrCache(recorder)
    cache.update(bgrx(old), W, H, deadline=time.monotonic() + 5)
    recorder.regions.clear()
    words = cache.update(bgrx(new), W, H, deadline=time.monotonic() + 5)
    assert sorted(w.text for w in words) == ["hi", "new"]
    assert all(x > 150 for x, _, _, _ in recorder.regions)  # "hi" was not read again


class SlowNode:
    """A fake accessible whose every property read takes ``delay`` seconds (a hung app)."""

    def __init__(self, key: str, role: str, children: list[SlowNode] | None = None, delay: float = 0.0) -> None:
        self.key, self._role, self._children, self.delay = key, role, children or [], delay

    def _slow(self, value):  # noqa: ANN001, ANN202
        time.sleep(self.delay)
        return value

    def role(self) -> str:
        return self._slow(self._role)

    def name(self) -> str:
        return self._slow(self.key)

    def states(self) -> set[str]:
        return self._slow({"showing", "visible", "sensitive"})

    def extents(self) -> tuple[int, int, int, int]:
        return self._slow((10, 10, 50, 20))

    def children(self, limit: int) -> list[SlowNode]:
        return self._slow(self._children[:limit])

    def text(self, limit: int) -> str:
        return ""


def test_atspi_walk_stops_at_the_deadline_with_what_it_has() -> None:
    buttons = [SlowNode(f"button {i}", "push button", delay=0.01) for i in range(100)]
    frame = SlowNode("window", "frame", buttons, delay=0.01)
    app = SlowNode("app", "application", [frame])
    source = AtspiSource(desktop=SlowNode("desktop", "desktop frame", [app]), screen=(0, 0, 1024, 768))
    assert source.unavailable() is None
    start = time.monotonic()
    first = source.read(deadline=start + 0.2)
    elapsed = time.monotonic() - start
    assert elapsed < 0.3, f"the walk ran {elapsed:.2f} s past a 0.2 s deadline"  # 100 buttons x 4 reads x 10 ms = 4 s
    assert 0 < len(first) < 101
    assert first[0]["role"] == "frame" and all(e["role"] == "button" for e in first[1:])
    # The next read goes on from what the first one cached.
    second = source.read(deadline=time.monotonic() + 0.2)
    assert len(second) > len(first)


def test_atspi_without_a_bus_says_why(monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.delenv("AT_SPI_BUS_ADDRESS", raising=False)
    why = AtspiSource().unavailable()
    assert why is not None and ("pyatspi" in why or "AT_SPI_BUS_ADDRESS" in why)
