"""Peak memory of loading an offline model: from its converted cache, and converting it first.

What is measured
----------------
Each measurement runs in a fresh Python process and reports that process's peak resident set
(VmHWM, which counts every byte the process touched, file-backed mmap pages included) beside the
bytes of the loaded model's parameters in the requested dtype (its buffers, attention masks and
rotary tables, are listed apart). The ratio is what a laptop must hold: issue 12's goals are ≤ 1.5× for a cached load and ≤ 2.5× for the first
conversion (Gemma-3-270m's 1.74 GB of float32 weights would need about 4.4 GB). The resident set
of a process that has only imported torch, TransformerLens and transformers is reported too: it is
paid whatever is loaded. `--convert` loads into an empty scratch cache, so the GGUF is
dequantized and converted in the measured process.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/load_memory.py [--model google/gemma-3-270m]
        [--dtype float32 bfloat16] [--convert]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

CHILD = """
import json, sys, time
def peak():
    return next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmHWM"))
import torch, transformer_lens, transformers
imported = peak()
from lca_interp.pretrained import load_model
began = time.perf_counter()
model = load_model(sys.argv[1], device="cpu", dtype=sys.argv[2])
seconds = time.perf_counter() - began
size = lambda tensors: sum(t.numel() * t.element_size() for t in tensors)
print(json.dumps({"peak": peak(), "imported": imported, "model_bytes": size(model.parameters()),
                  "buffer_bytes": size(model.buffers()), "seconds": seconds}))
"""


def measure(model: str, dtype: str, cache: str | None) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **({"LCA_INTERP_CACHE": cache} if cache else {})}
    done = subprocess.run([sys.executable, "-c", CHILD, model, dtype], env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="google/gemma-3-270m")
    parser.add_argument("--dtype", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--convert", action="store_true", help="also measure a first load that converts the GGUF")
    args = parser.parse_args()
    rows = []
    for dtype in args.dtype:
        if args.convert:
            with tempfile.TemporaryDirectory() as scratch:
                rows.append(("first conversion", dtype, measure(args.model, dtype, scratch)))
        measure(args.model, dtype, None)  # make sure the cache exists before timing a cached load
        rows.append(("cached load", dtype, measure(args.model, dtype, None)))
    print(f"{args.model}: peak resident memory of one process (GB; 1 GB = 1e9 bytes)")
    print(f"{'load':<17} {'dtype':<9} {'params':>6} {'buffers':>8} {'imports':>8} {'peak':>6} {'peak/params':>12} "
          f"{'(peak-imports)/params':>22} {'seconds':>8}")
    for what, dtype, m in rows:
        print(f"{what:<17} {dtype:<9} {m['model_bytes'] / 1e9:6.2f} {m['buffer_bytes'] / 1e9:8.2f} {m['imported'] / 1e9:8.2f} "
              f"{m['peak'] / 1e9:6.2f} {m['peak'] / m['model_bytes']:11.2f}× "
              f"{(m['peak'] - m['imported']) / m['model_bytes']:21.2f}× {m['seconds']:8.1f}")


if __name__ == "__main__":
    main()
