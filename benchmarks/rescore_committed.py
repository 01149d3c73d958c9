"""Do the committed numbers reproduce on this code and this TransformerLens? Re-score the first
shard of `results/counterfact_full` and compare.

What is checked
---------------
For each offline model, the first N CounterFact records (generic scheme, k = 0..4) are scored by
`hijack_scores` as `lca-interp hijack` scores them, and compared with the committed float32 shard
`results/counterfact_full/<model>/generic-float32/shards/plain/000000-000200.safetensors` (made by
the HookedTransformer scorer at e8bd2da): the largest |Δ log P| over every (k, fact, target), the
token counts, and every ES decision of both readings (summed log-probabilities and per-token
means), fact by fact. Run it under each TransformerLens version the package supports:

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/rescore_committed.py [--records 200]
    HF_HUB_OFFLINE=1 .venv-tl39/bin/python benchmarks/rescore_committed.py [--records 200]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from lca_interp.facts import load_counterfact
from lca_interp.pretrained import load_model
from lca_interp.scoring import TargetScores, flips, hijack_scores

ROOT = Path(__file__).resolve().parents[1]
MODELS = {"google/gemma-3-270m": "gemma-3-270m", "HuggingFaceTB/SmolLM2-135M-Instruct": "SmolLM2-135M-Instruct"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200, help="the first N records of the first shard (≤ 200)")
    parser.add_argument("--dataset", default=str(ROOT.parent / "shared/data/counterfact/counterfact.json"))
    args = parser.parse_args()
    facts = load_counterfact(args.dataset, limit=args.records).facts
    print(f"TransformerLens {importlib.metadata.version('transformer-lens')}, transformers "
          f"{importlib.metadata.version('transformers')}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name, slug in MODELS.items():
        shard = load_file(ROOT / f"results/counterfact_full/{slug}/generic-float32/shards/plain/000000-000200.safetensors")
        committed = TargetScores(shard["log_prob"][:, : args.records].double(), shard["n_tokens"][:, : args.records])
        model = load_model(name, device="cpu")
        began = time.perf_counter()
        ours = hijack_scores(model, facts, "generic", 4)
        seconds = time.perf_counter() - began
        worst = float((ours.log_prob - committed.log_prob).abs().max())
        decisions = {reading: int((flips(ours, per_token) != flips(committed, per_token)).sum())
                     for reading, per_token in (("summed", False), ("per-token", True))}
        print(f"{slug}: {args.records} records x k = 0..4: max |dlogP| {worst:.2e}, token counts "
              f"{'equal' if torch.equal(ours.n_tokens, committed.n_tokens) else 'DIFFER'}, ES decisions that differ: "
              f"{decisions['summed']} (summed), {decisions['per-token']} (per token); scored in {seconds:.1f} s")
        del model


if __name__ == "__main__":
    main()
