"""The practice apps in a real sandbox: launched through the guest server, driven with
real Actions at the coordinates their published state gives, checked through that state
(and the files they save)."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from deskdojo.core import Click, Drag, Key, Scroll, Task, Type
from deskdojo.vm.config import SandboxConfig
from deskdojo.vm.guest.apps import APPS, center, launch_argv, launch_step, menu_entry, widget_center
from deskdojo.vm.pool import make_provider

pytestmark = pytest.mark.display

SCREEN = (1024, 768)
from deskdojo.core.oracle import RUNTIME_KEYS  # what may differ between two runs of one seed  # noqa: E402


@pytest.fixture(scope="module")
def box() -> Iterator[Any]:
    sandbox = make_provider(SandboxConfig(provider="xvfb", screen=SCREEN)).start()
    try:
        yield sandbox
    finally:
        sandbox.close()


def wait_state(box: Any, app: str, until: Callable[[Mapping[str, Any]], Any] = lambda s: True, *,
               timeout: float = 8.0, what: str = "") -> Mapping[str, Any]:
    """Poll the app's published state until ``until(state)`` holds."""
    deadline = time.monotonic() + timeout
    state: Mapping[str, Any] | None = None
    while True:
        state = box.app_state()["apps"].get(app)
        try:
            if state is not None and until(state):
                return state
        except (KeyError, IndexError, TypeError):
            pass
        if time.monotonic() > deadline:
            shown = {k: v for k, v in (state or {}).items() if k not in ("widgets", "params", "style")}
            raise AssertionError(f"{app}: timed out after {timeout} s waiting for {what or 'its state'}; "
                                 f"last state: {json.dumps(shown)[:1500]}")
        time.sleep(0.05)


def settled(box: Any, app: str, timeout: float = 8.0) -> dict[str, Any]:
    """The app's state once it has stopped changing for a moment (runtime keys aside)."""
    deadline = time.monotonic() + timeout
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        state = box.app_state()["apps"].get(app)
        core = {k: v for k, v in (state or {}).items() if k not in RUNTIME_KEYS} if state else None
        if core != last:
            last, since = core, time.monotonic()
        elif core is not None and time.monotonic() - since > 0.35:
            return core
        time.sleep(0.05)
    raise AssertionError(f"{app}: state did not settle within {timeout} s")


def launch(box: Any, app: str, params: Mapping[str, Any], *, python: str = sys.executable) -> Mapping[str, Any]:
    box.reset()
    box.exec(launch_argv(app, params, python=python), background=True)
    return wait_state(box, app, timeout=10.0, what="the first state")


def click(box: Any, state: Mapping[str, Any], widget_id: str, **kwargs: Any) -> None:
    x, y = widget_center(state, widget_id)
    assert box.act(Click(x, y, **kwargs)).ok


def click_box(box: Any, region: Mapping[str, Any], **kwargs: Any) -> None:
    x, y = center(region)
    assert box.act(Click(x, y, **kwargs)).ok


def type_into(box: Any, state: Mapping[str, Any], widget_id: str, text: str) -> None:
    """Click a field, wait until the app says it has the keyboard focus, then type."""
    click(box, state, widget_id)
    wait_state(box, state["app"], lambda s: s["focus"] == widget_id, what=f"focus in {widget_id}")
    assert box.act(Type(text)).ok


# --- one test per app ------------------------------------------------------------------------


def test_buttons_count_clicks_and_ignore_disabled_ones(box):
    params = {"seed": 11, "labels": ["Alpha", "Beta", "Gamma"], "disabled": ["Gamma"]}
    box.reset(Task(id="buttons", instruction="click", family="apps",  # as tasks will launch apps
                   setup=(launch_step("buttons", params, python=sys.executable),)))
    state = wait_state(box, "buttons", what="the first state")
    assert state["widgets"]["button:Gamma"]["enabled"] is False
    click(box, state, "button:Beta")
    click(box, state, "button:Beta")
    click(box, state, "button:Gamma")
    click(box, state, "button:Alpha")
    state = wait_state(box, "buttons", lambda s: s["last"] == "Alpha", what="the click on Alpha")
    assert state["clicks"] == {"Alpha": 1, "Beta": 2, "Gamma": 0}
    assert state["history"] == ["Beta", "Beta", "Alpha"]


def test_form_takes_typed_text_and_submits(box):
    state = launch(box, "form", {"seed": 3, "fields": ["Name", "City"], "prefill": {"City": "Oslo"}})
    assert state["values"] == {"Name": "", "City": "Oslo"} and state["submitted"] is False
    type_into(box, state, "entry:Name", "Ada Lovelace")
    click(box, state, "submit")
    state = wait_state(box, "form", lambda s: s["submitted"], what="the submit")
    assert state["submissions"] == [{"Name": "Ada Lovelace", "City": "Oslo"}]
    click(box, state, "clear")
    state = wait_state(box, "form", lambda s: s["cleared"] == 1, what="the clear")
    assert state["values"] == {"Name": "", "City": ""}


def test_choices_toggle_checkboxes_and_pick_radios(box):
    state = launch(box, "choices", {"seed": 4, "checkboxes": ["Wifi", "Bluetooth"], "checked": ["Bluetooth"],
                                    "groups": {"Size": ["Small", "Large"], "Mode": ["Dark", "Light"]}})
    assert state["checked"] == {"Wifi": False, "Bluetooth": True} and state["radios"] == {"Size": "", "Mode": ""}
    for wid in ("checkbox:Wifi", "checkbox:Bluetooth", "radio:Size:Large", "radio:Mode:Dark", "radio:Mode:Light"):
        click(box, state, wid)
    state = wait_state(box, "choices", lambda s: s["radios"]["Mode"] == "Light", what="Mode=Light")
    assert state["checked"] == {"Wifi": True, "Bluetooth": False}
    assert state["radios"] == {"Size": "Large", "Mode": "Light"}
    assert state["widgets"]["radio:Size:Large"]["selected"] is True


def test_lists_select_a_row_a_dropdown_entry_and_a_combobox_item(box):
    items = [f"City {i:02d}" for i in range(15)]
    state = launch(box, "lists", {"seed": 5, "items": items, "list_height": 5, "options": ["Red", "Green", "Blue"],
                                  "combo_items": ["Apple", "Pear", "Plum"]})
    assert [r["text"] for r in state["widgets"]["listbox"]["rows"]] == items[:5]
    # the row we want is below the fold: scroll the listbox (one wheel click at a time), then click it
    for _ in range(10):
        if any(r["text"] == "City 09" for r in state["widgets"]["listbox"]["rows"]):
            break
        top = state["widgets"]["listbox"]["top"]
        box.act(Scroll(*widget_center(state, "listbox"), dy=1))
        state = wait_state(box, "lists", lambda s: s["widgets"]["listbox"]["top"] != top, what="the list scrolled")
    click_box(box, next(r for r in state["widgets"]["listbox"]["rows"] if r["text"] == "City 09"))
    state = wait_state(box, "lists", lambda s: s["selected"] == ["City 09"], what="the listbox selection")

    click(box, state, "optionmenu")
    state = wait_state(box, "lists", lambda s: s["open_menus"], what="the drop-down posted")
    assert state["open_menus"][0]["menu"] == ["optionmenu"]
    click_box(box, menu_entry(state, "Blue"))
    state = wait_state(box, "lists", lambda s: s["option"] == "Blue" and not s["open_menus"], what="option Blue")

    click(box, state, "combobox")
    # the popdown is published as it maps: under load a first state can hold one row of three
    state = wait_state(box, "lists", lambda s: len(s["open_popdown"]["rows"]) == 3, what="the combobox list")
    assert [r["text"] for r in state["open_popdown"]["rows"]] == ["Apple", "Pear", "Plum"]
    click_box(box, state["open_popdown"]["rows"][2])
    state = wait_state(box, "lists", lambda s: s["combo"] == "Plum" and s["open_popdown"] is None, what="combo Plum")
    assert state["selected"] == ["City 09"] and state["option"] == "Blue"


def test_lists_a_combobox_opened_in_vain_closes_with_escape_and_the_drop_down_then_opens(box):
    """The path the reader is taught for "Choose “Blue” from the drop-down menu." when it
    opens the empty combo box first: its list shows no such item, ``key escape`` closes it
    (a click elsewhere would only close the list), then the option menu opens."""
    state = launch(box, "lists", {"seed": 7, "items": ["Oslo", "Riga", "Rome"], "list_height": 3,
                                  "options": ["Red", "Green", "Blue"], "combo_items": ["Apple", "Pear"], "combo": ""})
    click(box, state, "combobox")
    state = wait_state(box, "lists", lambda s: s["open_popdown"] is not None, what="the combobox list")
    assert not any(r["text"] == "Blue" for r in state["open_popdown"]["rows"])
    box.act(Key(("escape",)))
    state = wait_state(box, "lists", lambda s: s["open_popdown"] is None, what="the combobox list closed")
    click(box, state, "optionmenu")
    state = wait_state(box, "lists", lambda s: s["open_menus"], what="the drop-down posted")
    click_box(box, menu_entry(state, "Blue"))
    state = wait_state(box, "lists", lambda s: s["option"] == "Blue" and not s["open_menus"], what="option Blue")
    assert state["combo"] == ""


def test_menus_choose_a_command_through_a_sub_menu(box):
    tree = {"File": ["New", "-", {"Export": ["As PDF", {"Images": ["PNG", "JPEG"]}]}], "Help": ["About"]}
    state = launch(box, "menus", {"seed": 6, "tree": tree})
    assert [m["label"] for m in state["menubar"]] == ["File", "Help"]
    path = ["File", "Export", "Images", "JPEG"]
    for depth, label in enumerate(path):
        if depth:
            state = wait_state(box, "menus", lambda s, d=depth: len(s["open_menus"]) >= d,
                               what=f"menu {path[:depth]} posted")
        click_box(box, menu_entry(state, label))
    state = wait_state(box, "menus", lambda s: s["chosen"] is not None, what="a command chosen")
    assert state["chosen"] == path and state["open_menus"] == []
    assert "JPEG" in state["widgets"]["status"]["text"]


def test_dialogs_confirm_with_typed_text_and_cancel(box):
    state = launch(box, "dialogs", {"seed": 7, "actions": ["Delete file", "Log out"], "prompt": "Reason:",
                                    "confirm_label": "Yes", "cancel_label": "No"})
    click(box, state, "action:Delete file")
    state = wait_state(box, "dialogs", lambda s: s["dialog"] and "dialog.entry" in s["widgets"], what="the dialog")
    assert state["dialog"]["action"] == "Delete file" and "dialog" in state["windows"]
    type_into(box, state, "dialog.entry", "old stuff")
    wait_state(box, "dialogs", lambda s: s["widgets"]["dialog.entry"]["value"] == "old stuff", what="typed reason")
    click(box, state, "dialog.confirm")
    state = wait_state(box, "dialogs", lambda s: s["dialog"] is None, what="the dialog closed")
    assert state["results"] == {"Delete file": "confirmed"} and "dialog" not in state["windows"]

    click(box, state, "action:Log out")
    state = wait_state(box, "dialogs", lambda s: s["dialog"] and "dialog.cancel" in s["widgets"], what="dialog 2")
    click(box, state, "action:Delete file")  # the dialog is modal: the main window ignores this
    box.act(Key(("escape",)))
    state = wait_state(box, "dialogs", lambda s: s["dialog"] is None, what="the dialog cancelled")
    assert state["results"] == {"Delete file": "confirmed", "Log out": "cancelled"}
    assert state["history"] == [{"action": "Delete file", "result": "confirmed", "text": "old stuff"},
                                {"action": "Log out", "result": "cancelled", "text": ""}]


def test_slider_drag_moves_a_slider_and_drops_a_tile_on_its_target(box):
    state = launch(box, "slider_drag", {"seed": 8, "sliders": {"Volume": [0, 100]}, "values": {"Volume": 10},
                                        "orient": "horizontal", "length": 260, "tiles": ["Otter"],
                                        "targets": ["Red box", "Blue box"]})
    slider = state["widgets"]["slider:Volume"]
    (fx, fy), (tx, ty) = slider["from_xy"], slider["to_xy"]
    goal = 70
    x, y = round(fx + (tx - fx) * goal / 100), round(fy + (ty - fy) * goal / 100)
    box.act(Drag(*slider["handle"], x, y))
    state = wait_state(box, "slider_drag", lambda s: abs(s["sliders"]["Volume"] - goal) <= 1,
                       what=f"the slider at {goal}")  # states published mid-drag hold values on the way

    tile, target = state["tiles"]["Otter"], state["targets"]["Blue box"]
    assert tile["on"] is None
    box.act(Drag(*center(tile), *center(target)))
    state = wait_state(box, "slider_drag", lambda s: s["drops"], what="the drop")
    assert state["drops"] == [{"tile": "Otter", "target": "Blue box"}]
    assert state["tiles"]["Otter"]["on"] == "Blue box"


def test_scroll_find_scrolls_to_the_target_and_selects_it(box):
    state = launch(box, "scroll_find", {"seed": 9, "n_rows": 60, "target": "Quito receipt", "target_index": 50,
                                       "viewport_rows": 6})
    assert state["target"] == "Quito receipt"
    assert all(r["text"] != "Quito receipt" for r in state["rows_visible"])
    x, y = widget_center(state, "list")
    for _ in range(25):
        rows = [r for r in state["rows_visible"] if r["text"] == "Quito receipt" and r["h"] > 10]
        if rows:
            break
        before = state["scroll"]
        box.act(Scroll(x, y, dy=2))
        state = wait_state(box, "scroll_find", lambda s: s["scroll"] != before, what="the list scrolled")
    else:
        raise AssertionError("the target never scrolled into view")
    assert state["scroll"][0] > 0.5
    # the first state after a wheel click can be mid-scroll (seen under CI load): click where
    # the row is once the list has stopped moving
    state = settled(box, "scroll_find")
    rows = [r for r in state["rows_visible"] if r["text"] == "Quito receipt" and r["h"] > 10]
    assert rows, "the target scrolled out of view again"
    click_box(box, rows[0])
    state = wait_state(box, "scroll_find", lambda s: s["selected"] is not None, what="a selection")
    assert state["selected"] == "Quito receipt"


def test_tabs_switch_pages_and_a_nested_notebook(box):
    state = launch(box, "tabs", {"seed": 10, "tabs": ["General", "Network", "Advanced"], "nested": "Advanced",
                                 "inner_tabs": ["Basic", "Expert"],
                                 "controls": {"General": "button", "Network": "entry", "Basic": "button",
                                              "Expert": "checkbox"}})
    assert state["tab"] == "General" and state["widgets"]["control:Network"]["visible"] is False
    click(box, state, "tab:Network")
    state = wait_state(box, "tabs", lambda s: s["widgets"]["control:Network"]["visible"], what="the Network page")
    assert state["tab"] == "Network"
    type_into(box, state, "control:Network", "eth0")
    click(box, state, "tab:Advanced")
    state = wait_state(box, "tabs", lambda s: s["tab"] == "Advanced" and s["widgets"]["tab:Expert"]["visible"],
                       what="the nested notebook")
    click(box, state, "tab:Expert")
    state = wait_state(box, "tabs", lambda s: s["widgets"]["control:Expert"]["visible"], what="the Expert page")
    click(box, state, "control:Expert")
    state = wait_state(box, "tabs", lambda s: s["values"]["Expert"] is True, what="Expert checked")
    assert state["inner_tab"] == "Expert" and state["values"]["Network"] == "eth0"


def test_editor_saves_through_the_dialog_and_opens_a_file(box):
    state = launch(box, "editor", {"seed": 12, "text": "", "default_name": "practice-note.txt"})
    home = box.exec(["printenv", "HOME"]).stdout.strip()
    type_into(box, state, "text", "hello dojo\nsecond line")
    wait_state(box, "editor", lambda s: s["text"] == "hello dojo\nsecond line" and s["modified"], what="typed text")
    box.act(Key(("ctrl", "s")))
    state = wait_state(box, "editor", lambda s: s["dialog"] and "dialog.name" in s["widgets"], what="the save dialog")
    assert state["dialog"]["mode"] == "save" and state["dialog"]["name"] == "practice-note.txt"
    assert os.path.realpath(state["dialog"]["dir"]) == os.path.realpath(home)
    box.act(Key(("enter",)))
    state = wait_state(box, "editor", lambda s: s["saves"], what="the save")
    saved = state["saves"][0]
    assert saved == os.path.join(home, "practice-note.txt")
    assert state["path"] == saved and state["modified"] is False and state["dialog"] is None
    assert box.read_file(saved) == b"hello dojo\nsecond line"

    box.write_file(f"{home}/Documents/todo.txt", b"buy milk\n")
    click_box(box, menu_entry(state, "File"))
    state = wait_state(box, "editor", lambda s: s["open_menus"], what="the File menu")
    click_box(box, menu_entry(state, "Open..."))
    state = wait_state(box, "editor", lambda s: s["dialog"] and "dialog.files" in s["widgets"], what="the open dialog")
    rows = state["widgets"]["dialog.files"]["rows"]
    click_box(box, next(r for r in rows if r["text"] == "Documents/"), count=2)
    state = wait_state(box, "editor", lambda s: s["dialog"]["dir"].endswith("/Documents"), what="Documents entered")
    click_box(box, next(r for r in state["widgets"]["dialog.files"]["rows"] if r["text"] == "todo.txt"), count=2)
    state = wait_state(box, "editor", lambda s: s["opens"], what="the file opened")
    assert state["text"] == "buy milk\n" and state["path"].endswith("/Documents/todo.txt")


def test_multiwindow_opens_types_into_and_closes_a_second_window(box):
    state = launch(box, "multiwindow", {"seed": 13, "windows": ["Inspector", "Notes", "Palette"], "open": ["Palette"]})
    assert state["open"] == ["Palette"] and "Palette" in state["windows"]
    click(box, state, "open:Notes")
    state = wait_state(box, "multiwindow", lambda s: "Notes.entry" in s["widgets"] and "Notes" in s["windows"],
                       what="the Notes window")
    assert state["windows"]["Notes"]["title"] == "deskdojo multiwindow: Notes"
    titles = {w.title for w in box.windows()}
    assert {"deskdojo multiwindow", "deskdojo multiwindow: Notes", "deskdojo multiwindow: Palette"} <= titles
    type_into(box, state, "Notes.entry", "remember")
    click(box, state, "Notes.close")
    state = wait_state(box, "multiwindow", lambda s: "Notes" not in s["open"], what="Notes closed")
    assert state["values"]["Notes"] == "remember" and "Notes" not in state["windows"]
    assert state["opened"]["Notes"] == 1 and state["closed"]["Notes"] == 1 and state["open"] == ["Palette"]
    assert not any(w.title == "deskdojo multiwindow: Notes" for w in box.windows())


# --- seeds, params and the docker image -------------------------------------------------------


def launch_all(box: Any, seed: int) -> dict[str, dict[str, Any]]:
    """Every app at once with one seed (they only need to publish, not to be clicked)."""
    box.reset()
    for app in APPS:
        box.exec(launch_argv(app, {"seed": seed}, python=sys.executable), background=True)
    return {app: settled(box, app, timeout=20.0) for app in APPS}


def test_seeds_decide_layout_labels_and_style_deterministically(box):
    first, again, other = launch_all(box, 101), launch_all(box, 101), launch_all(box, 202)
    for app in APPS:
        assert first[app] == again[app], f"{app}: the same seed gave a different state"
        assert first[app]["params"] != other[app]["params"], f"{app}: two seeds gave the same params"
        geometry = {wid: (w["x"], w["y"], w["w"], w["h"]) for wid, w in first[app]["widgets"].items()}
        other_geometry = {wid: (w["x"], w["y"], w["w"], w["h"]) for wid, w in other[app]["widgets"].items()}
        assert geometry != other_geometry, f"{app}: two seeds gave the same layout"
    assert len({json.dumps(first[app]["style"], sort_keys=True) for app in APPS}) > 1


def test_bad_params_exit_with_a_message_naming_the_knob(box):
    box.reset()
    result = box.exec(launch_argv("buttons", {"seed": 1, "colour": "red"}, python=sys.executable), timeout=20)
    assert result.returncode == 2 and "no knob 'colour'" in result.stderr
    result = box.exec(launch_argv("buttons", {"n": "three"}, python=sys.executable), timeout=20)
    assert result.returncode == 2 and "knob 'n' must be an integer" in result.stderr
    assert "buttons" not in box.app_state()["apps"]


def test_closing_the_main_window_publishes_a_last_state(box):
    state = launch(box, "buttons", {"seed": 2})
    click(box, state, next(iter(state["widgets"])))  # focus the window
    box.act(Key(("alt", "f4")))  # openbox closes the focused window
    state = wait_state(box, "buttons", lambda s: s["closed"], what="the closed flag")
    # the last state is written just before the window is destroyed: give it a moment
    deadline = time.monotonic() + 3.0
    while any(w.title == "deskdojo buttons" for w in box.windows()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(w.title == "deskdojo buttons" for w in box.windows())


@pytest.mark.docker
def test_apps_run_in_the_docker_image():
    sandbox = make_provider(SandboxConfig(provider="docker", screen=SCREEN)).start()
    try:
        state = launch(sandbox, "buttons", {"seed": 21, "labels": ["One", "Two"]}, python="python3")
        click(sandbox, state, "button:Two")
        assert wait_state(sandbox, "buttons", lambda s: s["last"] == "Two")["clicks"] == {"One": 0, "Two": 1}

        state = launch(sandbox, "editor", {"seed": 22, "text": "in the image", "default_name": "image.txt"},
                       python="python3")
        click_box(sandbox, menu_entry(state, "File"))
        state = wait_state(sandbox, "editor", lambda s: s["open_menus"], what="the File menu")
        click_box(sandbox, menu_entry(state, "Save"))
        state = wait_state(sandbox, "editor", lambda s: s["dialog"] and "dialog.ok" in s["widgets"], what="dialog")
        click(sandbox, state, "dialog.ok")
        state = wait_state(sandbox, "editor", lambda s: s["saves"], what="the save")
        assert state["saves"] == ["/home/dojo/image.txt"]
        assert sandbox.read_file("/home/dojo/image.txt") == b"in the image"
    finally:
        sandbox.close()
