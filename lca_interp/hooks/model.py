"""What a probe may assume of a model, on every TransformerLens version, in one place.

A probe takes any model with TransformerLens's hook names and weight properties: the LCA toy (a
`HookedRootModule`), a `HookedTransformer` (TL 3.x) or a `TransformerBridge` in compatibility mode
(TL 3.9 and 4.x). Where those differ in a way that would give a wrong number without an error, the
question is answered here, named for what it asks, so no probe branches on the TL version.
"""

from __future__ import annotations

import torch

# Any module with TL's hook points (`hook_dict`, `hooks`, `run_with_hooks`, `run_with_cache`), its
# `cfg` and its weight properties (`W_E`, `W_U`, `W_Q`, ..., `OV`, `QK`). TL 3.9 has no common
# base class or protocol for the toy, `HookedTransformer` and `TransformerBridge`.
HookedModel = torch.nn.Module
