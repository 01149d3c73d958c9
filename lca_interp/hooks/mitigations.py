"""Paper B's two mitigations of the final layer's anti-overconfidence, as context managers.

Lv et al. find that the final layer of a model holds back the correct answer: its heads attend
to frequent tokens and its MLP pushes the stream toward the average next-token distribution. Two
fixes raise P(answer):

- "masked": the final layer's attention restricted so every query attends to itself alone (for
  the last position this is the paper's mask; earlier positions never reach the last one after
  the final layer, so restricting them changes nothing at the last position);
- "intercept": the final MLP's intercept (the constant vector of its regression on the heads
  before it, fitted by `lca_interp.evals.recall.final_intercept`) subtracted from its output;
- "both".

Arguments are checked when `mitigation` is called, hooks are attached only on entry, and
`model.hooks` removes them on exit, so a failed check never leaves a hook behind.
"""

from __future__ import annotations

import contextlib
from typing import Optional

from torch import Tensor
from transformer_lens.utilities import get_act_name

from lca_interp.hooks.interventions import add_vector, restrict_attention
from lca_interp.options import MITIGATIONS


def mitigation(model, name: Optional[str], intercept: Optional[Tensor] = None):
    """Context manager for "masked", "intercept", "both", or None (nothing)."""
    if name is None:
        return contextlib.nullcontext()
    if name not in MITIGATIONS:
        raise ValueError(f"unknown mitigation {name!r}; choose one of {', '.join(MITIGATIONS)}.")
    if name != "masked" and intercept is None:
        raise ValueError(f"the {name!r} mitigation needs the final MLP's intercept (evals.recall.final_intercept).")
    if intercept is not None and tuple(intercept.shape) != (model.cfg.d_model,):
        raise ValueError(f"the intercept must have shape ({model.cfg.d_model},), got {tuple(intercept.shape)}.")
    return _mitigated(model, name, intercept)


@contextlib.contextmanager
def _mitigated(model, name: str, intercept: Optional[Tensor]):
    last = model.cfg.n_layers - 1
    with contextlib.ExitStack() as stack:
        if name in ("masked", "both"):
            stack.enter_context(restrict_attention(model, layers=last, positions=None))
        if name in ("intercept", "both"):
            mlp_out = get_act_name("mlp_out", last)
            stack.enter_context(add_vector(model, mlp_out, intercept.to(model.cfg.device), scale=-1.0))
        yield
