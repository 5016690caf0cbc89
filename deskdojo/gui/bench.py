"""``deskdojo bench panel``: the live grid on N real sandboxes, measured from the UI thread.

A 1 ms precise QTimer runs on the UI thread; each time it fires late, the lateness is a
stall the user would feel (painting, signal delivery, anything the view does there).
Frames per tile are counted as they are painted. Medians are what to quote.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from typing import Any

PROBE_MS = 1
WARMUP_S = 1.5


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))]


def run_panel_bench(*, sandboxes: int = 8, seconds: float = 10.0, provider: str = "xvfb",
                    fps: int = 10) -> dict[str, Any]:
    if not (os.environ.get("DISPLAY") or os.environ.get("QT_QPA_PLATFORM")):
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    from PyQt6.QtCore import QElapsedTimer, QEventLoop, Qt, QTimer
    from PyQt6.QtWidgets import QApplication

    from deskdojo.core.progress import ProgressLine, activity
    from deskdojo.gui.live import LiveSource, LiveView
    from deskdojo.vm.config import SandboxConfig
    from deskdojo.vm.pool import SandboxPool

    app = QApplication.instance() or QApplication([sys.argv[0]])
    started = time.monotonic()
    with activity(f"bench panel: starting {sandboxes} {provider} sandboxes"):
        pool = SandboxPool(SandboxConfig(provider=provider), sandboxes).start()
    start_s = time.monotonic() - started
    view = LiveView(fps=fps)
    # the UI thread is what is measured: the line is drawn by its heartbeat thread alone
    measuring = ProgressLine(f"bench panel: warming up {WARMUP_S:g} s, then measuring {seconds:g} s", None)
    try:
        view.set_run_sources([LiveSource(name=sb.name, socket=sb.client.socket_path, instruction="bench")
                              for sb in pool])
        view.resize(1600, 1000)
        view.show()

        def run_loop(duration: float) -> None:
            loop = QEventLoop()
            QTimer.singleShot(int(duration * 1000), loop.quit)
            loop.exec()

        run_loop(WARMUP_S)
        view.frames_received.clear()
        gaps: list[float] = []
        clock = QElapsedTimer()
        probe = QTimer()
        probe.setTimerType(Qt.TimerType.PreciseTimer)
        probe.setInterval(PROBE_MS)
        last = [0]

        def tick() -> None:
            now = clock.nsecsElapsed()
            gaps.append((now - last[0]) / 1e6)
            last[0] = now

        probe.timeout.connect(tick)
        clock.start()
        probe.start()
        run_loop(seconds)
        probe.stop()
        measured = clock.nsecsElapsed() / 1e9
    finally:
        measuring.close()
        view.shutdown()
        view.close()
        pool.close()
    stalls = [max(0.0, gap - PROBE_MS) for gap in gaps[1:]]
    per_tile = {name: view.frames_received.get(name, 0) / measured for name in view.tiles}
    rates = list(per_tile.values()) or [0.0]
    return {
        "bench": "panel", "provider": provider, "sandboxes": sandboxes, "seconds": round(measured, 2),
        "fps_asked": fps, "sandbox_start_s": round(start_s, 2), "probe_ticks": len(gaps),
        "stall_median_ms": round(statistics.median(stalls), 3) if stalls else None,
        "stall_p99_ms": round(_percentile(stalls, 0.99), 3),
        "stall_max_ms": round(max(stalls), 3) if stalls else None,
        "fps_per_tile_median": round(statistics.median(rates), 2),
        "fps_per_tile_min": round(min(rates), 2),
        "fps_per_tile": {name: round(rate, 2) for name, rate in sorted(per_tile.items())},
        "platform": app.platformName(),
    }


def print_table(result: dict[str, Any]) -> None:
    rows = [
        ("sandboxes", f"{result['sandboxes']} ({result['provider']}, started in {result['sandbox_start_s']} s)"),
        ("measured", f"{result['seconds']} s on the {result['platform']} platform, {result['probe_ticks']} probe ticks"),
        ("UI stall median", f"{result['stall_median_ms']} ms"),
        ("UI stall p99", f"{result['stall_p99_ms']} ms"),
        ("UI stall max", f"{result['stall_max_ms']} ms"),
        ("fps per tile", f"median {result['fps_per_tile_median']}, min {result['fps_per_tile_min']} "
                         f"(asked {result['fps_asked']})"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
