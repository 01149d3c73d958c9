"""Paper B (Lv et al.): how a model recalls a fact, what holds the answer back, and two fixes.

Lv et al. read factual recall ("The capital of France is" → " Paris") as three mechanisms, each a
module here, measured with the probes of `lca_interp.hooks` on any TransformerLens model:

- `items`: recall prompts (zero-shot, n-shot) with aligned corrupted twins, and P(answer);
- `heads`: attention heads that pass the argument (the country) to the last position;
- `mlp`: an MLP after them as a regression on the heads: erase, amplify, and an intercept that
  pushes toward the answers;
- `overconfidence`: the final layer pulling P(answer) toward the average distribution;
- `study`: all of it, with paper B's two mitigations (`hooks.mitigations`) zero- and few-shot.
"""

from lca_interp.evals.recall.items import RecallItem, answer_scores, recall_items
from lca_interp.evals.recall.mlp import final_intercept, mlp_decomposition
from lca_interp.evals.recall.study import RecallResult, run_recall

__all__ = ["RecallItem", "RecallResult", "answer_scores", "final_intercept", "mlp_decomposition", "recall_items", "run_recall"]
