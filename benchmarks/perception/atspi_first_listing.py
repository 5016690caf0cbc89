"""First AT-SPI listing after mousepad starts (the product path: /v1/elements), over 4 resets.
Run: .venv/bin/python benchmarks/perception/atspi_first_listing.py"""
import time, statistics
from deskdojo.core.types import SetupStep, Task
from deskdojo.vm.config import SandboxConfig
from deskdojo.vm.docker import DockerProvider
box = DockerProvider(SandboxConfig(screen=(1024, 768))).start()
try:
    firsts, counts = [], []
    for i in range(4):
        box.reset(Task(id=f"m{i}", instruction="-", family="e",
                       setup=(SetupStep("launch", {"argv": ["mousepad"], "wait_window": "Mousepad$"}),)))
        time.sleep(1.0)  # an agent's first step comes after the screen settles
        listing = box.elements(["atspi"])
        r = listing.sources["atspi"]
        firsts.append(r.ms); counts.append(r.count)
    print("first atspi listing after launch + 1 s: ms", [round(x, 1) for x in firsts], "count", counts,
          "median", round(statistics.median(firsts), 2))
finally:
    box.close()
