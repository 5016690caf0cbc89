"""``deskdojo bench grpo``: what one GRPO iteration of a policy costs on this machine.

For each of ``tasks`` click tasks the policy samples ``group_size`` answers to the same
screenshot in one batched ``generate`` (as G sandboxes from one start state do), then
one GRPO update (``GRPOTrainer.update``: every epoch and micro-batch) trains on all of
them with advantages of +1 and -1 (half the group "succeeded"). Reported: generated
tokens per second, seconds per update, and peak memory (CUDA: allocated by torch, per
phase; CPU: the process's peak resident set). The policy and GRPO settings are an
evolve config's (``--config configs/qwen2.5-vl-3b.yaml``), so the figure is that of the
run the config describes; ``--model random:qwen2.5-vl-3b`` gives it for the published
architecture without downloading weights. Random weights never stop early: every answer
is ``max_new_tokens`` long, the most an iteration can cost.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from typing import Any, Mapping

DEFAULT_SCREEN = (1280, 800)


def run_grpo_bench(*, config_path: str | None = None, overrides: Mapping[str, Any] | None = None,
                   tasks: int = 1, repeats: int = 3, screen: tuple[int, int] = DEFAULT_SCREEN) -> dict[str, Any]:
    """One warm-up iteration, then ``repeats`` measured ones; medians. ``overrides`` are
    evolve config keys over the file's (e.g. ``{"model": ..., "policy": {"device": "cpu"}}``)."""
    from deskdojo.agent.policy import PolicySample, load_policy
    from deskdojo.agent.train.grpo import GRPOConfig, GRPOSample, GRPOTrainer
    from deskdojo.agent.train.sft import click_target_frame, click_target_task
    from deskdojo.core.errors import ConfigError
    from deskdojo.core.progress import ProgressLine, activity
    from deskdojo.core.types import Observation
    from deskdojo.agent.model.loading import quiet_libraries
    from deskdojo.evolve.build import policy_config
    from deskdojo.evolve.config import load_config

    if tasks < 1 or repeats < 1:
        raise ConfigError(f"tasks and repeats must be >= 1, got {tasks} and {repeats}")
    config = load_config(config_path, overrides)
    quiet_libraries()
    started = time.perf_counter()
    with activity(f"bench grpo: loading {config.model}"):
        policy = load_policy(config.model, policy_config(config))
    load_s = time.perf_counter() - started
    grpo = GRPOConfig.from_dict({"max_new_tokens": policy.max_new_tokens, **config.grpo_settings()})
    if grpo.needs_reference:  # the reference pass is what evolve adds for these; keep the bench to the surrogate
        grpo = grpo.replace(kl_beta=0.0, neg_imitation_weight=0.0)
    observations: dict[str, Observation] = {}

    def policy_logprobs(samples: Any) -> Any:
        return policy.token_logprobs(policy.encode_samples([PolicySample(
            (observations[s.task.id],), s.task, target_ids=s.token_ids) for s in samples]))

    trainer = GRPOTrainer(grpo, policy_logprobs, policy.trainable_parameters())
    cuda = policy.device.type == "cuda"
    group = config.group_size
    rows = []
    line = ProgressLine("bench grpo", repeats + 1, unit="iterations (the first warms up)")
    for iteration in range(repeats + 1):
        samples: list[Any] = []
        generate_s, tokens = 0.0, 0
        _reset_peak(cuda)
        for index in range(tasks):
            line.update(iteration, info=f"generating for task {index + 1}/{tasks}")
            task, rect, colour = click_target_task(iteration * tasks + index, screen=screen)
            observation = Observation(click_target_frame(rect, colour, screen=screen), screen)
            observations[task.id] = observation
            _sync(cuda)
            began = time.perf_counter()
            decisions = policy.act([observation] * group, [task] * group, [()] * group)
            _sync(cuda)
            generate_s += time.perf_counter() - began
            tokens += sum(len(d.token_ids) for d in decisions)
            # no trajectory on disk: policy_logprobs above rebuilds prompts from the observation
            samples += [GRPOSample(task=task, trajectory=None, step_index=0, token_ids=d.token_ids,
                                   old_logprobs=d.logprobs, advantage=1.0 if i % 2 == 0 else -1.0,
                                   policy_gradient=True, negative_imitation=False)
                        for i, d in enumerate(decisions)]
        generate_peak = _peak(cuda)
        _reset_peak(cuda)
        line.update(iteration, info="update")
        began = time.perf_counter()
        stats = trainer.update(samples)
        _sync(cuda)
        update_s = time.perf_counter() - began
        rows.append({"generate_s": generate_s, "tokens": tokens, "tokens_per_s": tokens / generate_s,
                     "update_s": update_s, "generate_peak_gib": generate_peak, "update_peak_gib": _peak(cuda),
                     "loss": stats["loss"], "grad_norm": stats["grad_norm"]})
        line.update(iteration + 1, info="")
    line.close()
    measured = rows[1:]  # the first iteration warms kernels and allocators up
    probe = policy.encode_samples([PolicySample((observation,), task, target_text="x")])
    image_tokens = int((probe.inputs["input_ids"] == policy.model.config.image_token_id).sum())
    return {
        "model": config.model, "config": config_path, "device": _device_name(policy.device),
        "dtype": policy.config.dtype, "parameters": sum(p.numel() for p in policy.model.parameters()),
        "trainable_parameters": sum(p.numel() for p in policy.trainable_parameters()),
        "lora_r": policy.lora.r if policy.lora else None, "gradient_checkpointing": policy.gradient_checkpointing,
        "screen": list(screen), "image_tokens": image_tokens,
        "prompt_tokens": int(probe.inputs["input_ids"].shape[1]) - len(probe.target_ids[0]),
        "group_size": group, "tasks": tasks, "samples_per_update": group * tasks,
        "max_new_tokens": policy.max_new_tokens, "epochs": grpo.epochs, "micro_batch_size": grpo.micro_batch_size,
        "load_s": round(load_s, 2), "repeats": repeats,
        "tokens_per_update": statistics.median(r["tokens"] for r in measured),
        "generate_s": round(statistics.median(r["generate_s"] for r in measured), 4),
        "tokens_per_s": round(statistics.median(r["tokens_per_s"] for r in measured), 2),
        "update_s": round(statistics.median(r["update_s"] for r in measured), 4),
        "peak_memory": "cuda_allocated" if cuda else "process_rss",
        "generate_peak_gib": max(r["generate_peak_gib"] for r in measured),
        "update_peak_gib": max(r["update_peak_gib"] for r in measured),
        "iterations": [{k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()} for r in rows],
    }


def _sync(cuda: bool) -> None:
    if cuda:
        import torch

        torch.cuda.synchronize()


def _reset_peak(cuda: bool) -> None:
    if cuda:
        import torch

        torch.cuda.reset_peak_memory_stats()


def _peak(cuda: bool) -> float:
    """GiB: torch's peak CUDA allocation since the last reset, or this process's peak RSS."""
    if cuda:
        import torch

        return round(torch.cuda.max_memory_allocated() / 2**30, 3)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)  # ru_maxrss is KiB


def _device_name(device: Any) -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def print_table(result: dict[str, Any]) -> None:
    print(f"{result['model']} on {result['device']}, {result['dtype']}: {result['parameters']:,} parameters, "
          f"{result['trainable_parameters']:,} trained (LoRA r={result['lora_r']}), "
          f"gradient checkpointing {'on' if result['gradient_checkpointing'] else 'off'}; "
          f"loaded in {result['load_s']} s")
    print(f"{result['screen'][0]}x{result['screen'][1]} screenshot: {result['image_tokens']} image tokens, "
          f"prompt {result['prompt_tokens']} tokens; {result['tasks']} task(s) x G={result['group_size']} "
          f"answers of up to {result['max_new_tokens']} tokens")
    memory = "peak CUDA allocated (GiB)" if result["peak_memory"] == "cuda_allocated" else "peak RSS (GiB)"
    print(f"{'phase':<10} {'median s':>10} {'rate':>22} {memory:>26}")
    print(f"{'generate':<10} {result['generate_s']:>10.3f} {result['tokens_per_s']:>15.1f} tok/s "
          f"{result['generate_peak_gib']:>26.2f}")
    print(f"{'update':<10} {result['update_s']:>10.3f} {result['samples_per_update']:>11} samples "
          f"{result['update_peak_gib']:>26.2f}")
    print(f"(medians of {result['repeats']} iterations after a warm-up; {result['epochs']} epoch(s), "
          f"micro-batches of {result['micro_batch_size']})")


def cmd_bench_grpo(args: argparse.Namespace) -> int:
    from deskdojo.vm.config import parse_screen

    policy = {key: value for key, value in (("device", args.device), ("dtype", args.dtype),
                                            ("max_new_tokens", args.max_new_tokens)) if value is not None}
    overrides: dict[str, Any] = {"policy": policy} if policy else {}
    if args.model is not None:
        overrides["model"] = args.model
    if args.group_size is not None:
        overrides["group_size"] = args.group_size
    result = run_grpo_bench(config_path=args.config, overrides=overrides, tasks=args.tasks,
                            repeats=args.repeats, screen=parse_screen(args.screen))
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print_table(result)
    return 0


def add_bench_grpo_parser(bench: Any) -> None:
    """Add ``grpo`` to the ``bench`` group's subparsers."""
    p = bench.add_parser("grpo", help="one GRPO iteration: generation tokens/s, seconds per update, peak memory")
    p.add_argument("--config", default=None,
                   help="evolve config whose policy and grpo settings apply (e.g. configs/qwen2.5-vl-3b.yaml; "
                        "default: the embedded defaults, the tiny preset)")
    p.add_argument("--model", default=None,
                   help="overrides the config's model, e.g. random:qwen2.5-vl-3b (published sizes, random "
                        "weights, no download) or random:qwen2.5-vl-3b?layers=2&vision_depth=1")
    p.add_argument("--device", default=None, choices=["cpu", "cuda", "auto"], help="overrides policy.device")
    p.add_argument("--dtype", default=None, choices=["float32", "bfloat16"], help="overrides policy.dtype")
    p.add_argument("--max-new-tokens", type=int, default=None, help="overrides policy.max_new_tokens")
    p.add_argument("--group-size", type=int, default=None, help="overrides group_size (answers per task)")
    p.add_argument("--tasks", type=int, default=1, help="groups per update (each of group_size answers)")
    p.add_argument("--repeats", type=int, default=3, help="measured iterations after one warm-up")
    p.add_argument("--screen", default=f"{DEFAULT_SCREEN[0]}x{DEFAULT_SCREEN[1]}", help="screenshot size WxH")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(fn=cmd_bench_grpo)
