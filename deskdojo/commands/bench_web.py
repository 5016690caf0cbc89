"""``deskdojo bench web``: our web sandbox against the ``miniwob`` package's own Gymnasium
environment, on the same MiniWoB++ pages, seeds and scripted actions, side by side.

The scripts are recorded first (untimed): our guest-side oracle solves each (task, seed)
once in a web sandbox and its actions are kept. Both sides then replay them. A reset is
what each side's ``reset`` does (ours: sandbox reset and the task page loaded with its
seed, then a screenshot; theirs: ``env.reset``, which restarts the episode in the already
loaded page and reads utterance, DOM and screenshot). A step is an action, a screenshot
and the reward and done flag (ours: ``act``, ``observe``, ``page_state``; theirs:
``env.step``). Env steps/s counts actions over the wall time of whole episodes, resets
included, with 1 and N environments in threads. Each side's success rate checks that the
same actions solve the same pages. Theirs runs headless Chromium on this host through
Selenium and chromedriver, not isolated; ours runs in the docker sandbox, no network.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import shutil
import statistics
import threading
import time
from typing import Any, Callable, Sequence

from deskdojo.commands import print_result
from deskdojo.core.errors import ConfigError

DEFAULT_OUT = "benchmarks/web/bench_web.json"
DEFAULT_TASKS = ("click-button", "click-link", "click-checkboxes", "enter-text", "focus-text")
TARGET_STEP_RATIO = 0.5  # our step at most half of theirs
INSTALL_HINT = ("apt-get install -y chromium chromium-driver && pip install 'deskdojo[bench-web]' "
                "(selenium and miniwob; the bench's peer only)")
# our Key names -> the miniwob PRESS_KEY spelling (C- ctrl, S- shift, <...> special keys)
_MODIFIERS = {"ctrl": "C-", "shift": "S-", "alt": "A-", "super": "M-"}
_SPECIAL = {"enter": "<Enter>", "return": "<Enter>", "tab": "<Tab>", "backspace": "<Backspace>",
            "delete": "<Delete>", "escape": "<Escape>", "up": "<Up>", "down": "<Down>", "left": "<Left>",
            "right": "<Right>", "pageup": "<PageUp>", "pagedown": "<PageDown>", "home": "<Home>",
            "end": "<End>", "space": " "}


@dataclasses.dataclass(frozen=True, slots=True)
class Script:
    """One episode to replay: a task page, its seed, and the actions (as action dicts)."""

    task: str
    seed: int
    actions: tuple[dict[str, Any], ...]


@dataclasses.dataclass(slots=True)
class Played:
    """What one side measured over a set of episodes (raw, before statistics)."""

    envs: int
    reset_ms: list[float] = dataclasses.field(default_factory=list)
    move_ms: list[float] = dataclasses.field(default_factory=list)  # pointer-move steps (see move_steps)
    step_ms: list[float] = dataclasses.field(default_factory=list)
    last_step_ms: list[float] = dataclasses.field(default_factory=list)  # the step that ended the episode
    successes: int = 0
    episodes: int = 0
    wall_s: float = 0.0
    failed: list[str] = dataclasses.field(default_factory=list)  # "task/seed" of episodes not solved

    @property
    def steps(self) -> int:
        return len(self.step_ms) + len(self.last_step_ms)

    def add(self, other: "Played") -> None:
        self.reset_ms += other.reset_ms
        self.move_ms += other.move_ms
        self.step_ms += other.step_ms
        self.last_step_ms += other.last_step_ms
        self.successes += other.successes
        self.episodes += other.episodes
        self.wall_s += other.wall_s
        self.failed += other.failed


# --- the peer: what it needs ------------------------------------------------------


def peer_requirements() -> tuple[str, str]:
    """The host's chromium and chromedriver paths; ConfigError naming what to install."""
    missing = []
    for module in ("selenium", "miniwob"):
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(f"the Python package {module!r}")
    chromium = os.environ.get("MINIWOB_CHROME_BINARY") or shutil.which("chromium")
    driver = os.environ.get("MINIWOB_CHROMEDRIVER") or shutil.which("chromedriver")
    if not chromium:
        missing.append("chromium on PATH")
    if not driver:
        missing.append("chromedriver on PATH")
    if missing:
        raise ConfigError(f"`deskdojo bench web` runs the miniwob package's Selenium environment beside "
                          f"ours and needs {', '.join(missing)}; install them with: {INSTALL_HINT}")
    return str(chromium), str(driver)


def to_miniwob_action(env: Any, action: dict[str, Any]) -> Any:
    """One of our action dicts as the miniwob env's action (page CSS pixels: our kiosk
    window sits at the screen's origin with scale 1, so screen pixels are CSS pixels)."""
    kind = action.get("kind")
    if kind == "click" and action.get("button", "left") == "left" and action.get("count", 1) == 1:
        return env.unwrapped.create_action("CLICK_COORDS", coords=[float(action["x"]), float(action["y"])])
    if kind == "move":
        return env.unwrapped.create_action("MOVE_COORDS", coords=[float(action["x"]), float(action["y"])])
    if kind == "type":
        return env.unwrapped.create_action("TYPE_TEXT", text=action["text"])
    if kind == "key":
        *mods, key = [str(k).lower() for k in action["keys"]]
        name = "".join(_MODIFIERS[m] for m in mods) + _SPECIAL.get(key, key)
        keys = list(env.unwrapped.action_space_config.allowed_keys)
        if name not in keys:
            raise ConfigError(f"the miniwob env has no key {name!r} for our {action}")
        return env.unwrapped.create_action("PRESS_KEY", key=keys.index(name))
    raise ConfigError(f"no miniwob action for our {action} (the bench replays clicks, typing and keys)")


# --- the two sides ----------------------------------------------------------------


class OurEnv:
    """One web sandbox, stepped the way a gym step would be: act, screenshot, reward."""

    def __init__(self, box: Any) -> None:
        self.box = box

    def reset(self, task: str, seed: int) -> None:
        from deskdojo.curriculum.families import get_family

        self.box.reset(get_family(f"miniwob.{task}").generate(0, seed, "train"))  # loads the page; a screenshot

    def step(self, action: dict[str, Any]) -> tuple[bool, bool]:
        from deskdojo.core.actions import action_from_dict

        self.box.act(action_from_dict(action))
        self.box.observe()
        state = self.box.page_state()
        return bool(state and state.done), bool(state and state.success)


class TheirEnv:
    """The miniwob package's gym env for one task (headless Chromium via Selenium)."""

    def __init__(self, task: str) -> None:
        import gymnasium
        import miniwob

        gymnasium.register_envs(miniwob)
        self.env = gymnasium.make(f"miniwob/{task}-v1")
        self.task = task

    def reset(self, task: str, seed: int) -> None:
        assert task == self.task
        # Our sandbox seeds the page with the string str(seed); seedrandom reads the number 3
        # and the string "3" differently, so seed theirs the same way before its reset.
        self.env.unwrapped.instance.set_seed(str(seed))
        self.env.reset()

    def step(self, action: dict[str, Any]) -> tuple[bool, bool]:
        _, reward, terminated, truncated, info = self.env.step(to_miniwob_action(self.env, action))
        return bool(terminated or truncated), bool(terminated and info.get("raw_reward", 0) > 0)

    def close(self) -> None:
        self.env.close()


MOVE_POINTS = tuple((20 + (k * 37) % 130, 60 + (k * 53) % 140) for k in range(16))
"""Pointer moves inside MiniWoB's 160x210 task area, below the instruction: they end no episode."""


def move_steps(env: Any, task: str, seed: int, count: int) -> list[float]:
    """ms per step of ``count`` pointer moves on a freshly reset page: every one of them an
    action, a screenshot and the reward on both sides (an episode's last step is not:
    the miniwob env takes no screenshot once the page says done)."""
    env.reset(task, seed)
    times = []
    for index in range(count):
        x, y = MOVE_POINTS[index % len(MOVE_POINTS)]
        started = time.perf_counter()
        env.step({"kind": "move", "x": x, "y": y})
        times.append((time.perf_counter() - started) * 1000)
    return times


def play(envs: Sequence[Any], scripts: Sequence[Script]) -> Played:
    """Replay ``scripts`` on ``envs`` (one thread each, scripts dealt round-robin)."""
    parts = [Played(envs=len(envs)) for _ in envs]
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        mine, env = parts[index], envs[index]
        try:
            for script in scripts[index::len(envs)]:
                started = time.perf_counter()
                env.reset(script.task, script.seed)
                mine.reset_ms.append((time.perf_counter() - started) * 1000)
                done = success = False
                for number, action in enumerate(script.actions):
                    started = time.perf_counter()
                    done, success = env.step(action)
                    ms = (time.perf_counter() - started) * 1000
                    (mine.last_step_ms if done or number == len(script.actions) - 1 else mine.step_ms).append(ms)
                    if done:
                        break
                mine.episodes += 1
                mine.successes += success
                if not success:
                    mine.failed.append(f"{script.task}/{script.seed}")
        except BaseException as error:  # re-raised in the caller's thread
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(len(envs))]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    if errors:
        raise errors[0]
    total = Played(envs=len(envs))
    for part in parts:
        total.add(part)
    total.wall_s = wall
    return total


# --- statistics and the table (pure) --------------------------------------------------


def side_summary(by_envs: dict[int, Played]) -> dict[str, Any]:
    """Medians of the single-env run; env steps/s for each env count."""
    single = by_envs[min(by_envs)]
    steps = single.step_ms + single.last_step_ms

    def median(values: Sequence[float]) -> float | None:
        return round(statistics.median(values), 2) if values else None

    return {"reset_ms": median(single.reset_ms), "step_ms": median(steps),
            "mid_step_ms": median(single.step_ms), "last_step_ms": median(single.last_step_ms),
            "move_step_ms": median(single.move_ms),
            "steps": single.steps, "episodes": single.episodes, "failed": sorted(single.failed),
            "success_rate": round(single.successes / single.episodes, 4) if single.episodes else None,
            "steps_per_s": {str(n): round(p.steps / p.wall_s, 1) if p.wall_s > 0 else None
                            for n, p in sorted(by_envs.items())}}


def compare(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    """Our step and reset as a share of theirs, and whether the step target holds. The
    target is judged on the steps that are an action and a screenshot on both sides
    (mid-episode steps and pointer moves); ``step_ratio`` also counts episodes' last
    steps, where the miniwob env takes no screenshot."""
    def ratio(key: str) -> float | None:
        a, b = ours.get(key), theirs.get(key)
        return round(a / b, 3) if a is not None and b else None

    judged = [r for r in (ratio("mid_step_ms"), ratio("move_step_ms")) if r is not None]
    return {"step_ratio": ratio("step_ms"), "mid_step_ratio": ratio("mid_step_ms"),
            "move_step_ratio": ratio("move_step_ms"), "reset_ratio": ratio("reset_ms"),
            "target_step_ratio": TARGET_STEP_RATIO,
            "target_met": bool(judged) and max(judged) <= TARGET_STEP_RATIO}


def format_table(result: dict[str, Any]) -> str:
    counts = list(result["ours"]["steps_per_s"])
    header = (f"{'side':<34} {'reset ms':>9} {'step ms':>8} {'mid-ep step':>12} {'move step':>10} {'success %':>10} "
              + " ".join(f"{'steps/s x' + c:>12}" for c in counts))
    lines = [header, "-" * len(header)]
    for key, label in (("ours", "deskdojo web sandbox (docker)"), ("theirs", "miniwob gym env (selenium)")):
        row = result[key]

        def cell(value: Any, digits: int = 1) -> str:
            return "-" if value is None else f"{value:.{digits}f}"

        rate = None if row["success_rate"] is None else 100 * row["success_rate"]
        lines.append(f"{label:<34} {cell(row['reset_ms']):>9} {cell(row['step_ms']):>8} "
                     f"{cell(row['mid_step_ms']):>12} {cell(row['move_step_ms']):>10} {cell(rate):>10} "
                     + " ".join(f"{cell(row['steps_per_s'][c]):>12}" for c in counts))
    verdict = result["comparison"]
    lines.append(f"our step / theirs: mid-episode {verdict['mid_step_ratio']}, move {verdict['move_step_ratio']} "
                 f"(target <= {verdict['target_step_ratio']}: {'met' if verdict['target_met'] else 'missed'}); "
                 f"all steps {verdict['step_ratio']} (their last step takes no screenshot); "
                 f"reset {verdict['reset_ratio']}. "
                 f"{result['episodes']} episodes over {', '.join(result['tasks'])}; medians of the 1-env run.")
    return "\n".join(lines)


# --- the run ----------------------------------------------------------------------------


def _start_boxes(count: int, screen: tuple[int, int]) -> list[Any]:
    from concurrent.futures import ThreadPoolExecutor

    from deskdojo.vm.config import SandboxConfig
    from deskdojo.vm.docker import DockerProvider

    provider = DockerProvider(SandboxConfig(provider="docker", flavor="web", screen=screen))
    with ThreadPoolExecutor(max_workers=count) as pool:
        futures = [pool.submit(provider.start) for _ in range(count)]
        boxes, failure = [], None
        for future in futures:
            try:
                boxes.append(future.result())
            except BaseException as error:
                failure = failure or error
    if failure:
        for box in boxes:
            box.close()
        raise failure
    return boxes


def record_scripts(box: Any, tasks: Sequence[str], episodes: int, seed: int) -> list[Script]:
    """Our oracle's actions for each (task, seed), recorded once in ``box`` (untimed)."""
    from deskdojo.core.actions import action_to_dict
    from deskdojo.core.oracle import run_oracle
    from deskdojo.curriculum.families import get_family

    scripts = []
    for task in tasks:
        for index in range(episodes):
            generated = get_family(f"miniwob.{task}").generate(0, seed + index, "train")
            box.reset(generated)
            actions = run_oracle(box, generated)
            scripts.append(Script(task=task, seed=seed + index, actions=tuple(action_to_dict(a) for a in actions)))
    return scripts


def run_web_bench(*, tasks: Sequence[str], episodes: int, seed: int, env_counts: Sequence[int],
                  screen: tuple[int, int] = (1024, 768), moves: int = 30,
                  log: Callable[[str], None] = lambda line: None) -> dict[str, Any]:
    from deskdojo.core.progress import activity
    from deskdojo.vm.bench import machine_info
    from deskdojo.vm.image import build_image

    chromium, driver = peer_requirements()
    os.environ.setdefault("MINIWOB_CHROME_BINARY", chromium)  # never Selenium Manager's download
    os.environ.setdefault("MINIWOB_CHROMEDRIVER", driver)
    build_image(flavor="web", log=log)
    most = max(env_counts)
    with activity(f"bench web: starting {most} web sandboxes"):
        boxes = _start_boxes(most, screen)
    ours: dict[int, Played] = {}
    theirs: dict[int, Played] = {}
    try:
        with activity(f"bench web: recording the oracle's actions ({len(tasks)} tasks x {episodes})"):
            scripts = record_scripts(boxes[0], tasks, episodes, seed)
        for count in env_counts:
            envs = [OurEnv(box) for box in boxes[:count]]
            for env in envs:  # untimed: the browser starts on a sandbox's first page load
                env.reset(tasks[0], seed)
            with activity(f"bench web: ours, {count} env(s)"):
                ours[count] = Played(envs=count)
                for task in tasks:
                    ours[count].add(play(envs, [s for s in scripts if s.task == task]))
            if count == min(env_counts):
                ours[count].move_ms = move_steps(envs[0], tasks[0], seed, moves)
            log(f"ours x{count}: {ours[count].steps / ours[count].wall_s:.1f} steps/s")
            theirs[count] = Played(envs=count)
            with activity(f"bench web: theirs, {count} env(s)"):
                for task in tasks:
                    peer = _start_peers(task, count)  # untimed: a chromedriver and Chromium each
                    try:
                        theirs[count].add(play(peer, [s for s in scripts if s.task == task]))
                        if count == min(env_counts) and task == tasks[0]:
                            theirs[count].move_ms = move_steps(peer[0], task, seed, moves)
                    finally:
                        for env in peer:
                            env.close()
            log(f"theirs x{count}: {theirs[count].steps / theirs[count].wall_s:.1f} steps/s")
    finally:
        for box in boxes:
            box.close()
    mine, peer_summary = side_summary(ours), side_summary(theirs)
    import miniwob
    import selenium

    return {"bench": "web", "tasks": list(tasks), "episodes": len(scripts), "seed": seed, "moves": moves,
            "env_counts": list(env_counts), "screen": list(screen), "machine": machine_info(),
            "ours": {**mine, "isolation": "docker: --network none, caps dropped, read-only root, non-root"},
            "theirs": {**peer_summary, "isolation": "none: headless Chromium on the host",
                       "miniwob": getattr(miniwob, "__version__", "1.1.0"), "selenium": selenium.__version__,
                       "chromium": chromium, "chromedriver": driver},
            "comparison": compare(mine, peer_summary)}


def _start_peers(task: str, count: int) -> list[TheirEnv]:
    envs: list[TheirEnv] = []
    try:
        for _ in range(count):
            envs.append(TheirEnv(task))
    except BaseException:
        for env in envs:
            env.close()
        raise
    return envs


def cmd_bench_web(args: argparse.Namespace) -> int:
    from deskdojo.core.progress import say
    from deskdojo.curriculum.families._miniwob import ORACLE_TASKS
    from deskdojo.vm.config import parse_screen

    tasks = [t.strip().removeprefix("miniwob.") for t in args.tasks.split(",") if t.strip()]
    unknown = [t for t in tasks if t not in ORACLE_TASKS]
    if not tasks or unknown:
        raise ConfigError(f"--tasks needs MiniWoB++ tasks with an oracle (their actions are replayed), "
                          f"not {(unknown or [''])[0]!r}; those are: {', '.join(ORACLE_TASKS)}")
    counts = sorted({int(c) for c in args.envs.split(",")})
    if args.episodes < 1 or not counts or counts[0] < 1:
        raise ConfigError("--episodes and every --envs count must be >= 1")
    peer_requirements()  # before any sandbox starts
    result = run_web_bench(tasks=tasks, episodes=args.episodes, seed=args.seed, env_counts=counts,
                           screen=parse_screen(args.screen), log=say)
    print_result(result, out=args.out, as_json=args.json, table=format_table(result))
    return 0


def add_bench_web_parser(bench: Any) -> None:
    """Add ``web`` to the ``bench`` group's subparsers."""
    p = bench.add_parser("web", help="MiniWoB++ reset/step and env steps/s: our web sandbox against the "
                                     "miniwob package's Selenium env (needs the bench-web extra)")
    p.add_argument("--tasks", default=",".join(DEFAULT_TASKS), help="comma-separated tasks with an oracle")
    p.add_argument("--episodes", type=int, default=10, help="episodes per task (seeds --seed, --seed+1, ...)")
    p.add_argument("--seed", type=int, default=0, help="the first page seed")
    p.add_argument("--envs", default="1,4", help="comma-separated numbers of environments played at once")
    p.add_argument("--screen", default="1024x768", help="our sandbox's screen WxH")
    p.add_argument("--out", default=None, help=f"also write the JSON here (e.g. {DEFAULT_OUT})")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(fn=cmd_bench_web)
