"""Probes on grouped-query attention: a random-weight Llama-architecture model built here (6 query
heads sharing 2 KV heads, rotary positions), checked against hand-written oracles."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformer_lens.utilities import get_act_name

from lca_interp.facts import Fact
from lca_interp.hooks.attention import attention_mass, capture_patterns
from lca_interp.hooks.attribution import direct_logit_attribution
from lca_interp.hooks.circuits import ov_circuit, qk_circuit
from lca_interp.hooks.interventions import ablate_heads, mean_head_outputs
from lca_interp.pretrained import load_model
from lca_interp.scoring import hijack_scores

N_HEADS, N_KV, D_HEAD = 6, 2, 8
PROMPTS = ["The Eiffel Tower is located in the city of", "Do not think of Chicago. The Eiffel Tower is in"]


@pytest.fixture(scope="module")
def llama_gqa(tmp_path_factory) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    from lca_interp.pretrained.random_weights import save_random_model

    config = LlamaConfig(hidden_size=N_HEADS * D_HEAD, intermediate_size=96,
                         num_hidden_layers=2, num_attention_heads=N_HEADS, num_key_value_heads=N_KV,
                         max_position_embeddings=128, tie_word_embeddings=False)
    return save_random_model(tmp_path_factory.mktemp("llama-gqa"), LlamaForCausalLM, config)


@pytest.fixture(scope="module")
def model(llama_gqa):
    model = load_model(llama_gqa)
    assert model.cfg.n_key_value_heads == N_KV and model.cfg.n_heads == N_HEADS
    return model


def test_a_heads_ov_is_its_kv_groups_value_matrix_times_its_own_output_matrix(model):
    attn = model.blocks[1].attn
    for head in range(N_HEADS):
        group = head // (N_HEADS // N_KV)
        expected = attn.W_V[group].detach() @ attn.W_O[head].detach()
        torch.testing.assert_close(ov_circuit(model, 1, head).AB, expected)
        torch.testing.assert_close(model.OV[1, head].AB, expected)  # the model's own per-query-head OV
        torch.testing.assert_close(qk_circuit(model, 1, head).AB, attn.W_Q[head].detach() @ attn.W_K[group].detach().T)


def test_patterns_equal_a_hand_written_causal_softmax_over_rotated_queries_and_keys(model):
    tokens = model.to_tokens(PROMPTS[0])
    _, cache = model.run_with_cache(tokens)
    q = cache[get_act_name("rot_q", 1)][0]  # [pos, head, d_head]
    k = cache[get_act_name("rot_k", 1)][0]  # [pos, kv_head, d_head]
    n = tokens.shape[1]
    causal = torch.ones(n, n, dtype=torch.bool).tril()
    for head in range(N_HEADS):
        scores = q[:, head] @ k[:, head // (N_HEADS // N_KV)].T / D_HEAD**0.5
        expected = scores.masked_fill(~causal, -torch.inf).softmax(-1)
        torch.testing.assert_close(capture_patterns(model, PROMPTS[0], layers=1)[1][0, head], expected, rtol=1e-5, atol=1e-6)
    mass = attention_mass(model, PROMPTS[:1], [[0]])  # [batch, layer, head]: last position → first token
    torch.testing.assert_close(mass[0, 1], cache[get_act_name("pattern", 1)][0, :, -1, 0])


def test_direct_logit_attribution_adds_up_on_grouped_query_attention(model):
    attribution = direct_logit_attribution(model, PROMPTS, " Paris", " Chicago")
    torch.testing.assert_close(attribution.contributions.sum(1), attribution.logit_diff, rtol=1e-4, atol=1e-4)
    assert attribution.heads().shape == (2, 2, N_HEADS)


def test_ablating_one_query_head_leaves_the_others_of_its_group_alone(model):
    tokens = model.to_tokens(PROMPTS[0])
    _, clean = model.run_with_cache(tokens)
    means = mean_head_outputs(model, PROMPTS, [(1, 0)])
    with ablate_heads(model, [(1, 0)], mode="mean", means=means):
        _, ablated = model.run_with_cache(tokens)
    z_clean, z_ablated = clean[get_act_name("z", 1)][0], ablated[get_act_name("z", 1)][0]
    assert torch.equal(z_clean[:, 1:], z_ablated[:, 1:])  # head 1 shares head 0's KV group
    torch.testing.assert_close(z_ablated[:, 0], means[(1, 0)].expand_as(z_ablated[:, 0]))


def test_the_tokenizers_own_bos_convention_is_kept(model, llama_gqa):
    """GPT-2's tokenizer adds no BOS, so the model sees none: to_tokens equals the tokenizer."""
    from transformers import AutoTokenizer

    assert model.cfg.default_prepend_bos is False
    raw = AutoTokenizer.from_pretrained(llama_gqa)
    assert model.to_tokens(PROMPTS[0])[0].tolist() == raw(PROMPTS[0])["input_ids"]
    assert model.to_str_tokens(PROMPTS[0])[:3] == ["The", " E", "iff"]


def test_hijack_scores_from_shared_stems_equal_whole_rows_under_rotary_positions(model):
    """A fact's rows at k = 0..3 run from its longest row's cached keys (positions from the mask);
    the same rows run whole (forced by a no-op hook) give the same log-probabilities."""
    facts = [Fact.from_template("{} is located in the city of", "The Eiffel Tower", "Paris", "New York City", case_id="e"),
             Fact.from_template("The mother tongue of {} is", "Danielle Darrieux", "French", "English", case_id="d")]
    for scheme in ("generic", "negation"):
        shared = hijack_scores(model, facts, scheme, 3)
        with model.hooks(fwd_hooks=[("blocks.0.hook_resid_pre", lambda x, hook: x)]):
            whole = hijack_scores(model, facts, scheme, 3)
        assert torch.allclose(shared.log_prob, whole.log_prob, atol=1e-4, rtol=0)


def test_generation_with_the_kv_cache_equals_generation_without(model):
    """transformers ≥ 5.24 passes the cache to attention as `cache=`, which TL's attention bridges
    ignore (Llama's included); `hooks.model.repair_kv_cache` makes TL's default, cached generation
    right again."""
    tokens = model.to_tokens("The Eiffel Tower is located in the city of")
    cached = model.generate(tokens, max_new_tokens=8, do_sample=False, verbose=False)
    uncached = model.generate(tokens, max_new_tokens=8, do_sample=False, verbose=False, use_past_kv_cache=False)
    assert cached.shape == (1, tokens.shape[1] + 8) and torch.equal(cached, uncached)
