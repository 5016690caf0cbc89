"""``DesktopVectorEnv``: N desktops stepped together over one ``SandboxPool``.

Each sub-environment is a ``DesktopEnv`` on one pool slot; a step runs the N sandbox
calls in threads (they wait on sandboxes, not on Python), so N desktops step in about
the time of one. Autoreset is Gymnasium's ``NEXT_STEP`` mode: the step after an episode
ends resets that sub-environment and returns its first observation with reward 0.
A sandbox that dies ends only its own episode (truncated, ``info["error"]``); the pool
puts a fresh one in its slot at that slot's next reset.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from copy import deepcopy
from typing import Any, Mapping, Sequence

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space, concatenate, create_empty_array, iterate

from deskdojo.core.errors import ConfigError
from deskdojo.env.desktop import DesktopEnv, _sandbox_config


class DesktopVectorEnv(VectorEnv):
    """``num_envs`` desktops from ``provider``; every other keyword goes to each ``DesktopEnv``."""

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": ["rgb_array"]}

    def __init__(self, num_envs: int, *, provider: str = "auto", screen: tuple[int, int] = (1024, 768),
                 sandbox_options: Mapping[str, Any] | None = None, **env_kwargs: Any):
        from deskdojo.vm.pool import SandboxPool

        if num_envs < 1:
            raise ConfigError(f"num_envs must be >= 1, got {num_envs}")
        self.num_envs = num_envs
        self.pool = SandboxPool(_sandbox_config(provider, screen, sandbox_options or {}), num_envs).start()
        try:
            self.envs = [DesktopEnv(pool=self.pool, slot=i, **env_kwargs) for i in range(num_envs)]
        except BaseException:
            self.pool.close()
            raise
        first = self.envs[0]
        self.single_observation_space = first.observation_space
        self.single_action_space = first.action_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.render_mode = first.render_mode
        self._threads = ThreadPoolExecutor(max_workers=num_envs, thread_name_prefix="desktop-vector")
        self._ended = np.zeros(num_envs, dtype=bool)
        self._observations = create_empty_array(self.single_observation_space, num_envs)

    def reset(self, *, seed: int | Sequence[int | None] | None = None,
              options: Mapping[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        seeds = _seeds(seed, self.num_envs)
        if seed is not None:
            self.action_space.seed(seeds[0])
        results = list(self._threads.map(lambda pair: pair[0].reset(seed=pair[1], options=options),
                                         zip(self.envs, seeds)))
        self._ended[:] = False
        infos: dict[str, Any] = {}
        for i, (_, info) in enumerate(results):
            infos = self._add_info(infos, info, i)
        observations = concatenate(self.single_observation_space, [o for o, _ in results], self._observations)
        return deepcopy(observations), infos

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        per_env = list(iterate(self.action_space, actions))
        ended = self._ended.copy()

        def one(i: int) -> tuple[Any, float, bool, bool, dict[str, Any]]:
            env = self.envs[i]
            if ended[i]:  # NEXT_STEP autoreset: this step starts the next episode
                observation, info = env.reset()
                return observation, 0.0, False, False, info
            return env.step(per_env[i])

        results = list(self._threads.map(one, range(self.num_envs)))
        rewards = np.array([r[1] for r in results], dtype=np.float64)
        terminations = np.array([r[2] for r in results], dtype=bool)
        truncations = np.array([r[3] for r in results], dtype=bool)
        self._ended = terminations | truncations
        infos: dict[str, Any] = {}
        for i, result in enumerate(results):
            infos = self._add_info(infos, result[4], i)
        observations = concatenate(self.single_observation_space, [r[0] for r in results], self._observations)
        return deepcopy(observations), rewards, terminations, truncations, infos

    def render(self) -> tuple[Any, ...] | None:
        return tuple(env.render() for env in self.envs)

    def close_extras(self, **kwargs: Any) -> None:
        for env in self.envs:
            env.close()
        self._threads.shutdown(wait=True)
        self.pool.close()


def _seeds(seed: int | Sequence[int | None] | None, n: int) -> list[int | None]:
    if seed is None:
        return [None] * n
    if isinstance(seed, (int, np.integer)):
        return [int(seed) + i for i in range(n)]
    seeds = list(seed)
    if len(seeds) != n:
        raise ConfigError(f"reset got {len(seeds)} seeds for {n} environments")
    return seeds
