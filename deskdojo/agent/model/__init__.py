"""The transformers side of the VLM policy: processors without a video processor,
the ``tiny`` preset, and loading any Qwen-VL family checkpoint by its model type.

Imports torch and transformers: only ``deskdojo.agent.policy`` imports this, lazily.
"""
