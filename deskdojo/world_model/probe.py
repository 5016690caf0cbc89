"""Per-step world-state deltas: what an action changed in app states, windows and files.

``StateProbe.snapshot`` reads the sandbox's published app states (without the keys
that change on every write and without widget geometry, which moves with windows and
says nothing about what the user did), the window titles, and a listing of the files
under the home folder (path, size, mtime; one ``find`` in the sandbox).
``delta(before, after)`` is::

    {"apps": {app: {"changed": {path: [old, new]}, "added": [path], "removed": [path]}},
     "windows": {"opened": [title], "closed": [title]},
     "files": {"created": [path], "changed": [path], "deleted": [path]}}

with empty parts omitted, so an empty dict means the action changed nothing. Paths into
app states are dotted (``clicks.pepper``, ``selected.0``); an app that starts or quits
appears as the path ``"."`` added or removed. File paths start with ``~/``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Mapping

from deskdojo.core.errors import SandboxDied, SandboxError
from deskdojo.core.oracle import MISSING, changes, without_runtime_keys

BOX_KEYS = frozenset({"x", "y", "w", "h"})
MAX_LIST_DEPTH = 6
FIND_SCRIPT = ('cd "$HOME" && find . -maxdepth %d \\( -name .deskdojo -o -name .cache \\) -prune '
               '-o -type f -printf "%%P\\t%%s\\t%%T@\\n"' % MAX_LIST_DEPTH)


def without_noise(value: Any) -> Any:
    """A state without runtime keys (top level) and without x, y, w, h of any box in it."""
    if isinstance(value, Mapping):
        is_box = BOX_KEYS <= set(value)
        return {k: without_noise(v) for k, v in value.items() if not (is_box and k in BOX_KEYS)}
    if isinstance(value, list):
        return [without_noise(v) for v in value]
    return value


class StateProbe:
    """Implements ``deskdojo.core.protocols.WorldProbe`` over app states, windows and files."""

    def __init__(self, *, files: bool = True):
        self.files = files

    def snapshot(self, sandbox: Any) -> dict[str, Any]:
        apps = sandbox.app_state().get("apps", {})
        snapshot: dict[str, Any] = {
            "apps": {name: without_noise(without_runtime_keys(state))
                     for name, state in apps.items() if isinstance(state, Mapping)},
            "windows": sorted(w.title for w in sandbox.windows()),
        }
        if self.files:
            snapshot["files"] = self._files(sandbox)
        return snapshot

    def _files(self, sandbox: Any) -> dict[str, list[float]]:
        """``{"~/path": [size, mtime]}`` for the files under the home folder."""
        try:
            result = sandbox.exec(["sh", "-c", FIND_SCRIPT], timeout=10.0, output_cap=1 << 20)
        except SandboxDied:
            raise
        except SandboxError:
            return {}
        listing: dict[str, list[float]] = {}
        for line in result.stdout.splitlines():
            parts = line.split("\t")
            if len(parts) == 3:
                try:
                    listing[f"~/{parts[0]}"] = [int(parts[1]), float(parts[2])]
                except ValueError:
                    continue
        return listing

    def delta(self, before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        apps = app_delta(before.get("apps", {}), after.get("apps", {}))
        if apps:
            out["apps"] = apps
        windows = window_delta(before.get("windows", []), after.get("windows", []))
        if windows:
            out["windows"] = windows
        files = file_delta(before.get("files", {}), after.get("files", {}))
        if files:
            out["files"] = files
        return out


def app_delta(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for app in sorted(set(before) | set(after)):
        if app not in before:
            out[app] = {"added": ["."]}
        elif app not in after:
            out[app] = {"removed": ["."]}
        else:
            found: dict[str, Any] = {"changed": {}, "added": [], "removed": []}
            for path, old, new in changes(before[app], after[app]):
                dotted = ".".join(path) or "."
                if old is MISSING:
                    found["added"].append(dotted)
                elif new is MISSING:
                    found["removed"].append(dotted)
                else:
                    found["changed"][dotted] = [old, new]
            found = {k: v for k, v in found.items() if v}
            if found:
                out[app] = found
    return out


def window_delta(before: list[str], after: list[str]) -> dict[str, list[str]]:
    old, new = Counter(before), Counter(after)
    out = {"opened": sorted((new - old).elements()), "closed": sorted((old - new).elements())}
    return {k: v for k, v in out.items() if v}


def file_delta(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, list[str]]:
    out = {"created": sorted(set(after) - set(before)),
           "changed": sorted(p for p in set(before) & set(after) if list(before[p]) != list(after[p])),
           "deleted": sorted(set(before) - set(after))}
    return {k: v for k, v in out.items() if v}
