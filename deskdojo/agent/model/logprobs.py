"""Log-probabilities of chosen tokens without a full-vocabulary copy of the logits.

``log_softmax(logits / T)[token]`` over a Qwen vocabulary (151,936 entries) builds
[B, T, V] float32 tensors: one for ``/ T``, one for the masked logits, one for the
log-softmax itself, which autograd keeps for the backward pass (233 MB each at 48
tokens and batch 8). The same number is ``logits[token] / T - logsumexp(logits / T)``:
this module computes it a few rows at a time, so besides the model's own logits only
``[ROWS, V]`` temporaries exist, and the backward pass recomputes the softmax per chunk
from the logits (which the model's output holds anyway) instead of keeping a copy.

Acting (``VLMPolicy.act``, the recorded sampling log-probs) and training
(``VLMPolicy.token_logprobs``, the recomputed ones) both call :func:`chosen_logprobs`,
so the two agree in method: the same upcast, the same division, the same masking of
the tokens ``generate`` suppresses (set to -inf before the log-sum-exp), the same
reduction.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

ROWS = 16
"""Positions per chunk: [16, 151936] float32 is 9.7 MB."""


def _scaled(logits: torch.Tensor, temperature: float, suppressed: torch.Tensor | None) -> torch.Tensor:
    """A chunk's ``logits / T`` in float32 (float64 stays float64), suppressed tokens at -inf."""
    scaled = logits.to(torch.promote_types(logits.dtype, torch.float32)) / temperature
    if suppressed is not None:
        scaled.index_fill_(-1, suppressed, float("-inf"))
    return scaled


def _chunks(token_ids: torch.Tensor) -> Any:
    """(b, start, stop) over the scored [B, T] positions, ``ROWS`` positions at a time."""
    for b in range(token_ids.shape[0]):
        for start in range(0, token_ids.shape[1], ROWS):
            yield b, start, min(start + ROWS, token_ids.shape[1])


class _ChosenLogProbs(torch.autograd.Function):
    """``logits[..., token] / T - logsumexp(logits / T)`` with a chunked, copy-free backward:
    d/dlogits = g * (onehot(token) - softmax(logits / T)) / T."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, token_ids: torch.Tensor, temperature: float,
                suppressed: torch.Tensor | None) -> torch.Tensor:
        out_dtype = torch.promote_types(logits.dtype, torch.float32)
        lse = torch.empty(token_ids.shape, dtype=out_dtype, device=logits.device)
        chosen = torch.empty_like(lse)
        for b, start, stop in _chunks(token_ids):
            scaled = _scaled(logits[b, start:stop], temperature, suppressed)
            lse[b, start:stop] = torch.logsumexp(scaled, dim=-1)
            chosen[b, start:stop] = scaled.gather(-1, token_ids[b, start:stop, None]).squeeze(-1)
        ctx.save_for_backward(logits, token_ids, lse)
        ctx.temperature = temperature
        ctx.suppressed = suppressed
        return chosen - lse

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        logits, token_ids, lse = ctx.saved_tensors
        grad_logits = torch.empty_like(logits)
        grad_logits[:, token_ids.shape[1]:] = 0  # positions past the scored ones
        for b, start, stop in _chunks(token_ids):
            scaled = _scaled(logits[b, start:stop], ctx.temperature, ctx.suppressed)
            g = grad[b, start:stop, None].to(scaled.dtype)
            chunk = torch.exp(scaled.sub_(lse[b, start:stop, None])).mul_(-g)  # -g * softmax (0 where suppressed)
            chunk.scatter_add_(-1, token_ids[b, start:stop, None], g)
            if ctx.suppressed is not None:  # masked to a constant: no gradient, as index_fill gives
                chunk.index_fill_(-1, ctx.suppressed, 0.0)
            grad_logits[b, start:stop] = chunk.div_(ctx.temperature)
        return grad_logits, None, None, None


def chosen_logprobs(logits: Any, token_ids: Any, *, temperature: float = 1.0,
                    suppressed_ids: Sequence[int] = ()) -> Any:
    """``log_softmax(logits / temperature)[token]`` per position, the ``suppressed_ids``
    masked to -inf first (as ``generate``'s ``suppress_tokens`` does).

    ``logits``: [B, T', V] (any float dtype; computed in float32); ``token_ids``: [B, T]
    with T <= T': position t scores ``token_ids[:, t]`` with ``logits[:, t]``, and later
    positions of ``logits`` get no gradient (pass a causal LM's whole output, whose last
    position predicts past the targets, rather than a slice: the slice's backward would
    allocate another full-size tensor). Returns [B, T] float32, differentiable with
    respect to ``logits``. A position whose token is suppressed gets -inf (mask such
    positions out with ``torch.where``).
    """
    if (logits.dim() != 3 or token_ids.dim() != 2 or token_ids.shape[0] != logits.shape[0]
            or token_ids.shape[1] > logits.shape[1]):
        raise ValueError(f"chosen_logprobs wants logits [B, T', V] and token_ids [B, T <= T'], "
                         f"got {tuple(logits.shape)} and {tuple(token_ids.shape)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature} (greedy log-probs use 1)")
    suppressed = (torch.tensor(sorted(set(suppressed_ids)), dtype=torch.long, device=logits.device)
                  if suppressed_ids else None)
    return _ChosenLogProbs.apply(logits, token_ids.to(logits.device, torch.long), float(temperature), suppressed)
