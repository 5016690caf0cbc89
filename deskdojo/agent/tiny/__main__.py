"""``python -m deskdojo.agent.tiny``: regenerate the tiny preset's tokenizer files."""

from deskdojo.agent.tiny import build_tokenizer_files

print(build_tokenizer_files())
