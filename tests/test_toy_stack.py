"""Batched training: the token-space kernel is the toy's function, AdamW matches torch's, and a
toy trained in a stack ends where it would alone; the plateau rule stops where it says."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lca_interp.task import LCATask, derive_seed
from lca_interp.toy import LCAToy, ToyConfig
from lca_interp.toy_stack import ToyStack, last_position_logits, pad_contexts
from lca_interp.training import TRAIN_STREAM, Run, TrainConfig, plateaued, train, train_many


@pytest.mark.parametrize("d_vocab, d_model, L", [(8, 16, 8), (32, 8, 40), (16, 24, 3)])
def test_kernel_equals_the_toys_last_position_logits(make_toy, randomize, d_vocab, d_model, L):
    toys = [randomize(make_toy(d_vocab, d_model, n_ctx=L, seed=s), seed=s) for s in range(3)]
    x = torch.randint(d_vocab, (3, 5, L), generator=torch.Generator().manual_seed(1))
    stack = ToyStack(toys, [1e-3] * 3, [0.0] * 3)
    got = stack.logits(x)
    for i, toy in enumerate(toys):
        with torch.no_grad():
            expected = toy(x[i], last_position_only=True)
        torch.testing.assert_close(got[i], expected, rtol=1e-5, atol=1e-5)
    only_second = stack.logits(x[1:2], slice(1, 2))[0]
    torch.testing.assert_close(only_second, got[1])


def test_kernel_counts_repeated_tokens():
    """Attention is a softmax over positions: a token that occurs c times gets c shares."""
    W_E = torch.eye(4)[None]
    W_Q = torch.zeros(1, 4, 4)  # uniform attention
    x = torch.tensor([[[0, 0, 0, 1]]])
    logits = last_position_logits(W_E, W_Q, W_Q, torch.eye(4)[None], x)
    torch.testing.assert_close(logits[0, 0], torch.tensor([0.75, 0.25, 0.0, 0.0]))


@pytest.mark.parametrize("frozen", [{}, {"freeze_wv": True}, {"freeze_embed": True}], ids=["none", "W_V", "W_E"])
def test_training_matches_a_textbook_loop_on_the_hooked_toy(frozen):
    """The trainer against the plain recipe: LCAToy's own forward, torch.optim.AdamW."""
    task = LCATask(m=4, context_len=12)
    toy_config = ToyConfig(d_vocab=16, d_model=12, n_ctx=12, seed=2, **frozen)
    config = TrainConfig(steps=30, batch_size=32, lr=1e-2, weight_decay=0.01, eval_every=10, eval_samples=200, seed=5)
    reference = LCAToy(toy_config)
    optimizer = torch.optim.AdamW(reference.trainable_parameters(), lr=config.lr, weight_decay=config.weight_decay)
    for step in range(config.steps):
        x, y = task.sample(config.batch_size, derive_seed(config.seed, TRAIN_STREAM, step))
        loss = F.cross_entropy(reference(x, last_position_only=True), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    trained = train(task, toy_config, config, progress=False).model
    for name, param in reference.named_parameters():
        torch.testing.assert_close(dict(trained.named_parameters())[name], param, rtol=0, atol=2e-6, msg=name)


def test_a_toy_trained_in_a_stack_ends_where_it_would_alone():
    """Tasks, context lengths, seeds, learning rates, lengths of training and frozen weights all
    differ per toy."""
    settings = [(0, 1e-2, "all", 25, {}), (1, 1e-3, "cluster1", 15, {"freeze_wv": True}),
                (2, 3e-3, "hamming1", 20, {"freeze_embed": True}), (3, 1e-2, "all", 10, {"freeze_wv": True, "freeze_embed": True})]
    lengths = [10, 7, 12, 10]  # contexts of other lengths share the stack, padded
    runs = [Run(LCATask(m=4, context_len=L, neighbourhood=nb), ToyConfig(d_vocab=16, d_model=8, n_ctx=L, seed=seed, **frozen),
                TrainConfig(steps=steps, batch_size=16, lr=lr, weight_decay=0.01, eval_every=5, eval_samples=100, seed=seed))
            for L, (seed, lr, nb, steps, frozen) in zip(lengths, settings)]
    together = train_many(runs, progress=False)
    for run, result in zip(runs, together):
        alone = train(run.task, run.toy, run.config, progress=False)
        for name, param in alone.model.named_parameters():
            assert torch.equal(dict(result.model.named_parameters())[name], param), name
        assert result.metrics["steps"] == run.config.steps and result.history == alone.history
        init = LCAToy(run.toy)
        if run.toy.freeze_wv:
            assert torch.equal(result.model.W_V, init.W_V) and torch.equal(result.model.W_V[0, 0], torch.eye(8))
        if run.toy.freeze_embed:
            assert torch.equal(result.model.W_E, init.W_E)


def test_toys_of_other_widths_train_in_separate_stacks_and_keep_their_order(monkeypatch):
    import lca_interp.training as training

    stacks, train_stack = [], training._train_stack
    monkeypatch.setattr(training, "_train_stack", lambda runs, *a: stacks.append(runs) or train_stack(runs, *a))
    runs = [Run(LCATask(m=3, context_len=L), ToyConfig(d_vocab=8, d_model=d, n_ctx=L), TrainConfig(steps=3, batch_size=4, eval_every=3, eval_samples=20))
            for L, d in [(5, 4), (6, 4), (5, 8), (5, 4)]]
    results = train_many(runs, progress=False)
    assert [(r.task.context_len, r.model.cfg.d_model) for r in results] == [(5, 4), (6, 4), (5, 8), (5, 4)]
    assert [[(r.task.context_len, r.toy.d_model) for r in stack] for stack in stacks] == [[(5, 4), (6, 4), (5, 4)], [(5, 8)]]


def test_padding_on_the_left_leaves_the_logits_unchanged(make_toy, randomize):
    toys = [randomize(make_toy(8, 6, n_ctx=9, seed=s), seed=s) for s in range(2)]
    stack = ToyStack(toys, [1e-3] * 2, [0.0] * 2)
    short, long = torch.randint(8, (5, 4)), torch.randint(8, (5, 9))
    padded = pad_contexts([short, long], pad=8)
    assert padded.shape == (2, 5, 9) and (padded[0, :, :5] == 8).all() and torch.equal(padded[0, :, 5:], short)
    torch.testing.assert_close(stack.logits(padded), torch.stack([stack.logits(short[None], slice(0, 1))[0],
                                                                   stack.logits(long[None], slice(1, 2))[0]]))


def test_a_weight_no_remaining_toy_trains_gets_no_gradient(make_toy):
    toys = [make_toy(8, 4, seed=0), LCAToy(ToyConfig(d_vocab=8, d_model=4, n_ctx=4, freeze_embed=True))]
    stack = ToyStack(toys, [1e-3] * 2, [0.0] * 2)
    assert "embed.W_E" in stack.trainable
    stack.keep([1])  # the toy that trained W_E is done
    assert "embed.W_E" not in stack.trainable and not stack.params["embed.W_E"].requires_grad
    stack.logits(torch.randint(8, (1, 3, 4))).sum().backward()
    before = stack.params["embed.W_E"].clone()
    stack.adamw_step()
    assert torch.equal(stack.params["embed.W_E"], before)


def test_plateau_rule_compares_with_the_evaluation_one_window_earlier():
    history = [{"step": s, "accuracy": a} for s, a in [(0, 0.1), (50, 0.3), (100, 0.40), (150, 0.43), (200, 0.404)]]
    assert not plateaued(history[:2], window=100, gain=0.005)  # no evaluation 100 steps before
    assert not plateaued(history[:3], window=100, gain=0.005)  # 0.40 − 0.1
    assert not plateaued(history[:4], window=100, gain=0.005)  # 0.43 − 0.3
    assert plateaued(history, window=100, gain=0.005)  # 0.404 − 0.40 < 0.005
    assert not plateaued(history, window=0, gain=0.005)


def test_a_plateau_run_stops_at_the_first_flat_window_and_says_so():
    task = LCATask(m=3, context_len=6)
    config = TrainConfig(steps=5000, batch_size=32, lr=3e-2, eval_every=20, eval_samples=500, plateau_window=60, seed=1)
    result = train(task, ToyConfig(d_vocab=8, d_model=8, n_ctx=6), config, progress=False)
    steps = [h["step"] for h in result.history]
    assert steps[0] == 0 and steps == list(range(0, result.metrics["steps"] + 1, 20))
    assert result.metrics["plateaued"] and result.metrics["steps"] < config.steps
    assert plateaued(result.history, 60, config.plateau_gain)
    assert not any(plateaued(result.history[: i + 1], 60, config.plateau_gain) for i in range(len(result.history) - 1))


def test_a_plateau_runs_unspent_cap_leaves_the_progress_bar(monkeypatch):
    """The bar's total starts at the caps; a toy stopping at its plateau takes its unspent steps out,
    so the bar ends full and its time estimate is of the work left, not of the caps."""
    from tqdm import tqdm

    closed = []

    class Recorded(tqdm):
        def close(self):
            closed.append((self.n, self.total))
            super().close()

    monkeypatch.setattr("lca_interp.training.tqdm", Recorded)
    task, toy = LCATask(m=3, context_len=6), ToyConfig(d_vocab=8, d_model=8, n_ctx=6)
    plateau = TrainConfig(steps=5000, batch_size=32, lr=3e-2, eval_every=20, eval_samples=500, plateau_window=60, seed=1)
    fixed = TrainConfig(steps=300, batch_size=32, lr=3e-2, eval_every=100, eval_samples=500, seed=2)
    results = train_many([Run(task, toy, plateau, None), Run(task, toy, fixed, None)], progress=True)
    steps = [r.metrics["steps"] for r in results]
    assert steps[0] < 5000 and steps[1] == 300
    assert closed[0] == (sum(steps), sum(steps))  # tqdm closes again when collected


def test_plateau_window_must_be_a_multiple_of_the_evaluation_interval():
    with pytest.raises(ValueError, match="multiple of eval_every"):
        TrainConfig(eval_every=30, plateau_window=100)
