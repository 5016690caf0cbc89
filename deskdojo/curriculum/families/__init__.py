"""Procedural task families. Each module in this package defines ``FAMILIES``, a list of
``Family`` objects; they are found by listing the package, so adding a family is adding
a module. ``all_families()`` returns them by name; ``web_families()`` the MiniWoB++ ones,
which need the web image and are kept out of the desktop loops."""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from deskdojo.curriculum.families.base import Family

_NOT_FAMILY_MODULES = {"base", "vocab"}


def all_families() -> dict[str, "Family"]:
    """Every family, by name, in a stable order."""
    found: dict[str, Family] = {}
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if module_info.name in _NOT_FAMILY_MODULES or module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        for family in getattr(module, "FAMILIES", ()):
            if family.name in found:
                raise ValueError(f"two task families are named {family.name!r} ({module_info.name})")
            found[family.name] = family
    return dict(sorted(found.items()))


def web_families() -> dict[str, "Family"]:
    """The MiniWoB++ families (``miniwob.<task>``), by name; they run in the web image."""
    from deskdojo.curriculum.families._miniwob import FAMILIES

    return {family.name: family for family in FAMILIES}


def get_family(name: str) -> "Family":
    families = all_families()
    if name not in families and name.startswith("miniwob."):
        families = web_families()
    if name not in families:
        raise KeyError(f"no task family {name!r}; the families are: {', '.join(families)}")
    return families[name]
