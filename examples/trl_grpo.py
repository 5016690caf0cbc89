"""Train deskdojo's tiny policy with TRL's GRPOTrainer on deskdojo's sandboxes.

TRL owns the optimisation (GRPO loss, LoRA through peft, the optimizer); deskdojo owns
the world: ``DesktopEnv`` starts the desktops, sets up each task, performs the actions
and judges the episode. They meet in TRL's ``rollout_func``: for the prompts of one
generation batch it resets a desktop per prompt, lets the policy answer, steps the
environment with that answer and hands TRL the prompt tokens, the answer tokens, their
sampling log-probs and the judge's reward.

Each dataset row names a task (``family:level:seed``); TRL repeats each row
``num_generations`` times, so every GRPO group plays the same task. Episodes here are
one decision long (``max_steps=1``: the judge scores the screen after the first action),
which is exactly GRPO's bandit setting; longer episodes need the answer tokens of every
step, with the observations between them masked out (``env_mask``), see the README.

    python examples/trl_grpo.py --provider xvfb --steps 2 --out /tmp/trl-run

Prints one JSON line at the end: the rewards seen, and how far the LoRA weights moved.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

TASKS = ("click_button:2", "toggle_choices:1", "menu_command:2", "switch_tab:1")


def task_rows(count: int, seed: int) -> list[dict[str, str]]:
    """``count`` dataset rows, each a task the environment can build: ``family:level:seed``."""
    return [{"prompt": f"{TASKS[i % len(TASKS)]}:{seed * 1000 + i}"} for i in range(count)]


def task_of(prompt: str) -> Any:
    from deskdojo.curriculum.families import get_family

    family, level, seed = prompt.split(":")
    return get_family(family).generate(int(level), int(seed))


def make_rollout_func(policy: Any, envs: list[Any], rewards_seen: list[float]):
    """TRL's ``rollout_func(prompts, trainer)``: one desktop episode per prompt."""
    from concurrent.futures import ThreadPoolExecutor

    threads = ThreadPoolExecutor(max_workers=len(envs))

    def rollout_func(prompts: list[str], trainer: Any) -> dict[str, list]:
        if len(prompts) > len(envs):
            raise ValueError(f"{len(prompts)} prompts for {len(envs)} environments: "
                             f"make --envs at least the generation batch size")
        tasks = [task_of(p) for p in prompts]
        used = envs[:len(prompts)]
        list(threads.map(lambda pair: pair[0].reset(options={"task": pair[1]}), zip(used, tasks)))
        observations = [env.current_observation for env in used]
        decisions = policy.act(observations, tasks, [[] for _ in tasks])  # sampled, with log-probs
        steps = list(threads.map(lambda pair: pair[0].step(pair[1]), zip(used, decisions)))
        rewards = [float(step[1]) for step in steps]
        rewards_seen.extend(rewards)
        prompt_ids = [policy.tokenizer(policy._prompt([o], t, []).text)["input_ids"]
                      for o, t in zip(observations, tasks)]
        return {"prompt_ids": prompt_ids,
                "completion_ids": [list(d.token_ids) for d in decisions],
                "logprobs": [list(d.logprobs) for d in decisions],
                "env_reward": rewards}

    return rollout_func


def env_reward(completions: list[Any], env_reward: list[float], **_: Any) -> list[float]:
    """The judge's verdict, as the environment returned it."""
    return list(env_reward)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--provider", default="auto", help="docker | xvfb | auto")
    parser.add_argument("--steps", type=int, default=2, help="GRPO updates")
    parser.add_argument("--generations", type=int, default=4, help="episodes per task (GRPO group size)")
    parser.add_argument("--tasks-per-step", type=int, default=2)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--temperature", type=float, default=1.75, help=(
        "sampling temperature (the pretrained tiny reader is sure of itself: at 1.0 a group plays alike, and GRPO "
        "learns nothing from a group whose rewards are equal; at 1.75 about 2 in 5 of its answers still parse)"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="trl-run")
    args = parser.parse_args(argv)
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from trl import GRPOConfig, GRPOTrainer

    from deskdojo.agent.policy import PolicyConfig, load_policy
    from deskdojo.env import DesktopEnv

    torch.manual_seed(args.seed)
    policy = load_policy("tiny", PolicyConfig(observation="a11y_tree", temperature=args.temperature, seed=args.seed))
    batch = args.generations * args.tasks_per_step
    envs = [DesktopEnv(provider=args.provider, observation="a11y_tree", max_steps=1) for _ in range(batch)]
    rewards_seen: list[float] = []
    started = time.monotonic()
    try:
        config = GRPOConfig(output_dir=args.out, max_steps=args.steps, learning_rate=args.lr,
                            per_device_train_batch_size=batch, num_generations=args.generations,
                            temperature=args.temperature, beta=0.0, logging_steps=1, save_strategy="no",
                            report_to="none", use_cpu=not torch.cuda.is_available(), bf16=False, seed=args.seed,
                            max_completion_length=policy.max_new_tokens, dataloader_num_workers=0)
        trainer = GRPOTrainer(model=policy.model, reward_funcs=env_reward, args=config,
                              train_dataset=Dataset.from_list(task_rows(batch * args.steps, args.seed)),
                              processing_class=policy.tokenizer,
                              peft_config=LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]),
                              rollout_func=make_rollout_func(policy, envs, rewards_seen))
        lora_before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_" in n}
        trainer.train()
        moved = max((p.detach() - lora_before[n]).abs().max().item()
                    for n, p in trainer.model.named_parameters() if n in lora_before)
    finally:
        for env in envs:
            env.close()
    result = {"updates": args.steps, "episodes": len(rewards_seen),
              "mean_reward": sum(rewards_seen) / len(rewards_seen), "rewards": rewards_seen,
              "lora_tensors": len(lora_before), "lora_max_change": moved,
              "seconds": round(time.monotonic() - started, 1)}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
