"""Attention probes on the LCA toy, a random GPT-2-architecture model and Gemma-3-270m, against
patterns taken straight from `run_with_cache` one prompt at a time."""

from __future__ import annotations

import pytest
import torch
from conftest import needs_gemma

from lca_interp import theory
from lca_interp.hooks.attention import attention_mass, capture_patterns, class_attention_matrix
from lca_interp.pretrained import load_model

PROMPTS = ["The Eiffel Tower is located in the city of", "Do not think of Chicago. The Eiffel Tower is in"]


@pytest.fixture(scope="module")
def gpt2(gpt2_folder):
    return load_model(gpt2_folder)


def pattern_of(model, prompt: str, layer: int) -> torch.Tensor:
    _, cache = model.run_with_cache(model.to_tokens(prompt))
    return cache[f"blocks.{layer}.attn.hook_pattern"][0]  # [head, q, k]


def assert_caches_only_the_asked_pattern(model, monkeypatch, layer: int) -> None:
    """The capture's cache holds one activation, and the forward stops after that layer."""
    calls = []
    original = model.run_with_cache

    def spy(*args, **kwargs):
        out, cache = original(*args, **kwargs)
        calls.append((set(cache.keys()), kwargs.get("stop_at_layer")))
        return out, cache

    monkeypatch.setattr(model, "run_with_cache", spy)
    patterns = capture_patterns(model, PROMPTS[0], layers=layer, heads=[1, 3])
    stop = layer + 1 if layer + 1 < model.cfg.n_layers else None
    assert calls == [({f"blocks.{layer}.attn.hook_pattern"}, stop)]
    assert list(patterns) == [layer] and patterns[layer].shape[1] == 2
    assert torch.allclose(patterns[layer][0], pattern_of(model, PROMPTS[0], layer)[[1, 3]], atol=1e-6)


def test_capture_keeps_only_the_asked_layer_and_heads(gpt2, monkeypatch):
    assert_caches_only_the_asked_pattern(gpt2, monkeypatch, 0)


@needs_gemma
def test_capturing_one_gemma_layer_caches_nothing_else(gemma, monkeypatch):
    assert_caches_only_the_asked_pattern(gemma, monkeypatch, 5)


def test_mass_over_prompts_of_different_lengths_matches_single_runs(gpt2):
    lengths = [len(gpt2.to_tokens(p)[0]) for p in PROMPTS]
    assert lengths[0] != lengths[1]
    keys = [[1, 2], [0, 4, 5, 6]]
    mass = attention_mass(gpt2, PROMPTS, keys)  # [batch, layer, head]
    assert mass.shape == (2, gpt2.cfg.n_layers, gpt2.cfg.n_heads)
    for b, prompt in enumerate(PROMPTS):
        for layer in range(gpt2.cfg.n_layers):
            expected = pattern_of(gpt2, prompt, layer)[:, lengths[b] - 1, keys[b]].sum(-1)
            assert torch.allclose(mass[b, layer], expected, atol=1e-6)
    everything = attention_mass(gpt2, PROMPTS, [range(n) for n in lengths])
    assert torch.allclose(everything, torch.ones_like(everything), atol=1e-5)


def test_mass_refuses_bad_positions(gpt2):
    with pytest.raises(ValueError, match="outside"):
        attention_mass(gpt2, PROMPTS[:1], [[99]])
    with pytest.raises(ValueError, match="2 prompts"):
        attention_mass(gpt2, PROMPTS, [[0]])
    with pytest.raises(ValueError, match="layer 7 does not exist"):
        attention_mass(gpt2, PROMPTS[:1], [[0]], layers=7)


def test_class_attention_matrix_by_hand():
    rows = torch.tensor([[0.5, 0.25, 0.25], [0.1, 0.1, 0.8]])
    key_classes = torch.tensor([[0, 1, 1], [1, 0, 1]])
    heat = class_attention_matrix(rows, key_classes, torch.tensor([1, 1]), n_classes=2)
    assert torch.allclose(heat, torch.tensor([[0.0, 0.0], [(0.5 + 0.1) / 2, (0.5 + 0.9) / 2]]))


def test_toy_cluster_mass_agrees_with_the_theory_helpers(make_toy, randomize):
    from lca_interp.task import LCATask

    task = LCATask(m=4, omega=0.5, beta=1.0, context_len=8, neighbourhood="cluster1")
    toy = randomize(make_toy(d_vocab=16, d_model=8, n_ctx=8))
    x, _ = task.sample(32, seed=0)
    clusters = theory.cluster_ids(task, 1)
    same = clusters[x] == clusters[x[:, -1:]]
    mass = attention_mass(toy, x, same)[:, 0, 0]
    last = capture_patterns(toy, x)[0][:, 0, -1]
    assert torch.allclose(mass, theory.same_cluster_attention(last, x, clusters), atol=1e-6)


@needs_gemma
def test_gemma_attends_to_the_hijack_word(gemma):
    prompt = "Do not think of Chicago. The Eiffel Tower is located in the city of"
    tokens = gemma.to_tokens(prompt)
    chicago = gemma.to_single_token(" Chicago")
    where = (tokens[0] == chicago).nonzero()[:, 0].tolist()
    mass = attention_mass(gemma, prompt, [where])
    assert mass.shape == (1, 18, gemma.cfg.n_heads)
    assert float(mass.max()) > 0.1  # some head at the last position reads the hijack word
    everything = attention_mass(gemma, prompt, [range(tokens.shape[1])], layers=[0, 17])
    assert torch.allclose(everything, torch.ones_like(everything), atol=1e-4)
