"""Experiment helper (not part of the package): ``python benchmarks/miniwob/evolve_replay.py POLICY``.

A policy (the tiny preset with no warm start, or a run's checkpoint), greedy, on the evolve
run's held-out pages (seeds 1000000-1000009 of each task), 3 steps at most as in the run,
one web sandbox, through the normal rollout. Prints one JSON line."""
import json
import sys
import tempfile
from pathlib import Path

from deskdojo.agent.policy import load_policy
from deskdojo.agent.rollout import RolloutConfig, rollout
from deskdojo.commands.eval_miniwob import _start_sandbox
from deskdojo.curriculum.families import get_family

TASKS = ("click-button", "click-link", "click-tab", "focus-text")

policy = load_policy(sys.argv[1])
policy.set_greedy(True)
box = _start_sandbox(None)
out = {}
try:
    with tempfile.TemporaryDirectory() as tmp:
        for name in TASKS:
            wins = 0
            for seed in range(1_000_000, 1_000_010):
                task = get_family(f"miniwob.{name}").generate(0, seed, "heldout")
                rollout(policy, [task], [box], Path(tmp), config=RolloutConfig(max_steps=3))
                wins += box.page_state().success
            out[f"miniwob.{name}"] = wins / 10
finally:
    box.close()
print("JSON " + json.dumps({"policy": sys.argv[1], "greedy": True, "heldout_success": out}))
