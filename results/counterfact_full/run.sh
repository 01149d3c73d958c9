#!/usr/bin/env bash
# results/counterfact_full: all of CounterFact (21,919 records), k = 0..4, both offline models:
# the generic scheme on every record, the relation scheme on every record whose template has a
# Wikidata relation id (--relation known). Every run is sharded under its folder: rerun this
# script after a stop and it continues where it stopped (finished results are kept as they are).
# Last, `lca-interp compare` draws every finished result into compare.html, es_by_scheme.png and
# findings.md (the README's table). Run from the repository root: bash results/counterfact_full/run.sh [model ...]
#   WORKERS (default 2): Ray workers per run; DTYPE (default float32): see BENCHMARKS.md,
#   "bfloat16 against float32", for where bfloat16's ES decisions agree with float32's. DTYPE=mixed
#   runs the generic scheme on all records but the last 200, which calibrate its margin bound
#   (BENCHMARKS.md, "Mixed precision"); the float32 result stays the table's.
set -euo pipefail
export HF_HUB_OFFLINE=1
DATA=../shared/data/counterfact/counterfact.json
OUT=results/counterfact_full
WORKERS=${WORKERS:-2}
DTYPE=${DTYPE:-float32}
if [ $# -gt 0 ]; then models=("$@"); else models=(google/gemma-3-270m HuggingFaceTB/SmolLM2-135M-Instruct); fi
for model in "${models[@]}"; do
  slug=$(basename "$model")
  schemes=(generic relation); [ "$DTYPE" = mixed ] && schemes=(generic)
  for scheme in "${schemes[@]}"; do
    folder="$OUT/$slug/$scheme-$DTYPE"
    [ -f "$folder/hijack.json" ] && continue
    extra=(); [ "$scheme" = relation ] && extra=(--relation known)
    [ "$DTYPE" = mixed ] && extra=(--limit $((21919 - 200)))
    .venv/bin/lca-interp hijack --model "$model" --dataset "$DATA" --scheme "$scheme" "${extra[@]}" --max-prepends 4 \
      --workers "$WORKERS" --dtype "$DTYPE" --device cpu --out "$folder"
  done
done
finished=()
for slug in gemma-3-270m SmolLM2-135M-Instruct; do  # the README's column order
  compgen -G "$OUT/$slug/*/hijack.json" >/dev/null && finished+=("$OUT/$slug")
done
[ ${#finished[@]} -gt 0 ] && .venv/bin/lca-interp compare "${finished[@]}" --out "$OUT"
