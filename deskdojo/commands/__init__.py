"""Commands and benches that combine parts: sandboxes with policies, tasks with judges.

Wiring lives here (and in ``evolve``), never in a part: ``vm``, ``world_model``,
``curriculum`` and ``agent`` do not import each other, and the commands that need
several of them are built on top. Each module imports what a command needs when it runs.
"""


def print_result(result: dict, *, out: str | None, as_json: bool, table: str) -> None:
    """A bench's ending: its JSON written whole to ``out`` (when given; a killed run
    leaves the old file or the new one, never half of one), then the JSON or the table."""
    import json
    from pathlib import Path

    from deskdojo.core.rundir import write_atomic

    if out:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, (json.dumps(result, indent=2) + "\n").encode())
    print(json.dumps(result, indent=2) if as_json else table)
