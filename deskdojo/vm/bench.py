"""``deskdojo bench env``: sandbox latency and throughput, and the in-process floor.

Every figure is a median over repeats. The floor is what one process can do on a bare
Xvfb display with no server in between: an mss grab plus an XTest click.
"""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import subprocess
import threading
import time
from typing import Any, Callable, Sequence

from deskdojo.core.actions import Click, Move
from deskdojo.core.progress import ProgressLine
from deskdojo.vm.client import bgrx_to_rgb
from deskdojo.vm.config import SandboxConfig, parse_screen
from deskdojo.vm.guest.executor import _MIN_CLICK_GAP_S  # the figure this bench must space clicks by


def _median_ms(fn: Callable[[], Any], n: int, warmup: int = 3, *, pause_s: float = 0.0) -> float:
    """Median milliseconds of ``fn``; ``pause_s`` is slept (untimed) before each call."""
    for _ in range(warmup):
        time.sleep(pause_s)
        fn()
    samples = []
    for _ in range(n):
        time.sleep(pause_s)
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples)


def machine_info() -> dict[str, Any]:
    model = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu_model": model, "python": platform.python_version()}


# --- the floor: in-process, no server ---------------------------------------------


def floor_step_ms(screen: tuple[int, int], n: int = 200) -> dict[str, float]:
    """mss grab and an XTest click on a private bare Xvfb display, in this process."""
    import mss
    from Xlib import X, display as xdisplay
    from Xlib.ext import xtest

    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(write_fd), "-screen", "0",
                             f"{screen[0]}x{screen[1]}x24", "-nolisten", "tcp"],
                            pass_fds=(write_fd,), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    os.close(write_fd)
    try:
        with os.fdopen(read_fd) as pipe:  # the whole line: Xvfb dies if the pipe closes early
            number = pipe.readline().strip()
        name = f":{number}"
        deadline = time.monotonic() + 10
        while True:  # the display number comes as Xvfb starts listening; allow a moment
            try:
                disp = xdisplay.Display(name)
                break
            except Exception:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.05)
        with mss.MSS(display=name) as grabber:
            monitor = grabber.monitors[1]

            def grab() -> None:
                shot = grabber.grab(monitor)
                bgrx_to_rgb(shot.raw, shot.width, shot.height)  # what sandboxes hand the policy

            def click() -> None:
                xtest.fake_input(disp, X.MotionNotify, x=10, y=10)
                xtest.fake_input(disp, X.ButtonPress, 1)
                xtest.fake_input(disp, X.ButtonRelease, 1)
                disp.sync()

            grab_ms = _median_ms(grab, n)
            click_ms = _median_ms(click, n)
            step_ms = _median_ms(lambda: (grab(), click()), n)
        disp.close()
        return {"floor_grab_ms": grab_ms, "floor_click_ms": click_ms, "floor_step_ms": step_ms}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- one provider -------------------------------------------------------------------


def _throughput(provider_name: str, screen: tuple[int, int], count: int,
                seconds: float) -> float:
    """Steps per second (raw screenshot + one action) with ``count`` sandboxes at once."""
    from deskdojo.vm.pool import SandboxPool

    config = SandboxConfig(provider=provider_name, screen=screen)
    with SandboxPool(config, count) as pool:
        steps = [0] * count
        barrier = threading.Barrier(count + 1)
        stop = threading.Event()

        def worker(i: int) -> None:
            sandbox = pool[i]
            sandbox.observe()
            barrier.wait()
            n = 0
            while not stop.is_set():
                sandbox.observe()
                sandbox.act(Move(10 + n % 200, 10 + n % 100))
                n += 1
            steps[i] = n

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
        for t in threads:
            t.start()
        barrier.wait()
        t0 = time.perf_counter()
        time.sleep(seconds)
        stop.set()
        for t in threads:
            t.join()
        return sum(steps) / (time.perf_counter() - t0)


def measurements(counts: Sequence[int], repeats: int) -> int:
    """How many measurements ``bench_provider`` makes (the progress line's total)."""
    return repeats + 1 + len(counts) * max(1, repeats // 2)


def bench_provider(provider_name: str, *, screen: tuple[int, int], counts: Sequence[int],
                   repeats: int, log: Callable[[str], None], line: ProgressLine | None = None) -> dict[str, Any]:
    """One provider's figures; ``line`` advances once per measurement (see ``measurements``)."""
    from deskdojo.vm.pool import make_provider

    def step(info: str) -> None:
        if line is not None:
            line.advance(info=f"{provider_name}: {info}")

    config = SandboxConfig(provider=provider_name, screen=screen)
    provider = make_provider(config)

    cold = []
    for k in range(repeats):
        t0 = time.perf_counter()
        sandbox = provider.start()
        sandbox.observe()
        cold.append(time.perf_counter() - t0)
        sandbox.close()
        step(f"cold start {k + 1}/{repeats}")
    log(f"{provider_name}: cold start {statistics.median(cold):.2f} s")

    with provider.start() as sandbox:
        resets = []
        for _ in range(repeats):
            sandbox.exec(["xterm"], background=True)
            time.sleep(0.3)
            t0 = time.perf_counter()
            sandbox.reset()
            resets.append(time.perf_counter() - t0)
        n = 40 * repeats
        raw_ms = _median_ms(sandbox.observe, n)
        png_ms = _median_ms(sandbox.screenshot_png, n // 2)
        flip = [0]

        def click() -> None:
            flip[0] ^= 1
            sandbox.act(Click(5 + flip[0], 5))

        # The guest holds back a click that comes within its minimum gap of the previous
        # one (Tk drops such clicks); spaced past the gap, a click costs only the action path.
        spacing_s = _MIN_CLICK_GAP_S + 0.005
        action_ms = _median_ms(click, n, pause_s=spacing_s)
        step_ms = _median_ms(lambda: (sandbox.observe(), click()), n, pause_s=spacing_s)
        back_to_back_ms = _median_ms(click, max(10, n // 4))
    step("reset, screenshot, action and step latency")
    log(f"{provider_name}: reset {statistics.median(resets) * 1000:.0f} ms, action {action_ms:.2f} ms, "
        f"step {step_ms:.2f} ms")
    log(f"{provider_name}: back-to-back clicks {back_to_back_ms:.2f} ms each (the guest's minimum "
        f"click gap is {_MIN_CLICK_GAP_S * 1000:.0f} ms)")

    steps_per_s = {}
    for count in counts:
        runs = []
        for k in range(max(1, repeats // 2)):
            runs.append(_throughput(provider_name, screen, count, seconds=2.0))
            step(f"throughput with {count} sandboxes, run {k + 1}/{max(1, repeats // 2)}")
        steps_per_s[str(count)] = statistics.median(runs)
        log(f"{provider_name}: {count} sandboxes -> {steps_per_s[str(count)]:.0f} steps/s")

    return {
        "provider": provider_name,
        "screen": f"{screen[0]}x{screen[1]}",
        "cold_start_s": statistics.median(cold),
        "reset_s": statistics.median(resets),
        "screenshot_raw_ms": raw_ms,
        "screenshot_png_ms": png_ms,
        "action_ms": action_ms,
        "step_ms": step_ms,
        "back_to_back_click_ms": back_to_back_ms,
        "click_gap_ms": _MIN_CLICK_GAP_S * 1000,
        "steps_per_s": steps_per_s,
    }


def run_env_bench(*, providers: Sequence[str], counts: Sequence[int], repeats: int,
                  screen: str, log: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    import sys

    size = parse_screen(screen)
    if shutil.which("Xvfb") is None:
        raise RuntimeError("Xvfb is needed for the floor measurement: `apt-get install -y xvfb`")
    with ProgressLine("bench env", 1 + len(providers) * measurements(counts, repeats), unit="measurements",
                      stream=sys.stderr) as line:
        log = log or line.note  # the figures as they come, as lines of their own
        floor = floor_step_ms(size)
        line.advance(info="floor")
        log(f"floor: grab {floor['floor_grab_ms']:.2f} ms, click {floor['floor_click_ms']:.2f} ms, "
            f"step {floor['floor_step_ms']:.2f} ms")
        results = []
        for name in providers:
            row = bench_provider(name, screen=size, counts=counts, repeats=repeats, log=log, line=line)
            row.update(floor)
            row["step_vs_floor"] = row["step_ms"] / floor["floor_step_ms"]
            row["machine"] = machine_info()
            results.append(row)
    return results


def print_table(results: list[dict[str, Any]]) -> None:
    if not results:
        return
    counts = list(results[0]["steps_per_s"])
    header = (["provider", "cold start s", "reset ms", "shot raw ms", "shot png ms", "action ms",
               "step ms", "floor ms", "step/floor"] + [f"steps/s x{c}" for c in counts])
    rows = []
    for r in results:
        rows.append([r["provider"], f"{r['cold_start_s']:.2f}", f"{r['reset_s'] * 1000:.0f}",
                     f"{r['screenshot_raw_ms']:.2f}", f"{r['screenshot_png_ms']:.2f}",
                     f"{r['action_ms']:.2f}", f"{r['step_ms']:.2f}", f"{r['floor_step_ms']:.2f}",
                     f"{r['step_vs_floor']:.2f}"] + [f"{r['steps_per_s'][c]:.0f}" for c in counts])
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |")
    m = results[0]["machine"]
    print(f"\nmedians; screen {results[0]['screen']}; {m['cpus']} CPUs ({m['cpu_model']}); "
          f"python {m['python']}")
    gap = results[0]["click_gap_ms"]
    print(f"action and step space clicks past the guest's {gap:.0f} ms minimum click gap; "
          "back to back, a click takes " + ", ".join(
              f"{r['back_to_back_click_ms']:.1f} ms ({r['provider']})" for r in results))
