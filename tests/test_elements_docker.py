"""AT-SPI and OCR elements in a real docker sandbox: mousepad's File menu items come
from the accessibility bus, and OCR reads the lines a test writes into an xterm."""

from __future__ import annotations

import difflib

import pytest

from deskdojo.core.actions import Click
from deskdojo.core.types import SetupStep, Task
from waiting import wait_for

pytestmark = pytest.mark.docker

LINES = [
    "apple garden window seven", "bright orange table river", "quiet mountain paper lamp",
    "silver kitchen forest door", "yellow bottle music field", "winter castle pencil road",
    "purple island letter stone", "golden bridge camera cloud", "simple market flower chair",
    "little rocket planet sugar",
]


@pytest.fixture(scope="module")
def box():
    from deskdojo.vm.config import SandboxConfig
    from deskdojo.vm.docker import DockerProvider

    sandbox = DockerProvider(SandboxConfig(screen=(1024, 768))).start()
    try:
        yield sandbox
    finally:
        sandbox.close()



def test_mousepad_file_menu_items_come_from_atspi(box) -> None:  # noqa: ANN001
    box.reset(Task(id="atspi-mousepad", instruction="-", family="elements",
                   setup=(SetupStep("launch", {"argv": ["mousepad"], "wait_window": "Mousepad$"}),)))
    listing = wait_for(lambda: (lambda l: l if any(e.role == "menu" and e.name == "File" for e in l.elements)
                                else None)(box.elements(["atspi"])), what="mousepad's menu bar over AT-SPI")
    assert listing.sources["atspi"].ok
    roles = {e.role for e in listing.elements}
    assert {"frame", "menu bar", "menu", "text area"} <= roles, roles
    file_menu = next(e for e in listing.elements if e.role == "menu" and e.name == "File")
    box.act(Click(x=file_menu.center[0], y=file_menu.center[1]))
    listing = wait_for(lambda: (lambda l: l if sum(e.role == "menu item" for e in l.elements) >= 5 else None)(
        box.elements(["atspi"])), what="the File menu's items over AT-SPI")
    items = {e.name for e in listing.elements if e.role == "menu item"}
    assert {"New", "Open...", "Save", "Save As...", "Quit"} <= items, sorted(items)
    below = [e for e in listing.elements if e.role == "menu item"]
    assert all(e.box[1] >= file_menu.box[1] + file_menu.box[3] - 2 for e in below)  # the menu drops down


def test_ocr_reads_the_lines_written_into_an_xterm(box) -> None:  # noqa: ANN001
    text = "\n".join(LINES) + "\n"
    box.reset(Task(id="ocr-xterm", instruction="-", family="elements", setup=(
        SetupStep("write_file", {"path": "/home/dojo/lines.txt", "content": text}),
        SetupStep("launch", {"argv": ["xterm", "-T", "ocr", "-geometry", "80x24+0+0", "-e", "bash", "-c",
                                      "cat /home/dojo/lines.txt; exec sleep 600"], "wait_window": "^ocr$"}),
    )))
    # The first whole-screen read outlives the listing's deadline (it is reported as a
    # timeout and finishes in the background, filling the cache); later reads are cached.
    listing = wait_for(lambda: (lambda l: l if l.sources["ocr"].ok and l.elements else None)(box.elements(["ocr"])),
                       timeout=30, what="an OCR listing")
    read = [" ".join(e.name.lower().split()) for e in listing.elements if e.role == "text line"]
    found = [line for line in LINES
             if max((difflib.SequenceMatcher(None, line, r).ratio() for r in read), default=0) >= 0.9]
    print(f"OCR recall: {len(found)}/{len(LINES)} lines; read {read}")
    assert len(found) >= 0.9 * len(LINES), (found, read)
