"""Experiment helper (not part of the package): ``python benchmarks/miniwob/evolve_summary.py RUN``.

Summary JSON of an evolve run on MiniWoB++: held-out success per task at the first and
last evaluation, the training episodes' successes per task, and the run's budget."""
import json, sys, collections
from pathlib import Path

run = Path(sys.argv[1])
heldout = [json.loads(l) for l in open(run / "heldout.jsonl")]
metrics = [json.loads(l) for l in open(run / "metrics.jsonl")] if (run / "metrics.jsonl").exists() else []
verdicts = [json.loads(l) for l in open(run / "verdicts.jsonl")]
config = json.loads((run / "config.json").read_text())["config"]
train = collections.defaultdict(lambda: [0, 0])
for v in verdicts:
    if v["trajectory_id"].startswith("it"):
        family = v["task_id"].split("-L")[0]
        train[family][0] += bool(v["success"]); train[family][1] += 1
def per_task(record):
    return {family: levels["0"] for family, levels in sorted(record["by_family"].items())}
first, last = heldout[0], heldout[-1]
summary = {
    "run": "evolve on MiniWoB++ (tiny preset, web image)", "config": config,
    "heldout_tasks_per_family": config["eval"]["tasks_per_level"],
    "heldout": [{"iteration": h["iteration"], "env_steps": h["env_steps"], "success": h["success"],
                 "by_task": per_task(h)} for h in heldout],
    "first": {"iteration": first["iteration"], "success": first["success"], "by_task": per_task(first)},
    "last": {"iteration": last["iteration"], "success": last["success"], "by_task": per_task(last)},
    "training_successes": {f: {"successes": s, "episodes": n} for f, (s, n) in sorted(train.items())},
    "iterations": len(metrics), "env_steps": metrics[-1]["env_steps"] if metrics else 0,
    "loop_wall_s": metrics[-1]["wall_s"] if metrics else None,  # the loop after the warm start
}
print(json.dumps(summary, indent=1))
