"""Gymnasium environments over deskdojo's sandboxes, tasks and judge (the ``gym`` extra).

>>> import gymnasium as gym, deskdojo.env
>>> env = gym.make("deskdojo/Desktop-v0", provider="docker", observation="a11y_tree")
>>> obs, info = env.reset(options={"task": "click_button:0"})
>>> obs, reward, terminated, truncated, info = env.step("Action: click(element=3)")

``deskdojo/Desktop-v0`` draws tasks from every practice-app family; each family also has
its own id, ``deskdojo/<Family>-v0`` (``deskdojo/ClickButton-v0``, ...). ``DesktopVectorEnv``
steps N of them at once over one ``SandboxPool``. Importing this package registers the ids
(``gym.make("deskdojo.env:deskdojo/Desktop-v0")`` imports it for you).
"""

from __future__ import annotations

from typing import Any

ENV_ID = "deskdojo/Desktop-v0"


def family_env_id(family: str) -> str:
    """``click_button`` -> ``deskdojo/ClickButton-v0``."""
    return f"deskdojo/{''.join(part.capitalize() for part in family.split('_'))}-v0"


def register_envs() -> list[str]:
    """Register ``deskdojo/Desktop-v0`` and one id per task family; returns the ids."""
    import gymnasium as gym

    from deskdojo.curriculum.families import all_families

    ids = [ENV_ID]
    if ENV_ID not in gym.registry:
        gym.register(ENV_ID, entry_point="deskdojo.env.desktop:DesktopEnv")
    for name in all_families():
        env_id = family_env_id(name)
        ids.append(env_id)
        if env_id not in gym.registry:
            gym.register(env_id, entry_point="deskdojo.env.desktop:DesktopEnv", kwargs={"families": (name,)})
    return ids


def __getattr__(name: str) -> Any:
    if name == "DesktopEnv":
        from deskdojo.env.desktop import DesktopEnv
        return DesktopEnv
    if name == "DesktopVectorEnv":
        from deskdojo.env.vector import DesktopVectorEnv
        return DesktopVectorEnv
    raise AttributeError(f"module 'deskdojo.env' has no attribute {name!r}")


register_envs()
