"""``deskdojo bench learning``: does GRPO help beyond its SFT start, does the curriculum
help, and is GRPO worth more than the same CPU spent on more SFT?

Four arms per seed, all from one SFT start (trained once per seed, in ``seed<N>/sft-start``):
(a) SFT only: arm (b)'s held-out evaluation before its first iteration (the same policy
and tasks); (b) GRPO with the curriculum; (c) GRPO with uniform task sampling, on (b)'s
env-step budget; (d) more SFT from the start on new oracle demos of (b)'s tasks (training
split, seeds apart from the warm start's), recorded and trained in chunks until its CPU
time, recording included, reaches (b)'s; then the loop's own held-out evaluation.

Every (seed, arm) is a folder under one root; ``result.json`` (written atomically at the
end) marks it finished, so running the same command again skips finished arms and resumes
the rest from their checkpoints. The figures are read back from the folders
(``bench_report``), whether an arm ran now or earlier.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from deskdojo.core.errors import ConfigError, DeskdojoError
from deskdojo.core.progress import ProgressLine
from deskdojo.core.rundir import JsonlFile, write_atomic
from deskdojo.evolve.bench_report import (
    CPU_NOTE, RESAMPLES, arm_figures, cell_table, cpu_at, cpu_samples, diagnostics, diagnostics_summary,
    heldout_records, outcome_map, plot_curves, steps_to_reach, summarise,
)
from deskdojo.evolve.build import SFT_DIR

START_DIR = "sft-start"
ARM_DIRS = {"curriculum": "curriculum", "uniform": "uniform", "more_sft": "more-sft"}
RESULT = "result.json"
LEDGER = "cpu.jsonl"
MORE_SFT_STATE = "more_sft.json"
SPEC = "bench.json"
REPORT = "bench_learning.json"
MORE_SFT_SEED_BASE = 700_000
"""Arm (d)'s demo tasks use training seeds from here up: apart from the warm start's
(``build.DEMO_SEED_BASE`` + i) and from the plan's training pool (small seeds)."""
MIN_HELDOUT_TASKS, MIN_HELDOUT_FAMILIES = 96, 6


class BenchStopped(DeskdojoError):
    """An arm was stopped (Ctrl-C, SIGTERM, control.json) before it finished."""


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the xvfb sandboxes it
    started and closed; docker containers are not children and are not counted)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class CpuLedger:
    """An arm's cumulative CPU seconds across sessions, appended to ``cpu.jsonl`` (wall
    time, total) every ``interval`` seconds and on exit: a killed session loses at most
    one interval, and the samples date every held-out record in CPU time."""

    def __init__(self, path: Path, *, interval: float = 5.0):
        self.path = path
        self.interval = interval
        samples = cpu_samples(path)
        self.base = samples[-1][1] if samples else 0.0
        self._start: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def total(self) -> float:
        return self.base + (_cpu_seconds() - self._start if self._start is not None else 0.0)

    def _sample(self) -> None:
        JsonlFile(self.path).append({"time": time.time(), "cpu_s": round(self.total(), 3)})

    def __enter__(self) -> "CpuLedger":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._start = _cpu_seconds()
        self._stop.clear()
        self._sample()
        self._thread = threading.Thread(target=self._run, name="cpu-ledger", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        self.base, self._start = self.total(), None


# --- where the bench touches sandboxes and models (tests hand in fakes) ---------------


def train_sft_start(config: Any, folder: Path, *, provider: str, log: Callable[[str], None]) -> None:
    """The main job's warm start (``build.run_sft``: oracle demos, then SFT) into ``folder``."""
    from deskdojo.core.rundir import RunDir
    from deskdojo.evolve.build import run_sft, sandbox_config, select_families
    from deskdojo.vm.pool import SandboxPool

    with SandboxPool(sandbox_config(config, provider), config.sandboxes) as pool:
        run_sft(config, RunDir(folder), pool, select_families(config.curriculum.families), log=log)


def open_pool(config: Any, provider: str) -> Any:
    from deskdojo.evolve.build import sandbox_config
    from deskdojo.vm.pool import SandboxPool

    return SandboxPool(sandbox_config(config, provider), config.sandboxes).start()


def record_oracle(tasks: Sequence[Any], sandboxes: list[Any], folder: Path) -> Any:
    from deskdojo.agent.demos import record_oracle_demos

    return record_oracle_demos(tasks, sandboxes, folder, progress=sys.stderr)


@dataclass(frozen=True, slots=True, kw_only=True)
class Backend:
    """How the bench trains its SFT start, builds an arm's parts (None: ``build_parts``),
    opens sandboxes for (d)'s recording and records demos on them."""

    train_start: Callable[..., None] = train_sft_start
    build_parts: Callable[..., Any] | None = None
    open_pool: Callable[[Any, str], Any] = open_pool
    record_demos: Callable[[Sequence[Any], list[Any], Path], Any] = record_oracle


# --- configs and the bench root ----------------------------------------------------------


def bench_config(config_path: str | None, *, seed: int, sampling: str, provider: str, env_steps: int,
                 heldout_per_level: int, levels: Sequence[int], families: Sequence[str] | None,
                 sandboxes: int | None) -> Any:
    """One arm's config: the file's, with the bench's seed, sampling, env-step budget and
    held-out set laid over it."""
    from deskdojo.evolve.config import load_config

    overrides: dict[str, Any] = {
        "seed": seed, "provider": provider, "sampling": sampling,
        "budget": {"iterations": None, "wall_seconds": None, "env_steps": env_steps},
        "eval": {"at_start": True, "tasks_per_level": heldout_per_level, "levels": list(levels)}}
    if families:
        overrides["curriculum"] = {"families": list(families)}
    if sandboxes:
        overrides["sandboxes"] = sandboxes
    return load_config(config_path, overrides)


def _check_spec(root: Path, spec: dict[str, Any]) -> None:
    """A bench root holds one experiment: a later call with other settings would mix arms."""
    from deskdojo.evolve.config import diff_configs

    from deskdojo.evolve.run import with_new_defaults

    path = root / SPEC
    if path.exists():
        stored = json.loads(path.read_text())
        if isinstance(stored, dict) and isinstance(stored.get("config"), dict):
            seed = stored["config"].get("seed")
            stored = {**stored, "config": {**with_new_defaults({**stored["config"], "seed": 0}), "seed": seed}}
        differences = diff_configs(stored, spec)
        if differences:
            listing = "\n  ".join(differences)
            raise ConfigError(f"{root} holds a learning bench started with other settings:\n  {listing}\n"
                              "run it with the same settings to resume it, or pick another --runs-root")
        return
    root.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(spec, indent=1).encode())


def _finish(folder: Path, record: dict[str, Any]) -> None:
    write_atomic(folder / RESULT, json.dumps({**record, "finished_at": time.time()}, indent=1).encode())


def _result(folder: Path) -> dict[str, Any] | None:
    path = folder / RESULT
    return json.loads(path.read_text()) if path.exists() else None


def _demo_folders(demos: Path) -> list[Path]:
    return sorted(p for p in demos.iterdir() if p.is_dir() and not p.name.startswith(".")) if demos.exists() else []


def _demo_steps(demos: Path) -> int:
    return sum(len((d / "steps.jsonl").read_text().splitlines()) for d in _demo_folders(demos)
               if (d / "steps.jsonl").exists())


# --- the arms ---------------------------------------------------------------------------


def _sft_start(config: Any, folder: Path, *, provider: str, backend: Backend, log: Callable[[str], None]) -> None:
    if _result(folder) is not None:
        log(f"bench: {folder} finished earlier; skipped")
        return
    folder.mkdir(parents=True, exist_ok=True)
    with CpuLedger(folder / LEDGER) as ledger:
        backend.train_start(config, folder, provider=provider, log=log)
    if not (folder / SFT_DIR / "policy" / "deskdojo_policy.json").exists():
        raise DeskdojoError(f"the SFT start in {folder} wrote no policy ({folder / SFT_DIR / 'policy'})")
    _finish(folder, {"arm": "sft_start", "cpu_s": round(ledger.total(), 3), "demos": len(_demo_folders(folder / "demos")),
                     "demo_env_steps": _demo_steps(folder / "demos")})


def _evolve_arm(config: Any, folder: Path, start: Path, *, arm: str, provider: str, backend: Backend,
                log: Callable[[str], None]) -> None:
    """(b) or (c): the loop from a copy of the SFT start's policy; resumed when begun."""
    from deskdojo.evolve.run import run_evolve

    if _result(folder) is not None:
        log(f"bench: {folder} finished earlier; skipped")
        return
    resume = (folder / "config.json").exists()
    if resume:
        log(f"bench: resuming {folder}")
    else:
        policy = folder / SFT_DIR / "policy"
        shutil.rmtree(policy, ignore_errors=True)
        policy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(start / SFT_DIR / "policy", policy)  # build_parts finds it: no second warm start
    with CpuLedger(folder / LEDGER) as ledger:
        result = run_evolve(config, folder, resume=resume, provider=provider, log=lambda *a: None,
                            progress=sys.stderr, build=backend.build_parts)
    if result.state != "finished":
        raise BenchStopped(f"arm {arm} stopped in {folder}; run the same command again to resume it")
    _finish(folder, {"arm": arm, "iterations": result.iterations, "env_steps": result.env_steps,
                     "cpu_s": round(ledger.total(), 3), "wall_s": round(result.wall_s, 3)})


def more_sft_tasks(families: dict[str, Any], levels: Sequence[int], chunk: int, count: int) -> list[Any]:
    """Chunk ``chunk``'s demo tasks: families and levels in turn, fresh training seeds."""
    from deskdojo.core.types import Split

    names = sorted(families)
    tasks = []
    for n in range(chunk * count, (chunk + 1) * count):
        family = families[names[n % len(names)]]
        level = levels[(n // len(names)) % len(levels)] % family.levels
        tasks.append(family.generate(level, MORE_SFT_SEED_BASE + n, Split.TRAIN))
    return tasks


def _record_chunk(config: Any, tasks: list[Any], demos: Path, chunk: int, *, provider: str, backend: Backend,
                  log: Callable[[str], None]) -> None:
    """Record into a hidden folder (read_demos skips it), then move the demos in, named by
    chunk so a chunk cut short is recorded again without duplicates."""
    from deskdojo.core.oracle import OracleError

    prefix = f"c{chunk:04d}-"
    for stale in demos.glob(prefix + "*"):
        shutil.rmtree(stale)
    tmp = demos / f".chunk-{chunk:04d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    # a pool per chunk: xvfb sandboxes are children whose CPU counts only once they exit
    pool = backend.open_pool(config, provider)
    try:
        backend.record_demos(tasks, list(pool), tmp)
    except OracleError as exc:  # keep what was recorded, as the warm start does
        log(f"bench (d): an oracle failed in chunk {chunk} ({exc}); keeping the demos recorded")
    finally:
        pool.close()
    for demo in _demo_folders(tmp):
        os.rename(demo, demos / (prefix + demo.name))
    shutil.rmtree(tmp)


def _more_sft_arm(config: Any, folder: Path, start: Path, *, target_cpu_s: float, provider: str, backend: Backend,
                  chunk_demos: int, chunk_steps: int, log: Callable[[str], None]) -> None:
    """(d): SFT continued from the start's policy on new demos, chunk by chunk (record, then
    ``chunk_steps`` more steps resumed from the last checkpoint) until its CPU reaches
    ``target_cpu_s``; then the held-out evaluation by the loop itself, with no iteration."""
    from deskdojo.agent.train.sft import sft
    from deskdojo.evolve.build import policy_config, select_families, sft_config
    from deskdojo.evolve.run import run_evolve

    if _result(folder) is not None:
        log(f"bench: {folder} finished earlier; skipped")
        return
    state_path = folder / MORE_SFT_STATE
    state = json.loads(state_path.read_text()) if state_path.exists() else {"recorded": 0, "trained": 0, "chunks": []}
    families = select_families(config.curriculum.families)
    demos = folder / "demos"
    demos.mkdir(parents=True, exist_ok=True)
    settings = policy_config(config)
    base = sft_config(config, demos=str(demos), out=str(folder / SFT_DIR), history_k=settings.history_k,
                      observation=settings.observation)
    with CpuLedger(folder / LEDGER) as ledger:
        while True:
            if state["trained"] == state["recorded"]:
                if state["trained"] and ledger.total() >= target_cpu_s:
                    break
                tasks = more_sft_tasks(families, config.eval.levels, state["recorded"], chunk_demos)
                _record_chunk(config, tasks, demos, state["recorded"], provider=provider, backend=backend, log=log)
                if not _demo_folders(demos):
                    raise DeskdojoError(f"bench (d): no oracle demo could be recorded into {demos}")
                state["recorded"] += 1
                write_atomic(state_path, json.dumps(state, indent=1).encode())
            chunk = state["trained"] + 1
            steps = chunk * chunk_steps
            sft(dataclasses.replace(base, model=str(start / SFT_DIR / "policy"), steps=steps,
                                    checkpoint_every=chunk_steps),
                log=log, resume=(folder / SFT_DIR / "checkpoints").exists(), progress=sys.stderr)
            state["trained"] = chunk
            state["chunks"].append({"chunk": chunk, "demos": len(_demo_folders(demos)), "sft_steps": steps,
                                    "cpu_s": round(ledger.total(), 3)})
            write_atomic(state_path, json.dumps(state, indent=1).encode())
            log(f"bench (d): chunk {chunk}: {state['chunks'][-1]['demos']} demos, {steps} SFT steps, "
                f"{ledger.total():.0f} of {target_cpu_s:.0f} CPU s")
    train_cpu = ledger.total()
    cpu = _cpu_seconds()
    # deadline 0: no GRPO iteration may start, so the run is the at-start evaluation only,
    # by the same rollout, judge and held-out tasks as the other arms
    result = run_evolve(config, folder, resume=(folder / "config.json").exists(), provider=provider,
                        log=lambda *a: None, progress=sys.stderr, deadline=0.0, build=backend.build_parts)
    if result.state != "finished" or not heldout_records(folder):
        raise BenchStopped(f"arm more_sft's evaluation stopped in {folder}; run the same command again to resume it")
    _finish(folder, {"arm": "more_sft", "cpu_s": round(train_cpu, 3), "target_cpu_s": round(target_cpu_s, 3),
                     "eval_cpu_s": round(_cpu_seconds() - cpu, 3), "chunks": state["trained"],
                     "demos": len(_demo_folders(demos)), "demo_env_steps": _demo_steps(demos),
                     "sft_steps": state["trained"] * chunk_steps, "cpu_by_chunk": [c["cpu_s"] for c in state["chunks"]]})


# --- reading the arms back -------------------------------------------------------------


def _evolve_entry(folder: Path, resamples: int) -> dict[str, Any]:
    result = _result(folder) or {}
    records = heldout_records(folder)
    ledger = cpu_samples(folder / LEDGER)
    rows = diagnostics(folder)
    curve = []
    for h in records:
        cpu = cpu_at(ledger, h["time"])
        curve.append([h["env_steps"], h.get("success"), None if cpu is None else round(cpu / 60, 3)])
    return {**arm_figures(records[-1] if records else None, resamples=resamples),
            "outcomes": outcome_map(records[-1]) if records else None, "run_dir": str(folder),
            "iterations": result.get("iterations"), "env_steps": result.get("env_steps"),
            "cpu_minutes": round(result["cpu_s"] / 60, 3) if "cpu_s" in result else None,
            "wall_minutes": round(result["wall_s"] / 60, 3) if "wall_s" in result else None,
            "curve": curve, "diagnostics": rows, "diagnostics_summary": diagnostics_summary(rows),
            "start_record": records[0] if records else None}


def _seed_entry(seed: int, folder: Path, resamples: int) -> dict[str, Any]:
    start = _result(folder / START_DIR) or {}
    b = _evolve_entry(folder / ARM_DIRS["curriculum"], resamples)
    c = _evolve_entry(folder / ARM_DIRS["uniform"], resamples)
    first = b.pop("start_record")
    c_first = c.pop("start_record")
    a = {**arm_figures(first, resamples=resamples), "outcomes": outcome_map(first),
         "run_dir": f"{b['run_dir']}/heldout.jsonl (iteration 0)", "env_steps": 0, "cpu_minutes": None,
         "curve": [[0, first.get("success") if first else None, 0.0]]}
    more = folder / ARM_DIRS["more_sft"]
    result = _result(more) or {}
    records = heldout_records(more)
    d = {**arm_figures(records[-1] if records else None, resamples=resamples),
         "outcomes": outcome_map(records[-1]) if records else None, "run_dir": str(more),
         "env_steps": result.get("demo_env_steps"), "cpu_minutes": round(result["cpu_s"] / 60, 3) if result else None,
         "target_cpu_minutes": round(result["target_cpu_s"] / 60, 3) if result else None,
         "eval_cpu_minutes": round(result["eval_cpu_s"] / 60, 3) if result else None,
         "demos": result.get("demos"), "sft_steps": result.get("sft_steps"), "chunks": result.get("chunks"),
         "curve": [a["curve"][0]] + ([[result.get("demo_env_steps"), records[-1].get("success"),
                                      round(result["cpu_s"] / 60, 3)]] if records and result else [])}
    target = c["success"]
    start_success = c_first.get("success") if c_first else None
    # only a gain over the shared start is a target worth reaching
    improved = target is not None and start_success is not None and target > start_success
    return {"seed": seed, "sft_start": {"run_dir": str(folder / START_DIR), "demos": start.get("demos"),
                                        "cpu_minutes": round(start["cpu_s"] / 60, 3) if start else None},
            "arms": {"sft_only": a, "curriculum": b, "uniform": c, "more_sft": d},
            "uniform_improved": improved,
            "curriculum_steps_to_uniform_final": steps_to_reach(b["curve"], target) if improved else None}


def git_state() -> tuple[str | None, bool | None]:
    """The checkout's commit and whether it has uncommitted changes (None: not a checkout)."""
    repo = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=30)
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None, None
    if head.returncode != 0:
        return None, None
    return head.stdout.strip(), bool(dirty.stdout.strip()) if dirty.returncode == 0 else None


# --- the bench --------------------------------------------------------------------------


def run_learning_bench(*, seeds: int = 3, env_steps: int = 400, heldout_per_level: int = 4,
                       levels: Sequence[int] = (0, 1, 2, 3), families: Sequence[str] | None = None,
                       runs_root: str = "runs/bench-learning", provider: str = "auto", sandboxes: int | None = None,
                       config_path: str | None = None, chunk_demos: int | None = None, chunk_steps: int = 20,
                       resamples: int = RESAMPLES, command: str | None = None, backend: Backend | None = None,
                       log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run (or resume) every seed's arms under ``runs_root``, then read them all back into
    the report, which is also written to ``runs_root/bench_learning.json``."""
    from deskdojo.evolve.build import resolve_provider, select_families

    backend = backend or Backend()
    log = log or (lambda text: print(text, file=sys.stderr, flush=True))
    if seeds < 1 or chunk_steps < 1 or (chunk_demos is not None and chunk_demos < 1):
        raise ConfigError("--seeds, --more-sft-chunk-steps and --more-sft-chunk-demos must be >= 1")
    provider = resolve_provider(provider, log=log)
    root = Path(runs_root)
    common = dict(provider=provider, env_steps=env_steps, heldout_per_level=heldout_per_level, levels=levels,
                  families=families, sandboxes=sandboxes)
    base = bench_config(config_path, seed=0, sampling="curriculum", **common)
    if not base.sft.enabled:
        raise ConfigError("bench learning compares arms from one SFT start, but the config turns it off "
                          "(sft.enabled: false): enable it")
    chosen = select_families(base.curriculum.families)
    chunk_demos = chunk_demos or len(chosen) * len(base.eval.levels)
    spec = {"config": {**base.to_dict(), "seed": None}, "more_sft": {"chunk_demos": chunk_demos,
                                                                      "chunk_steps": chunk_steps}}
    _check_spec(root, spec)
    # one whole line as each part starts (the parts draw progress lines of their own), with
    # the time left at the pace of the parts done now (a resumed bench's finished ones are not)
    finished = sum(_result(root / f"seed{seed}" / name) is not None
                   for seed in range(seeds) for name in (START_DIR, *ARM_DIRS.values()))
    parts = ProgressLine("bench learning", seeds * 4, unit="parts (SFT start and 3 arms per seed)",
                         start=finished, plain_every_s=0, heartbeat_s=None, redraw=False)
    with parts:
        for seed in range(seeds):
            curriculum = bench_config(config_path, seed=seed, sampling="curriculum", **common)
            uniform = bench_config(config_path, seed=seed, sampling="uniform", **common)
            folder = root / f"seed{seed}"
            parts.update(4 * seed, info=f"seed {seed}: the SFT start")
            _sft_start(curriculum, folder / START_DIR, provider=provider, backend=backend, log=log)
            start = folder / START_DIR
            parts.update(4 * seed + 1, info=f"seed {seed}: arm (b) curriculum")
            _evolve_arm(curriculum, folder / ARM_DIRS["curriculum"], start, arm="curriculum", provider=provider,
                        backend=backend, log=log)
            parts.update(4 * seed + 2, info=f"seed {seed}: arm (c) uniform")
            _evolve_arm(uniform, folder / ARM_DIRS["uniform"], start, arm="uniform", provider=provider,
                        backend=backend, log=log)
            target = _result(folder / ARM_DIRS["curriculum"])["cpu_s"]
            parts.update(4 * seed + 3, info=f"seed {seed}: arm (d) more SFT")
            _more_sft_arm(curriculum, folder / ARM_DIRS["more_sft"], start, target_cpu_s=target, provider=provider,
                          backend=backend, chunk_demos=chunk_demos, chunk_steps=chunk_steps, log=log)
        parts.update(4 * seeds, info="")

    per_seed = [_seed_entry(seed, root / f"seed{seed}", resamples) for seed in range(seeds)]
    heldout_tasks = len(per_seed[0]["arms"]["sft_only"].get("outcomes") or {}) or \
        sum(len([lv for lv in base.eval.levels if lv < f.levels]) for f in chosen.values()) * heldout_per_level
    warning = None
    if heldout_tasks < MIN_HELDOUT_TASKS or len(chosen) < MIN_HELDOUT_FAMILIES:
        warning = (f"the held-out set has {heldout_tasks} tasks over {len(chosen)} families; a reviewer expects "
                   f"at least {MIN_HELDOUT_TASKS} over {MIN_HELDOUT_FAMILIES} (--families, --heldout-per-level)")
    commit, dirty = git_state()
    report: dict[str, Any] = {
        "command": command or shlex.join(sys.argv), "git_commit": commit, "git_dirty": dirty,
        "runs_root": str(root), "provider": provider, "seeds": seeds, "env_step_budget": env_steps,
        "heldout": {"tasks": heldout_tasks, "families": sorted(chosen), "levels": list(base.eval.levels),
                    "per_level": heldout_per_level, "split": "heldout", "warning": warning},
        "more_sft": {"chunk_demos": chunk_demos, "chunk_steps": chunk_steps, "seed_base": MORE_SFT_SEED_BASE,
                     "note": "(d)'s CPU counts recording and training; (b)'s, its target, also counts (b)'s "
                             "held-out evaluations, so (d) gets slightly more training CPU than (b)"},
        "bootstrap": {"resamples": resamples, "confidence": 0.95, "over": "held-out tasks"},
        "cpu_note": CPU_NOTE, "per_seed": per_seed,
        "summary": summarise(per_seed, resamples=resamples), "cells": cell_table(per_seed)}
    try:
        report["plots"] = plot_curves(report, root)
    except ImportError as exc:
        log(f"bench: curves not drawn ({exc})")
    write_atomic(root / REPORT, json.dumps(report, indent=1).encode())
    return report
