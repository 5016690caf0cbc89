"""Commands and benches that combine parts: sandboxes with policies, tasks with judges.

Wiring lives here (and in ``evolve``), never in a part: ``vm``, ``world_model``,
``curriculum`` and ``agent`` do not import each other, and the commands that need
several of them are built on top. Each module imports what a command needs when it runs.
"""
