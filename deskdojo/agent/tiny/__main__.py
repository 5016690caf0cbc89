"""``python -m deskdojo.agent.tiny``: points to the commands that rebuild the tiny preset."""

print("rebuild the tiny preset with `deskdojo tiny tokenizer` (the tokenizer, with the task families' "
      "words) and `deskdojo tiny pretrain` (the reader)")
