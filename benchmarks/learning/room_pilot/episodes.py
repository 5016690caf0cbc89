"""Training episodes per kind of cell, from a run folder's verdicts.jsonl (slimmed here to
trajectory id, task id, success): cells the SFT start passes greedily (held-out 4 of 4 at
iteration 0), levels the held-out set never measures, and cells with room; their successes.
usage: python3 episodes.py RUN_FOLDER..."""
import collections, json, sys
from pathlib import Path
for name in sys.argv[1:]:
    run = Path(name)
    start = [json.loads(l) for l in open(run / "heldout.jsonl")][0]["by_family"]
    n = collections.Counter(); ok = collections.Counter(); cells = collections.defaultdict(lambda: [0, 0])
    for line in open(run / "verdicts.jsonl"):
        v = json.loads(line)
        if not v["trajectory_id"].startswith("it"):
            continue  # held-out evaluations
        family, level = v["task_id"].split("-")[0], v["task_id"].split("-")[1][1:]
        kind = ("not held out" if level not in start.get(family, {}) else
                "start passes" if start[family][level] == 1.0 else "room")
        n[kind] += 1; ok[kind] += v["success"]
        cells[f"{family}/L{level}"][0] += 1; cells[f"{family}/L{level}"][1] += v["success"]
    print(f"== {name}: " + ", ".join(f"{k} {n[k]} episodes ({ok[k]} successes)" for k in ("start passes", "not held out", "room")))
    print("   room cells: " + ", ".join(f"{c} {s}/{e}" for c, (e, s) in sorted(cells.items())
                                         if c.split("/")[1][1:] in start.get(c.split("/")[0], {})
                                         and start[c.split("/")[0]][c.split("/")[1][1:]] < 1.0))
