"""Training the policy: SFT from demonstrations (``sft``) and GRPO from rollouts (``grpo``).

Importing this package is light; torch loads when a trainer runs.
"""
