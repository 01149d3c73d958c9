"""Interventions against oracles: the LCA toy's closed form W_E[x_L] W_V W_Eᵀ, causality (earlier
layers and positions untouched, bit for bit), a head whose W_O is zero, self-cancelling steering,
clean-run patching; and on every context manager, no hook left behind after an exception or bad
arguments, with one-sentence errors. Gemma-3-270m (grouped-query attention) runs the same code."""

from __future__ import annotations

import copy
import re
from contextlib import ExitStack

import pytest
import torch
from conftest import needs_gemma

from lca_interp.hooks.interventions import (
    ablate_heads,
    add_vector,
    mean_head_outputs,
    patch_activation,
    restrict_attention,
)
from lca_interp.pretrained import load_model

PROMPT = "The Eiffel Tower is located in the city of"


def no_hooks(model) -> bool:
    """Neither TransformerLens's handles nor torch's own hook dicts hold anything."""
    return all(
        not hp.fwd_hooks and not hp.bwd_hooks and not hp._forward_hooks and not hp._backward_hooks
        for hp in model.hook_dict.values()
    )


def assert_one_sentence(message: str) -> None:
    assert "\n" not in message and message[-1] in ".?", message
    assert len(re.findall(r"[.?!](?:\s|$)", message)) == 1, message


def record(model, tokens, names=lambda name: True, **kwargs) -> dict[str, torch.Tensor]:
    """Every floating-point activation that fires (clones), by the hook name asked for (a bridge's
    hook points answer to HookedTransformer's names and to their own)."""
    seen, names_of = {}, {}
    for name, point in model.hook_dict.items():
        if names(name):
            names_of.setdefault(id(point), []).append(name)

    def keep(activation, hook):
        if activation.is_floating_point():
            for name in names_of[id(hook)]:
                seen[name] = activation.detach().clone()

    with torch.no_grad(), model.hooks(fwd_hooks=[(names, keep)]):
        model(tokens, **kwargs)
    return seen


@pytest.fixture
def toy(make_toy, randomize):
    return randomize(make_toy(d_vocab=8, d_model=16), seed=1)


@pytest.fixture
def toy_tokens() -> torch.Tensor:
    return torch.randint(0, 8, (4, 6), generator=torch.Generator().manual_seed(2))


@pytest.fixture(scope="module")
def gpt2(gpt2_folder):
    return load_model(gpt2_folder)


@pytest.fixture
def tokens() -> torch.Tensor:
    return torch.randint(0, 5000, (2, 7), generator=torch.Generator().manual_seed(3))


# ------------------------------------------------------------------------- the LCA toy


@pytest.mark.parametrize("last_position_only", [True, False])
def test_toy_last_position_on_itself_reads_the_value_memory(toy, toy_tokens, last_position_only):
    """W_O = I, zero biases, W_U = W_Eᵀ: attending only to x_L gives W_E[x_L] W_V W_Eᵀ."""
    W_E, W_V = toy.embed.W_E, toy.blocks[0].attn.W_V[0]
    expected = W_E[toy_tokens[:, -1]] @ W_V @ W_E.T
    with torch.no_grad():
        free = toy(toy_tokens, last_position_only=last_position_only)
        with restrict_attention(toy):
            restricted = toy(toy_tokens, last_position_only=last_position_only)
    if not last_position_only:
        free, restricted = free[:, -1], restricted[:, -1]
    torch.testing.assert_close(restricted, expected, rtol=1e-6, atol=1e-5)
    assert not torch.allclose(free, expected, atol=1e-2)  # the oracle is not what the toy does anyway
    assert no_hooks(toy)


def test_toy_restricted_positions_output_their_own_value_exactly(toy, toy_tokens):
    """In the same run, a one-hot pattern row makes z equal v at that position, bit for bit; the
    other rows of the pattern are untouched (the toy is bidirectional, so each row is free)."""
    free = record(toy, toy_tokens)
    with restrict_attention(toy, positions=[1, -1]):
        seen = record(toy, toy_tokens)
    z, v = seen["blocks.0.attn.hook_z"], seen["blocks.0.attn.hook_v"]
    assert torch.equal(z[:, [1, 5]], v[:, [1, 5]])
    pattern = seen["blocks.0.attn.hook_pattern"]
    assert torch.equal(pattern[:, :, [0, 2, 3, 4]], free["blocks.0.attn.hook_pattern"][:, :, [0, 2, 3, 4]])
    assert torch.equal(pattern[:, 0, 1], torch.nn.functional.one_hot(torch.tensor(1), 6).float().expand(4, 6))
    assert not torch.allclose(z[:, 0], v[:, 0])


def test_toy_restriction_of_an_uncomputed_query_is_a_no_op(toy, toy_tokens):
    """The fast path computes only the last query: restricting position 0 there changes nothing,
    while on the full path it changes row 0 and leaves the last row alone."""
    with torch.no_grad():
        fast, full = toy(toy_tokens, last_position_only=True), toy(toy_tokens)
        with restrict_attention(toy, positions=0):
            fast_restricted, full_restricted = toy(toy_tokens, last_position_only=True), toy(toy_tokens)
    assert torch.equal(fast_restricted, fast)
    assert torch.equal(full_restricted[:, 1:], full[:, 1:])
    assert not torch.allclose(full_restricted[:, 0], full[:, 0])


@pytest.mark.parametrize("last_position_only", [True, False])
def test_toy_steering_shifts_logits_by_the_vectors_unembedding(toy, toy_tokens, last_position_only):
    """resid_post feeds W_U = W_Eᵀ directly: adding s·v moves every logit by s·v W_Eᵀ."""
    vector = torch.randn(16)
    with torch.no_grad():
        base = toy(toy_tokens, last_position_only=last_position_only)
        with add_vector(toy, "blocks.0.hook_resid_post", vector, scale=2.5, positions=-1):
            steered = toy(toy_tokens, last_position_only=last_position_only)
    if not last_position_only:
        assert torch.equal(steered[:, :-1], base[:, :-1])
        base, steered = base[:, -1], steered[:, -1]
    torch.testing.assert_close(steered - base, (2.5 * vector @ toy.embed.W_E.T).expand_as(base), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("last_position_only", [True, False])
def test_toy_every_hook_accepts_its_own_shapes(toy, toy_tokens, last_position_only):
    """What each function checks from a hook's name agrees with what fires: a zero vector and the
    activation itself, at every hook at once, change nothing (on the fast path too)."""
    skip_kv = (lambda name: not name.endswith(("hook_k", "hook_v"))) if last_position_only else (lambda name: True)
    seen = record(toy, toy_tokens, skip_kv, last_position_only=last_position_only)
    assert_identity_interventions(toy, toy_tokens, seen, last_position_only=last_position_only)


def assert_identity_interventions(model, tokens, seen, **kwargs) -> None:
    with torch.no_grad():
        base = model(tokens, **kwargs)
        with ExitStack() as stack:
            for name, activation in seen.items():
                stack.enter_context(add_vector(model, name, torch.zeros(activation.shape[-1])))
                stack.enter_context(patch_activation(model, name, activation))
            assert not no_hooks(model)
            same = model(tokens, **kwargs)
    assert torch.equal(same, base)
    assert no_hooks(model)


def test_toy_hook_time_errors_leave_no_hooks(toy, toy_tokens):
    with restrict_attention(toy, positions=6), pytest.raises(ValueError) as error:
        toy(toy_tokens)
    assert_one_sentence(str(error.value))
    assert "outside the 6 positions" in str(error.value)
    assert no_hooks(toy)


# --------------------------------------------------------------------- random GPT-2


def test_restricting_a_layer_leaves_earlier_layers_bit_identical(gpt2, tokens):
    names = lambda name: name.startswith(("blocks.0.", "blocks.1.hook_attn_out"))  # noqa: E731
    free = record(gpt2, tokens, names)
    with restrict_attention(gpt2, layers=1):
        restricted = record(gpt2, tokens, names)
    for name in free:
        if name.startswith("blocks.0."):
            assert torch.equal(restricted[name], free[name]), name
    assert not torch.allclose(restricted["blocks.1.hook_attn_out"], free["blocks.1.hook_attn_out"])


def test_restricting_the_last_position_changes_only_the_last_position(gpt2, tokens):
    with torch.no_grad():
        base = gpt2(tokens)
        with restrict_attention(gpt2, layers=-1, heads=[0, 2]):
            restricted = gpt2(tokens)
    assert torch.equal(restricted[:, :-1], base[:, :-1])  # causal: later queries cannot reach back
    assert not torch.allclose(restricted[:, -1], base[:, -1])


def test_restriction_by_head_pairs_touches_only_those_heads(gpt2, tokens):
    free = record(gpt2, tokens, lambda name: name == "blocks.1.attn.hook_pattern")
    with restrict_attention(gpt2, heads=[(1, 3)], positions=[2, -1]):
        pattern = record(gpt2, tokens, lambda name: name == "blocks.1.attn.hook_pattern")["blocks.1.attn.hook_pattern"]
    before = free["blocks.1.attn.hook_pattern"]
    assert torch.equal(pattern[:, :3], before[:, :3])
    assert torch.equal(pattern[:, 3, [0, 1, 3, 4, 5]], before[:, 3, [0, 1, 3, 4, 5]])
    assert torch.equal(pattern[:, 3, 2], torch.eye(7)[2].expand(2, 7))
    assert torch.equal(pattern[:, 3, 6], torch.eye(7)[6].expand(2, 7))


def test_ablating_a_head_without_output_changes_nothing(gpt2, tokens):
    silent = copy.deepcopy(gpt2)
    with torch.no_grad():
        silent.blocks[1].attn.W_O[2].zero_()
        base = silent(tokens)
        with ablate_heads(silent, [(1, 2)]):
            unused = silent(tokens)
        with ablate_heads(silent, [(1, 1)]):
            used = silent(tokens)
    assert torch.equal(unused, base)
    assert not torch.allclose(used, base)


def test_zero_ablation_zeroes_only_the_chosen_heads(gpt2, tokens):
    names = lambda name: name.endswith("attn.hook_z")  # noqa: E731
    free = record(gpt2, tokens, names)
    with ablate_heads(gpt2, [(0, 1), (1, 3), (-1, 0)]):
        seen = record(gpt2, tokens, names)
    assert torch.equal(seen["blocks.0.attn.hook_z"][:, :, 1], torch.zeros(2, 7, 16))
    assert torch.equal(seen["blocks.1.attn.hook_z"][:, :, [0, 3]], torch.zeros(2, 7, 2, 16))
    assert torch.equal(seen["blocks.0.attn.hook_z"][:, :, [0, 2, 3]], free["blocks.0.attn.hook_z"][:, :, [0, 2, 3]])


def test_mean_ablation_with_means_of_a_single_position_is_no_change(gpt2):
    single = torch.tensor([[6342]])
    heads = [(0, 0), (1, 2), (1, 3)]
    means = mean_head_outputs(gpt2, single, heads)
    with torch.no_grad():
        base = gpt2(single)
        with ablate_heads(gpt2, heads, mode="mean", means=means):
            ablated = gpt2(single)
        with ablate_heads(gpt2, heads):
            zeroed = gpt2(single)
    assert torch.equal(ablated, base)
    assert not torch.allclose(zeroed, base)


def test_mean_ablation_writes_the_mean_at_every_position(gpt2, tokens):
    means = mean_head_outputs(gpt2, tokens, [(1, 2)])
    z = record(gpt2, tokens, lambda name: name == "blocks.1.attn.hook_z")["blocks.1.attn.hook_z"]
    torch.testing.assert_close(means[(1, 2)], z[:, :, 2].mean(dim=(0, 1)))
    with ablate_heads(gpt2, [(1, 2)], mode="mean", means=means):
        ablated = record(gpt2, tokens, lambda name: name == "blocks.1.attn.hook_z")["blocks.1.attn.hook_z"]
    assert torch.equal(ablated[:, :, 2], means[(1, 2)].expand(2, 7, 16))
    assert torch.equal(ablated[:, :, [0, 1, 3]], z[:, :, [0, 1, 3]])


def test_mean_head_outputs_leave_out_padding(gpt2):
    prompts = ["The capital of France is", PROMPT]
    separate = [mean_head_outputs(gpt2, text, [(0, 3)])[(0, 3)] for text in prompts]
    lengths = [len(gpt2.to_tokens(text)[0]) for text in prompts]
    assert lengths[0] != lengths[1]
    pooled = (separate[0] * lengths[0] + separate[1] * lengths[1]) / sum(lengths)
    torch.testing.assert_close(mean_head_outputs(gpt2, prompts, [(0, 3)])[(0, 3)], pooled, rtol=1e-5, atol=1e-6)


def test_steering_up_and_down_restores_the_output(gpt2, tokens):
    vector = torch.randn(64)
    with torch.no_grad():
        base = gpt2(tokens)
        with add_vector(gpt2, "blocks.1.hook_resid_pre", vector, scale=3.0):
            steered = gpt2(tokens)
            with add_vector(gpt2, "blocks.1.hook_resid_pre", vector, scale=-3.0):
                restored = gpt2(tokens)
        with add_vector(gpt2, "blocks.0.hook_resid_post", vector, positions=[2, 4]):
            partial = gpt2(tokens)
    torch.testing.assert_close(restored, base, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(steered, base, atol=1e-2)
    assert torch.equal(partial[:, :2], base[:, :2])
    assert not torch.allclose(partial[:, 2], base[:, 2])


def test_patching_the_clean_embedding_restores_the_clean_output(gpt2, tokens):
    corrupted = tokens.flip(-1)
    clean_resid = record(gpt2, tokens, lambda name: name == "blocks.0.hook_resid_pre")["blocks.0.hook_resid_pre"]
    with torch.no_grad():
        clean, dirty = gpt2(tokens), gpt2(corrupted)
        with patch_activation(gpt2, "blocks.0.hook_resid_pre", clean_resid):
            patched = gpt2(corrupted)
        with patch_activation(gpt2, "blocks.0.hook_resid_pre", clean_resid, positions=-1):
            last_only = gpt2(corrupted)
    assert not torch.allclose(dirty, clean)
    assert torch.equal(patched, clean)
    assert torch.equal(last_only[:, :-1], dirty[:, :-1])
    assert not torch.allclose(last_only[:, -1], dirty[:, -1])


def test_patching_chosen_heads_and_positions(gpt2, tokens):
    corrupted = tokens.flip(-1)
    name = "blocks.1.attn.hook_z"
    clean = record(gpt2, tokens, lambda n: n == name)[name]
    dirty = record(gpt2, corrupted, lambda n: n == name)[name]
    with patch_activation(gpt2, name, clean, heads=[2], positions=[0, -2]):
        seen = record(gpt2, corrupted, lambda n: n == name)[name]
    assert torch.equal(seen[:, [0, 5], 2], clean[:, [0, 5], 2])
    keep = torch.ones(7, 4, dtype=torch.bool)
    keep[[0, 5], 2] = False
    assert torch.equal(seen[:, keep], dirty[:, keep])


def test_every_gpt2_hook_accepts_its_own_shapes(gpt2, tokens):
    assert_identity_interventions(gpt2, tokens, record(gpt2, tokens))


# ----------------------------------------------------- hooks always removed, clear errors


FACTORIES = {
    "restrict_attention": lambda m, t: restrict_attention(m, layers=-1),
    "add_vector": lambda m, t: add_vector(m, "blocks.0.hook_resid_post", torch.ones(m.cfg.d_model)),
    "ablate_zero": lambda m, t: ablate_heads(m, [(0, 0)]),
    "ablate_mean": lambda m, t: ablate_heads(m, [(0, 0)], "mean", mean_head_outputs(m, t, [(0, 0)])),
    "patch_activation": lambda m, t: patch_activation(m, "blocks.0.attn.hook_z", torch.zeros(2, 7, m.cfg.n_heads, m.cfg.d_head), heads=0),
}


@pytest.mark.parametrize("factory", FACTORIES.values(), ids=FACTORIES.keys())
def test_an_exception_in_the_body_leaves_no_hooks_and_keeps_the_users_own(gpt2, tokens, factory):
    def users_hook(activation, hook):
        return None

    gpt2.add_hook("blocks.1.hook_resid_post", users_hook)
    try:
        with pytest.raises(RuntimeError, match="inside"):
            with factory(gpt2, tokens):
                assert sum(len(hp.fwd_hooks) for hp in gpt2.hook_dict.values()) > 1
                gpt2(tokens)
                raise RuntimeError("raised inside the body")
        points = {id(hp): hp for hp in gpt2.hook_dict.values() if hp.fwd_hooks}  # a bridge names a point twice
        assert list(points.values()) == [gpt2.hook_dict["blocks.1.hook_resid_post"]]
        assert len(points[id(gpt2.hook_dict["blocks.1.hook_resid_post"])].fwd_hooks) == 1
        assert gpt2.hook_dict["blocks.1.hook_resid_post"].fwd_hooks[0].user_hook is users_hook
    finally:
        gpt2.reset_hooks()
    assert no_hooks(gpt2)


BAD_ARGUMENTS = {
    "unknown hook": (lambda m: add_vector(m, "blocks.0.hook_resid_prex", torch.ones(64)), "did you mean 'blocks.0.hook_resid_pre'"),
    "unknown hook to patch": (lambda m: patch_activation(m, "blocks.9.hook_z", torch.ones(2, 7, 64)), "no hook point"),
    "layer out of range": (lambda m: restrict_attention(m, layers=2), "layer 2 does not exist"),
    "head out of range": (lambda m: restrict_attention(m, heads=[4]), "head 4 does not exist"),
    "stray head pair": (lambda m: restrict_attention(m, layers=0, heads=[(1, 0)]), "not in the chosen layers"),
    "mixed heads": (lambda m: restrict_attention(m, heads=[0, (1, 0)]), "not a mix|head indices or"),
    "bool positions": (lambda m: restrict_attention(m, positions=[True]), "positions must be integers"),
    "no positions": (lambda m: add_vector(m, "blocks.0.hook_resid_pre", torch.ones(64), positions=[]), "no positions"),
    "ablated head out of range": (lambda m: ablate_heads(m, [(0, 4)]), "head 4 does not exist in layer 0"),
    "bad mode": (lambda m: ablate_heads(m, [(0, 1)], mode="max"), "mode must be"),
    "missing means": (lambda m: ablate_heads(m, [(0, 1)], mode="mean"), "needs means"),
    "means for other heads": (lambda m: ablate_heads(m, [(0, 1)], "mean", {(0, 2): torch.zeros(16)}), "no entry for head L0H1"),
    "means of wrong size": (lambda m: ablate_heads(m, [(0, 1)], "mean", {(0, 1): torch.zeros(64)}), "shape"),
    "means with zero mode": (lambda m: ablate_heads(m, [(0, 1)], means={(0, 1): torch.zeros(16)}), "only used with mode='mean'"),
    "wrong vector size": (lambda m: add_vector(m, "blocks.1.hook_resid_mid", torch.ones(63)), "63 entries.*last dimension 64"),
    "wrong vector size at hook_z": (lambda m: add_vector(m, "blocks.0.attn.hook_z", torch.ones(64)), "last dimension 16"),
    "integer vector": (lambda m: add_vector(m, "blocks.0.hook_resid_pre", torch.ones(64, dtype=torch.long)), "floating-point"),
    "wrong source size": (lambda m: patch_activation(m, "blocks.0.hook_resid_pre", torch.ones(2, 7, 32)), "last dimension 64"),
    "wrong source rank": (lambda m: patch_activation(m, "blocks.0.attn.hook_z", torch.ones(2, 7, 64)), "4 dimensions"),
    "heads on a residual hook": (lambda m: patch_activation(m, "blocks.0.hook_resid_pre", torch.ones(2, 7, 64), heads=0), "no head axis"),
    "patched head out of range": (lambda m: patch_activation(m, "blocks.0.attn.hook_pattern", torch.ones(2, 4, 7, 7), heads=[4]), "within 0..3"),
}


@pytest.mark.parametrize("make, match", BAD_ARGUMENTS.values(), ids=BAD_ARGUMENTS.keys())
def test_bad_arguments_raise_one_sentence_before_any_hook(gpt2, make, match):
    with pytest.raises(ValueError, match=match) as error:
        make(gpt2)
    assert_one_sentence(str(error.value))
    assert no_hooks(gpt2)


RUN_ERRORS = {
    "source from a shorter run": (lambda m: patch_activation(m, "blocks.0.hook_resid_pre", torch.ones(2, 5, 64)), "shape \\(2, 5, 64\\) but"),
    "position past the end": (lambda m: add_vector(m, "blocks.0.hook_resid_pre", torch.ones(64), positions=9), "position 9 is outside the 7"),
    "key positions past the end": (lambda m: add_vector(m, "blocks.0.attn.hook_pattern", torch.ones(9)), "9 entries.*last dimension 7"),
    "restricted position past the end": (lambda m: restrict_attention(m, positions=[-8]), "position -8 is outside"),
}


@pytest.mark.parametrize("make, match", RUN_ERRORS.values(), ids=RUN_ERRORS.keys())
def test_errors_found_in_the_forward_raise_one_sentence_and_leave_no_hooks(gpt2, tokens, make, match):
    with pytest.raises(ValueError, match=match) as error:
        with make(gpt2):
            gpt2(tokens)
    assert_one_sentence(str(error.value))
    assert no_hooks(gpt2)


# -------------------------------------------------------------------------- Gemma-3-270m


@needs_gemma
def test_gemma_interventions_run_change_the_logits_and_clean_up(gemma):
    tokens = gemma.to_tokens(PROMPT)
    seen = record(gemma, tokens)
    with torch.no_grad():
        logits = gemma(tokens)
        with restrict_attention(gemma, layers=-1):
            restricted = gemma(tokens)
        with ablate_heads(gemma, [(gemma.cfg.n_layers - 1, 0)]):
            ablated = gemma(tokens)
    assert torch.equal(restricted[:, :-1], logits[:, :-1])
    assert not torch.allclose(restricted[:, -1], logits[:, -1], atol=1e-3)
    assert not torch.allclose(ablated[:, -1], logits[:, -1], atol=1e-3)
    assert no_hooks(gemma)

    # grouped-query attention: keys and values have fewer heads than queries
    assert seen["blocks.0.attn.hook_k"].shape[2] == gemma.cfg.n_key_value_heads < gemma.cfg.n_heads
    with pytest.raises(ValueError, match="within 0..0") as error:
        patch_activation(gemma, "blocks.0.attn.hook_k", seen["blocks.0.attn.hook_k"], heads=[1])
    assert_one_sentence(str(error.value))
    assert_identity_interventions(gemma, tokens, seen)
