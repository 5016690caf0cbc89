"""The ``deskdojo`` command. Subcommands import what they need when they run."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any, Sequence

from deskdojo.agent.formats.cli import add_parse_parser
from deskdojo.core.errors import DeskdojoError


def _sigterm_to_keyboard_interrupt() -> None:
    """Let `kill PID` clean up like Ctrl-C does: pools close in their `finally`/`__exit__`."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def _sandbox_config(args: argparse.Namespace, **extra: Any):
    from deskdojo.vm.config import SandboxConfig, parse_screen

    values: dict[str, Any] = {"provider": args.provider}
    if getattr(args, "flavor", None):
        values["flavor"] = args.flavor
    if getattr(args, "screen", None):
        values["screen"] = parse_screen(args.screen)
    values.update(extra)
    return SandboxConfig(**values)


# --- doctor / image ------------------------------------------------------------


def cmd_doctor(args: argparse.Namespace) -> int:
    from deskdojo.doctor import run_doctor

    return run_doctor(as_json=args.json, ray_address=args.ray)


def cmd_image_build(args: argparse.Namespace) -> int:
    """The build's steps go to stderr as progress (``--quiet``: none); the tag to stdout."""
    from deskdojo.core.progress import say
    from deskdojo.vm.image import build_image

    print(build_image(force=args.force, log=say, flavor=args.flavor))
    return 0


# --- sandbox -------------------------------------------------------------------

HOST_NAME = "host"


def _attach(args: argparse.Namespace):
    """A running sandbox by name, or the user's own desktop for the name `host` (opt-in)."""
    if args.name == HOST_NAME:
        from deskdojo.vm.config import SandboxConfig
        from deskdojo.vm.host import HostProvider

        config = SandboxConfig(provider="host", i_understand_this_controls_my_desktop=args.i_understand)
        return HostProvider(config).start()
    from deskdojo.vm.sandboxes import attach

    return attach(args.name)


def cmd_sandbox_up(args: argparse.Namespace) -> int:
    from deskdojo.vm.sandboxes import start_persistent

    sandbox = start_persistent(_sandbox_config(args), name=args.name)
    print(json.dumps({"name": sandbox.name, "provider": args.provider,
                      "screen": list(sandbox.screen_size)}))
    return 0


def cmd_sandbox_list(args: argparse.Namespace) -> int:
    from deskdojo.vm.sandboxes import list_persistent

    rows = list_persistent()
    if args.json:
        print(json.dumps(rows))
    elif not rows:
        print("no sandboxes running — start one with `deskdojo sandbox up`")
    else:
        for row in rows:
            print(f"{row['name']:<24} {row['provider']:<7} {row['state']}")
    return 0


def cmd_sandbox_screenshot(args: argparse.Namespace) -> int:
    with _attach(args) as sandbox:
        png = sandbox.screenshot_png()
    out = Path(args.output or f"{args.name}.png")
    out.write_bytes(png)
    print(out)
    return 0


def cmd_sandbox_act(args: argparse.Namespace) -> int:
    from deskdojo.core.actions import action_from_dict

    try:
        data = json.loads(args.action)
    except json.JSONDecodeError as exc:
        raise DeskdojoError(f"the action is not JSON ({exc.msg}); write it like "
                            "'{\"kind\": \"click\", \"x\": 10, \"y\": 20}'") from None
    action = action_from_dict(data)
    with _attach(args) as sandbox:
        result = sandbox.act(action)
    print(json.dumps({"ok": result.ok, "error": result.error, "elapsed_ms": round(result.elapsed_ms, 2)}))
    return 0 if result.ok else 2


def cmd_sandbox_exec(args: argparse.Namespace) -> int:
    from deskdojo.vm.sandboxes import attach

    rest = list(args.argv)
    options, argv = (rest[:rest.index("--")], rest[rest.index("--") + 1:]) if "--" in rest else ([], rest)
    if options:  # options may come after the name too: `exec NAME --timeout 5 -- cmd`
        late = argparse.ArgumentParser(prog=f"deskdojo sandbox exec {args.name}")
        late.add_argument("--timeout", type=float, default=args.timeout)
        args.timeout = late.parse_args(options).timeout
    if not argv:
        raise DeskdojoError("give the command after the sandbox name: `deskdojo sandbox exec NAME -- ls -l`")
    with attach(args.name) as sandbox:
        result = sandbox.exec(argv, timeout=args.timeout)
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    if result.timed_out:
        print(f"deskdojo: killed after {args.timeout:g} s", file=sys.stderr)
        return 124
    return result.returncode or 0


def cmd_sandbox_down(args: argparse.Namespace) -> int:
    from deskdojo.vm.sandboxes import stop_all, stop_persistent

    if args.all:
        names = stop_all()
    elif args.name:
        names = stop_persistent(args.name)
    else:
        raise DeskdojoError("say which sandbox to stop: `deskdojo sandbox down NAME` or `--all`")
    print(json.dumps({"stopped": names}))
    return 0


# --- bench / demo --------------------------------------------------------------


def cmd_bench_env(args: argparse.Namespace) -> int:
    from deskdojo.vm.bench import print_table, run_env_bench

    counts = [int(c) for c in args.counts.split(",")]
    results = run_env_bench(providers=args.providers.split(","), counts=counts,
                            repeats=args.repeats, screen=args.screen)
    if args.json:
        print(json.dumps(results if len(results) != 1 else results[0], indent=1))
    else:
        print_table(results)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from deskdojo.vm.config import parse_screen
    from deskdojo.vm.demo import run_demo

    screen = parse_screen(args.screen) if args.screen else None
    out = run_demo(args.provider, screen=screen, out=args.out)
    print(f"screenshots and steps written to {out}")
    return 0


# --- wiring --------------------------------------------------------------------


QUIET_HELP = "no progress lines (results, messages and errors still print)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deskdojo", description="A desktop computer-use agent that teaches itself.")
    parser.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("doctor", help="what is present, what is missing, and how to fix it")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--ray", default=None, metavar="ADDRESS",
                   help="also check the Ray cluster at ADDRESS (auto, HOST:PORT; default RAY_ADDRESS)")
    p.set_defaults(fn=cmd_doctor)

    image = sub.add_parser("image", help="the sandbox desktop image").add_subparsers(dest="image_cmd", required=True)
    p = image.add_parser("build", help="build the image locally (no registry needed)")
    p.add_argument("--force", action="store_true", help="rebuild even if the tag exists")
    p.add_argument("--flavor", choices=("desktop", "web"), default="desktop",
                   help="web: the desktop plus Debian's Chromium and the MiniWoB++ pages")
    p.set_defaults(fn=cmd_image_build)

    sandbox = sub.add_parser("sandbox", help="start, use and stop sandboxes by hand").add_subparsers(
        dest="sandbox_cmd", required=True)
    p = sandbox.add_parser("up", help="start a sandbox that stays up until `down`")
    p.add_argument("--provider", default="docker", choices=["docker", "xvfb"], help="where the desktop runs")
    p.add_argument("--screen", default=None, help="screen size WxH (default 1024x768)")
    p.add_argument("--name", default=None, help="a name (default: generated)")
    p.add_argument("--flavor", default=None, choices=["desktop", "web"],
                   help="docker image flavour (web: Chromium and the MiniWoB++ pages)")
    p.set_defaults(fn=cmd_sandbox_up)
    p = sandbox.add_parser("list", help="the sandboxes started with `up`")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_sandbox_list)
    host_help = ("the name `host` means YOUR desktop ($DISPLAY); it needs "
                 "--i-understand-this-controls-my-desktop")
    p = sandbox.add_parser("screenshot", help="save a PNG of the sandbox's screen")
    p.add_argument("name", help=f"a sandbox name; {host_help}")
    p.add_argument("-o", "--output", default=None, help="PNG path (default NAME.png)")
    p.add_argument("--i-understand-this-controls-my-desktop", dest="i_understand", action="store_true")
    p.set_defaults(fn=cmd_sandbox_screenshot)
    p = sandbox.add_parser("act", help='send one action, e.g. \'{"kind": "click", "x": 10, "y": 20}\'')
    p.add_argument("name", help=f"a sandbox name; {host_help}")
    p.add_argument("action", help="the action as JSON")
    p.add_argument("--i-understand-this-controls-my-desktop", dest="i_understand", action="store_true",
                   help="allow acting on your real screen (pointer in a corner stops it)")
    p.set_defaults(fn=cmd_sandbox_act)
    p = sandbox.add_parser("exec", help="run a command inside the sandbox: exec NAME -- argv...")
    p.add_argument("name")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds before the command is killed")
    p.add_argument("argv", nargs=argparse.REMAINDER, help="the command, after `--`")
    p.set_defaults(fn=cmd_sandbox_exec)
    p = sandbox.add_parser("down", help="stop a sandbox (or --all of them)")
    p.add_argument("name", nargs="?")
    p.add_argument("--all", action="store_true", help="stop every deskdojo sandbox")
    p.set_defaults(fn=cmd_sandbox_down)

    bench = sub.add_parser("bench", help="benchmarks that print tables and JSON").add_subparsers(
        dest="bench_cmd", required=True)
    p = bench.add_parser("env", help="sandbox latency and throughput against the in-process floor")
    p.add_argument("--json", action="store_true")
    p.add_argument("--providers", default="docker,xvfb", help="comma-separated providers")
    p.add_argument("--counts", default="1,4,8", help="parallel sandbox counts")
    p.add_argument("--repeats", type=int, default=5, help="repeats per measurement (medians reported)")
    p.add_argument("--screen", default="1024x768", help="screen size WxH")
    p.set_defaults(fn=cmd_bench_env)
    from deskdojo.gui.cli import add_panel_bench_parser, add_panel_parser
    add_panel_bench_parser(bench)

    p = sub.add_parser("demo", help="open a desktop, act in it, write screenshots (the main job for now)")
    p.add_argument("--provider", default="auto", choices=["auto", "docker", "xvfb"],
                   help="auto: docker when the engine answers, else xvfb")
    p.add_argument("--screen", default=None, help="screen size WxH")
    p.add_argument("--out", default=None, help="output folder (default runs/demo-<time>)")
    p.set_defaults(fn=cmd_demo)
    add_parse_parser(sub, bench)
    from deskdojo.commands.tasks import add_tasks_parser
    add_tasks_parser(sub)
    from deskdojo.commands.eval_miniwob import add_eval_parser
    add_eval_parser(sub)
    from deskdojo.commands.tiny import add_tiny_parser
    add_tiny_parser(sub)
    from deskdojo.commands.judge import add_judge_parser
    add_judge_parser(sub)
    from deskdojo.evolve.cli import add_evolve_parser

    add_evolve_parser(sub, bench)
    from deskdojo.agent.train.cli import add_sft_parser
    add_sft_parser(sub)
    from deskdojo.commands.bench_grpo import add_bench_grpo_parser
    from deskdojo.commands.bench_perception import add_bench_perception_parser
    from deskdojo.commands.bench_ray import add_bench_ray_parser
    from deskdojo.commands.bench_targets import add_bench_click_targets_parser
    from deskdojo.commands.bench_sft import add_bench_sft_parser
    from deskdojo.commands.bench_web import add_bench_web_parser
    from deskdojo.commands.demos import add_agent_parsers
    add_bench_sft_parser(bench)
    add_bench_grpo_parser(bench)
    add_bench_perception_parser(bench)
    add_bench_click_targets_parser(bench)
    add_bench_ray_parser(bench)
    add_bench_web_parser(bench)
    add_agent_parsers(sub, bench)
    add_panel_parser(sub)
    _quiet_anywhere(parser)
    return parser


def _quiet_anywhere(parser: argparse.ArgumentParser) -> None:
    """``--quiet`` after any subcommand too (``deskdojo tasks check --quiet``). SUPPRESS: a
    subcommand that was not given it leaves the top-level value alone."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in {id(p): p for p in action.choices.values()}.values():
                child.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS, help=QUIET_HELP)
                _quiet_anywhere(child)


def main(argv: Sequence[str] | None = None) -> int:
    from deskdojo.core.progress import is_quiet, set_quiet

    args = build_parser().parse_args(argv)
    was_quiet = is_quiet()
    set_quiet(args.quiet)  # one switch: every progress line honours it
    try:
        return _run(args)
    finally:  # called in-process (tests, scripts), the switch must not outlive the command
        set_quiet(was_quiet)


def _run(args: argparse.Namespace) -> int:
    _sigterm_to_keyboard_interrupt()
    try:
        code = int(args.fn(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, where it is caught, not at exit
        return code
    except DeskdojoError as exc:
        print(f"deskdojo: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("deskdojo: interrupted; sandboxes closed", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `deskdojo ... | head` closed the pipe: stop quietly
        _stdout_to_devnull()
        return 1


def _stdout_to_devnull() -> None:
    """The Python docs' recipe for EPIPE: point stdout at devnull so the flush at exit
    does not raise a second BrokenPipeError."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return  # not a real file (captured in tests)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
