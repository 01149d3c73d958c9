"""Context hijacking (paper A, section 3), measured on a pretrained LLM.

- `efficacy`: ES(k), the fraction of facts whose false target overtakes the true one behind k
  hijack sentences, by both readings, with bootstrap intervals, per relation, and under paper B's
  mitigations;
- `shards`: the same scores computed in resumable shards, in one process or on Ray workers.
"""

from lca_interp.evals.hijack.efficacy import HijackResult, hijack_result, hijack_with_mitigations, run_hijack
from lca_interp.evals.hijack.shards import HijackScoring, ShardPlan

__all__ = ["HijackResult", "HijackScoring", "ShardPlan", "hijack_result", "hijack_with_mitigations", "run_hijack"]
