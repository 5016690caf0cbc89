"""Experiment behind the README's MiniWoB++ evolve figures (not part of the package):
``python benchmarks/miniwob/evolve_probe.py RUN POLICY...``.

Can GRPO's sampling find the right answer? For the held-out first steps of each MiniWoB++
task in an evolve run: the number the right row has in the shown table, and the policy's
probability of saying it at the training temperature (SFT policy vs the last checkpoint)."""
import dataclasses
import glob
import json
import math
import re
import statistics
import sys
from pathlib import Path

import torch

from deskdojo.agent.policy import PolicySample, load_policy
from deskdojo.core.actions import Click
from deskdojo.core.rundir import read_trajectory
from deskdojo.curriculum.families import get_family
from deskdojo.evolve.learner import StepPrompts

run, policies = Path(sys.argv[1]), sys.argv[2:]
prompts = StepPrompts(run / "trajectories", history_k=1)

def correct_row(family, utterance, elements):
    rows = elements.elements
    if family == "miniwob.focus-text":
        return next(e for e in rows if e.role in ("text", "entry") and "editable" in e.states)
    want = re.search(r'"([^"]+)"|Tab #\d+', utterance).group(0).strip('"')
    roles = ("button",) if "button" in family else ("link", "static", "page tab")
    return next(e for e in rows if e.name == want and e.role in roles and e.box[1] > 10)

cases = []
for path in sorted(glob.glob(str(run / "trajectories" / "ev00000-*"))):
    traj = json.load(open(Path(path) / "trajectory.json"))
    task_id = traj["task_id"]
    family, seed = task_id.split("-L0-")[0], int(task_id.rsplit("-", 1)[1])
    step = json.loads(open(Path(path) / "steps.jsonl").readline())
    listing = json.load(open(Path(path) / step["prompt"]["elements"]))
    utterance = min((r for r in listing["elements"] if r["role"] == "static" and r["name"]),
                    key=lambda r: (r["box"][1], r["box"][0]))["name"]
    cases.append((Path(path).name, family, seed, utterance))

for name in policies:
    policy = load_policy(name)
    by_family = {}
    for tid, family, seed, utterance in cases:
        trajectory = read_trajectory(run / "trajectories" / tid)
        task = dataclasses.replace(get_family(family).generate(0, seed, "heldout"), instruction=utterance)
        sample_in = type("S", (), {"trajectory": trajectory, "step_index": 0, "task": task, "token_ids": ()})()
        base = prompts.policy_sample(sample_in)
        observation = base.observations[-1]
        right = correct_row(family, utterance, observation.elements)
        text = policy.render_target(Click(element=right.id), observation, task=task)
        shown = policy._prompt([observation], task, []).shown
        rank = shown.label_of(right.id)
        ids = policy.target_token_ids(text)
        sample = PolicySample(observations=base.observations, task=task, history=(), target_ids=tuple(ids))
        with torch.no_grad():
            logprobs, mask = policy.token_logprobs(policy.encode_samples([sample]), temperature=0.7)
        p = math.exp(float((logprobs * mask).sum()))
        by_family.setdefault(family, []).append((p, rank, text))
    print(f"== {name}")
    report = {}
    for family, rows in sorted(by_family.items()):
        ps = [p for p, _, _ in rows]
        hit8 = statistics.fmean(1 - (1 - p) ** 8 for p in ps)
        report[family] = {"p_right_mean": round(statistics.fmean(ps), 4), "p_right_median": round(statistics.median(ps), 4),
                          "p_one_of_8_right": round(hit8, 3), "right_row_numbers": sorted(set(r for _, r, _ in rows))}
        print(f"{family:<22} p(right answer) mean {statistics.fmean(ps):.3f} median {statistics.median(ps):.3f}; "
              f"P(>=1 of 8 samples right) {hit8:.2f}; right row numbers {sorted(set(r for _, r, _ in rows))}; e.g. {rows[0][2]!r}")
    print("JSON " + json.dumps({"policy": name, "by_task": report}))
