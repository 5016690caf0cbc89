"""Rollouts on a real Ray cluster on this machine: a head with two `sandbox` slots and a
second node with one, each a `ray start --block` in its own process group that the
module fixture ends by PID (never `ray stop`, which would end every Ray on the machine).
Workers run real docker sandboxes and the tiny policy; the learner is this process."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from deskdojo.core.errors import ConfigError
from deskdojo.core.rundir import JsonlFile, RunDir
from deskdojo.core.types import EndReason
from deskdojo.evolve.config import EvolveConfig

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[1]
HEAD_SLOTS, NODE_SLOTS = 2, 1


@pytest.fixture(scope="module")
def cluster():
    """A two-node Ray cluster (head: 2 sandbox slots, node: 1) and this process connected to
    it; each node's process group is ended by PID at the end, also when tests fail."""
    pytest.importorskip("ray")  # CI installs the dev extras, where a skip fails the run
    from deskdojo.evolve.ray_local import LocalCluster

    scratch = Path(tempfile.gettempdir())
    before = set(scratch.glob("deskdojo-worker-*"))
    try:
        with LocalCluster(HEAD_SLOTS, [NODE_SLOTS], pythonpath=str(REPO)) as address:
            yield address
    finally:  # a worker the tests kill mid-episode never removes its episode folder
        for folder in set(scratch.glob("deskdojo-worker-*")) - before:
            shutil.rmtree(folder, ignore_errors=True)


def _wait_for(ready: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.25)


def ray_config(address: str | None, **changes: Any) -> EvolveConfig:
    """Two iterations of one click_button task, G=3, two steps an episode, the tiny policy."""
    data: dict[str, Any] = {
        "provider": "docker", "sandboxes": 3, "group_size": 3, "tasks_per_iteration": 1, "max_steps": 2,
        "sandbox": {"screen": [640, 480]},
        "policy": {"max_new_tokens": 8, "temperature": 1.0, "lora": {"r": 4, "alpha": 8}},
        "grpo": {"lr": 1e-2}, "sft": {"enabled": False},
        "curriculum": {"families": ["click_button"], "seeds_per_level": 2},
        "eval": {"every": 2, "at_start": False, "levels": [0], "tasks_per_level": 1},
        "budget": {"iterations": 2},
        "ray": {"address": address, "workers": 3, "sandboxes_per_worker": 1, "worker_timeout_s": 120}}
    for key, value in changes.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) and isinstance(data.get(key), dict) else value
    return EvolveConfig.from_dict(data)


def _containers_of(pids: set[int]) -> list[str]:
    """deskdojo containers whose owner label names one of ``pids``."""
    out = subprocess.run(["docker", "ps", "-a", "--filter", "label=deskdojo=1", "--format",
                          '{{.ID}}\t{{.Label "deskdojo.owner"}}'], capture_output=True, text=True, check=True)
    rows = [line.split("\t") for line in out.stdout.splitlines() if line.strip()]
    return [cid for cid, owner in rows if owner.split(":")[0].isdigit() and int(owner.split(":")[0]) in pids]


def _layout(run_dir: Path) -> dict[str, Any]:
    """What a reader of the run folder relies on: the files, the trajectory folders and
    their files' kinds, and the keys of every record."""
    def keys(path: Path) -> list[tuple[str, ...]]:
        return sorted({tuple(sorted(record)) for record in JsonlFile(path).read()})

    trajectories = {}
    for folder in sorted((run_dir / "trajectories").iterdir()):
        steps = list(JsonlFile(folder / "steps.jsonl").read())
        frames = {p.name for p in (folder / "frames").iterdir()}
        named = {ref.split("/")[-1] for s in steps for ref in (s["frame"], (s["prompt"] or {}).get("elements")) if ref}
        assert named <= frames, (folder, named - frames)  # every step's frame and listing is there
        kinds = sorted({name.split(".", 1)[1] for name in frames})
        trajectories[folder.name] = (sorted(p.name for p in folder.iterdir()), kinds,
                                     sorted(json.loads((folder / "trajectory.json").read_text())),
                                     sorted({tuple(sorted(s)) for s in steps}))
    checkpoint = RunDir.open(run_dir).latest_checkpoint()
    return {"files": sorted(p.name for p in run_dir.iterdir() if p.name != "status.json"),
            "trajectories": trajectories,
            "records": {name: keys(run_dir / name) for name in ("verdicts.jsonl", "metrics.jsonl", "heldout.jsonl")},
            "checkpoint": sorted(str(p.relative_to(checkpoint)) for p in checkpoint.rglob("*")),
            "checkpoints": [p.name for p in RunDir.open(run_dir).checkpoints()]}


def test_the_ray_section_is_closed_and_checked():
    with pytest.raises(ConfigError, match="ray has no key 'wrokers'"):
        EvolveConfig.from_dict({"ray": {"wrokers": 2}})
    with pytest.raises(ConfigError, match="ray.address 'headnode' is not 'auto' or HOST:PORT"):
        EvolveConfig.from_dict({"ray": {"address": "headnode"}, "sft": {"enabled": False}})
    with pytest.raises(ConfigError, match="ray.sandboxes_per_worker must be >= 1, got 0"):
        EvolveConfig.from_dict({"ray": {"sandboxes_per_worker": 0}})
    with pytest.raises(ConfigError, match="ray.worker_timeout_s must be > 0"):
        EvolveConfig.from_dict({"ray": {"worker_timeout_s": 0}})
    with pytest.raises(ConfigError, match="ray: set sft.enabled: false"):
        EvolveConfig.from_dict({"ray": {"address": "auto"}})
    with pytest.raises(ConfigError, match="ray: judge.kind must be checks"):
        EvolveConfig.from_dict({"ray": {"address": "10.0.0.5:6379"}, "sft": {"enabled": False},
                                "judge": {"kind": "hybrid", "model": "tiny"}})
    with pytest.raises(ConfigError, match="ray: curriculum.families names miniwob.click-button"):
        EvolveConfig.from_dict({"ray": {"address": "auto"}, "sft": {"enabled": False},
                                "curriculum": {"families": ["click_button", "miniwob.click-button"]}})
    assert EvolveConfig.from_dict({"ray": {"address": "ray://10.0.0.5:10001"}, "sft": {"enabled": False}}).ray.enabled
    # no Ray at import time: the config and the workers' module load without it
    code = ("import sys, deskdojo.evolve.config, deskdojo.evolve.ray_workers, deskdojo.evolve.loop;"
            "print('ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.stdout.strip() == "False"


def test_a_ray_run_writes_the_run_folder_a_local_run_writes(cluster: str, tmp_path: Path):
    """Two iterations on three workers over both nodes, then the same config run locally:
    the same files, trajectory folders, record keys and checkpoint; the trajectories
    name the policy version that played them, and every worker's container is gone."""
    import ray

    from deskdojo.evolve.run import run_evolve

    seen: dict[str, Any] = {}

    def build(config: EvolveConfig, run: RunDir, **options: Any) -> Any:
        from deskdojo.evolve.build import build_parts

        parts = build_parts(config, run, **options)
        seen["infos"] = [dict(w.info) for w in parts.fleet.workers] if parts.fleet is not None else []
        return parts

    on_ray = run_evolve(ray_config(cluster), tmp_path / "ray", log=lambda line: None, build=build)
    infos = seen["infos"]
    local = run_evolve(ray_config(None), tmp_path / "local", log=lambda line: None)
    assert on_ray.state == local.state == "finished" and on_ray.iterations == local.iterations == 2

    assert len({info["node"] for info in infos}) == 2  # the workers spread over both nodes
    assert _layout(tmp_path / "ray") == _layout(tmp_path / "local")
    ids = sorted(p.name for p in (tmp_path / "ray" / "trajectories").iterdir())
    assert ids == ["ev00002-000"] + [f"it0000{i}-t00-g0{g}" for i in (1, 2) for g in range(3)]
    policy_ids = {p.name: json.loads((p / "trajectory.json").read_text())["policy_id"]
                  for p in (tmp_path / "ray" / "trajectories").iterdir()}
    # iteration i plays the weights of update i-1; the evaluation after update 2 plays version 2
    assert {tid: pid.rsplit("@", 1)[1] for tid, pid in policy_ids.items()} == {
        tid: "v2" if tid.startswith("ev") else f"v{int(tid[2:7]) - 1}" for tid in ids}
    verdicts = list(JsonlFile(tmp_path / "ray" / "verdicts.jsonl").read())
    assert [v["trajectory_id"] for v in verdicts] == ids[1:] + ids[:1]  # in episode order, as a local run
    assert {v["judge_id"] for v in verdicts} == {"state"}  # the workers judged with the checks
    metrics = list(JsonlFile(tmp_path / "ray" / "metrics.jsonl").read())
    assert metrics[-1]["env_steps"] == sum(len((tmp_path / "ray" / "trajectories" / t / "steps.jsonl")
                                               .read_text().splitlines()) for t in ids if t.startswith("it"))
    assert not _containers_of({info["pid"] for info in infos})
    _wait_for(lambda: ray.available_resources().get("sandbox") == HEAD_SLOTS + NODE_SLOTS, 30,
              "the workers to give their sandbox slots back")


def test_the_learners_weights_reach_every_worker_and_stale_episodes_are_refused(cluster: str, tmp_path: Path):
    """An update's weights, published once, are what each worker then holds (by hash); an
    episode played by an older version than the learner's is written as a refused error."""
    from deskdojo.agent.policy import load_policy
    from deskdojo.curriculum.families import all_families
    from deskdojo.core.types import Split
    from deskdojo.evolve.build import policy_config
    from deskdojo.evolve.ray_workers import RayFleet, record_episode, weights_digest

    config = ray_config(cluster, ray={"workers": 2})
    learner_policy = load_policy(config.model, policy_config(config))
    run = RunDir.create(tmp_path / "run", config.to_dict())
    task = all_families()["click_button"].generate(0, 0, Split.TRAIN)
    fleet = RayFleet.start(config, log=lambda line: None)
    pids = {w.info["pid"] for w in fleet.workers}
    try:
        fleet.publish(learner_policy, 0)
        start = weights_digest(learner_policy)
        assert fleet.weights() == [(0, start), (0, start)]
        for name, p in learner_policy.model.named_parameters():  # what an update does to the adapters
            if p.requires_grad:
                p.data.add_(0.01 * (1 + len(name) % 7))
        seconds = fleet.publish(learner_policy, 1)
        updated = weights_digest(learner_policy)
        assert updated != start and seconds > 0
        assert fleet.weights() == [(1, updated), (1, updated)]

        results = fleet.play([(task, "it00002-t00-g00"), (task, "it00002-t00-g01")])
        assert [r.version for r in results] == [1, 1]
        current, _ = record_episode(run, task, results[0], version=1)
        stale, verdict = record_episode(run, task, results[1], version=2)
        assert current.policy_id == "vlm:tiny@v1" and current.end is not EndReason.ERROR
        assert stale.end is EndReason.ERROR and verdict is None and "stale" in stale.error
        assert len(stale.steps) == len(results[1].steps) > 0  # refused, not lost: the steps are kept

        # a worker that falls behind is dropped from the call, its episodes errors, then restarted
        fleet.settings = dataclasses.replace(fleet.settings, worker_timeout_s=0.01)
        late = fleet.play([(task, "it00003-t00-g00"), (task, "it00003-t00-g01")])
        assert [r.end for r in late] == [EndReason.ERROR] * 2 and all("fell behind" in r.error for r in late)
        fleet.settings = dataclasses.replace(fleet.settings, worker_timeout_s=120)
        restarted = {info["pid"] for info in fleet.refresh_info()}
        assert not restarted & pids  # both were killed and came back as new processes
        pids |= restarted
        again = fleet.play([(task, "it00004-t00-g00"), (task, "it00004-t00-g01")])
        assert all(r.end is not EndReason.ERROR and r.version == 1 for r in again)  # they caught up
        assert fleet.weights() == [(1, updated), (1, updated)]
    finally:
        fleet.close()
    assert not _containers_of(pids)


def test_a_worker_killed_mid_iteration_ends_its_episodes_as_errors_and_the_run_goes_on(cluster: str, tmp_path: Path):
    """Kill a worker actor while it plays: its episodes are recorded as errors, Ray restarts it,
    both iterations complete, every trajectory id is there once, and no container is left."""
    import ray

    from deskdojo.evolve.run import run_evolve

    config = ray_config(cluster, max_steps=4, budget={"iterations": 2},
                        eval={"every": 10, "at_start": False, "tasks_per_level": 0})
    state: dict[str, Any] = {"pids": set()}

    def build(config: EvolveConfig, run: RunDir, **options: Any) -> Any:
        from deskdojo.evolve.build import build_parts

        parts = build_parts(config, run, **options)
        state["fleet"] = parts.fleet
        state["pids"] |= {w.info["pid"] for w in parts.fleet.workers}
        state["killer"] = threading.Thread(target=kill_first_busy_worker, daemon=True)
        state["killer"].start()
        return parts

    def kill_first_busy_worker() -> None:
        fleet, deadline = state["fleet"], time.monotonic() + 120
        while time.monotonic() < deadline:
            busy = fleet.in_flight()
            if busy:
                time.sleep(0.1)  # resetting its sandbox or acting: mid-episode
                state["killed"] = fleet.workers[busy[0]].name
                ray.kill(fleet.workers[busy[0]].actor, no_restart=False)
                try:  # the restarted process: its containers must go too
                    state["pids"] |= {info["pid"] for info in fleet.refresh_info(timeout_s=120)}
                except Exception:
                    pass
                return
            time.sleep(0.02)

    run_dir = tmp_path / "run"
    result = run_evolve(config, run_dir, log=lambda line: None, build=build)
    assert result.state == "finished" and result.iterations == 2
    state["killer"].join(timeout=60)
    assert "killed" in state, "no worker was ever seen playing"

    ids = sorted(p.name for p in (run_dir / "trajectories").iterdir())
    assert ids == [f"it0000{i}-t00-g0{g}" for i in (1, 2) for g in range(3)]  # each once, none lost
    headers = {tid: json.loads((run_dir / "trajectories" / tid / "trajectory.json").read_text()) for tid in ids}
    killed = [tid for tid, h in headers.items() if h["end"] == "error"]
    assert killed and all(f"rollout worker {state['killed']} died" in headers[t]["error"] for t in killed)
    assert all(t.startswith("it00001") for t in killed)  # the restarted worker played iteration 2
    verdicts = [v["trajectory_id"] for v in JsonlFile(run_dir / "verdicts.jsonl").read()]
    assert sorted(verdicts) == sorted(set(ids) - set(killed))  # errors are never judged or trained on
    metrics = list(JsonlFile(run_dir / "metrics.jsonl").read())
    assert [m["errors"] for m in metrics] == [len(killed), 0]
    assert len(state["pids"]) == 4  # three workers and the killed one's restart
    assert not _containers_of(state["pids"])


def test_doctor_reports_the_clusters_nodes_and_sandbox_slots(cluster: str):
    from deskdojo.doctor import check_ray

    rows = {check.name: check for check in check_ray(cluster)}
    assert rows["ray"].ok and rows["ray"].detail == "2.60.0"
    assert rows["ray cluster"].ok, rows["ray cluster"]
    assert "2 node(s)" in rows["ray cluster"].detail
    assert f"{HEAD_SLOTS + NODE_SLOTS} sandbox slots" in rows["ray cluster"].detail
