"""Rollouts on a Ray cluster: worker actors with their own sandboxes, one learner here.

Each ``RolloutWorker`` actor owns a ``SandboxPool`` on its node (placed by the node's
``sandbox`` resource), its own copy of the policy (loaded from the run's ``model``, as
the learner was) and a state judge. It plays a chunk of episodes with the same
``rollout`` a local run uses, judges each on its sandbox right after the episode (the
state judge needs the final state), and returns the steps, frames, element listings and
verdicts as data. Only this process writes the run directory (``record_episode``), in
exactly the files a local run writes, so ``--resume`` and the panel work unchanged.

Weights: after every update the learner's trainable weights (the LoRA adapters, or the
whole model when it trains whole) are put once in the object store as policy version
``n`` (the iteration whose update made them); every call to a worker names the version
it must play with, so a worker that was restarted catches up before it acts. Each
trajectory's ``policy_id`` records the version (``vlm:tiny@v3``).

Faults: a worker that dies mid-call ends that call's episodes as ``error`` (Ray restarts
it, up to ``ray.max_restarts``); one whose call runs past ``ray.worker_timeout_s`` is
dropped from the iteration the same way and restarted (its late answer is never read,
so nothing is counted twice). The iteration goes on with the other workers. The next
call waits for a restarted worker (up to ``ray.worker_timeout_s``) before giving it
episodes, and leaves it out of that call if it is not back by then: a call sent while it
restarts fails at once (seen under load: a whole second iteration lost to one kill). A
restarted worker's new pool removes the containers its predecessor left (their owner is gone).

Ray is imported only when a fleet starts (``pip install 'deskdojo[ray]'``).
"""

from __future__ import annotations

import hashlib
import re
import tempfile
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from deskdojo.core.errors import ConfigError, DeskdojoError, JudgeUnanswered, SandboxError
from deskdojo.core.rundir import RunDir, TrajectoryWriter, write_atomic
from deskdojo.core.types import EndReason, Step, Task, Trajectory, Verdict
from deskdojo.evolve.config import EvolveConfig

SANDBOX_RESOURCE = "sandbox"
"""The custom resource a node offers per sandbox it can run (``ray start --resources '{"sandbox": K}'``)."""
START_TIMEOUT_S = 600.0
"""How long the workers may take to start (sandboxes, policy) before the run gives up."""
POLL_S = 0.2
FRAME_FILE = re.compile(r"frames/\d{4}\.(png|elements\.json)")


class RayNotInstalled(DeskdojoError):
    """``--ray`` was asked for but the ``ray`` package is missing."""


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise RayNotInstalled("Ray is not installed: `pip install 'deskdojo[ray]'` (ray==2.60.0) on the "
                              "driver and on every node") from None
    return ray


def versioned_policy_id(policy_id: str, version: int) -> str:
    """The policy id a trajectory records: which policy, and which of its weight versions."""
    return f"{policy_id.split('@v')[0]}@v{version}"


# --- weights (torch tensors pass through; nothing here imports torch) ---------------------


def trainable_state(policy: Any) -> dict[str, Any]:
    """What an update changes: the trainable parameters (the LoRA adapters, or every weight
    when the model trains whole), copied to the CPU so the object store can hold them."""
    return {name: p.detach().cpu().clone() for name, p in policy.model.named_parameters() if p.requires_grad}


def load_trainable_state(policy: Any, state: Mapping[str, Any]) -> None:
    """Load ``trainable_state``'s output; a name the model lacks, or a trainable weight
    the state lacks, is an error (the worker's model was built differently)."""
    trainable = {name for name, p in policy.model.named_parameters() if p.requires_grad}
    result = policy.model.load_state_dict(dict(state), strict=False)
    missing = sorted(trainable - set(state))
    if result.unexpected_keys or missing:
        raise ConfigError(f"the learner's weights do not fit this worker's model (unexpected "
                          f"{list(result.unexpected_keys)[:3]}, missing {missing[:3]}): every node must "
                          f"load the same `model` with the same policy settings")


def weights_digest(policy: Any) -> str:
    """A hash of the trainable weights: equal on a worker and the learner when they agree."""
    digest = hashlib.sha256()
    for name, p in sorted(policy.model.named_parameters(), key=lambda item: item[0]):
        if p.requires_grad:
            digest.update(name.encode())
            digest.update(p.detach().cpu().float().numpy().tobytes())
    return digest.hexdigest()[:16]


# --- what a worker sends back ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EpisodeResult:
    """One played and judged episode, as data: the driver writes it to the run directory.
    ``files`` are the trajectory folder's ``frames/`` files by relative name; ``verdict``
    is None for an ``error`` episode; ``version`` is the policy version that acted."""

    trajectory_id: str
    task_id: str
    end: EndReason
    error: str | None
    policy_id: str
    version: int
    worker: str
    steps: tuple[Step, ...] = ()
    files: Mapping[str, bytes] = field(default_factory=dict)
    verdict: Verdict | None = None


def lost_episode(trajectory_id: str, task_id: str, *, policy_id: str, version: int, worker: str,
                 error: str) -> EpisodeResult:
    """An episode whose worker died or fell behind: an ``error`` with no steps (never scored)."""
    return EpisodeResult(trajectory_id, task_id, EndReason.ERROR, error, policy_id, version, worker)


def record_episode(run: RunDir, task: Task, result: EpisodeResult, *, version: int) -> tuple[Trajectory, Verdict | None]:
    """Write ``result`` into the run directory as a local run writes an episode (frames and
    listings, ``steps.jsonl``, ``trajectory.json``); returns the trajectory and its verdict.

    A stale episode (``result.version`` is not the learner's ``version``) is refused: it is
    written as ``error`` with the reason and its verdict dropped, so it never reaches GRPO.
    GRPO's ratio is pi_theta / pi_old over the stored sampling log-probs, and its clipping
    keeps the update near pi_old: log-probs of an older policy make that ratio measure the
    wrong distance and the clip guard the wrong region.
    """
    end, error, verdict = result.end, result.error, result.verdict
    if result.version != version:
        end, verdict = EndReason.ERROR, None
        error = (f"stale: played by policy version {result.version}, the learner is at version {version}; "
                 f"refused (GRPO's ratio needs the acting policy's log-probs)")
    writer = run.trajectory_writer(result.trajectory_id, task.id, result.policy_id)
    for name, data in result.files.items():
        if not FRAME_FILE.fullmatch(name):
            raise SandboxError(f"worker {result.worker} sent a file outside frames/: {name!r}")
        write_atomic(writer.folder / name, data)
    for step in result.steps:
        writer.append_step(step)
    return writer.finish(end, error=error), verdict


# --- the worker actor -----------------------------------------------------------------


class RolloutWorker:
    """A Ray actor (``ray.remote(RolloutWorker)``): a sandbox pool, the policy and a state
    judge on one node. Its calls run one at a time, so a pool slot is never shared."""

    def __init__(self, config: Mapping[str, Any], sandboxes: int, index: int):
        import os

        from deskdojo.agent.model.loading import quiet_libraries
        from deskdojo.agent.policy import load_policy
        from deskdojo.agent.rollout import RolloutConfig
        from deskdojo.evolve.build import policy_config, resolve_provider, sandbox_config
        from deskdojo.vm.pool import SandboxPool
        from deskdojo.world_model.judge import StateJudge
        from deskdojo.world_model.probe import StateProbe

        quiet_libraries()
        self.config = EvolveConfig.from_dict(config)
        self.index = index
        self.name = f"worker-{index}"
        self.provider = resolve_provider(self.config.provider, log=lambda line: None)
        self.pool = SandboxPool(sandbox_config(self.config, self.provider), sandboxes).start()
        try:
            self.policy = load_policy(self.config.model, policy_config(self.config))
        except BaseException:
            self.pool.close()
            raise
        self.base_policy_id = self.policy.policy_id
        self.version: int | None = None  # the learner's weights come with the first call
        self.judge = StateJudge()
        self.probe = StateProbe(files=False)
        self.rollout_config = RolloutConfig.from_dict({"max_steps": self.config.max_steps or 15,
                                                       **self.config.rollout})
        self.pid = os.getpid()

    def ready(self) -> dict[str, Any]:
        import ray

        return {"index": self.index, "pid": self.pid, "node": ray.get_runtime_context().get_node_id(),
                "sandboxes": len(self.pool), "provider": self.provider, "pool_id": self.pool.pool_id,
                "policy_id": self.base_policy_id}

    def load_weights(self, version: int, weights: Sequence[Any]) -> int:
        """Load policy ``version`` (``weights``: a one-item list holding its object ref, kept
        in a list so Ray hands the ref, not the tensors, and a worker already on it skips)."""
        if self.version != version:
            import ray

            load_trainable_state(self.policy, ray.get(weights[0]))
            self.version = version
        return version

    def weights(self) -> tuple[int | None, str]:
        return self.version, weights_digest(self.policy)

    def play(self, tasks: Sequence[Task], ids: Sequence[str], version: int, weights: Sequence[Any], *,
             greedy: bool, seed: int) -> list[EpisodeResult]:
        """Play ``tasks[i]`` as trajectory ``ids[i]`` in pool slot ``i`` with policy ``version``,
        judge each episode on its sandbox, and return them as data."""
        from deskdojo.agent.rollout import rollout

        if len(tasks) > len(self.pool):
            raise ConfigError(f"{self.name} has {len(self.pool)} sandboxes, was sent {len(tasks)} episodes")
        self.load_weights(version, weights)
        policy = self.policy
        policy.set_greedy(greedy)
        policy.reseed(seed)  # workers sample apart, and a chunk samples the same on a rerun
        policy.policy_id = versioned_policy_id(self.base_policy_id, version)
        sandboxes = [self.pool[i] for i in range(len(tasks))]
        with tempfile.TemporaryDirectory(prefix="deskdojo-worker-") as tmp:
            root = Path(tmp)
            named = iter(ids)

            def writer(_tid: str, task: Task, policy_id: str) -> TrajectoryWriter:
                tid = next(named)
                return TrajectoryWriter(root / tid, tid, task.id, policy_id)

            trajectories = rollout(policy, tasks, sandboxes, writer, config=self.rollout_config, probe=self.probe)
            with ThreadPoolExecutor(max_workers=len(tasks), thread_name_prefix="judge") as threads:
                judged = list(threads.map(self._judge, tasks, trajectories, sandboxes))
            results = [EpisodeResult(t.id, t.task_id, end, error, t.policy_id, version, self.name,
                                     steps=t.steps, files=_frame_files(root / t.id), verdict=verdict)
                       for t, (end, error, verdict) in zip(trajectories, judged)]
        self.pool.check_health()  # replace sandboxes that died during the chunk
        return results

    def _judge(self, task: Task, trajectory: Trajectory, sandbox: Any) -> tuple[EndReason, str | None, Verdict | None]:
        """As the local loop judges: an error episode is not judged; a sandbox that fails
        under the judge makes the episode an error (not the agent's failure)."""
        if trajectory.end is EndReason.ERROR:
            return trajectory.end, trajectory.error, None
        try:
            return trajectory.end, trajectory.error, self.judge.judge(task, trajectory, sandbox)
        except SandboxError as exc:
            return EndReason.ERROR, f"the sandbox failed while the episode was judged: {exc}", None
        except JudgeUnanswered as exc:
            return EndReason.ERROR, f"the judge gave no verdict: {exc}", None

    def admit(self, task: Task) -> Any:
        """The admission check (oracle passes, doing nothing fails) on this worker's first sandbox."""
        from deskdojo.curriculum.admission import admit

        result = admit(task, self.pool[0], self.judge)
        if result.reason == "sandbox_died":
            self.pool.check_health()
            result = admit(task, self.pool[0], self.judge)
        return result

    def close(self) -> None:
        self.pool.close()


def _frame_files(folder: Path) -> dict[str, bytes]:
    frames = folder / "frames"
    return {f"frames/{p.name}": p.read_bytes() for p in sorted(frames.iterdir())} if frames.is_dir() else {}


# --- the driver's side ------------------------------------------------------------------


@dataclass(slots=True)
class WorkerHandle:
    actor: Any
    name: str
    info: dict[str, Any] = field(default_factory=dict)


class RayFleet:
    """The rollout workers as this process sees them. It stands where a local run has its
    ``SandboxPool`` (``len`` is the sandboxes in all, ``close`` ends them) and plays the
    loop's episodes on the workers (``play``), with the weights ``publish`` last put."""

    def __init__(self, config: EvolveConfig, workers: list[WorkerHandle], *, address: str):
        self.config = config
        self.settings = config.ray
        self.workers = workers
        self.address = address
        self.version: int | None = None
        self._weights: list[Any] = []  # [object ref of the published version's weights]
        self.last_broadcast_s: float | None = None
        self._in_flight: dict[Any, tuple[int, list[int], float]] = {}  # ref -> (worker, episodes, since)
        self._restarting: set[int] = set()  # workers that died or were killed since they last answered
        self._closed = False

    # --- lifecycle ---------------------------------------------------------------

    @classmethod
    def start(cls, config: EvolveConfig, *, log: Callable[[str], None] = print) -> "RayFleet":
        """Connect to the cluster at ``ray.address``, check it offers the sandbox slots asked
        for, start the workers and wait until each has its sandboxes and policy."""
        ray = connect(config.ray.address)
        settings = config.ray
        needed = settings.workers * settings.sandboxes_per_worker
        offered = int(ray.cluster_resources().get(SANDBOX_RESOURCE, 0))
        if offered < needed:
            raise ConfigError(f"ray: the cluster at {settings.address} offers {offered} `{SANDBOX_RESOURCE}` "
                              f"slots; ray.workers x ray.sandboxes_per_worker needs {needed}: start nodes with "
                              f"`ray start --address HEAD:PORT --resources '{{\"{SANDBOX_RESOURCE}\": "
                              f"{settings.sandboxes_per_worker}}}'`, or ask for fewer workers")
        actor = ray.remote(RolloutWorker)
        handles = [WorkerHandle(actor.options(resources={SANDBOX_RESOURCE: settings.sandboxes_per_worker},
                                              num_cpus=0, max_restarts=settings.max_restarts,
                                              max_task_retries=0).remote(config.to_dict(),
                                                                         settings.sandboxes_per_worker, i),
                                f"worker-{i}") for i in range(settings.workers)]
        fleet = cls(config, handles, address=settings.address or "")
        try:
            fleet.refresh_info(timeout_s=START_TIMEOUT_S)
        except BaseException:
            fleet.close()
            raise
        nodes = len({w.info.get("node") for w in handles})
        log(f"ray: {settings.workers} rollout workers x {settings.sandboxes_per_worker} "
            f"{handles[0].info.get('provider')} sandboxes on {nodes} node(s) of {settings.address}")
        return fleet

    def refresh_info(self, *, timeout_s: float = START_TIMEOUT_S) -> list[dict[str, Any]]:
        """Each worker's pid, node and pool (after a restart they change); a worker that is
        restarting is waited for, up to ``timeout_s``."""
        ray = import_ray()
        deadline = time.monotonic() + timeout_s
        for worker in self.workers:
            while True:
                try:
                    worker.info = ray.get(worker.actor.ready.remote(), timeout=max(0.1, deadline - time.monotonic()))
                    break
                except ray.exceptions.GetTimeoutError:
                    raise DeskdojoError(f"ray: rollout worker {worker.name} did not start within {timeout_s:.0f} s "
                                        f"(each starts {self.settings.sandboxes_per_worker} sandboxes and loads "
                                        f"the policy)") from None
                except ray.exceptions.ActorUnavailableError:  # restarting: ask again
                    if time.monotonic() > deadline:
                        raise DeskdojoError(f"ray: rollout worker {worker.name} stayed unavailable") from None
                    time.sleep(POLL_S)
                except ray.exceptions.RayActorError as exc:
                    raise DeskdojoError(f"ray: rollout worker {worker.name} failed to start: {_cause(exc)}") from None
        return [dict(worker.info) for worker in self.workers]

    def close(self) -> None:
        """Close every worker's pool, then end the actors (no restart)."""
        if self._closed:
            return
        self._closed = True
        ray = import_ray()
        closing = [w.actor.close.remote() for w in self.workers]
        for ref in closing:
            try:
                ray.get(ref, timeout=60)
            except Exception:  # a dead worker: a restarted one reaps its containers
                pass
        for worker in self.workers:
            try:
                ray.kill(worker.actor, no_restart=True)
            except Exception:
                pass

    def __len__(self) -> int:
        return self.settings.workers * self.settings.sandboxes_per_worker

    def check_health(self) -> list[int]:
        return []  # each worker replaces its own dead sandboxes after every chunk

    # --- weights -------------------------------------------------------------------

    def publish(self, policy: Any, version: int) -> float:
        """Put the learner's trainable weights in the object store once as ``version`` and have
        every worker load them; returns the seconds it took. A worker that is down catches
        up on its next call (each call names the version)."""
        ray = import_ray()
        started = time.perf_counter()
        self._weights = [ray.put(trainable_state(policy))]
        self.version = version
        loads = {w.actor.load_weights.remote(version, self._weights): w for w in self.workers}
        ready, late = ray.wait(list(loads), num_returns=len(loads), timeout=self.settings.worker_timeout_s)
        for ref in ready:
            try:
                ray.get(ref)
            except ray.exceptions.RayActorError:
                pass  # restarting: it loads the version with its next call
        del late  # still busy or restarting: the same
        self.last_broadcast_s = time.perf_counter() - started
        return self.last_broadcast_s

    def weights(self) -> list[tuple[int | None, str]]:
        """Each worker's (policy version, weights digest)."""
        ray = import_ray()
        return ray.get([w.actor.weights.remote() for w in self.workers], timeout=self.settings.worker_timeout_s)

    # --- playing ---------------------------------------------------------------------

    def in_flight(self) -> list[int]:
        """The workers playing a chunk now (their indexes)."""
        return sorted({worker for worker, _, _ in self._in_flight.values()})

    def play(self, episodes: Sequence[tuple[Task, str]], *, greedy: bool = False,
             stop: Callable[[], bool] | None = None,
             on_result: Callable[[int, EpisodeResult], None] | None = None) -> list[EpisodeResult] | None:
        """Play ``episodes`` (task, trajectory id) on the workers, a chunk of at most
        ``sandboxes_per_worker`` per call, with the last published weights; one result per
        episode, in order (``on_result(i, result)`` as each arrives). A worker that dies or
        runs past ``worker_timeout_s`` is dropped for the rest of this call and its chunk's
        episodes come back as ``error``. None when ``stop()`` said stop first."""
        ray = import_ray()
        if self.version is None:
            raise DeskdojoError("ray: no policy weights published yet (publish() before play())")
        size = self.settings.sandboxes_per_worker
        chunks = deque((c, list(range(start, min(start + size, len(episodes)))))
                       for c, start in enumerate(range(0, len(episodes), size)))
        results: list[EpisodeResult | None] = [None] * len(episodes)
        idle = deque(self._back_from_restart())
        version = self.version
        policy_id = versioned_policy_id(self.workers[0].info.get("policy_id") or self.config.model, version)

        def settle(indexes: list[int], got: list[EpisodeResult] | None, worker: int, why: str = "") -> None:
            for k, i in enumerate(indexes):
                task, tid = episodes[i]
                results[i] = got[k] if got is not None else lost_episode(
                    tid, task.id, policy_id=policy_id, version=version, worker=self.workers[worker].name, error=why)
                if on_result is not None:
                    on_result(i, results[i])

        self._in_flight = {}
        try:
            while chunks or self._in_flight:
                if stop is not None and stop():
                    return None
                while chunks and idle:
                    worker = idle.popleft()
                    c, indexes = chunks.popleft()
                    ref = self.workers[worker].actor.play.remote(
                        [episodes[i][0] for i in indexes], [episodes[i][1] for i in indexes], version,
                        self._weights, greedy=greedy, seed=_chunk_seed(self.config.seed, version, c, greedy))
                    self._in_flight[ref] = (worker, indexes, time.monotonic())
                if not self._in_flight:  # chunks left, no worker left
                    _, indexes = chunks.popleft()
                    settle(indexes, None, 0, "no rollout worker was left in this iteration (all died or fell behind)")
                    continue
                ready, _ = ray.wait(list(self._in_flight), num_returns=1, timeout=POLL_S)
                for ref in ready:
                    worker, indexes, _ = self._in_flight.pop(ref)
                    try:
                        settle(indexes, ray.get(ref), worker)
                        idle.append(worker)
                    except ray.exceptions.RayActorError as exc:  # died: Ray restarts it for later calls
                        self._restarting.add(worker)
                        settle(indexes, None, worker, f"rollout worker {self.workers[worker].name} died "
                                                      f"mid-episode: {_cause(exc)}")
                now = time.monotonic()
                for ref, (worker, indexes, since) in list(self._in_flight.items()):
                    if now - since > self.settings.worker_timeout_s:
                        del self._in_flight[ref]
                        ray.kill(self.workers[worker].actor, no_restart=False)  # its answer is never read
                        self._restarting.add(worker)
                        settle(indexes, None, worker, f"rollout worker {self.workers[worker].name} fell behind "
                                                      f"(no answer in {self.settings.worker_timeout_s:g} s); "
                                                      f"dropped from the iteration and restarted")
        finally:
            self._in_flight = {}
        return results  # type: ignore[return-value]

    def _back_from_restart(self) -> list[int]:
        """The workers this call may use: all but those still restarting after waiting for
        them together, up to ``worker_timeout_s`` (a restarted worker's pid and pool are
        read again; it loads the published weights with its first call)."""
        ray = import_ray()
        waiting = {ray_ref: worker for worker in sorted(self._restarting)
                   for ray_ref in (self.workers[worker].actor.ready.remote(),)}
        deadline = time.monotonic() + self.settings.worker_timeout_s
        while waiting and time.monotonic() < deadline:
            ready, _ = ray.wait(list(waiting), num_returns=1, timeout=POLL_S)
            for ref in ready:
                worker = waiting.pop(ref)
                try:
                    self.workers[worker].info = ray.get(ref)
                    self._restarting.discard(worker)
                except ray.exceptions.ActorUnavailableError:  # still restarting: ask again
                    time.sleep(POLL_S)
                    waiting[self.workers[worker].actor.ready.remote()] = worker
                except ray.exceptions.RayActorError:  # out of restarts: this call goes on without it
                    pass
        return [w for w in range(len(self.workers)) if w not in self._restarting]

    def admit(self, task: Task) -> Any:
        """``admit(task)`` for the plan, on the first worker that answers."""
        from deskdojo.curriculum.admission import AdmissionResult

        ray = import_ray()
        for worker in self.workers:
            try:
                return ray.get(worker.actor.admit.remote(task), timeout=self.settings.worker_timeout_s)
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
                continue
        return AdmissionResult(task.id, False, "sandbox_died", None, None, 0.0,
                               detail="no rollout worker answered the admission check")


def _chunk_seed(seed: int, version: int, chunk: int, greedy: bool) -> int:
    """A sampling seed per (run seed, policy version, chunk): workers draw apart, reruns alike."""
    return (seed * 1_000_003 + version * 10_007 + chunk * 2 + int(greedy)) % (2**31 - 1)


def _cause(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def connect(address: str | None) -> Any:
    """``ray.init`` to ``address`` (``auto``: RAY_ADDRESS or the cluster started on this
    machine), once per process; an unreachable cluster is an error saying what to run."""
    ray = import_ray()
    if ray.is_initialized():
        return ray
    try:
        ray.init(address=address or "auto", logging_level="WARNING", log_to_driver=False,
                 configure_logging=True)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise DeskdojoError(f"ray: no cluster reachable at {address} ({_cause(exc)}); start one with "
                            f"`ray start --head --resources '{{\"{SANDBOX_RESOURCE}\": 4}}'` and join nodes "
                            f"with `ray start --address HEAD:6379 --resources '{{\"{SANDBOX_RESOURCE}\": 4}}'`") from None
    return ray
