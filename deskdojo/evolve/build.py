"""Building a run's real parts from its config: the sandbox pool (provider ``auto`` picks
docker or xvfb), the task families and their plan, the state judge and probe, the VLM
policy (after the SFT warm start on oracle demos) and its GRPO learner.

Every heavy import happens here, inside functions, when a run starts.
"""

from __future__ import annotations

import json
import math
import pkgutil
import shutil
import sys
import time
from typing import Any, Callable, Sequence

from deskdojo.core.elements import MODES_WITH_ELEMENTS
from deskdojo.core.errors import ConfigError, SandboxError
from deskdojo.core.progress import HEARTBEAT_S, activity
from deskdojo.core.rundir import RunDir
from deskdojo.core.types import Split
from deskdojo.evolve.config import EvolveConfig
from deskdojo.evolve.parts import FamilyPlan, Parts

SFT_DIR = "sft"
WEB_PREFIX = "miniwob."
"""Families named so run in the web image (``deskdojo.curriculum.families._miniwob``)."""
DEMO_SHARE = 0.5
"""Of the warm start's time limit, the share demo recording may use; SFT gets what is left."""
DEMO_SEED_BASE = 500_000
"""Demo tasks use training seeds from here up, apart from the tasks the plan proposes."""
TINY_REHEARSAL = 16
"""Generated later-step examples per SFT batch when the tiny reader warm-starts, and per
GRPO optimizer step after: its demos are all one-click level-0 tasks (click, then done),
and 16 generated later steps per batch keep its p(done) after one click low."""


def resolve_provider(requested: str, *, log: Callable[[str], None] = print) -> str:
    """``auto``: docker when the engine answers and the sandbox image is present, else xvfb."""
    if requested != "auto":
        return requested
    try:
        from deskdojo.vm.docker import engine_available
        from deskdojo.vm.image import image_present

        if engine_available() and image_present():
            return "docker"
        reason = "the docker engine or the sandbox image is not available (`make setup` builds both)"
    except SandboxError as exc:
        reason = f"docker is not usable ({exc})"
    from deskdojo.vm.xvfb import isolation

    log(f"WARNING: {reason}: falling back to the xvfb provider, which isolates less than docker. "
        f"Its guests run {isolation(create_account=False).describe()}. "
        f"Pass --provider xvfb to choose it and silence this warning.")
    return "xvfb"


def practice_apps() -> set[str]:
    import deskdojo.vm.guest.apps as apps

    return {m.name for m in pkgutil.iter_modules(apps.__path__) if not m.name.startswith("_")
            and m.name not in ("common",)}


def select_families(names: tuple[str, ...]) -> dict[str, Any]:
    """The named families, or (none named) every family whose app is a practice app.
    MiniWoB++ families (``miniwob.<task>``) are taken only by name: they need the web image."""
    from deskdojo.curriculum.families import all_families, web_families

    families = all_families()
    if names:
        if any(n.startswith(WEB_PREFIX) for n in names):
            families = {**families, **web_families()}
        missing = [n for n in names if n not in families]
        if missing:
            raise ConfigError(f"curriculum.families names unknown families {missing}; the families are: "
                              f"{', '.join(families)}")
        return {n: families[n] for n in names}
    apps = practice_apps()
    chosen = {n: f for n, f in families.items() if f.app in apps}
    if not chosen:
        raise ConfigError(f"no task family uses a practice app (families: {', '.join(families) or 'none'}); "
                          "name some with curriculum.families")
    return chosen


def sandbox_config(config: EvolveConfig, provider: str) -> Any:
    """The pool's sandbox settings; MiniWoB++ families make the flavour ``web`` (their pages
    and Chromium are only in the web image), which no other flavour or provider can run."""
    from deskdojo.vm.config import SandboxConfig

    settings = {**config.sandbox, "provider": provider}
    web = [n for n in config.curriculum.families if n.startswith(WEB_PREFIX)]
    if web:
        if settings.setdefault("flavor", "web") != "web":
            raise ConfigError(f"curriculum.families names {web[0]}, which runs in the web image; "
                              f"set sandbox.flavor: web (or leave it out), not {settings['flavor']!r}")
        if provider not in ("docker", "fake"):
            raise ConfigError(f"curriculum.families names {web[0]}: MiniWoB++ pages need the docker provider "
                              f"(the web image has the browser), not {provider!r}")
    return SandboxConfig.from_dict(settings)


def check_settings(config: EvolveConfig, provider: str | None = None) -> None:
    """Build every part's config from ``config`` the way ``build_parts`` will, so that a bad
    nested setting (``policy: {tempratur: 0.7}``, ``grpo: {lrr: 1}``) is a ConfigError
    naming its section before any folder is made or sandbox started. Imports torch (GRPO)."""
    from deskdojo.agent.rollout import RolloutConfig
    from deskdojo.agent.train.grpo import GRPOConfig
    from deskdojo.curriculum.scheduler import SchedulerConfig

    concrete = provider or (config.provider if config.provider != "auto" else "docker")
    sections: list[tuple[str, Callable[[], Any]]] = [
        ("curriculum.families", lambda: select_families(config.curriculum.families)),
        ("sft.families", lambda: sft_families(config, select_families(config.curriculum.families))),
        ("curriculum.scheduler", lambda: SchedulerConfig.from_dict({"seed": config.seed,
                                                                    **config.curriculum.scheduler})),
        ("rollout", lambda: RolloutConfig.from_dict({"max_steps": config.max_steps or 15, **config.rollout})),
        ("sandbox", lambda: sandbox_config(config, concrete)),
        ("policy", lambda: policy_config(config)),
        ("grpo", lambda: GRPOConfig.from_dict(config.grpo_settings())),
        ("judge.vlm", lambda: vlm_judge_config(config)),
    ]
    if config.proposer.kind != "none" and concrete == "fake":
        raise ConfigError(f"proposer.kind {config.proposer.kind}: fake sandboxes run no apps to explore; "
                          "use provider xvfb or docker, or proposer.kind none")
    if config.sft.enabled:
        sections.append(("sft.options", lambda: sft_config(config, demos="demos", out="sft", history_k=1,
                                                           observation=policy_config(config).observation,
                                                           max_seconds=config.sft.max_seconds)))
    for section, build in sections:
        try:
            build()
        except ConfigError as exc:
            message = str(exc)
            raise ConfigError(message if message.startswith(section) else f"{section}: {message}") from None
        except (TypeError, ValueError) as exc:  # a value of the wrong type reaching a comparison
            raise ConfigError(f"{section}: {exc}") from None


def vlm_judge_config(config: EvolveConfig) -> Any:
    from deskdojo.core.records import decode
    from deskdojo.world_model.vlm_judge import VLMJudgeConfig

    return decode(VLMJudgeConfig, dict(config.judge.vlm), where="judge.vlm", error=ConfigError)


def load_judge_model(path: str) -> Any:
    """A judge model from a folder ``judge train`` wrote (its ``judge.json`` says how to
    ask it), or any policy checkpoint or preset by name (images on)."""
    import json
    from pathlib import Path

    from deskdojo.agent.policy import PolicyConfig, load_policy
    from deskdojo.world_model.distill import JUDGE_FILE
    from deskdojo.world_model.vlm_judge import PolicyJudgeModel

    folder = Path(path).expanduser()
    settings = json.loads((folder / JUDGE_FILE).read_text()) if (folder / JUDGE_FILE).exists() else {}
    policy = load_policy(str(path), PolicyConfig())
    policy.set_greedy(True)
    return PolicyJudgeModel(policy, max_new_tokens=int(settings.get("max_new_tokens", 160)),
                            images=bool(settings.get("images", True)), view=str(settings.get("view", "full")))


def build_judge(config: EvolveConfig, run: RunDir, *, log: Callable[[str], None] = print) -> Any:
    """The state judge, or the hybrid judge over it and the VLM judge ``judge.model``."""
    from deskdojo.world_model.judge import StateJudge

    if config.judge.kind == "checks":
        return StateJudge()
    from deskdojo.world_model.hybrid import DISAGREEMENTS, HybridJudge
    from deskdojo.world_model.vlm_judge import VLMJudge

    model = load_judge_model(config.judge.model)
    log(f"judge: hybrid ({config.judge.mode}): checks, and the VLM judge {config.judge.model}")
    return HybridJudge(StateJudge(), VLMJudge(model, run.path / "trajectories", vlm_judge_config(config)),
                       mode=config.judge.mode, disagreements=run.path / DISAGREEMENTS)


def build_parts(config: EvolveConfig, run: RunDir, *, log: Callable[[str], None] = print,
                provider: str | None = None, warm_start_deadline: float | None = None) -> Parts:
    """Start the sandboxes and build everything else; the pool is closed if building fails.
    ``warm_start_deadline`` (a ``time.monotonic()`` value) is when the SFT warm start must end."""
    from deskdojo.agent.model.loading import quiet_libraries
    from deskdojo.agent.rollout import RolloutConfig, rollout
    from deskdojo.vm.pool import SandboxPool
    from deskdojo.world_model.judge import StateJudge
    from deskdojo.world_model.probe import StateProbe

    quiet_libraries()
    if config.ray.enabled:
        return build_ray_parts(config.replace(provider=provider) if provider else config, run, log=log)
    provider = provider or resolve_provider(config.provider, log=log)
    families = select_families(config.curriculum.families)
    rollout_config = RolloutConfig.from_dict({"max_steps": config.max_steps or 15, **config.rollout})
    plan = family_plan(config, families)
    log(f"starting {config.sandboxes} {provider} sandboxes; families: {', '.join(families)}")
    with activity(f"starting {config.sandboxes} {provider} sandboxes", delay_s=HEARTBEAT_S):
        pool = SandboxPool(sandbox_config(config, provider), config.sandboxes).start()
    if config.curriculum.admission and provider != "fake":  # fake sandboxes run no apps to check
        plan.admit = pool_admission(pool, StateJudge())
    try:
        policy = warm_started_policy(config, run, pool, families, log=log, deadline=warm_start_deadline)
        from deskdojo.evolve.learner import vlm_learner

        learner = vlm_learner(policy, grpo_settings(config, policy), run.path / "trajectories", log=log)
        judge = build_judge(config, run, log=log)
        if config.proposer.kind != "none":
            plan = proposing_plan(config, run, plan, pool[0], families, log=log)
        return Parts(learner=learner, plan=plan, judge=judge, pool=pool,
                     rollout=rollout, rollout_config=rollout_config, probe=StateProbe(files=False))
    except BaseException:
        pool.close()
        raise


def grpo_settings(config: EvolveConfig, policy: Any) -> dict[str, Any]:
    """The run's GRPO settings; the tiny reader reading an element table also learns
    ``TINY_REHEARSAL`` generated later steps in every optimizer step (a ``grpo`` value
    wins): the uniform arm's updates on one-click tasks alone taught it ``done`` after the
    first click of every family (held-out 86% -> 58%, one seed of three)."""
    return {"generated_rehearsal": tiny_rehearsal(config, policy.observation), **config.grpo_settings()}


def tiny_rehearsal(config: EvolveConfig, observation: str | None) -> int:
    """``TINY_REHEARSAL`` for the tiny reader reading an element table (``observation``
    None: the reader's own mode, a11y_tree), else 0."""
    from deskdojo.agent.model.loading import READER_PRESET

    reads_elements = observation is None or observation in MODES_WITH_ELEMENTS
    return TINY_REHEARSAL if config.model == READER_PRESET and reads_elements else 0


def family_plan(config: EvolveConfig, families: Any) -> FamilyPlan:
    """The run's tasks: the families' templates by the curriculum (or uniformly), and its
    held-out set."""
    return FamilyPlan(families, sampling=config.sampling, scheduler_settings=config.curriculum.scheduler,
                      seed=config.seed, heldout_levels=config.eval.levels,
                      heldout_per_level=config.eval.tasks_per_level,
                      seeds_per_level=config.curriculum.seeds_per_level,
                      max_level=config.curriculum.max_level)


def build_ray_parts(config: EvolveConfig, run: RunDir, *, log: Callable[[str], None] = print) -> Parts:
    """The parts of a run whose episodes play on Ray workers (``ray.address``): the workers
    own the sandboxes, the policy copies that act and the judges; this process keeps the
    learner and the plan (admission checks run on a worker). The provider is resolved on
    each worker's node."""
    from deskdojo.agent.policy import load_policy
    from deskdojo.agent.rollout import RolloutConfig, rollout
    from deskdojo.evolve.learner import vlm_learner
    from deskdojo.evolve.ray_workers import RayFleet
    from deskdojo.world_model.judge import StateJudge

    families = select_families(config.curriculum.families)
    plan = family_plan(config, families)
    log(f"ray: starting {config.ray.workers} rollout workers at {config.ray.address}; families: {', '.join(families)}")
    with activity(f"starting {config.ray.workers} Ray rollout workers", delay_s=HEARTBEAT_S):
        fleet = RayFleet.start(config, log=log)
    try:
        if config.curriculum.admission and config.provider != "fake":
            plan.admit = fleet.admit
        policy = load_policy(config.model, policy_config(config))  # the workers load the same
        learner = vlm_learner(policy, grpo_settings(config, policy), run.path / "trajectories", log=log)
        return Parts(learner=learner, plan=plan, judge=StateJudge(), pool=fleet, rollout=rollout,
                     rollout_config=RolloutConfig.from_dict({"max_steps": config.max_steps or 15, **config.rollout}),
                     fleet=fleet)
    except BaseException:
        fleet.close()
        raise


GUIDEBOOKS_DIR = "guidebooks"
APP_SCREEN_TIMEOUT_S = 10.0


def explored_apps(config: EvolveConfig, run: RunDir, sandbox: Any, families: dict[str, Any], *,
                  log: Callable[[str], None] = print) -> list[Any]:
    """One guidebook per training family's app, launched as the family's hardest level
    launches it; kept in the run folder (a resumed run does not explore again)."""
    from deskdojo.curriculum.explore import Guidebook, explore_app
    from deskdojo.curriculum.families.base import launched

    folder = run.path / GUIDEBOOKS_DIR
    folder.mkdir(exist_ok=True)
    books: dict[str, Any] = {}
    for family in families.values():
        task = family.generate(family.levels - 1, DEMO_SEED_BASE, Split.TRAIN)
        found = launched(task)
        if found is None or found[0] in books:
            continue
        app, params = found
        path = folder / f"guidebook-{app}.json"
        if path.exists():
            books[app] = Guidebook.from_json(json.loads(path.read_text()))
            continue
        with activity(f"proposer: exploring {app}", delay_s=HEARTBEAT_S):
            book = explore_app(app, sandbox, params=params, max_depth=config.proposer.max_depth,
                               max_actions=config.proposer.max_actions)
        book.save(path)
        log(f"proposer: explored {app}: {len(book.state_changing)} state-changing actions in {book.seconds:.0f} s")
        books[app] = book
    return list(books.values())


def proposing_plan(config: EvolveConfig, run: RunDir, plan: Any, sandbox: Any, families: dict[str, Any], *,
                   log: Callable[[str], None] = print) -> Any:
    """The family plan with proposed tasks mixed in: exploration's, or those of the model
    ``proposer.model`` (loaded once, beside the policy)."""
    from deskdojo.evolve.proposing import ExplorationProposals, ModelProposals, ProposingPlan

    books = explored_apps(config, run, sandbox, families, log=log)
    if config.proposer.kind == "explore":
        source: Any = ExplorationProposals.from_guidebooks(books, seed=config.seed)
    else:
        source = ModelProposals(model_proposer(config.proposer.model), books, app_screens(sandbox, books))
    log(f"proposer: {source.name} ({config.proposer.per_iteration} of {config.tasks_per_iteration} tasks per "
        f"iteration; tasks without checks: {'the VLM judge' if config.judge.kind == 'hybrid' else 'rejected'})")
    return ProposingPlan(plan, source, per_iteration=config.proposer.per_iteration, batch=config.proposer.batch,
                         judge_only_ok=config.judge.kind == "hybrid", withhold_checks=config.proposer.withhold_checks)


def model_proposer(name: str | None) -> Any:
    from deskdojo.agent.policy import PolicyConfig, load_policy
    from deskdojo.core.checks import validate_checks
    from deskdojo.curriculum.proposer import ModelProposer, PolicyProposerModel

    return ModelProposer(PolicyProposerModel(load_policy(str(name), PolicyConfig())), validate=validate_checks)


def app_screens(sandbox: Any, guidebooks: Sequence[Any]) -> dict[str, tuple[Any, Any]]:
    """Each explored app's first screen: the screenshot (an image) and its elements."""
    import io

    from PIL import Image

    from deskdojo.core.types import Task

    screens = {}
    for book in guidebooks:
        sandbox.reset(Task(id=f"screen-{book.app}", instruction="look", family="proposer", setup=(book.setup(),)))
        deadline = time.monotonic() + APP_SCREEN_TIMEOUT_S
        elements = list(sandbox.elements().elements)
        while len(elements) < 2 and time.monotonic() < deadline:  # the window is up before its widgets
            time.sleep(0.1)
            elements = list(sandbox.elements().elements)
        image = Image.open(io.BytesIO(sandbox.screenshot_png())).convert("RGB")
        screens[book.app] = (image, elements)
    return screens


def pool_admission(pool: Any, judge: Any) -> Callable[[Any], Any]:
    """``admit(task)`` on the pool's first sandbox, run when the plan proposes (between
    rollouts, so it borrows no sandbox an episode is using). A sandbox that died under
    it is replaced and the task tried once more; the plan caches results per task."""
    from deskdojo.curriculum.admission import admit

    def admit_task(task: Any) -> Any:
        result = admit(task, pool[0], judge)
        if result.reason == "sandbox_died":
            pool.check_health()
            result = admit(task, pool[0], judge)
        return result

    return admit_task


def policy_config(config: EvolveConfig) -> Any:
    from deskdojo.agent.policy import PolicyConfig

    return PolicyConfig.from_dict(config.policy_settings())


def warm_started_policy(config: EvolveConfig, run: RunDir, pool: Any, families: dict[str, Any], *,
                        log: Callable[[str], None] = print, deadline: float | None = None) -> Any:
    """The policy evolving starts from: the SFT result (trained now, or found in the run
    folder when resuming), or the model itself when SFT is off. LoRA goes on top."""
    from deskdojo.agent.policy import load_policy

    settings = policy_config(config)
    if not config.sft.enabled:
        return load_policy(config.model, settings)
    final = run.path / SFT_DIR / "policy"
    if not (final / "deskdojo_policy.json").exists():
        run_sft(config, run, pool, families, log=log, deadline=deadline)
    return load_policy(str(final), settings)


def sft_families(config: EvolveConfig, families: dict[str, Any]) -> dict[str, Any]:
    """The warm start's families: ``sft.families`` (each must be a training family), or the
    first ``SFT_DEFAULT_FAMILIES`` training families."""
    from deskdojo.evolve.config import SFT_DEFAULT_FAMILIES

    if not config.sft.families:
        return dict(list(families.items())[:SFT_DEFAULT_FAMILIES])
    missing = [name for name in config.sft.families if name not in families]
    if missing:
        raise ConfigError(f"sft.families names {missing}, which curriculum.families does not train "
                          f"({', '.join(families)}): name training families only")
    return {name: families[name] for name in config.sft.families}


def demo_tasks(config: EvolveConfig, families: dict[str, Any]) -> list[Any]:
    """Oracle demo tasks, families interleaved (a recording cut short still covers each)."""
    chosen = sft_families(config, families)
    tasks = []
    for i in range(config.sft.demos_per_family):
        for family in chosen.values():
            levels = [lv for lv in config.sft.levels if lv < family.levels] or [0]
            tasks.append(family.generate(levels[i % len(levels)], DEMO_SEED_BASE + i, Split.TRAIN))
    return tasks


def run_sft(config: EvolveConfig, run: RunDir, pool: Any, families: dict[str, Any], *,
            log: Callable[[str], None] = print, deadline: float | None = None) -> Any:
    """Record oracle demos of the easy levels into ``demos/`` and fine-tune on them, within
    ``deadline`` (a ``time.monotonic()`` value) and ``sft.max_seconds``: recording may use
    ``DEMO_SHARE`` of that time, SFT the rest. Progress lines go to stderr."""
    from deskdojo.agent.demos import record_oracle_demos
    from deskdojo.agent.train.sft import sft
    from deskdojo.core.oracle import OracleError

    started = time.monotonic()
    if config.sft.max_seconds is not None:
        deadline = min(deadline or math.inf, started + config.sft.max_seconds)
    demos = run.path / "demos"
    if demos.exists():  # a killed warm start: record again from scratch
        shutil.rmtree(demos)
    demos.mkdir(parents=True)
    tasks = demo_tasks(config, families)
    limit = f" (time limit {deadline - started:.0f} s for demos and SFT)" if deadline is not None else ""
    log(f"sft warm start: recording {len(tasks)} oracle demos{limit}")
    recording_deadline = started + DEMO_SHARE * (deadline - started) if deadline is not None else None
    try:
        record_oracle_demos(tasks, list(pool), demos, deadline=recording_deadline, progress=sys.stderr)
    except OracleError as exc:  # keep the demos that were recorded
        log(f"sft warm start: an oracle failed ({exc}); training on the demos that were recorded")
    recorded = sum(1 for p in demos.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not recorded:
        raise ConfigError("no oracle demo could be recorded for the SFT warm start; turn it off with sft.enabled: false")
    if recorded < len(tasks):
        log(f"sft warm start: {recorded} of {len(tasks)} demos recorded in the time given; training on them")
    out = run.path / SFT_DIR
    settings = sft_config(config, demos=str(demos), out=str(out), history_k=policy_config(config).history_k,
                          observation=policy_config(config).observation,
                          max_seconds=max(1.0, deadline - time.monotonic()) if deadline is not None else None)
    return sft(settings, log=log, resume=(out / "checkpoints").exists(), progress=sys.stderr)


def sft_config(config: EvolveConfig, *, demos: str, out: str, history_k: int,
               observation: str | None = None, max_seconds: float | None = None) -> Any:
    """The warm start's SFTConfig: the run's settings (the policy's observation mode too,
    and ``max_seconds``: what is left of the warm start's time; ``TINY_REHEARSAL`` generated
    later steps per batch for the tiny reader reading element tables), then ``sft.options``."""
    from deskdojo.agent.train.sft import SFTConfig

    rehearsal = tiny_rehearsal(config, observation)
    return SFTConfig.from_dict({"demos": demos, "model": config.model, "out": out,
                                "steps": config.sft.steps, "seed": config.seed,
                                "history_k": history_k, "observation": observation, "log_every": 20,
                                "checkpoint_every": max(config.sft.steps, 1), "max_seconds": max_seconds,
                                "generated_per_batch": rehearsal, **config.sft.options})
