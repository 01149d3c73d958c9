"""Train a small LCA toy, then look inside it with the same tools you would use on GPT-2.

    .venv/bin/python examples/inspect_a_trained_toy.py

Prints the toy's accuracy beside the Bayes ceiling, where its last position attends, how close
its value matrix is to the paper's Eq 5.1 construction, and the Eq 5.2 embedding geometry.
"""

from lca_interp import theory
from lca_interp.task import LCATask, token_label
from lca_interp.toy import ToyConfig
from lca_interp.training import TrainConfig, train

task = LCATask(m=5, omega=0.5, beta=1.0, context_len=32)
run = train(task, ToyConfig(d_vocab=32, d_model=64, n_ctx=32), TrainConfig(steps=400, lr=5e-3, batch_size=128))
print(f"accuracy {run.metrics['accuracy']:.3f}, Bayes ceiling {run.metrics['bayes_accuracy']:.3f}")

model = run.model
x, y = task.sample(1, seed=123)
_, cache = model.run_with_cache(x, names_filter="blocks.0.attn.hook_pattern")
attention = cache["blocks.0.attn.hook_pattern"][0, 0, -1]  # [key]: from the last position
top = attention.topk(5)
print(f"z* = {token_label(int(y), task.m)}; last position attends most to:")
for weight, position in zip(top.values, top.indices):
    print(f"  {token_label(int(x[0, position]), task.m)}  {weight:.3f}")

W_E, W_V = model.W_E.detach(), model.W_V[0, 0].detach()
angle = theory.smallest_principal_angle(W_V, theory.constructed_value_matrix(W_E, task), k=task.m)
print(f"smallest principal angle, trained W_V vs Eq 5.1 construction (rank {task.m}): {angle:.3f} rad")
fit = theory.embedding_geometry(W_E, task.m)
print(f"Eq 5.2 fit: a = {fit.a:.3f}, b = {fit.b:.3f}, b0 = {fit.b0:.3f}, R² = {fit.r2:.3f}")
