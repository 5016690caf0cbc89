"""``deskdojo bench perception``: how fast each element source answers, and how many
elements it finds, on every practice app, mousepad and xterm in a docker sandbox.

tk and atspi are timed through ``/v1/elements?sources=<one>`` (the source's own time as
the guest reports it, and the round trip). OCR is timed in the guest: the whole screen
with an empty cache, and reads through the cache after one key is typed into the
focused window (the changed share of the screen is reported beside it).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

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


def _ocr_stats(box: Any, full_repeats: int, cached_repeats: int) -> dict[str, Any]:
    result = box.exec(["python3", "-m", "deskdojo.vm.guest.elements.ocr", str(full_repeats), str(cached_repeats)],
                      timeout=600)
    try:
        data = json.loads(result.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"ok": False, "error": (result.stderr or result.stdout).strip()[-300:]}
    return {"ok": True, **{key: round(value, 2) if isinstance(value, float) else value for key, value in data.items()}}


def run_perception_bench(*, apps: list[str], repeats: int = 20, full_repeats: int = 3,
                         cached_repeats: int = 10, log: Any = print) -> dict[str, Any]:
    from deskdojo.vm.bench import machine_info
    from deskdojo.vm.config import SandboxConfig
    from deskdojo.vm.docker import DockerProvider

    rows = []
    box = DockerProvider(SandboxConfig(screen=(1024, 768))).start()
    try:
        for app in apps:
            log(f"perception: {app}")
            _launch(box, app)
            row: dict[str, Any] = {"app": app}
            for source in ("tk", "atspi"):
                row[source] = _source_stats(box, source, repeats)
            row["atspi"]["cold_ms"] = _cold_atspi_ms(box) if row["atspi"].get("ok") else None
            row["ocr"] = _ocr_stats(box, full_repeats, cached_repeats)
            rows.append(row)
    finally:
        box.close()
    return {"bench": "perception", "screen": [1024, 768], "provider": "docker", "repeats": repeats,
            "targets": TARGETS, "machine": machine_info(), "rows": rows}


def _cell(stats: dict[str, Any], key: str = "ms") -> str:
    if not stats.get("ok"):
        return "-"
    value = stats.get(key)
    return "-" if value is None else f"{value:.1f}"


def format_table(result: dict[str, Any]) -> str:
    header = (f"{'app':<12} {'tk ms':>7} {'tk n':>5} {'atspi ms':>9} {'cold':>7} {'atspi n':>8} "
              f"{'ocr cache ms':>13} {'changed %':>10} {'ocr full ms':>12} {'ocr lines':>10}")
    lines = [header, "-" * len(header)]
    for row in result["rows"]:
        tk, atspi, ocr = row["tk"], row["atspi"], row["ocr"]
        lines.append(
            f"{row['app']:<12} {_cell(tk):>7} {tk.get('count', '-') if tk.get('ok') else '-':>5} "
            f"{_cell(atspi):>9} {_cell(atspi, 'cold_ms'):>7} {atspi.get('count', '-') if atspi.get('ok') else '-':>8} "
            f"{_cell(ocr, 'cached_ms'):>13} {_cell(ocr, 'changed_pct'):>10} {_cell(ocr, 'full_ms'):>12} "
            f"{ocr.get('full_lines', '-') if ocr.get('ok') else '-':>10}")
    lines.append(f"targets: tk and atspi < {TARGETS['tk_ms']:g} ms; OCR through the cache < "
                 f"{TARGETS['ocr_cached_ms']:g} ms where <= {TARGETS['ocr_changed_pct']:g}% changed. "
                 f"'-' = the source has nothing for that app (tk: not a Tk app; atspi: no toolkit bridge).")
    return "\n".join(lines)


def cmd_bench_perception(args: argparse.Namespace) -> int:
    from deskdojo.vm.guest.apps import APPS

    apps = args.apps.split(",") if args.apps else [*APPS, "mousepad", "xterm"]
    result = run_perception_bench(apps=apps, repeats=args.repeats, full_repeats=args.full_repeats,
                                  cached_repeats=args.cached_repeats,
                                  log=(lambda line: None) if args.json else print)
    if args.out:
        path = Path(args.out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2) if args.json else format_table(result))
    return 0


def add_bench_perception_parser(bench: Any) -> None:
    """Add ``perception`` to the ``bench`` group's subparsers."""
    p = bench.add_parser("perception", help="element sources (tk, atspi, ocr): median latency and count per app")
    p.add_argument("--apps", default="", help="comma-separated apps (default: every practice app, mousepad, xterm)")
    p.add_argument("--repeats", type=int, default=20, help="listings per source and app (median)")
    p.add_argument("--full-repeats", type=int, default=3, help="whole-screen OCR reads per app (median)")
    p.add_argument("--cached-repeats", type=int, default=10, help="OCR reads through the cache per app (median)")
    p.add_argument("--out", default=None, help=f"also write the JSON here (e.g. {DEFAULT_OUT})")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(fn=cmd_bench_perception)
