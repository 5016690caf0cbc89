"""The files of the ``tiny`` preset's tokenizer, shipped in the package, and the
function that regenerates them.

The tokenizer is a small byte-level BPE trained once on deskdojo's own source text
(deterministic: sorted files, fixed vocabulary size), with Qwen's special tokens and
the grid format's coordinate tokens (``<x0>``.., ``<y0>``..) added as single tokens.
Run ``python -m deskdojo.agent.tiny`` to rewrite the JSON files in this folder.
"""

from __future__ import annotations

import json
from pathlib import Path

TINY_DIR = Path(__file__).resolve().parent

BPE_VOCAB_SIZE = 2048
"""Learned byte-level BPE tokens (before special and grid tokens are added)."""

GRID_TOKENS_PER_AXIS = 128
"""``<x0>..<x127>`` and ``<y0>..<y127>``: a 16 px grid covers screens up to 2048 px."""

QWEN_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>",
                       "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")

CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' -%}{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{%- elif item['type'] == 'text' -%}{{ item['text'] }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{ '<|im_end|>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)
"""Qwen's chat layout (``<|im_start|>role\\n ... <|im_end|>\\n``), images as one
``<|image_pad|>`` that the processor expands to the image's token count."""


def grid_tokens() -> list[str]:
    return ([f"<x{i}>" for i in range(GRID_TOKENS_PER_AXIS)]
            + [f"<y{i}>" for i in range(GRID_TOKENS_PER_AXIS)])


def _corpus() -> list[str]:
    """deskdojo's own Python and Markdown text, in a fixed order (no download needed)."""
    package = TINY_DIR.parents[1]
    texts = [p.read_text(encoding="utf-8", errors="replace")
             for p in sorted(package.rglob("*.py")) if "tiny" not in p.parts]
    # the prompts and words the policy uses most, so they cost few tokens
    from deskdojo.agent.formats import FORMATS

    prompts = [fmt.prompt(screen=screen, image=image) for fmt in FORMATS.values()
               for screen, image in (((1024, 768), (448, 336)), ((1280, 800), (1288, 812)))]
    texts += prompts * 20 + [FORMATS["grid"].prompt(screen=(1024, 768), image=(448, 336))] * 200
    texts += ["Task: Click the red square.\nTask: Click the green square.\nTask: Click the blue square.\n"
              "Earlier actions:\n1. click 2. type 3. key 4. scroll 5. drag 6. done 7. fail 8. wait move "
              "up down left right ctrl+s enter escape tab button target The last action failed:"] * 100
    return texts


def build_tokenizer_files(out_dir: Path = TINY_DIR, *, family_words: tuple[str, ...] = ()) -> Path:
    """Train the BPE, add the grid and whole-word tokens (``words.word_tokens``; a word
    token stands alone only: "pepper" is one token, "peppers" is not split to reach it),
    and write ``tokenizer.json`` + ``tokenizer_config.json`` into ``out_dir``."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

    from deskdojo.agent.tiny.words import word_tokens
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=BPE_VOCAB_SIZE, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=list(QWEN_SPECIAL_TOKENS))
    tokenizer.train_from_iterator(_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>", bos_token=None, unk_token=None)
    fast.add_tokens(grid_tokens())
    fast.add_tokens([AddedToken(word, single_word=True, normalized=False) for word in word_tokens(family_words)])
    fast.chat_template = CHAT_TEMPLATE
    fast.padding_side = "left"
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(out_dir))
    for leftover in ("chat_template.jinja",):  # keep the template inside tokenizer_config.json
        path = out_dir / leftover
        if path.exists() and out_dir == TINY_DIR:
            config_path = out_dir / "tokenizer_config.json"
            config = json.loads(config_path.read_text())
            config["chat_template"] = path.read_text()
            config_path.write_text(json.dumps(config, indent=1, ensure_ascii=False) + "\n")
            path.unlink()
    return out_dir

