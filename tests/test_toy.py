"""The LCA toy as a HookedTransformer: the paper's formula, tying, frozen parts, hooks, inputs.

The reference is f(x) = W_Eᵀ W_V attn(W_E χ(x)) written in plain PyTorch with the paper's column
conventions; TL stores the transposes (W_E [V, d] row t = embedding of t, W_V[0, 0] = W_Vᵀ, ...).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lca_interp.task import LCATask
from lca_interp.toy import LCAToy, ToyConfig
from lca_interp.training import TrainConfig, train

HOOK_NAMES = [
    "hook_embed",
    "blocks.0.hook_resid_pre",
    "blocks.0.attn.hook_q",
    "blocks.0.attn.hook_k",
    "blocks.0.attn.hook_v",
    "blocks.0.attn.hook_attn_scores",
    "blocks.0.attn.hook_pattern",
    "blocks.0.attn.hook_z",
    "blocks.0.hook_attn_out",
    "blocks.0.hook_resid_post",
]


def paper_forward(model: LCAToy, tokens: torch.Tensor) -> torch.Tensor:
    """[batch, L, V] logits from the paper's formula, in float64, column-vector conventions."""
    V = model.cfg.d_vocab
    W_E = model.embed.W_E.detach().double().T  # [d, V]: column t is token t's embedding
    W_Q = model.blocks[0].attn.W_Q[0].detach().double().T  # paper W_Q [d_a, d]
    W_K = model.blocks[0].attn.W_K[0].detach().double().T
    W_V = model.blocks[0].attn.W_V[0].detach().double().T  # paper W_V [d, d]
    d = W_E.shape[0]
    outputs = []
    for sequence in tokens:
        chi = F.one_hot(sequence, V).double().T  # [V, L]
        U = W_E @ chi  # [d, L]
        scores = (W_K @ U).T @ (W_Q @ U) / math.sqrt(d)  # [L(keys), L(queries)]
        attn = U @ torch.softmax(scores, dim=0)  # σ normalises each column over all keys
        outputs.append((W_E.T @ W_V @ attn).T)  # f(x) columns, as rows: [L, V]
    return torch.stack(outputs)


@pytest.mark.parametrize("d_vocab, d_model", [(16, 4), (8, 24)], ids=["d<V", "d>V"])
def test_logits_match_paper_formula(make_toy, randomize, d_vocab, d_model):
    model = randomize(make_toy(d_vocab, d_model, n_ctx=7), seed=d_model)
    gen = torch.Generator().manual_seed(1)
    tokens = torch.randint(d_vocab, (3, 7), generator=gen)
    expected = paper_forward(model, tokens)

    logits = model(tokens)
    assert logits.shape == (3, 7, d_vocab) and logits.dtype == torch.float32
    assert (logits.double() - expected).abs().max() < 1e-5
    last = model(tokens, last_position_only=True)
    assert last.shape == (3, d_vocab)
    assert (last.double() - expected[:, -1]).abs().max() < 1e-5

    # The check is not vacuous: attention is far from uniform and logits are far from zero.
    _, cache = model.run_with_cache(tokens)
    assert cache["blocks.0.attn.hook_pattern"].max() > 2.0 / 7
    assert expected.abs().max() > 0.5


def test_formula_holds_for_default_init_and_contexts_longer_than_n_ctx(make_toy):
    model = make_toy(8, 8, n_ctx=4, seed=5)  # default init; n_ctx is provenance only
    tokens = torch.randint(8, (2, 11))
    expected = paper_forward(model, tokens)
    assert (model(tokens).double() - expected).abs().max() < 1e-5
    assert (model(tokens, last_position_only=True).double() - expected[:, -1]).abs().max() < 1e-5


def test_init_is_deterministic_in_the_seed(make_toy, params_of):
    a, b, c = params_of(make_toy(seed=3)), params_of(make_toy(seed=3)), params_of(make_toy(seed=4))
    assert set(a) == {"embed.W_E", "blocks.0.attn.W_Q", "blocks.0.attn.W_K", "blocks.0.attn.W_V"}
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not any(torch.equal(a[k], c[k]) for k in a)


def test_last_position_logits_invariant_to_permuting_the_context(make_toy, randomize):
    model = randomize(make_toy(16, 8, n_ctx=12), seed=2)
    gen = torch.Generator().manual_seed(2)
    tokens = torch.randint(16, (4, 12), generator=gen)
    base = model(tokens, last_position_only=True)
    for _ in range(3):
        perm = torch.randperm(11, generator=gen)
        shuffled = torch.cat([tokens[:, :-1][:, perm], tokens[:, -1:]], dim=1)
        assert not torch.equal(shuffled, tokens)
        permuted = model(shuffled, last_position_only=True)
        torch.testing.assert_close(permuted, base, atol=1e-5, rtol=1e-5)
    # Control: moving a different token into the last (query) position changes the logits.
    tokens[:, -1] = (tokens[:, 0] + 1) % 16
    swapped = tokens.clone()
    swapped[:, [0, -1]] = tokens[:, [-1, 0]]
    change = model(swapped, last_position_only=True) - model(tokens, last_position_only=True)
    assert change.abs().max() > 1e-3


@pytest.mark.parametrize("last_position_only", [False, True])
def test_run_with_cache_has_standard_hooks_with_right_shapes(
    make_toy, randomize, last_position_only
):
    B, L, V, d = 3, 6, 16, 8
    model = randomize(make_toy(V, d, n_ctx=L), seed=0)
    tokens = torch.randint(V, (B, L))
    logits, cache = model.run_with_cache(tokens, last_position_only=last_position_only)
    Q = 1 if last_position_only else L
    expected_shapes = {
        "hook_embed": (B, L, d),
        "blocks.0.hook_resid_pre": (B, L, d),
        "blocks.0.attn.hook_q": (B, Q, 1, d),
        "blocks.0.attn.hook_k": (B, L, 1, d),
        "blocks.0.attn.hook_v": (B, L, 1, d),
        "blocks.0.attn.hook_attn_scores": (B, 1, Q, L),
        "blocks.0.attn.hook_pattern": (B, 1, Q, L),
        "blocks.0.attn.hook_z": (B, Q, 1, d),
        "blocks.0.hook_attn_out": (B, Q, d),
        "blocks.0.hook_resid_post": (B, Q, d),
    }
    for name in HOOK_NAMES:
        assert name in cache, name
        assert tuple(cache[name].shape) == expected_shapes[name], name
    assert not any("pos_embed" in name for name in model.hook_dict)

    # The cached values are the computation, not just tensors of the right shape.
    W_E = model.W_E
    attn = model.blocks[0].attn
    embed = cache["hook_embed"]
    torch.testing.assert_close(embed, W_E[tokens])
    torch.testing.assert_close(cache["blocks.0.hook_resid_pre"], embed)  # no positional embedding
    queries = embed[:, -Q:]
    torch.testing.assert_close(cache["blocks.0.attn.hook_q"][:, :, 0], queries @ attn.W_Q[0])
    torch.testing.assert_close(cache["blocks.0.attn.hook_k"][:, :, 0], embed @ attn.W_K[0])
    torch.testing.assert_close(cache["blocks.0.attn.hook_v"][:, :, 0], embed @ attn.W_V[0])
    q, k, v = (cache[f"blocks.0.attn.hook_{n}"][:, :, 0] for n in "qkv")
    scores = q @ k.transpose(1, 2)
    torch.testing.assert_close(cache["blocks.0.attn.hook_attn_scores"][:, 0], scores / math.sqrt(d))
    pattern = cache["blocks.0.attn.hook_pattern"][:, 0]
    torch.testing.assert_close(pattern, torch.softmax(scores / math.sqrt(d), dim=-1))
    torch.testing.assert_close(pattern.sum(-1), torch.ones(B, Q))
    assert (pattern > 0).all()  # bidirectional: nothing masked
    z = cache["blocks.0.attn.hook_z"][:, :, 0]
    torch.testing.assert_close(z, pattern @ v)
    torch.testing.assert_close(cache["blocks.0.hook_attn_out"], z)
    torch.testing.assert_close(cache["blocks.0.hook_resid_post"], cache["blocks.0.hook_attn_out"])
    final = cache["blocks.0.hook_resid_post"] @ W_E.T
    torch.testing.assert_close(logits, final[:, -1] if last_position_only else final)


def test_ov_circuit_is_w_v(make_toy, randomize):
    model = randomize(make_toy(8, 12), seed=1)
    d = 12
    assert torch.equal(model.W_O, torch.eye(d)[None, None])
    ov = model.OV
    assert tuple(ov.AB.shape) == (1, 1, d, d)
    torch.testing.assert_close(ov.AB, model.W_V, atol=0, rtol=0)
    assert not torch.allclose(model.W_V, torch.eye(d)[None, None])  # W_V is not trivially I


def _tiny_train(toy_config: ToyConfig, steps: int = 6, weight_decay: float = 0.1):
    task = LCATask(m=3, omega=0.5, beta=1.0, context_len=8)
    config = TrainConfig(
        steps=steps, batch_size=32, lr=5e-2, weight_decay=weight_decay, eval_every=steps,
        eval_samples=64, checkpoint_every=0,
    )
    return train(task, toy_config, config, progress=False).model


def test_unembedding_shares_storage_with_embedding_after_training(params_of):
    cfg = ToyConfig(d_vocab=8, d_model=16, n_ctx=8, seed=0)
    init = params_of(LCAToy(cfg))
    model = _tiny_train(cfg)
    W_E, W_U = model.embed.W_E, model.W_U
    assert not torch.equal(W_E.detach(), init["embed.W_E"])  # training did move W_E
    assert W_U.data_ptr() == W_E.data_ptr()
    assert W_U.untyped_storage().data_ptr() == W_E.untyped_storage().data_ptr()
    assert model.unembed.W_U.data_ptr() == W_E.data_ptr()
    assert torch.equal(W_U, W_E.T)
    assert all("W_U" not in name for name, _ in model.named_parameters())
    assert all("W_U" not in key for key in model.state_dict())
    with torch.no_grad():  # a write to W_E is seen through W_U: same tensor, not a copy
        W_E[3, 5] += 1.0
    assert torch.equal(model.W_U[5, 3], W_E[3, 5])


def test_unembedding_stays_tied_in_a_manual_adamw_loop(make_toy):
    model = make_toy(8, 16)
    optimizer = torch.optim.AdamW(model.trainable_parameters(), lr=1e-2, weight_decay=0.1)
    tokens = torch.randint(8, (16, 8))
    target = torch.randint(8, (16,))
    for _ in range(5):
        loss = F.cross_entropy(model(tokens, last_position_only=True), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert model.W_U.data_ptr() == model.W_E.data_ptr()
    assert torch.equal(model.W_U, model.W_E.T)
    assert torch.equal(model.W_O, torch.eye(16)[None, None])


def test_w_o_and_biases_stay_constant_after_training():
    cfg = ToyConfig(d_vocab=8, d_model=16, n_ctx=8, seed=1)
    model = _tiny_train(cfg)
    attn = model.blocks[0].attn
    assert torch.equal(attn.W_O, torch.eye(16)[None])
    for name in ("b_Q", "b_K", "b_V", "b_O"):
        assert torch.equal(getattr(attn, name), torch.zeros_like(getattr(attn, name))), name
    assert torch.equal(model.unembed.b_U, torch.zeros(8))
    trainable = {name for name, _ in model.named_parameters()}
    assert trainable == {"embed.W_E", "blocks.0.attn.W_Q", "blocks.0.attn.W_K", "blocks.0.attn.W_V"}


def test_frozen_w_v_stays_identity_after_training(params_of):
    cfg = ToyConfig(d_vocab=8, d_model=16, n_ctx=8, freeze_wv=True, seed=2)
    fresh = LCAToy(cfg)
    assert torch.equal(fresh.W_V, torch.eye(16)[None, None])
    init = params_of(fresh)
    model = _tiny_train(cfg)
    assert torch.equal(model.W_V, torch.eye(16)[None, None])
    assert not model.blocks[0].attn.W_V.requires_grad
    for name in ("embed.W_E", "blocks.0.attn.W_Q", "blocks.0.attn.W_K"):
        assert not torch.equal(dict(model.named_parameters())[name].detach(), init[name]), name


def test_frozen_embedding_stays_at_init_after_training(params_of):
    cfg = ToyConfig(d_vocab=8, d_model=16, n_ctx=8, freeze_embed=True, seed=3)
    init = params_of(LCAToy(cfg))
    model = _tiny_train(cfg)
    assert torch.equal(model.W_E, init["embed.W_E"])
    assert torch.equal(model.W_U, init["embed.W_E"].T)
    assert not model.embed.W_E.requires_grad
    assert not torch.equal(model.W_V.detach()[0, 0], init["blocks.0.attn.W_V"][0])
    assert {id(p) for p in model.trainable_parameters()} == {
        id(p) for p in model.blocks[0].attn.parameters()
    }


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(lambda: torch.zeros(2, 5), id="float-tokens"),
        pytest.param(lambda: "0 1 2 3", id="string"),
        pytest.param(lambda: torch.zeros(5, dtype=torch.long), id="1-D"),
        pytest.param(lambda: torch.zeros(1, 2, 5, dtype=torch.long), id="3-D"),
    ],
)
def test_bad_inputs_raise_value_error(make_toy, bad):
    model = make_toy(8, 8)
    with pytest.raises(ValueError):
        model(bad())


def test_unsupported_return_type_raises_value_error(make_toy):
    with pytest.raises(ValueError):
        make_toy(8, 8)(torch.zeros(1, 3, dtype=torch.long), return_type="loss")


def test_return_type_none_returns_none_but_runs_hooks(make_toy):
    model = make_toy(8, 8)
    _, cache = model.run_with_cache(torch.zeros(1, 3, dtype=torch.long), return_type=None)
    assert "blocks.0.hook_resid_post" in cache


@pytest.mark.parametrize(
    "kwargs",
    [dict(d_vocab=0, d_model=4, n_ctx=4), dict(d_vocab=8, d_model=-1, n_ctx=4),
     dict(d_vocab=8, d_model=4, n_ctx=True)],
)
def test_toy_config_rejects_bad_sizes(kwargs):
    with pytest.raises(ValueError):
        ToyConfig(**kwargs)


def test_toy_config_round_trip():
    cfg = ToyConfig(d_vocab=16, d_model=8, n_ctx=32, freeze_wv=True, freeze_embed=False, seed=9)
    assert ToyConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError):
        ToyConfig.from_dict({**cfg.to_dict(), "d_head": 8})


def _randomize_biases(model: LCAToy, seed: int) -> None:
    """The toy's biases are constant zero buffers; make them nonzero so the reassociated path's
    bias terms are exercised too."""
    gen = torch.Generator().manual_seed(seed)
    attn = model.blocks[0].attn
    with torch.no_grad():
        for bias in (attn.b_Q, attn.b_K, attn.b_V, attn.b_O):
            bias.copy_(torch.randn(bias.shape, generator=gen))


@pytest.mark.parametrize("d_vocab, d_model", [(16, 4), (8, 24)], ids=["d<V", "d>V"])
def test_reassociated_last_position_path_equals_standard_attention(make_toy, randomize, d_vocab, d_model):
    model = randomize(make_toy(d_vocab, d_model, n_ctx=9), seed=3)
    _randomize_biases(model, seed=4)
    tokens = torch.randint(d_vocab, (5, 9), generator=torch.Generator().manual_seed(2))
    block = model.blocks[0]
    assert not block._keys_or_values_observed()
    fast = model(tokens, last_position_only=True)
    standard = model(tokens)[:, -1]
    assert (fast - standard).abs().max() < 1e-5
    # The intermediate hook values agree too, not just the logits.
    fast_cache = {}
    names = ["blocks.0.attn.hook_q", "blocks.0.attn.hook_pattern", "blocks.0.attn.hook_z"]
    hooks = [(n, lambda t, hook: fast_cache.__setitem__(hook.name, t.detach())) for n in names]
    model.run_with_hooks(tokens, last_position_only=True, fwd_hooks=hooks)
    _, full_cache = model.run_with_cache(tokens)
    assert torch.allclose(fast_cache["blocks.0.attn.hook_q"], full_cache["blocks.0.attn.hook_q"][:, -1:], atol=1e-5)
    assert torch.allclose(fast_cache["blocks.0.attn.hook_pattern"], full_cache["blocks.0.attn.hook_pattern"][:, :, -1:], atol=1e-6)
    assert torch.allclose(fast_cache["blocks.0.attn.hook_z"], full_cache["blocks.0.attn.hook_z"][:, -1:], atol=1e-5)


def test_hooks_on_keys_and_values_always_fire(make_toy):
    """The reassociated path forms no keys/values, so listening to them must switch it off."""
    model = make_toy(8, 6, n_ctx=5)
    tokens = torch.randint(8, (2, 5))
    seen = []
    for name in ["blocks.0.attn.hook_k", "blocks.0.attn.hook_v"]:
        model.run_with_hooks(tokens, last_position_only=True,
                             fwd_hooks=[(name, lambda t, hook: seen.append((hook.name, t.shape)))])
    assert seen == [("blocks.0.attn.hook_k", (2, 5, 1, 6)), ("blocks.0.attn.hook_v", (2, 5, 1, 6))]
    # A hook that edits values changes the output on the last-position path as well.
    zero_values = [("blocks.0.attn.hook_v", lambda t, hook: torch.zeros_like(t))]
    edited = model.run_with_hooks(tokens, last_position_only=True, fwd_hooks=zero_values)
    assert torch.count_nonzero(edited) == 0
    assert not model.blocks[0]._keys_or_values_observed()  # and the hooks are gone afterwards


# ---------------------------------------------------------------------- TransformerLens's own tools


@pytest.fixture(scope="module")
def trained_toy():
    from lca_interp.training import TrainConfig, train

    task = LCATask(m=4, omega=0.5, beta=1.0, context_len=12)
    run = train(task, ToyConfig(d_vocab=16, d_model=12, n_ctx=12, seed=1),
                TrainConfig(steps=150, batch_size=64, lr=1e-2, eval_every=50, eval_samples=500), progress=False)
    return run.model, task


def test_svd_interpreter_reads_the_value_matrix_through_the_tied_unembedding(trained_toy):
    from transformer_lens import SVDInterpreter

    model, _ = trained_toy
    vectors = SVDInterpreter(model).get_singular_vectors("OV", layer_index=0, head_index=0, num_vectors=4)
    assert vectors.shape == (16, 1, 4)
    _, _, right = torch.linalg.svd(model.W_V[0, 0].detach())  # OV = W_V W_O = W_V
    for i in range(4):
        expected = right[i] @ model.W_E.detach().T  # the i-th output direction read through W_U = W_Eᵀ
        cosine = torch.nn.functional.cosine_similarity(vectors[:, 0, i].detach(), expected, dim=0)
        assert abs(float(cosine)) == pytest.approx(1.0, abs=1e-4)


def test_cache_head_results_and_logit_attrs_give_the_toys_logits(trained_toy):
    model, task = trained_toy
    x, y = task.sample(8, seed=3)
    logits, cache = model.run_with_cache(x)
    heads = cache.stack_head_results(layer=-1, pos_slice=-1)  # [head, batch, d_model]
    attributed = cache.logit_attrs(heads, tokens=y, pos_slice=-1)  # [head, batch]
    torch.testing.assert_close(attributed[0], logits[torch.arange(8), -1, y], rtol=1e-4, atol=1e-4)
    assert torch.equal(model.accumulated_bias(1), torch.zeros(12))


@pytest.mark.parametrize("call", [
    lambda m, x: m.generate(x, max_new_tokens=2),
    lambda m, x: m(x, return_type="loss"),
    lambda m, x: m.loss_fn(m(x), x),
    lambda m, x: m.to_tokens("hello"),
    lambda m, x: m.to_string(x[0]),
    lambda m, x: m.to_str_tokens(x[0]),
    lambda m, x: m.to_single_token("a"),
    lambda m, x: m.run_with_cache(x)[1].decompose_resid(layer=-1),
    lambda m, x: m.run_with_cache(x)[1].get_full_resid_decomposition(),
], ids=["generate", "loss", "loss_fn", "to_tokens", "to_string", "to_str_tokens", "to_single_token",
        "decompose_resid", "full_resid_decomposition"])
def test_tl_tools_that_make_no_sense_for_the_toy_refuse_in_one_sentence(trained_toy, call):
    model, task = trained_toy
    x, _ = task.sample(2, seed=0)
    with pytest.raises(ValueError) as error:
        call(model, x)
    message = str(error.value)
    assert "LCA toy" in message and message.count(". ") == 0 and "\n" not in message


def test_a_toy_folder_written_before_transformer_lens_4_loads_unchanged():
    """tests/data/toy_folder_before_tl4 was trained and saved by the `HookedTransformer` toy on TL
    3.9 (commit b770a66), with its logits and attention on four contexts: the toy on
    `HookedRootModule` reads the same state-dict keys and computes the same numbers."""
    from pathlib import Path

    from safetensors.torch import load_file

    from lca_interp.runs import load_toy

    folder = Path(__file__).parent / "data" / "toy_folder_before_tl4"
    model, task = load_toy(folder)
    expected = load_file(folder / "expected_outputs.safetensors")
    assert task.m == 3 and model.cfg.d_model == 6
    logits, cache = model.run_with_cache(expected["tokens"])
    torch.testing.assert_close(logits, expected["logits"], atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(cache["blocks.0.attn.hook_pattern"], expected["pattern"], atol=1e-6, rtol=1e-6)
    assert expected["logits"].abs().max() > 0.1  # a trained toy, not zeros
