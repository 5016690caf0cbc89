"""The sandbox's home folder: emptied and restored from its pristine copy on reset."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


def clear_directory(directory: Path, *, keep: Sequence[Path] = ()) -> None:
    """Empty ``directory`` (creating it if needed), leaving entries that hold a ``keep`` path."""
    directory.mkdir(parents=True, exist_ok=True)
    kept = {Path(os.path.realpath(p)) for p in keep}
    for entry in os.scandir(directory):
        path = Path(os.path.realpath(entry.path)) if not entry.is_symlink() else Path(entry.path)
        if any(k == path or path in k.parents for k in kept):
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, onerror=_remove_despite_permissions)
        else:
            try:
                os.unlink(entry.path)
            except FileNotFoundError:
                pass


def _remove_despite_permissions(function: Callable[[str], Any], path: str, _exc_info: Any) -> None:
    """rmtree's error hook: a task may leave folders without write or search permission."""
    try:
        os.chmod(os.path.dirname(path), 0o700)
        if os.path.isdir(path) and not os.path.islink(path):
            os.chmod(path, 0o700)
            shutil.rmtree(path, ignore_errors=True)
        else:
            function(path)
    except OSError:
        pass


def restore_home(home: Path, pristine: Path, *, keep: Sequence[Path] = ()) -> None:
    """Make ``home`` hold exactly the pristine copy (leaving ``keep`` paths alone)."""
    clear_directory(home, keep=keep)
    shutil.copytree(pristine, home, symlinks=True, dirs_exist_ok=True)
