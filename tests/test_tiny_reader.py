"""The tiny preset's reader: whole-word tokens, the generated pretraining data, a few real
pretraining steps, and the shipped weights, which must read element tables they were
never trained on (held-out made-up words) well above chance."""

from __future__ import annotations

import random

import pytest

from deskdojo.agent.tiny.pretrain import (OPENER_PLACES, one_token, PretrainConfig, accuracy, click_example, make_example, opener_example,
                                          pretrain, reader_from_scratch, typing_example,
                                          split_words)
from deskdojo.agent.tiny.words import UI_WORDS, pseudo_words, word_tokens
from deskdojo.core.actions import Click, Done, Scroll, Type
from deskdojo.core.protocols import Decision


@pytest.fixture(scope="module")
def tokenizer():
    from deskdojo.agent.model.loading import load_tokenizer
    from deskdojo.agent.tiny import TINY_DIR

    return load_tokenizer(TINY_DIR, local=True)


def pieces(tokenizer, text: str) -> list[str]:
    return [tokenizer.decode([i]) for i in tokenizer(text)["input_ids"]]


def test_family_and_interface_words_are_single_tokens_that_stand_alone(tokenizer):
    from deskdojo.commands.tiny import family_words

    for word in ("pepper", "Quentin", "Oslo", "turquoise", "Apply", "OK", "12", pseudo_words()[7]):
        assert pieces(tokenizer, f'3 button "{word}" enabled') .count(word) == 1, word
    assert "pepper" not in pieces(tokenizer, "peppers")  # a look-alike is not the word plus a suffix
    assert len(set(word_tokens(family_words()))) == len(word_tokens(family_words()))


def test_pseudo_words_are_fixed_and_avoid_real_words():
    first, again = pseudo_words(), pseudo_words()
    assert first == again and len(set(w.lower() for w in first)) == len(first)
    assert not {w.lower() for w in first} & {w.lower() for w in UI_WORDS}


def test_generated_examples_answer_with_a_mentioned_row_or_done():
    rng = random.Random(5)
    words = pseudo_words()[:300]
    seen_done = seen_ordered = 0
    for _ in range(300):
        example = click_example(rng, words, rows=rng.randint(2, 20))
        rows = {e.id: e for e in example.observation.elements.elements}
        clicked = {d.action.element for d in example.history}
        for choice in example.choices:
            if isinstance(choice, Done):
                seen_done += 1
                continue
            assert isinstance(choice, Click) and choice.element in rows
            assert choice.element not in clicked
            name = rows[choice.element].name
            assert name in example.task.instruction
            # a look-alike ("brelk tav") of the target never equals it
            assert sum(e.name == name for e in rows.values()) == 1
        seen_ordered += len(example.choices) == 1 and not isinstance(example.target, Done)
        assert example.target in example.choices
    assert seen_done > 20 and seen_ordered > 100


def test_typing_examples_type_the_quoted_text_into_the_one_field_in_the_instructions_order():
    rng = random.Random(7)
    words = pseudo_words()[:300]
    kinds = {"type": 0, "click": 0, "done": 0}
    for _ in range(200):
        example = typing_example(rng, words, rows=rng.randint(2, 12))
        rows = {e.id: e for e in example.observation.elements.elements}
        (field,) = [e for e in rows.values() if "editable" in e.states]
        typed = [d for d in example.history if isinstance(d.action, Type)]
        assert example.target in example.choices
        if isinstance(example.target, Type):
            kinds["type"] += 1
            assert not typed and example.target.element == (None if "focused" in field.states else field.id)
            assert f"{example.target.text}" in example.task.instruction and f"into the" in example.task.instruction
            assert one_token(example.target.text)  # as the families' words are: a copy of one token
            # every row the sentence names before the typing is clicked already
            assert all(d.element_name in example.task.instruction.split(" type ")[0] for d in example.history)
        elif isinstance(example.target, Click):
            kinds["click"] += 1
            assert rows[example.target.element].name in example.task.instruction
            assert example.target.element != field.id
        else:
            kinds["done"] += 1
            assert len(typed) == 1
        if typed:  # the field holds what was typed
            assert field.name == typed[0].action.text
    assert min(kinds.values()) > 15, kinds


def test_form_examples_type_each_text_into_the_field_marked_with_its_place_then_press_the_button():
    """Two or three labelled fields: the target is the next field in the sentence's order,
    typed by place, and the table marks that very row with the place it takes (``$2``);
    then the button, then done. The default mix has none of them (the shipped reader's data)."""
    from deskdojo.agent.tiny.pretrain import form_example, said
    from deskdojo.perception.relevance import texts_to_type

    from deskdojo.agent.policy import PolicyConfig, load_policy
    from deskdojo.agent.tiny import TINY_DIR

    policy = load_policy(str(TINY_DIR / "reader"), PolicyConfig(field_texts=True))
    rng = random.Random(9)
    words = pseudo_words()[:300]
    kinds: dict[str, int] = {}
    for _ in range(150):
        example = said(policy, form_example(rng, words, rows=rng.randint(7, 14)))
        texts = texts_to_type(example.task.instruction)
        assert len(texts) in (2, 3) and example.target in example.choices
        answer = policy.render_target(example.target, example.observation, task=example.task,
                                      history=example.history)
        table = policy._prompt([example.observation], example.task, example.history).text
        typed = [d.action.text for d in example.history if isinstance(d.action, Type)]
        assert typed == list(texts[:len(typed)])  # in the sentence's order
        if isinstance(example.target, Type):
            number, place = answer.split()[1][1:], answer.split()[2].strip('"')
            assert place == f"${len(typed) + 1}" and texts[len(typed)] == example.target.text
            (row,) = [line for line in table.splitlines() if line.startswith(f"{number} ")]
            assert row.split()[-2].endswith(f",{place}") and '""' in row  # the empty field marked with it
            kinds[place] = kinds.get(place, 0) + 1
        else:
            assert len(typed) == len(texts)
            kinds[answer.split()[0]] = kinds.get(answer.split()[0], 0) + 1
    assert min(kinds.get(k, 0) for k in ("$1", "$2", "$3", "click", "done")) > 3, kinds
    rng = random.Random(1)
    assert all(make_example(rng, words, rows=9).task.instruction.count(" into the ") <= 1 for _ in range(300))


def _ranked(example):
    from deskdojo.agent.observation import ShownElements, acted_on, ranked_for_task

    rows = example.observation.elements.elements
    return ranked_for_task(ShownElements(rows, 0, listed=True), example.task.instruction,
                           acted=acted_on(example.history))


def test_opener_examples_open_a_drop_down_close_the_wrong_one_with_escape_then_click_the_named_item():
    from deskdojo.core.actions import Key

    rng = random.Random(8)
    words = pseudo_words()[:300]
    answers = {"open": 0, "escape": 0, "open the other": 0, "item": 0, "done": 0}
    for _ in range(400):
        example = opener_example(rng, words, rows=rng.randint(3, 12))
        rows = {e.id: e for e in example.observation.elements.elements}
        ranked = _ranked(example)
        combos = [e.id for e in rows.values() if e.role == "combo box"]
        assert example.target in example.choices
        if isinstance(example.target, Key):  # the other drop-down's list showed no such item
            answers["escape"] += 1
            assert example.target.keys == ("escape",) and isinstance(example.history[-1].action, Click)
            assert not ranked.named and len(set(combos) - ranked.acted) == 1
        elif isinstance(example.target, Done):
            answers["done"] += 1
            assert not ranked.named and not ranked.kind
        elif rows[example.target.element].role == "menu item":
            answers["item"] += 1
            assert ranked.named == {example.target.element}
        else:  # a drop-down not yet acted on; the one the task names by kind, when it does
            answers["open the other" if example.history else "open"] += 1
            assert all(rows[c.element].role == "combo box" and c.element not in ranked.acted
                       for c in example.choices)
            assert not ranked.named
            if "drop-down" in example.task.instruction:
                assert {c.element for c in example.choices} <= ranked.kind
    assert min(answers.values()) > 15, answers


def test_role_examples_click_the_one_row_of_the_kind_the_task_names_then_done():
    from deskdojo.agent.tiny.pretrain import role_example

    rng = random.Random(10)
    words = pseudo_words()[:300]
    clicks = dones = 0
    for _ in range(200):
        example = role_example(rng, words, rows=rng.randint(2, 12))
        ranked = _ranked(example)
        if isinstance(example.target, Click):
            clicks += 1
            assert ranked.kind == {example.target.element} and ranked.elements[0].id == example.target.element
        else:
            dones += 1
            assert not ranked.kind and len(ranked.acted) == 1
    assert clicks > 50 and dones > 50


def test_the_item_named_before_its_menu_is_clicked_after_it():
    from deskdojo.agent.tiny.pretrain import _inside_instruction

    rng = random.Random(11)
    for _ in range(50):
        text = _inside_instruction(rng, "Library", "Castle")
        assert text.index("Library") < text.index("Castle"), text
    # in the generated screens, the holder (named last) is clicked first and the item shows
    # only after it: "Choose the command X from the Y menu" answers Y's row first
    import re

    from deskdojo.agent.tiny.pretrain import CONTAINERS

    shape = re.compile(rf"the command (.+) from the (.+) ({'|'.join(CONTAINERS)})\.$")
    words = pseudo_words()[:300]
    seen = 0
    for _ in range(3000):
        example = click_example(rng, words, rows=rng.randint(3, 10))
        match = shape.search(example.task.instruction)
        if not match or example.history or not isinstance(example.target, Click):
            continue
        rows = {e.id: e for e in example.observation.elements.elements}
        name = rows[example.target.element].name
        assert name == match.group(2).strip("“”\""), (example.task.instruction, name)
        assert all(e.name != match.group(1).strip("“”\"") for e in rows.values())  # the item is not shown yet
        seen += 1
    assert seen > 5


def test_a_drop_down_the_task_names_by_kind_carries_kind_until_the_named_item_was_chosen():
    from deskdojo.agent.observation import ActedOn, ShownElements, place_of, ranked_for_task
    from deskdojo.core.elements import Element

    instruction = "Choose “White” from the drop-down menu."
    empty = Element(1, "combo box", "", (10, 10, 100, 20))
    option = Element(2, "combo box", "Brown", (10, 200, 100, 20))
    rows = (Element(3, "button", "Close", (300, 10, 40, 20)), empty, option, Element(4, "scroll bar", "", (0, 0, 5, 80)))
    first = ranked_for_task(ShownElements(rows, 0, listed=True), instruction)
    assert first.kind == {1, 2} and {e.id for e in first.elements[:2]} == {1, 2} and not first.named
    # the empty one opened in vain: acted at its very place, not elsewhere; the other still kind
    opened = ActedOn("", place_of(empty, rows))
    after = ranked_for_task(ShownElements(rows, 0, listed=True), instruction, acted=[opened])
    assert after.acted == {1} and after.kind == {2} and after.elements[0].id == 2
    moved = Element(1, "combo box", "", (10, 40, 100, 20))  # 30 px away: another unnamed row
    assert ranked_for_task(ShownElements((moved, option), 0, listed=True), instruction, acted=[opened]).acted == set()
    # the item chosen in the pop-down: the drop-down that now shows it is the row acted on
    chosen = Element(2, "combo box", "White", (10, 200, 100, 20))
    done = ranked_for_task(ShownElements((empty, chosen), 0, listed=True), instruction,
                           acted=[ActedOn("Brown", place_of(option, rows)), ActedOn("White", ("", None, (500, 500)))])
    assert done.acted == {2} and not done.named and not done.kind


def test_generated_batches_are_later_steps_and_repeat_for_a_seed():
    from deskdojo.agent.policy import load_policy
    from deskdojo.agent.tiny.pretrain import generated_batch

    policy = load_policy("tiny")
    first = generated_batch(policy, PretrainConfig(), 12, seed=3)
    again = generated_batch(policy, PretrainConfig(), 12, seed=3)
    other = generated_batch(policy, PretrainConfig(), 12, seed=4)
    assert len(first) == 12 and all(s.history for s in first)
    assert [s.target_text for s in first] == [s.target_text for s in again]
    assert [s.task.instruction for s in first] != [s.task.instruction for s in other]


def test_mixed_pretraining_draws_all_four_kinds():
    from deskdojo.agent.tiny.pretrain import KIND_WORDS

    rng = random.Random(9)
    words = pseudo_words()[:300]
    examples = [make_example(rng, words, rows=6) for _ in range(300)]
    typing = sum(any("editable" in e.states for e in x.observation.elements.elements) for x in examples)
    openers = sum(x.task.instruction.endswith(tuple(f"{place}." for place in OPENER_PLACES)) for x in examples)
    roles = sum(x.task.instruction.split(" the ", 1)[-1].rstrip(".") in
                {w for kind in KIND_WORDS.values() for w in kind} for x in examples)
    assert 60 < typing < 120 and 20 < openers < 70 and 8 < roles < 45, (typing, openers, roles)


def test_held_out_words_never_train():
    train, heldout = split_words(pseudo_words(), 400)
    assert len(heldout) == 400 and not set(train) & set(heldout)


def test_a_few_pretraining_steps_lower_the_loss():
    policy = reader_from_scratch(seed=0)
    result = pretrain(policy, PretrainConfig(steps=30, batch_size=8, lr=3e-3, warmup_steps=5, max_rows=4,
                                             eval_every=1000, eval_examples=8, log_every=1000),
                      log=lambda *_: None)
    assert result.steps == 30
    assert sum(result.losses[-5:]) / 5 < 0.6 * sum(result.losses[:5]) / 5


def test_the_shipped_reader_reads_tables_with_words_it_never_saw():
    from deskdojo.agent.policy import load_policy

    policy = load_policy("tiny")
    assert policy.observation == "a11y_tree" and policy.base == "tiny"
    _, heldout = split_words(pseudo_words(), PretrainConfig().heldout_words)
    rng = random.Random(99)
    examples = [make_example(rng, heldout, rows=rng.randint(2, 16)) for _ in range(64)]
    # chance is below 0.2 here (2-16 rows, 'done' one answer among them)
    assert accuracy(policy, examples) >= 0.6


def test_task_relevance_prefers_the_exact_name_over_look_alikes():
    from deskdojo.agent.observation import task_relevance

    instruction = "Click the button labelled “pepper”."
    assert task_relevance("pepper", instruction) == 3.0
    assert task_relevance("pepper mill", instruction) == 0.5
    assert task_relevance("peppers", instruction) == 0.0
    assert task_relevance("Pepper", instruction) == 3.0  # any case
    assert task_relevance("", instruction) == 0.0


def test_a_container_the_task_names_ranks_after_its_targets_and_is_never_named():
    from deskdojo.agent.observation import ActedOn, ShownElements, ranked_for_task
    from deskdojo.core.elements import Element

    rows = (Element(1, "check box", "tomato", (0, 0, 40, 12)),
            Element(2, "panel", "Marble colour", (0, 20, 100, 50)),
            Element(3, "radio button", "Cyan", (0, 30, 40, 12)),
            Element(4, "radio button", "Purple", (0, 45, 40, 12)),
            Element(5, "button", "Marble tray", (0, 80, 40, 12)))
    instruction = "Check the box labelled “tomato” and set “Marble colour” to “Cyan”."
    ranked = ranked_for_task(ShownElements(rows, 0, listed=True), instruction, acted=[ActedOn("tomato")])
    # the acted-on row sinks below what is left to do (the container too), above the rest
    assert [e.id for e in ranked.elements] == [3, 2, 1, 5, 4]
    assert ranked.named == {3} and ranked.acted == {1}
    # the same name on a control is a target as before
    as_button = (rows[0], Element(2, "button", "Marble colour", (0, 20, 100, 50)), *rows[2:])
    assert ranked_for_task(ShownElements(as_button, 0, listed=True), instruction).named == {1, 2, 3}


def test_a_label_or_a_field_the_task_names_is_not_a_target():
    from deskdojo.agent.observation import ShownElements, ranked_for_task
    from deskdojo.core.elements import Element

    rows = (Element(1, "label", "Reason:", (0, 0, 40, 12)),
            Element(2, "text", "Rufus", (50, 0, 80, 12), frozenset({"editable", "focused"})),
            Element(3, "button", "Archive", (0, 30, 40, 12)),
            Element(4, "button", "Rufus", (0, 60, 40, 12)))
    instruction = 'Type "Rufus" into the Reason field, then confirm with Archive.'
    ranked = ranked_for_task(ShownElements(rows, 0, listed=True), instruction)
    # the field holds the typed text and the label names the field: neither is left to click
    assert ranked.named == {3, 4}


def test_a_field_the_task_types_into_is_named_until_it_holds_the_text():
    """confirm_dialog L2's dialog: the Note field is the next step, before the Rotate button
    the sentence names last (not at "Rotate forest"); a click into the field leaves it to
    do; once it holds the text it is acted, however the text got there."""
    from deskdojo.agent.observation import ActedOn, ShownElements, label_of, place_of, ranked_for_task
    from deskdojo.core.elements import Element

    instruction = 'Press the "Rotate forest" button, type "Nico" into the Note field, then confirm with Rotate.'

    def ranked(field_name: str, *acted: ActedOn, rows_extra: tuple = ()):
        rows = (Element(1, "button", "Rotate forest", (0, 0, 90, 16)),
                Element(2, "label", "Note:", (20, 40, 40, 13)),
                Element(3, "text", field_name, (70, 40, 100, 13), frozenset({"editable", "focused"})),
                Element(4, "button", "Rotate", (60, 70, 55, 17)), *rows_extra)
        return ranked_for_task(ShownElements(rows, 0, listed=True), instruction,
                               acted=(ActedOn("Rotate forest"), *acted)), rows

    shown, rows = ranked("")
    assert label_of(rows[2], rows) == rows[1]
    assert [e.id for e in shown.elements] == [3, 2, 4, 1] and shown.named == {3, 4} and 1 in shown.acted
    clicked = ActedOn("", place_of(rows[2], rows))
    shown, _ = ranked("", clicked)
    assert shown.elements[0].id == 3 and 3 in shown.named and 3 not in shown.acted
    shown, _ = ranked("Nico", clicked)
    assert [e.id for e in shown.elements] == [2, 4, 1, 3] and shown.named == {4} and 3 in shown.acted
    # two fields, labels above them (switch_tab's page): the one whose label the task names
    page = (Element(1, "label", "apple name:", (0, 0, 80, 12)),
            Element(2, "text", "", (0, 16, 90, 12), frozenset({"editable"})),
            Element(3, "label", "pear name:", (0, 40, 80, 12)),
            Element(4, "text", "", (0, 56, 90, 12), frozenset({"editable"})))
    shown = ranked_for_task(ShownElements(page, 0, listed=True),
                            'Go to the Apple tab and type "Tokyo" into the "pear name:" field.')
    assert shown.named == {4} and shown.elements[0].id == 4
    assert label_of(page[1], page) == page[0] and label_of(page[3], page) == page[2]
    # no text to type: no field is a target
    assert ranked_for_task(ShownElements(page, 0, listed=True), "Go to the Apple tab.").named == frozenset()


def test_a_field_to_type_into_carries_the_place_of_the_text_it_takes():
    """fill_form L1: each field says which of the task's texts goes into it (``$2``), by
    the text said before its label (or after it, when the label comes first); the mark
    is drawn only with ``field_texts``, and a field that holds its text loses it."""
    from deskdojo.agent.observation import ShownElements, element_table, ranked_for_task, texts_for_fields
    from deskdojo.core.elements import Element

    def form(first: str = "", second: str = ""):
        return (Element(1, "text", first, (110, 0, 140, 12), frozenset({"editable", "enabled"})),
                Element(2, "label", "Team colour:", (50, 0, 55, 12)),
                Element(3, "text", second, (110, 20, 140, 12), frozenset({"editable", "enabled"})),
                Element(4, "label", "Captain:", (50, 20, 55, 12)),
                Element(5, "button", "Proceed", (200, 40, 44, 15)))

    said = "Type “purple” into the “Team colour” field and “Gus” into the “Captain” field. Then press “Proceed”."
    shown = ranked_for_task(ShownElements(form(), 0, listed=True), said, field_texts=True)
    assert shown.takes == {1: 1, 3: 2}
    table = element_table(shown, screen=(448, 336), image=(448, 336))
    assert '1 text "" editable,enabled,named,$1 ' in table and '3 text "" editable,enabled,named,$2 ' in table
    assert "$" not in element_table(ranked_for_task(ShownElements(form(), 0, listed=True), said),
                                    screen=(448, 336), image=(448, 336))
    # the first text typed: only the second field is left, and it still takes $2
    shown = ranked_for_task(ShownElements(form(first="purple"), 0, listed=True), said, field_texts=True)
    assert shown.takes == {3: 2} and shown.named == {3, 5} and 1 in shown.acted
    # the other order of the sentence (one text): the label first, its text after it
    assert texts_for_fields({7: 2}, "In the Note field, type “Mina”, then click “Save”.") == {7: 1}
    # the swapped sentence swaps the marks; nothing to type marks nothing
    swapped = "Type “Gus” into the “Captain” field and “purple” into the “Team colour” field."
    assert ranked_for_task(ShownElements(form(), 0, listed=True), swapped, field_texts=True).takes == {1: 2, 3: 1}
    assert ranked_for_task(ShownElements(form(), 0, listed=True), "Press “Proceed”.", field_texts=True).takes == {}


def test_the_order_of_mentions_skips_words_inside_another_quoted_name():
    from deskdojo.perception.relevance import mention_position

    said = 'Press the "Rotate forest" button, type "Nico" into the Note field, then confirm with Rotate.'
    assert mention_position("Rotate forest", said) == 2 < mention_position("Note:", said) \
        < mention_position("Rotate", said) == 14
    tab = 'Go to the Apple tab and type "Tokyo" into the "apple name:" field.'
    assert mention_position("Apple", tab) == 3 < mention_position("apple name:", tab) == 10
    assert mention_position("Kettle", tab) == len(tab.split())  # never said: past the end


def test_clicking_an_unnamed_row_marks_no_other_unnamed_row_acted():
    from deskdojo.agent.observation import ActedOn, ShownElements, ranked_for_task
    from deskdojo.core.elements import Element

    rows = (Element(1, "combo box", "", (0, 0, 40, 12)), Element(2, "scroll bar", "", (50, 0, 5, 80)),
            Element(3, "combo box", "Brown", (0, 30, 40, 12)))
    ranked = ranked_for_task(ShownElements(rows, 0, listed=True), "Choose “White”.",
                             acted=[ActedOn(""), ActedOn("Brown")])
    assert ranked.acted == {3}


def test_a_button_of_the_same_name_in_a_new_dialog_is_not_the_one_acted_on():
    from deskdojo.agent.observation import ActedOn, ShownElements, acted_on, place_of, ranked_for_task
    from deskdojo.core.elements import Element

    title = "deskdojo dialogs: Save"
    first_dialog = (Element(6, "dialog", title, (773, 142, 252, 100), window=title),
                    Element(7, "button", "Confirm", (791, 193, 102, 31), window=title))
    history = (Decision(text="click #1", action=Click(element=7), element_name="Confirm",
                        element_place=place_of(first_dialog[1], first_dialog)),)
    instruction = "Click Save, then press Confirm, and Confirm again when asked a second time."
    # the second dialog: same title, opened elsewhere
    second_dialog = (Element(2, "dialog", title, (693, 142, 332, 100), window=title),
                     Element(3, "button", "Confirm", (865, 193, 102, 31), window=title))
    ranked = ranked_for_task(ShownElements(second_dialog, 0, listed=True), instruction, acted=acted_on(history))
    assert ranked.acted == frozenset() and ranked.named == {3}
    # the same window with its button reflowed 20 px (a status line grew) is the one acted on
    reflowed = (Element(4, "dialog", title, (773, 142, 290, 100), window=title),
                Element(5, "button", "Confirm", (811, 193, 102, 31), window=title))
    assert ranked_for_task(ShownElements(reflowed, 0, listed=True), instruction,
                           acted=acted_on(history)).acted == {5}
    # another window is another button; known by name alone, any "Confirm" is acted
    elsewhere = Element(9, "button", "Confirm", (791, 193, 102, 31), window="deskdojo dialogs: Load")
    acted = ActedOn("Confirm", place_of(first_dialog[1], first_dialog))
    assert not acted.matches(elsewhere, place_of(elsewhere, (elsewhere,)))
    assert ActedOn("Confirm").matches(second_dialog[1], place_of(second_dialog[1], second_dialog))
    assert ActedOn("Confirm").matches(elsewhere, place_of(elsewhere, (elsewhere,)))


def test_a_scroll_over_a_row_does_not_mark_it_acted():
    from deskdojo.agent.observation import ShownElements, acted_on, place_of, ranked_for_task
    from deskdojo.core.elements import Element

    rows = (Element(1, "label", "Lantern", (53, 436, 54, 17)), Element(2, "canvas", "", (40, 427, 275, 175)))
    history = (Decision(text="scroll #2 down 3", action=Scroll(element=2, dy=3), element_name="",
                        element_place=place_of(rows[1], rows)),
               Decision(text="click #1", action=Click(element=1), element_name="Lantern",
                        element_place=place_of(rows[0], rows)))
    assert [a.name for a in acted_on(history)] == ["Lantern"]
    ranked = ranked_for_task(ShownElements(rows, 0, listed=True), 'Scroll the list to "Lantern" and click it.',
                             acted=acted_on(history))
    assert ranked.acted == {1}


def test_a_choice_of_the_same_name_in_another_group_is_not_the_one_acted_on():
    from deskdojo.agent.observation import ShownElements, acted_on, place_of, ranked_for_task
    from deskdojo.core.elements import Element

    window = "deskdojo choices"
    rows = (Element(1, "frame", window, (304, 57, 326, 334), window=window),
            Element(2, "panel", "Harbor colour", (311, 233, 144, 112), window=window),
            Element(3, "radio button", "Ivory", (318, 312, 86, 26), window=window),
            Element(4, "panel", "Mountain colour", (459, 233, 164, 112), window=window),
            Element(5, "radio button", "Ivory", (466, 260, 86, 26), window=window))
    history = (Decision(text="click #1", action=Click(element=5), element_name="Ivory",
                        element_place=place_of(rows[4], rows)),)
    instruction = "Set “Mountain colour” to “Ivory” and set “Harbor colour” to “Ivory”."
    ranked = ranked_for_task(ShownElements(rows, 0, listed=True), instruction, acted=acted_on(history))
    assert ranked.acted == {5} and 3 in ranked.named


def test_history_names_is_a_saved_setting(tmp_path):
    from deskdojo.agent.policy import PolicyConfig, load_policy

    policy = reader_from_scratch(seed=0)
    assert policy.history_names
    policy.save(tmp_path / "p")
    assert load_policy(str(tmp_path / "p")).history_names
    assert not load_policy(str(tmp_path / "p"), PolicyConfig(history_names=False)).history_names


def test_a_ranked_table_numbers_its_rows_and_answers_map_back_to_listing_ids():
    import numpy as np

    from deskdojo.core.elements import Element, ElementList
    from deskdojo.core.types import Observation, Task

    policy = reader_from_scratch(seed=0)
    rows = [Element(0, "frame", "deskdojo buttons", (0, 0, 640, 480)),
            Element(4, "button", "pepper mill", (10, 10, 50, 20)),
            Element(7, "button", "pepper", (10, 40, 50, 20)),
            Element(9, "button", "anchor", (10, 70, 50, 20))]
    observation = Observation(np.zeros((768, 1024, 3), dtype=np.uint8), (1024, 768),
                              elements=ElementList(tuple(rows)))
    task = Task(id="t", instruction="Click the button labelled “pepper”.", family="click_button")
    prompt = policy._prompt([observation], task, ())
    table = prompt.text.split("Elements (number")[1]
    assert table.index('1 button "pepper" named') < table.index('2 button "pepper mill" -') < table.index('"anchor"')
    assert policy.render_target(Click(element=7), observation, task=task) == "click #1"
    assert policy.render_target(Click(element=4), observation, task=task) == "click #2"
    assert policy.render_target(Scroll(20, 50, dy=3, element=7), observation, task=task) == "scroll #1 down 3"
    turn = policy.tokenizer("scroll #2 up 10<|im_end|>")["input_ids"]
    assert policy._decision(turn, [0.0] * len(turn), prompt).action == Scroll(element=4, dy=-10)
    ids = policy.tokenizer("click #1<|im_end|>")["input_ids"]
    assert policy._decision(ids, [0.0] * len(ids), prompt).action == Click(element=7)
    wrong = policy.tokenizer("click #9<|im_end|>")["input_ids"]
    decision = policy._decision(wrong, [0.0] * len(wrong), prompt)
    assert decision.action is None and "not a number of the element list (1..4)" in decision.parse_error
    with pytest.raises(Exception, match="needs the task"):
        policy.render_target(Click(element=7), observation)
    # the decision names its element, and the next prompt marks that row as acted on
    decided = policy._decision(ids, [0.0] * len(ids), prompt)
    assert decided.element_name == "pepper"
    again = policy._prompt([observation], task, (decided,)).text
    assert '1 button "pepper" acted ' in again and '2 button "pepper mill" -' in again
    # the history names what was acted on, so the answer has no earlier number to repeat
    assert "Earlier actions:\n1. click \"pepper\"\n" in again
    typed = Decision(text='type #2 "salt"', action=Type("salt", element=4), element_name="")
    assert "2. type \"salt\"\n" in policy._prompt([observation], task, (decided, typed)).text


def test_the_texts_a_task_asks_to_type_are_read_in_order():
    from deskdojo.perception.relevance import texts_to_type

    assert texts_to_type('Press the "Archive forest" button, type "Mina" into the Reason field, '
                         'then confirm with Archive.') == ("Mina",)
    assert texts_to_type("Use “raislool”, then type toufos into the Rakihak field.") == ("toufos",)
    assert texts_to_type("Type “Kiev” into the “Meeting place” field and “azure” into the “Shirt colour” "
                         "field. Then press “Confirm”.") == ("Kiev", "azure")
    assert texts_to_type('In the editor, type "Ida left the stamp" and save it.') == ("Ida left the stamp",)
    assert texts_to_type("Choose the type of file, then click Type.") == ()


def test_a_text_to_type_is_said_by_its_place_and_acts_as_the_text(tmp_path):
    import numpy as np

    from deskdojo.agent.policy import PolicyConfig, load_policy
    from deskdojo.core.elements import Element, ElementList
    from deskdojo.core.types import Observation, Task

    policy = reader_from_scratch(seed=0)
    assert policy.text_refs
    rows = [Element(0, "dialog", "Archive", (0, 0, 640, 480)), Element(3, "label", "Reason:", (10, 10, 50, 20)),
            Element(5, "entry", "", (70, 10, 90, 20), states=frozenset({"editable", "enabled"})),
            Element(6, "button", "Archive", (10, 40, 50, 20))]
    observation = Observation(np.zeros((768, 1024, 3), dtype=np.uint8), (1024, 768),
                              elements=ElementList(tuple(rows)))
    task = Task(id="t", instruction='Type "Mina" into the Reason field, then confirm with Archive.',
                family="confirm_dialog")
    target = policy.render_target(Type("Mina", element=5), observation, task=task)
    assert target.startswith("type #") and target.endswith('"$1"')
    assert policy.render_target(Type("Nora"), observation, task=task) == 'type "Nora"'  # not a text of the task
    prompt = policy._prompt([observation], task, ())
    ids = policy.tokenizer('type "$1"<|im_end|>')["input_ids"]
    decided = policy._decision(ids, [0.0] * len(ids), prompt)
    assert decided.action == Type("Mina") and decided.text == 'type "$1"'
    wrong = policy.tokenizer('type "$2"<|im_end|>')["input_ids"]
    refused = policy._decision(wrong, [0.0] * len(wrong), prompt)
    assert refused.action is None and '$2 names no text the task asks to type (it asks for 1: "Mina")' \
        in refused.parse_error
    # the history says the place too, so "was the first text typed?" needs no copy either
    assert '1. type "$1"\n' in policy._prompt([observation], task, (decided,)).text
    policy.save(tmp_path / "p")
    assert load_policy(str(tmp_path / "p")).text_refs
    literal = load_policy(str(tmp_path / "p"), PolicyConfig(text_refs=False))
    assert literal.render_target(Type("Mina"), observation, task=task) == 'type "Mina"'
    literal_ids = literal.tokenizer('type "$1"<|im_end|>')["input_ids"]
    assert literal._decision(literal_ids, [0.0] * len(literal_ids), literal._prompt([observation], task, ())) \
        .action == Type("$1")
    # field_texts: the prompt's field row says which text it takes, and a saved policy keeps it
    assert ",$1 " not in prompt.text
    marked = load_policy(str(tmp_path / "p"), PolicyConfig(field_texts=True))
    assert 'entry "" editable,enabled,named,$1 ' in marked._prompt([observation], task, ()).text
    marked.save(tmp_path / "m")
    assert load_policy(str(tmp_path / "m")).field_texts and not load_policy(str(tmp_path / "p")).field_texts


def test_pretraining_continues_a_reader_it_wrote_and_counts_all_its_steps(tmp_path, capsys, monkeypatch):
    import json

    from deskdojo.agent.policy import load_policy
    from deskdojo.agent.tiny import pretrain as module
    from deskdojo.cli import main

    small = dict(batch_size=2, eval_examples=2, warmup_steps=1)
    real = module.PretrainConfig
    monkeypatch.setattr(module, "PretrainConfig", lambda **kw: real(**{**small, **kw}))
    assert main(["tiny", "pretrain", "--steps", "2", "--out", str(tmp_path / "a")]) == 0
    assert main(["tiny", "pretrain", "--continue-from", str(tmp_path / "a"), "--steps", "3", "--lr", "1e-4",
                 "--out", str(tmp_path / "b")]) == 0
    report = json.loads((tmp_path / "b" / "pretrain_report.json").read_text())
    assert (report["steps"], report["total_steps"], report["config"]["start_step"]) == (3, 5, 2)
    assert report["config"]["lr"] == 1e-4
    assert report["continued_from"]["steps"] == 2 and "continued_from" not in report["continued_from"]
    assert load_policy(str(tmp_path / "b")).text_refs
    assert main(["tiny", "pretrain", "--continue-from", str(tmp_path), "--steps", "1"]) != 0
    assert "holds no pretrain_report.json" in capsys.readouterr().err
    # forms: a continued reader that learned them shows the marks (field_texts); never from scratch
    assert main(["tiny", "pretrain", "--continue-from", str(tmp_path / "b"), "--steps", "1", "--form-share", "0.5",
                 "--out", str(tmp_path / "c")]) == 0
    assert load_policy(str(tmp_path / "c")).field_texts and not load_policy(str(tmp_path / "b")).field_texts
    assert json.loads((tmp_path / "c" / "pretrain_report.json").read_text())["config"]["form_share"] == 0.5
    assert main(["tiny", "pretrain", "--steps", "1", "--form-share", "0.5", "--out", str(tmp_path / "d")]) != 0
    assert "--form-share continues a pretrained reader" in capsys.readouterr().err


def test_exploration_scrolls_over_the_rows_that_scroll_and_the_answer_parses_to_a_wheel_on_that_row():
    import numpy as np

    from deskdojo.agent.policy import EXPLORE_SCROLL_CLICKS, PolicyConfig
    from deskdojo.core.actions import Scroll
    from deskdojo.core.elements import Element, ElementList
    from deskdojo.core.types import Observation, Task

    rows = [Element(1, "label", "Archive", (40, 391, 88, 28)),
            Element(2, "canvas", "", (40, 427, 275, 175)),
            Element(4, "label", "Canvas", (53, 436, 54, 17))]
    observation = Observation(np.zeros((768, 1024, 3), dtype=np.uint8), (1024, 768),
                              elements=ElementList(tuple(rows)))
    task = Task(id="t", instruction='Scroll the list to "Lantern" and click it.', family="scroll_find")
    policy = reader_from_scratch(seed=0)
    policy.config = PolicyConfig(explore=1.0)
    prompt = policy._prompt([observation], task, ())
    options = policy._table_answers(prompt)
    assert "type" not in options and len(options["scroll"]) == 4 * len(EXPLORE_SCROLL_CLICKS)
    wheels = [policy.format.parse(a, screen=prompt.screen, image=prompt.image).actions[0] for a in options["scroll"]]
    canvas = prompt.shown.label_of(2)
    # the canvas by its number in the table (the sandbox turns the wheel at its centre), each way,
    # a few clicks and many
    assert options["scroll"][0] == f"scroll #{canvas} down {EXPLORE_SCROLL_CLICKS[0]}"
    assert all(isinstance(w, Scroll) and (w.element, w.x, w.y) == (canvas, None, None) for w in wheels)
    assert sorted((w.dx, w.dy) for w in wheels) == sorted((sx * n, sy * n) for n in EXPLORE_SCROLL_CLICKS
                                                          for sx, sy in ((0, 1), (0, -1), (1, 0), (-1, 0)))
    # the decision maps the number back to the canvas's id, as it does a click's
    decision = policy._decision(policy.target_token_ids(options["scroll"][0]), [0.0] * 8, prompt)
    assert decision.action == Scroll(element=2, dy=EXPLORE_SCROLL_CLICKS[0]) and decision.element_name == ""
    # a sampled click on the canvas: its wheel turns are that row's answers, and a sampled turn's row is the canvas
    assert set(policy._table_answers(prompt, policy.tokenizer(f"click #{canvas}")["input_ids"])["row"]) == \
        set(options["scroll"])
    turned = policy._table_answers(prompt, policy.tokenizer(options["scroll"][0])["input_ids"])["row"]
    assert f"click #{canvas}" in turned and set(turned) == {f"click #{canvas}", *options["scroll"][1:]}
    # a scroll bar turns the wheel along its length only: up and down for a tall one, sideways for a wide one
    for box, ways in (((320, 427, 10, 175), {(0, 1), (0, -1)}), ((40, 610, 275, 10), {(1, 0), (-1, 0)})):
        bar = Observation(np.zeros((768, 1024, 3), dtype=np.uint8), (1024, 768),
                          elements=ElementList((Element(5, "scroll bar", "", box),)))
        bar_prompt = policy._prompt([bar], task, ())
        turns = [policy.format.parse(a, screen=bar_prompt.screen, image=bar_prompt.image).actions[0]
                 for a in policy._table_answers(bar_prompt)["scroll"]]
        assert {w.element for w in turns} == {bar_prompt.shown.label_of(5)}
        assert {(w.dx, w.dy) for w in turns} == {(sx * n, sy * n) for sx, sy in ways for n in EXPLORE_SCROLL_CLICKS}


def test_exploration_draws_answers_the_table_allows_scored_by_the_model_and_never_when_greedy():
    import numpy as np

    from deskdojo.agent.policy import PolicyConfig
    from deskdojo.core.elements import Element, ElementList
    from deskdojo.core.types import Observation, Task

    rows = [Element(3, "label", "Venue:", (10, 10, 50, 20)),
            Element(5, "entry", "", (70, 10, 90, 20), states=frozenset({"editable", "enabled"})),
            Element(6, "button", "Apply", (10, 40, 50, 20))]
    observation = Observation(np.zeros((768, 1024, 3), dtype=np.uint8), (1024, 768),
                              elements=ElementList(tuple(rows)))
    task = Task(id="t", instruction='Type "Gent" into the "Venue" field and "Cork" into the "Town" field. '
                                    'Then press "Apply".', family="fill_form")
    policy = reader_from_scratch(seed=0)
    policy.config = PolicyConfig(explore=1.0)
    prompt = policy._prompt([observation], task, ())
    field = prompt.shown.label_of(5)  # the ranked table's number of the entry
    options = policy._table_answers(prompt, policy.tokenizer(f"click #{field}")["input_ids"])
    # click any row; type either text into the one field; on the sampled row, what else it allows
    assert options == {"click": ["click #1", "click #2", "click #3"],
                       "type": [f'type #{field} "$1"', f'type #{field} "$2"'],
                       "row": [f'type #{field} "$1"', f'type #{field} "$2"']}
    button = prompt.shown.label_of(6)
    # a button allows nothing but its click: no other answer on its row
    assert "row" not in policy._table_answers(prompt, policy.tokenizer(f"click #{button}")["input_ids"])
    start = policy.rng_state()
    decisions = policy.act([observation] * 6, [task] * 6, [()] * 6)
    said = {d.text for d in decisions}
    assert said <= {a for answers in options.values() for a in answers} and len(said) > 1
    for decision in decisions:  # the stored log-probs are the model's own for the drawn tokens
        assert len(decision.logprobs) == len(decision.token_ids) and all(lp < 0 for lp in decision.logprobs)
        assert decision.token_ids[-1] == policy.end_token_id and decision.action is not None
    typed = next(d for d in decisions if d.text.startswith("type"))
    assert typed.action.text in ("Gent", "Cork") and typed.action.element == 5
    from deskdojo.agent.policy import PolicySample

    batch = policy.encode_samples([PolicySample(observations=(observation,), task=task, target_ids=typed.token_ids)])
    import torch

    with torch.no_grad():
        logp, mask = policy.token_logprobs(batch)
    assert logp[0][mask[0]].tolist() == pytest.approx(list(typed.logprobs), abs=1e-4)
    state = policy.rng_state()  # exploration switched off answers as a policy without it
    policy.set_exploring(False)
    unexplored = [d.text for d in policy.act([observation] * 6, [task] * 6, [()] * 6)]
    policy.set_exploring(True)
    policy.set_rng_state(state)
    policy.config = PolicyConfig(explore=0.0)
    assert unexplored == [d.text for d in policy.act([observation] * 6, [task] * 6, [()] * 6)]
    # a rate given with the switch stands in for config.explore until the next switch
    policy.set_rng_state(start)
    policy.set_exploring(True, rate=1.0)
    assert policy.explore_rate == 1.0
    assert [d.text for d in policy.act([observation] * 6, [task] * 6, [()] * 6)] == [d.text for d in decisions]
    policy.set_exploring(True)
    assert policy.explore_rate == 0.0
    policy.config = PolicyConfig(explore=1.0)
    policy.set_greedy(True)
    greedy = policy.act([observation] * 2, [task] * 2, [()] * 2)
    policy.config = PolicyConfig(explore=0.0)
    assert [d.text for d in greedy] == [d.text for d in policy.act([observation] * 2, [task] * 2, [()] * 2)]
    from deskdojo.core.errors import ConfigError

    with pytest.raises(ConfigError, match="explore must be a share"):
        PolicyConfig(explore=1.5)
    with pytest.raises(ConfigError, match="exploration rate is a share"):
        policy.set_exploring(True, rate=-0.1)


def test_exploring_past_done_samples_a_done_again_without_it_and_keeps_the_models_own_log_probs():
    """A ``done`` (or ``fail``) answer, while exploring, is sampled again with those words
    forbidden as its first token; the other answers stay; the stored log-probs are the
    model's own, unforbidden, as training scores them; off when not exploring or at rate 0."""
    import numpy as np
    import torch

    from deskdojo.agent.policy import PolicyConfig, PolicySample
    from deskdojo.core.elements import Element, ElementList
    from deskdojo.core.types import Observation, Task

    rows = [Element(3, "button", "Apply", (10, 40, 50, 20)), Element(6, "button", "Close", (80, 40, 50, 20))]
    observation = Observation(np.zeros((768, 1024, 3), dtype=np.uint8), (1024, 768),
                              elements=ElementList(tuple(rows)))
    task = Task(id="t", instruction='Press "Apply".', family="click_button")
    policy = reader_from_scratch(seed=0)
    policy.config = PolicyConfig(explore_past_done=1.0)
    stops = policy.stop_word_ids
    assert {policy.tokenizer.decode([i]).strip() for i in stops} == {"done", "f"}  # fail is "f" + "ail"
    prompts = [policy._prompt([observation], task, ()) for _ in range(4)]
    said = {"done": policy.tokenizer("done", add_special_tokens=False)["input_ids"] + [policy.end_token_id],
            "click": policy.tokenizer("click #1", add_special_tokens=False)["input_ids"] + [policy.end_token_id]}
    answers = [(said["done"], [-0.5] * 2), (said["click"], [-0.1] * 4), (said["done"], [-0.5] * 2),
               (said["click"], [-0.1] * 4)]
    again = policy._past_done(answers, prompts, 1.0)
    assert again[1] == answers[1] and again[3] == answers[3]  # not a done: as sampled
    for ids, logprobs in (again[0], again[2]):
        assert ids[0] not in stops and len(logprobs) == len(ids)
        if policy.end_token_id in ids:
            ids, logprobs = ids[:ids.index(policy.end_token_id) + 1], logprobs[:ids.index(policy.end_token_id) + 1]
        batch = policy.encode_samples([PolicySample(observations=(observation,), task=task, target_ids=tuple(ids))])
        with torch.no_grad():
            logp, mask = policy.token_logprobs(batch)
        assert logp[0][mask[0]].tolist() == pytest.approx(list(logprobs), abs=1e-4)
    policy.config = PolicyConfig(explore_past_done=0.0)  # off: act samples no second time
    before = policy._act_calls
    policy.act([observation] * 2, [task] * 2, [()] * 2)
    assert policy._act_calls == before + 1
    policy.config = PolicyConfig(explore_past_done=1.0)
    policy.set_exploring(False)  # a pass without exploration: no second sample either
    with_done = policy._sampled
    policy._sampled = lambda prompts, temperature, **kw: [(said["done"], [-0.5] * 2) for _ in prompts]
    try:
        assert [d.text for d in policy.act([observation] * 2, [task] * 2, [()] * 2)] == ["done", "done"]
        policy.set_exploring(True)
        policy._sampled = lambda prompts, temperature, **kw: (
            with_done(prompts, temperature, **kw) if kw.get("stream") else [(said["done"], [-0.5] * 2) for _ in prompts])
        assert all(not d.text.startswith(("done", "fail")) for d in policy.act([observation] * 2, [task] * 2, [()] * 2))
    finally:
        policy._sampled = with_done
    from deskdojo.core.errors import ConfigError

    with pytest.raises(ConfigError, match="explore_past_done must be a share"):
        PolicyConfig(explore_past_done=2)
