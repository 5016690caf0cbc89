"""``deskdojo panel`` and ``deskdojo bench panel``. PyQt6 loads only when they run."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from typing import Any

from deskdojo.core.errors import DeskdojoError


def add_panel_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("panel", help="the control panel: live sandboxes, runs, curriculum, "
                              "trajectories, curves, demonstrations, replay")
    p.add_argument("--run", default=None, help="a run folder to attach at start")
    p.add_argument("--runs-root", default="runs", help="where runs are listed and new ones go (default runs/)")
    p.add_argument("--screenshot", default=None, metavar="OUT_DIR",
                   help="render each view of --run to OUT_DIR/*.png (offscreen) and exit")
    p.add_argument("--settings", default=None, help="an INI file for the remembered layout "
                   "(default: the user's settings store)")
    p.add_argument("--theme", choices=["system", "light", "dark"], default=None, help="colour theme")
    p.set_defaults(fn=cmd_panel)


def add_panel_bench_parser(bench_subparsers: Any) -> None:
    p = bench_subparsers.add_parser("panel", help="the live grid on real sandboxes: UI-thread stalls and fps per tile")
    p.add_argument("--sandboxes", type=int, default=8, help="how many sandboxes in the grid")
    p.add_argument("--seconds", type=float, default=10.0, help="how long to measure")
    p.add_argument("--provider", default="xvfb", choices=["xvfb", "docker"], help="where the sandboxes run")
    p.add_argument("--fps", type=int, default=10, help="frames per second the grid asks for, per tile")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(fn=cmd_bench_panel)


def _need_display(offscreen: bool) -> None:
    if offscreen:
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
        return
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or os.environ.get("QT_QPA_PLATFORM")):
        raise DeskdojoError("no display to open the panel on: run it on a desktop (DISPLAY set), or "
                            "`deskdojo panel --screenshot OUT_DIR --run RUN` for PNGs of each view")


def cmd_panel(args: argparse.Namespace) -> int:
    _need_display(offscreen=bool(args.screenshot))
    from PyQt6.QtWidgets import QApplication

    from deskdojo.gui.window import MainWindow, panel_settings

    app = QApplication.instance() or QApplication([sys.argv[0]])
    app.setApplicationName("deskdojo panel")
    if args.screenshot:
        from deskdojo.gui.screenshots import render_views

        if args.run is None:
            raise DeskdojoError("--screenshot needs --run RUN_DIR (the run whose views to render)")
        with tempfile.TemporaryDirectory() as tmp:  # a fixed layout, not the user's
            settings = panel_settings(args.settings or os.path.join(tmp, "panel.ini"))
            if args.theme:
                settings.setValue("theme", args.theme)
            window = MainWindow(run_dir=args.run, runs_root=args.runs_root, settings=settings,
                                check_environment=False)
            try:
                paths = render_views(window, args.screenshot)
            finally:
                window.close()
        for path in paths:
            print(path)
        return 0
    settings = panel_settings(args.settings)
    if args.theme:
        settings.setValue("theme", args.theme)
    window = MainWindow(run_dir=args.run, runs_root=args.runs_root, settings=settings)
    window.show()
    return app.exec()


def cmd_bench_panel(args: argparse.Namespace) -> int:
    from deskdojo.gui.bench import print_table, run_panel_bench

    result = run_panel_bench(sandboxes=args.sandboxes, seconds=args.seconds, provider=args.provider, fps=args.fps)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print_table(result)
    return 0
