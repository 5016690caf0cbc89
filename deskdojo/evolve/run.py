"""Opening an evolve run directory: a new one gets the resolved config (config.json with
its hash, and a config.yaml copy); a resumed one must be given the same config, or
``force`` to accept the differences, which are listed key by key."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from deskdojo.core.errors import ConfigError, RunDirError
from deskdojo.core.rundir import RUN_FORMAT_VERSION, RunDir, write_atomic
from deskdojo.evolve.config import EvolveConfig, diff_configs, to_yaml


class ConfigChanged(RunDirError):
    """A resumed run was given a different config (and no ``--force``)."""

    def __init__(self, run_dir: Path, differences: list[str]):
        self.differences = differences
        listing = "\n  ".join(differences)
        super().__init__(f"{run_dir} was started with a different config:\n  {listing}\n"
                         f"resume without the changes, or add --force to continue with them")


def new_run_dir(runs_root: str | Path = "runs", prefix: str = "evolve") -> Path:
    stem = f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"
    path = Path(runs_root) / stem
    n = 1
    while path.exists():
        n += 1
        path = Path(runs_root) / f"{stem}-{n}"
    return path


def stored_config(run: RunDir) -> EvolveConfig:
    try:
        return EvolveConfig.from_dict(run.config()["config"])
    except ConfigError as exc:
        raise ConfigError(f"{run.path / 'config.json'}: {exc}") from None


def open_or_create_run(path: str | Path, config: EvolveConfig | None, *, resume: bool,
                       force: bool = False) -> RunDir:
    """``resume=False``: create ``path`` with ``config``. ``resume=True``: open it; a
    ``config`` that differs from the stored one is refused unless ``force``, in which
    case it replaces the stored one (the old is kept in ``config.previous.json``)."""
    path = Path(path)
    if not resume:
        if config is None:
            raise RunDirError("a new run needs a config")
        run = RunDir.create(path, config.to_dict())
        write_atomic(run.path / "config.yaml", to_yaml(config).encode())
        return run
    run = RunDir.open(path)
    if config is None:
        return run
    old = with_new_defaults(run.config()["config"])
    differences = diff_configs(old, config.to_dict())
    if differences and not force:
        raise ConfigChanged(path, differences)
    if differences:
        record = run.config()
        write_atomic(run.path / "config.previous.json", json.dumps(record, indent=1).encode())
        body = json.dumps(config.to_dict(), sort_keys=True, indent=1)
        import hashlib

        write_atomic(run.path / "config.json", json.dumps({
            "format_version": RUN_FORMAT_VERSION, "config_hash": hashlib.sha256(body.encode()).hexdigest()[:16],
            "created_at": record.get("created_at"), "forced_at": time.time(), "config": config.to_dict(),
        }, indent=1).encode())
        write_atomic(run.path / "config.yaml", to_yaml(config).encode())
    return run


def with_new_defaults(stored: Any) -> Any:
    """A stored config read through today's ``EvolveConfig``: a setting added since the run
    was made takes its default, which is what the run ran with, so the run still resumes.
    A config that no longer reads is compared as stored (and so differs)."""
    try:
        return EvolveConfig.from_dict(stored).to_dict()
    except ConfigError:
        return stored


def describe_differences(differences: list[str]) -> str:
    return "\n".join(f"  {line}" for line in differences)


def resolved(run: RunDir) -> dict[str, Any]:
    return run.config()["config"]


def run_evolve(config: EvolveConfig | None, run_dir: str | Path, *, resume: bool = False, force: bool = False,
               provider: str | None = None, log: Any = print, deadline: float | None = None,
               progress: Any = None, warm_start_deadline: float | None = None, build: Any = None) -> Any:
    """Open (or create) the run, build its parts, run the loop, close the sandboxes, print
    the learning-curve table. Returns the loop's RunResult. Resuming, ``config`` None
    means the stored one; a different one is refused unless ``force``. ``deadline`` (a
    ``time.monotonic()`` value) bounds this session beyond the config's budget, the final
    held-out evaluation included; ``warm_start_deadline`` bounds the SFT warm start (demo
    recording and training); ``progress`` is the stream of the per-iteration progress line
    (default stderr); ``build`` replaces ``build_parts`` (same signature), for benches and
    tests that run the loop on fakes."""
    from deskdojo.evolve.build import build_parts, check_settings
    from deskdojo.evolve.loop import Evolver, final_table
    from deskdojo.evolve.runstate import check_resumable

    # every input is checked before a folder is made or a sandbox started
    if config is not None:
        check_settings(config, provider)
    if resume:
        existing = RunDir.open(run_dir)
        if config is None:
            check_settings(stored_config(existing), provider)
        check_resumable(existing)
    run = open_or_create_run(run_dir, config, resume=resume, force=force)
    if resume:
        config = stored_config(run)
    log(f"run folder: {run.path}  (config hash {config.config_hash()})")
    parts = (build or build_parts)(config, run, log=log, provider=provider,
                                   warm_start_deadline=warm_start_deadline)
    try:
        result = Evolver(config, run, parts, resume=resume, deadline=deadline, out=progress).run_loop()
    finally:
        parts.close()
    log("\nheld-out success (learning curve):")
    log(final_table(result))
    log(f"\n{result.state}: {result.iterations} iterations, {result.env_steps} env steps, "
        f"{result.wall_s:.0f} s; run folder {run.path}"
        + (f"; plot {run.path / 'learning_curve.png'}" if (run.path / 'learning_curve.png').exists() else ""))
    return result
