#!/usr/bin/env bash
# results/cross_model: paper A's hijack schemes, the held-out anatomy, paper B's recall and A × B on
# the offline models, the same 2,000 CounterFact records (the first 2,000 of the shared copy);
# the third family, Qwen2.5-Coder-0.5B-Instruct (issue 20), on the generic scheme's first 200
# records, the held-out anatomy and recall.
# Run from the repository root: bash results/cross_model/run.sh [model ...]; every result JSON
# records its own command, settings, versions, commit and wall time. A finished result is kept.
set -euo pipefail
export HF_HUB_OFFLINE=1
DATA=../shared/data/counterfact/counterfact.json
OUT=results/cross_model
if [ $# -gt 0 ]; then models=("$@"); else models=(google/gemma-3-270m HuggingFaceTB/SmolLM2-135M-Instruct); fi
for model in "${models[@]}"; do
  slug=$(basename "$model")
  run() {  # run NAME ARGS...: one hijack result, skipped when its JSONs exist (an anatomy run
    local name=$1; shift  # writes hijack.json before anatomy.json, so it is finished only with both)
    [ -f "$OUT/$slug/$name/hijack.json" ] && { [[ $name != *-anatomy ]] || [ -f "$OUT/$slug/$name/anatomy.json" ]; } && return
    .venv/bin/lca-interp hijack --model "$model" --dataset "$DATA" --max-prepends 4 --out "$OUT/$slug/$name" "$@"
  }
  if [ "$model" = Qwen/Qwen2.5-Coder-0.5B-Instruct ]; then
    run generic --scheme generic --limit 200
    [ -f "$OUT/$slug/recall/recall.json" ] || .venv/bin/lca-interp recall --model "$model" --limit 40 --shots 3 --out "$OUT/$slug/recall"
    run generic-anatomy --scheme generic --limit 200 --max-prepends 3 --anatomy --control-draws 20
    continue
  fi
  for scheme in generic negation reverse-generic reverse-negation; do run "$scheme" --scheme "$scheme" --limit 2000; done
  run relation-P190 --scheme relation --relation P190
  run relation-P131 --scheme relation --relation P131
  run generic-anatomy --scheme generic --limit 200 --max-prepends 3 --anatomy --control-draws 20
  run generic-ab --scheme generic --limit 200 --max-prepends 3 --mitigation masked intercept both
  [ -f "$OUT/$slug/recall/recall.json" ] || .venv/bin/lca-interp recall --model "$model" --limit 40 --shots 3 --out "$OUT/$slug/recall"
done
.venv/bin/lca-interp compare "$OUT"/gemma-3-270m/ "$OUT"/Qwen2.5-Coder-0.5B-Instruct/ "$OUT"/SmolLM2-135M-Instruct/ --out "$OUT"
