"""``deskdojo bench perception``: how fast each element source answers, and how many
elements it finds, on every practice app, mousepad and xterm in a docker sandbox.

Every source is timed through ``/v1/elements?sources=<one>`` (the source's own time as
the guest reports it, which for OCR includes the server's screen grab, and the round
trip). OCR's reads through the cache are timed so, each after one key typed into the
focused window, with the changed share of the screen measured host-side from
screenshots taken before the key and after the screen settled. The whole-screen read
(an empty cache) is timed in a separate guest process with the server's grab and OCR
code: on a full terminal it takes longer than the endpoint's deadline.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

from deskdojo.commands import print_result

DEFAULT_OUT = "benchmarks/perception/bench_perception.json"
TARGETS = {"tk_ms": 15.0, "atspi_ms": 15.0, "ocr_cached_ms": 20.0, "ocr_changed_pct": 5.0}


def _launch(box: Any, app: str) -> None:
    from deskdojo.core.types import SetupStep, Task
    from deskdojo.vm.guest.apps import APPS, launch_step

    if app in APPS:
        step = launch_step(app, {"seed": 0})
    elif app == "xterm":  # a screenful of text, as a terminal user would have
        step = SetupStep("launch", {"argv": ["xterm", "-T", "xterm", "-geometry", "100x30+0+0", "-e", "bash", "-c",
                                             "ls -la /usr/lib/python3/dist-packages | head -24; exec bash"],
                                    "wait_window": "^xterm$"})
    else:
        step = SetupStep("launch", {"argv": [app], "wait_window": "Mousepad$" if app == "mousepad" else "."})
    box.reset(Task(id=f"bench-perception-{app}", instruction="-", family="bench", setup=(step,)))
    time.sleep(1.0)  # let the app finish drawing and register on the accessibility bus


def _source_stats(box: Any, source: str, repeats: int) -> dict[str, Any]:
    box.elements([source])  # the first read fills the source's cache
    guest_ms, round_trip_ms, counts, errors = [], [], [], []
    for _ in range(repeats):
        start = time.perf_counter()
        listing = box.elements([source])
        round_trip_ms.append((time.perf_counter() - start) * 1000)
        report = listing.sources.get(source)
        if report is None or not report.ok:
            errors.append(report.error if report else "no report")
            continue
        guest_ms.append(report.ms)
        counts.append(report.count)
    if not guest_ms:
        return {"ok": False, "error": errors[0] if errors else "no reads"}
    return {"ok": True, "ms": round(statistics.median(guest_ms), 2),
            "round_trip_ms": round(statistics.median(round_trip_ms), 2),
            "count": int(statistics.median(counts))}


def _cold_atspi_ms(box: Any) -> float | None:
    """One AT-SPI walk with an empty cache, in a separate guest process (as the first
    read after an app starts is)."""
    script = ("import time; from deskdojo.vm.guest.elements.atspi import AtspiSource; s = AtspiSource(); "
              "s.read(deadline=time.monotonic() + 30); t = time.perf_counter(); s.forget(); "
              "s.read(deadline=time.monotonic() + 30); print((time.perf_counter() - t) * 1000)")
    result = box.exec(["python3", "-c", script], timeout=60)
    try:
        return round(float(result.stdout.strip().splitlines()[-1]), 2)
    except (ValueError, IndexError):
        return None


_FULL_OCR = ("import json, os, statistics, sys, time\n"
             "from deskdojo.vm.guest.elements.ocr import OcrCache, Tesseract, assemble_lines\n"
             "from deskdojo.vm.guest.screen import ScreenGrabber\n"
             "recognize, screen, times = Tesseract(), ScreenGrabber(os.environ['DISPLAY'], 1024, 768), []\n"
             "for _ in range(int(sys.argv[1])):\n"
             "    start = time.perf_counter()\n"
             "    frame, width, height = screen.raw()\n"
             "    words = OcrCache(recognize).update(frame, width, height, deadline=time.monotonic() + 60)\n"
             "    lines = len(assemble_lines(words))\n"
             "    times.append((time.perf_counter() - start) * 1000)\n"
             "print(json.dumps({'full_ms': round(statistics.median(times), 2), 'full_lines': lines}))\n")


def _ocr_full_stats(box: Any, repeats: int) -> dict[str, Any]:
    """Whole-screen OCR (grab, empty cache, line assembly) in a separate guest process."""
    result = box.exec(["python3", "-c", _FULL_OCR, str(max(1, repeats))], timeout=300)
    try:
        return {"ok": True, **json.loads(result.stdout.strip().splitlines()[-1])}
    except (ValueError, IndexError):
        return {"ok": False, "error": (result.stderr or result.stdout).strip()[-300:]}


def _ocr_read(box: Any) -> tuple[float, int]:
    """One OCR listing: the source's own ms and its line count (a failed read raises)."""
    report = box.elements(["ocr"]).sources.get("ocr")
    if report is None or not report.ok:
        raise RuntimeError(report.error if report else "no ocr report")
    return report.ms, report.count


def _settled(box: Any, *, timeout: float = 1.0) -> Any:
    """A screenshot once two in a row 50 ms apart are the same (or the last one at ``timeout``)."""
    deadline = time.monotonic() + timeout
    shot = box.observe().screenshot
    while time.monotonic() < deadline:
        time.sleep(0.05)
        again = box.observe().screenshot
        if (again == shot).all():
            return again
        shot = again
    return shot


def _changed_pct(before: Any, after: Any) -> float:
    """Share of the screen (%) inside the bounding box of every pixel that differs at all."""
    from deskdojo.perception.change import detect_change

    # threshold 0 and no caret exemption: the strictest reading of "what changed"
    change = detect_change(before, after, threshold=0, caret_width=0)
    if change.bbox is None:
        return 0.0
    x0, y0, x1, y1 = change.bbox
    return 100.0 * (x1 - x0) * (y1 - y0) / (before.shape[0] * before.shape[1])


def _ocr_cached_stats(box: Any, repeats: int) -> dict[str, Any]:
    from deskdojo.core.actions import Type

    deadline = time.monotonic() + 30
    while True:  # fill the cache: a whole terminal takes longer than one listing's deadline
        try:
            _ocr_read(box)
            break
        except RuntimeError:  # timeout, then busy until that read is done
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    cached, changed, lines = [], [], 0
    for _ in range(repeats):
        before = _settled(box)
        box.act(Type("x"))  # into the focused window, as a step of an episode would
        time.sleep(0.1)  # let the app draw
        after = _settled(box)
        ms, lines = _ocr_read(box)
        cached.append(ms)
        changed.append(_changed_pct(before, after))
    return {"cached_ms": round(statistics.median(cached), 2), "cached_max_ms": round(max(cached), 2),
            "changed_pct": round(statistics.median(changed), 2), "changed_max_pct": round(max(changed), 2),
            "cached_lines": lines}


def run_perception_bench(*, apps: list[str], repeats: int = 20, full_repeats: int = 3,
                         cached_repeats: int = 10) -> dict[str, Any]:
    from deskdojo.core.progress import ProgressLine, activity
    from deskdojo.vm.bench import machine_info
    from deskdojo.vm.config import SandboxConfig
    from deskdojo.vm.docker import DockerProvider

    rows = []
    with activity("bench perception: starting a docker sandbox"):
        box = DockerProvider(SandboxConfig(screen=(1024, 768))).start()
    line = ProgressLine("bench perception", len(apps), unit="apps")
    try:
        for app in apps:
            line.update(len(rows), info=app)
            _launch(box, app)
            row: dict[str, Any] = {"app": app}
            for source in ("tk", "atspi"):
                row[source] = _source_stats(box, source, repeats)
            row["atspi"]["cold_ms"] = _cold_atspi_ms(box) if row["atspi"].get("ok") else None
            row["ocr"] = _ocr_full_stats(box, full_repeats)
            if row["ocr"]["ok"]:
                try:
                    row["ocr"].update(_ocr_cached_stats(box, cached_repeats))
                except RuntimeError as error:
                    row["ocr"] = {"ok": False, "error": str(error)[-300:]}
            rows.append(row)
        line.update(len(rows))
    finally:
        line.close()
        box.close()
    return {"bench": "perception", "screen": [1024, 768], "provider": "docker", "repeats": repeats,
            "targets": TARGETS, "machine": machine_info(), "rows": rows}


def _cell(stats: dict[str, Any], key: str = "ms", digits: int = 1) -> str:
    if not stats.get("ok"):
        return "-"
    value = stats.get(key)
    return "-" if value is None else f"{value:.{digits}f}"


def format_table(result: dict[str, Any]) -> str:
    header = (f"{'app':<12} {'tk ms':>7} {'tk n':>5} {'atspi ms':>9} {'cold':>7} {'atspi n':>8} "
              f"{'ocr cache ms':>13} {'changed %':>10} {'ocr full ms':>12} {'ocr lines':>10}")
    lines = [header, "-" * len(header)]
    for row in result["rows"]:
        tk, atspi, ocr = row["tk"], row["atspi"], row["ocr"]
        lines.append(
            f"{row['app']:<12} {_cell(tk):>7} {tk.get('count', '-') if tk.get('ok') else '-':>5} "
            f"{_cell(atspi):>9} {_cell(atspi, 'cold_ms'):>7} {atspi.get('count', '-') if atspi.get('ok') else '-':>8} "
            f"{_cell(ocr, 'cached_ms'):>13} {_cell(ocr, 'changed_pct', 2):>10} {_cell(ocr, 'full_ms'):>12} "
            f"{ocr.get('full_lines', '-') if ocr.get('ok') else '-':>10}")
    lines.append(f"targets: tk and atspi < {TARGETS['tk_ms']:g} ms; OCR through the cache < "
                 f"{TARGETS['ocr_cached_ms']:g} ms where <= {TARGETS['ocr_changed_pct']:g}% changed. "
                 f"'-' = the source has nothing for that app (tk: not a Tk app; atspi: no toolkit bridge).")
    return "\n".join(lines)


def cmd_bench_perception(args: argparse.Namespace) -> int:
    from deskdojo.vm.guest.apps import APPS

    apps = args.apps.split(",") if args.apps else [*APPS, "mousepad", "xterm"]
    result = run_perception_bench(apps=apps, repeats=args.repeats, full_repeats=args.full_repeats,
                                  cached_repeats=args.cached_repeats)
    print_result(result, out=args.out, as_json=args.json, table=format_table(result))
    return 0


def add_bench_perception_parser(bench: Any) -> None:
    """Add ``perception`` to the ``bench`` group's subparsers."""
    p = bench.add_parser("perception", help="element sources (tk, atspi, ocr): median latency and count per app")
    p.add_argument("--apps", default="", help="comma-separated apps (default: every practice app, mousepad, xterm)")
    p.add_argument("--repeats", type=int, default=20, help="listings per source and app (median)")
    p.add_argument("--full-repeats", type=int, default=3,
                   help="whole-screen OCR reads per app (median; in a separate guest process)")
    p.add_argument("--cached-repeats", type=int, default=10,
                   help="OCR reads through the cache per app, each after one typed key (median)")
    p.add_argument("--out", default=None, help=f"also write the JSON here (e.g. {DEFAULT_OUT})")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(fn=cmd_bench_perception)
