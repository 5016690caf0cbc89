"""The tiny preset's reader: whole-word tokens, the generated pretraining data, a few real
pretraining steps, and the shipped weights, which must read element tables they were
never trained on (held-out made-up words) well above chance."""

from __future__ import annotations

import random

import pytest

from deskdojo.agent.tiny.pretrain import (PretrainConfig, accuracy, make_example, pretrain, reader_from_scratch,
                                          split_words)
from deskdojo.agent.tiny.words import UI_WORDS, pseudo_words, word_tokens
from deskdojo.core.actions import Click, Done


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
        example = make_example(rng, words, rows=rng.randint(2, 20))
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
    from deskdojo.agent.observation import ShownElements, ranked_for_task
    from deskdojo.core.elements import Element

    rows = (Element(1, "check box", "tomato", (0, 0, 40, 12)),
            Element(2, "panel", "Marble colour", (0, 20, 100, 50)),
            Element(3, "radio button", "Cyan", (0, 30, 40, 12)),
            Element(4, "radio button", "Purple", (0, 45, 40, 12)),
            Element(5, "button", "Marble tray", (0, 80, 40, 12)))
    instruction = "Check the box labelled “tomato” and set “Marble colour” to “Cyan”."
    ranked = ranked_for_task(ShownElements(rows, 0, listed=True), instruction, acted=frozenset({"tomato"}))
    assert [e.id for e in ranked.elements] == [1, 3, 2, 5, 4]
    assert ranked.named == {3} and ranked.acted == {1}
    # the same name on a control is a target as before
    as_button = (rows[0], Element(2, "button", "Marble colour", (0, 20, 100, 50)), *rows[2:])
    assert ranked_for_task(ShownElements(as_button, 0, listed=True), instruction).named == {1, 2, 3}


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
    assert "Earlier actions:\n1. click #1\n" in again
