"""Policy benchmark: size, image tokens, generate latency per batch size, one SFT step.

    python -m deskdojo.agent.model.bench [--model tiny] [--batches 1,4,8] [--repeats 5] [--json]

Prints a table (medians) or JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any


def run_policy_bench(*, model: str = "tiny", batches: tuple[int, ...] = (1, 4, 8), repeats: int = 5,
                     new_tokens: int = 8, sft_batch: int = 8) -> dict[str, Any]:
    import torch

    from deskdojo.agent.policy import PolicyConfig, PolicySample, load_policy
    from deskdojo.agent.train.sft import click_target_frame, click_target_task
    from deskdojo.core.types import Observation

    policy = load_policy(model, PolicyConfig(max_new_tokens=new_tokens))
    tasks = [click_target_task(i) for i in range(max(max(batches), sft_batch))]
    observations = [Observation(click_target_frame(rect, colour), (1024, 768)) for _, rect, colour in tasks]
    probe = policy.encode_samples([PolicySample((observations[0],), tasks[0][0], target_text="done")])
    image_tokens = int((probe.inputs["input_ids"] == policy.model.config.image_token_id).sum())
    result: dict[str, Any] = {
        "model": model, "threads": torch.get_num_threads(),
        "parameters": sum(p.numel() for p in policy.model.parameters()),
        "vision_parameters": sum(p.numel() for n, p in policy.model.named_parameters() if "visual" in n),
        "image": list(policy._prompt([observations[0]], tasks[0][0], ()).image),
        "image_tokens": image_tokens, "prompt_tokens": int(probe.inputs["input_ids"].shape[1]) - 2,
        "new_tokens": new_tokens, "generate_s": {}}
    policy.act(observations[:1], [tasks[0][0]], [()])  # warm-up
    for batch in batches:
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            policy.act(observations[:batch], [t for t, _, _ in tasks[:batch]], [()] * batch)
            times.append(time.perf_counter() - started)
        result["generate_s"][str(batch)] = round(statistics.median(times), 4)
    samples = [PolicySample((o,), t, target_text=policy.render_target(t.oracle[0].action, o))
               for o, (t, _, _) in zip(observations[:sft_batch], tasks)]
    optimizer = torch.optim.AdamW(policy.model.parameters(), lr=1e-4)
    policy.model.train()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        batch = policy.encode_samples(samples)
        logp, mask = policy.token_logprobs(batch, temperature=1.0)
        loss = -(logp * mask).sum() / mask.sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - started)
    result["sft_step_s"] = round(statistics.median(times), 4)
    result["sft_batch"] = sft_batch
    return result


def print_table(result: dict[str, Any]) -> None:
    print(f"model {result['model']}: {result['parameters']:,} parameters "
          f"({result['vision_parameters']:,} in the vision tower), {result['threads']} threads")
    print(f"1024x768 screenshot -> {result['image'][0]}x{result['image'][1]}: {result['image_tokens']} image tokens; "
          f"prompt {result['prompt_tokens']} tokens")
    print(f"{'batch':>6} {'generate (median s)':>20} {'per sandbox (s)':>16}")
    for batch, seconds in result["generate_s"].items():
        print(f"{batch:>6} {seconds:>20.3f} {seconds / int(batch):>16.3f}")
    print(f"SFT step, batch {result['sft_batch']} (encode + forward + backward + AdamW): "
          f"{result['sft_step_s']:.3f} s median")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deskdojo.agent.model.bench", description=__doc__)
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--batches", default="1,4,8")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--new-tokens", type=int, default=8)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = run_policy_bench(model=args.model, batches=tuple(int(b) for b in args.batches.split(",")),
                              repeats=args.repeats, new_tokens=args.new_tokens)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print_table(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
