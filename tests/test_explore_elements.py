"""Exploration on elements: what can be clicked comes from the element listing (any app),
screens are told apart by the roles and names on them, and apps without published state
get tasks checked through window titles. The docker test walks the real mousepad over
AT-SPI."""

from __future__ import annotations

import pytest

from deskdojo.core.actions import Click, Wait
from deskdojo.core.elements import Element, ElementList
from deskdojo.curriculum.explore import Entry, Guidebook, task_for
from deskdojo.curriculum.screens import Probe, Screen, candidates, clickable, element_changes, signature


def el(i: int, role: str, name: str, box: tuple[int, int, int, int], *, states: tuple[str, ...] = ("enabled",),
       window: str = "Main", source: str = "atspi") -> Element:
    return Element(id=i, role=role, name=name, box=box, states=frozenset(states), window=window, source=source)


MENU_BAR = [el(0, "frame", "Main", (0, 0, 400, 300)), el(1, "menu bar", "", (0, 0, 400, 20)),
            el(2, "menu", "File", (0, 0, 40, 20)), el(3, "menu", "Edit", (40, 0, 40, 20)),
            el(4, "text area", "hello", (0, 20, 400, 280), states=("enabled", "editable"))]


def test_only_the_innermost_open_menu_can_be_clicked() -> None:
    popup = [el(5, "menu item", "Copy", (40, 20, 100, 20)), el(6, "menu", "Transform", (40, 40, 100, 20)),
             el(7, "menu item", "Rotate", (140, 40, 90, 20)), el(8, "menu item", "Flip", (140, 60, 90, 20)),
             el(9, "menu item", "Off", (140, 80, 90, 20), states=())]
    assert [e.name for e in clickable(ElementList(tuple(MENU_BAR + popup[:2])))] == ["Copy", "Transform"]
    assert [e.name for e in clickable(ElementList(tuple(MENU_BAR + popup)))] == ["Rotate", "Flip"]
    kinds = {p.label: p.kind for p in candidates(Screen(ElementList(tuple(MENU_BAR + popup[:2]))))}
    assert kinds == {"Copy": "menu_command", "Transform": "cascade"}
    assert [p.kind for p in candidates(Screen(ElementList(tuple(MENU_BAR))))] == ["menu", "menu"]


def test_a_dialog_holds_the_input_rows_are_capped_and_text_lines_are_the_fallback() -> None:
    dialog = [el(5, "dialog", "Open File", (50, 50, 200, 100), window="Open File"),
              el(6, "button", "Cancel", (60, 120, 60, 20), window="Open File"),
              el(7, "button", "Open", (130, 120, 60, 20), window="Open File", states=())]
    assert [e.name for e in clickable(ElementList(tuple(MENU_BAR + dialog)))] == ["Cancel"]
    rows = [el(1, "list", "", (0, 0, 100, 200))] + [el(2 + i, "list item", f"row {i}", (0, 20 * i, 100, 20))
                                                     for i in range(6)]
    assert [e.name for e in clickable(ElementList(tuple(rows)))] == ["row 0", "row 1", "row 2"]
    terminal = [el(0, "text line", "$ ls", (0, 0, 80, 12), states=(), source="ocr"),
                el(1, "text line", " ", (0, 12, 80, 12), states=(), source="ocr")]
    assert [e.name for e in clickable(ElementList(tuple(terminal)))] == ["$ ls"]


def test_a_screen_is_its_roles_and_names_not_its_boxes_states_or_field_text() -> None:
    moved = [el(e.id, e.role, e.name if e.role != "text area" else "typed", (e.box[0] + 5, *e.box[1:]),
                states=("enabled", "focused")) for e in MENU_BAR]
    assert signature(ElementList(tuple(MENU_BAR))) == signature(ElementList(tuple(moved)))
    assert signature(ElementList(tuple(MENU_BAR))) != signature(ElementList(tuple(MENU_BAR[:3])))


def test_element_changes_name_what_appeared_went_and_changed() -> None:
    before = ElementList((el(0, "frame", "Untitled 1", (0, 0, 400, 300)), el(1, "check box", "Wrap", (0, 0, 50, 20)),
                          el(2, "button", "Old", (0, 50, 50, 20))))
    after = ElementList((el(0, "frame", "Untitled 2", (0, 0, 400, 300)),
                         el(1, "check box", "Wrap", (0, 0, 50, 20), states=("enabled", "checked")),
                         el(2, "button", "New", (300, 50, 50, 20))))
    added, removed, changed = element_changes(before, after)
    assert added == ("button:New",) and removed == ("button:Old",)
    assert changed == ("check box:Wrap: states enabled -> checked,enabled", "frame: 'Untitled 1' -> 'Untitled 2'")


def test_an_app_without_state_gets_a_window_title_check_and_clicks_at_element_centres() -> None:
    path = (Probe("menu", "File", role="menu", box=(0, 0, 40, 20)),
            Probe("menu_command", "Open...", role="menu item", box=(0, 60, 100, 20)))
    entry = Entry(path, screen="s1", windows_opened=("Open File",))
    book = Guidebook(app="mousepad", params={}, initial={}, home="/home/u", entries=(entry,), routes=(),
                     widgets_seen=(), screens=2, actions_tried=2, navigation_clicks=0, resets=1, seconds=1.0,
                     stopped_by="done", max_depth=2, argv=("mousepad",), wait_window="Mousepad$",
                     initial_windows=("Untitled 1 - Mousepad",))
    task = task_for(book, entry, seed=0)
    assert task is not None and task.instruction == "Choose File > Open... from the menus."
    assert [(c.getter, c.metric, c.expected) for c in task.checks] == [("windows", "contains", "Open File")]
    assert [s.action for s in task.oracle if s.action.kind == "click"] == [Click(20, 10), Click(50, 70)]
    assert all(isinstance(s.action, (Click, Wait)) and s.at is None for s in task.oracle)
    assert task.setup[0].args["argv"] == ["mousepad"]
    closed = Entry(path, windows_closed=("Untitled 1 - Mousepad",))
    assert [(c.metric, c.expected) for c in task_for(book, closed, seed=0).checks] == [
        ("not_contains", "Untitled 1 - Mousepad")]
    assert task_for(book, Entry(path, elements_added=("button:OK",)), seed=0) is None  # nothing a check can read


# --- mousepad in a real docker sandbox ------------------------------------------------------


@pytest.fixture(scope="module")
def docker_box():
    from deskdojo.vm.config import SandboxConfig
    from deskdojo.vm.docker import DockerProvider

    sandbox = DockerProvider(SandboxConfig(screen=(1024, 768))).start()
    try:
        yield sandbox
    finally:
        sandbox.close()


@pytest.mark.docker
def test_exploring_mousepad_finds_its_file_menu_over_atspi_and_a_window_task_is_admitted(docker_box) -> None:
    from deskdojo.curriculum.admission import admit
    from deskdojo.curriculum.explore import explore_app, propose_from_guidebook
    from deskdojo.world_model.judge import StateJudge

    book = explore_app("mousepad", docker_box, max_depth=2, max_actions=6, sources=["atspi"], time_limit_s=120)
    print(book.summary())
    assert book.stopped_by == "max_actions" and book.actions_tried == 6 and not book.practice
    file_menu = next(e for e in book.entries if [p.label for p in e.path] == ["File"])
    assert file_menu.path[0].kind == "menu" and file_menu.path[0].role == "menu"
    items = {"menu item:New", "menu item:Open...", "menu item:Save", "menu item:Save As...", "menu item:Quit"}
    assert items <= set(file_menu.elements_added), file_menu.elements_added
    assert items | {"menu:File", "menu:Edit"} <= set(book.widgets_seen)
    paths = {tuple(p.label for p in e.path): e for e in book.entries}
    assert [p.kind for p in paths[("File", "Open...")].path] == ["menu", "menu_command"]
    assert "Open File" in paths[("File", "Open...")].windows_opened

    tasks = {t.instruction: t for t in propose_from_guidebook(book, n=10, seed=0)}
    task = tasks["Choose File > Open... from the menus."]
    assert [(c.getter, c.metric, c.expected) for c in task.checks] == [("windows", "contains", "Open File")]
    result = admit(task, docker_box, StateJudge())
    assert result.admitted, f"{task.id}: {result.reason}: {result.detail}"
