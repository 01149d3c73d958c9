"""The named choices the library accepts, in one module that imports nothing heavy.

Each list is defined here once; the module that acts on a name imports its list from here, and
the command line offers the same list without importing torch or TransformerLens.
"""

NEIGHBOURHOODS = ("all", "hamming1", "cluster1", "cluster2")  # lca_interp.task: N(z*)
SCHEMES = ("generic", "negation", "relation", "reverse-generic", "reverse-negation")  # lca_interp.prompts
MITIGATIONS = ("masked", "intercept", "both")  # lca_interp.hooks.mitigations (paper B)
DTYPES = ("float32", "bfloat16", "float16")  # lca_interp.devices: what a model may run in
PRECISIONS = (*DTYPES, "mixed")  # load_model: a dtype, or float32 with a bfloat16 twin (evals.hijack.mixed)
