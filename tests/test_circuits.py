"""Per-head circuits against hand-computed products, the toy's own forward pass, heads built by
hand with a known answer, and paper A's Eq 5.1 construction."""

from __future__ import annotations

import json
from functools import partial

import pytest
import torch
from conftest import needs_gemma

from lca_interp import theory
from lca_interp.hooks.circuits import (
    full_ov_circuit,
    memory_score,
    ov_circuit,
    pairs_reference,
    qk_circuit,
    singular_directions,
    token_map_circuit,
)
from lca_interp.pretrained import load_model
from lca_interp.task import LCATask, hamming_distances, token_label
from lca_interp.theory import toy_reference_map


@pytest.fixture(scope="module")
def gpt2(gpt2_folder):
    return load_model(gpt2_folder)


# ---------------------------------------------------------------------- circuits by hand


def test_toy_full_ov_circuit_is_W_E_W_V_W_E_transposed(make_toy, randomize):
    toy = randomize(make_toy(d_vocab=8, d_model=6))
    W_E, W_V = toy.W_E.detach(), toy.blocks[0].attn.W_V[0].detach()
    tokens = [5, 0, 3, 3]
    expected = W_E[tokens] @ W_V @ W_E[tokens].T
    assert torch.allclose(full_ov_circuit(toy, 0, 0, tokens), expected, atol=1e-5)


def test_toy_full_ov_circuit_row_is_the_logits_of_a_context_of_one_repeated_token(make_toy, randomize):
    """Attending only to copies of s, the toy's output is s's row of the full OV circuit."""
    toy = randomize(make_toy(d_vocab=8, d_model=6))
    circuit = full_ov_circuit(toy, 0, 0, torch.arange(8))
    for s in range(8):
        logits = toy(torch.full((1, 5), s), last_position_only=True)[0]
        assert torch.allclose(logits, circuit[s], atol=1e-5)


def test_toy_qk_circuit_gives_the_attention_scores(make_toy, randomize):
    toy = randomize(make_toy(d_vocab=8, d_model=6))
    tokens = torch.tensor([[1, 7, 2, 2, 0]])
    _, cache = toy.run_with_cache(tokens)
    embedded = toy.W_E.detach()[tokens[0]]  # [pos, d_model]
    expected = embedded @ qk_circuit(toy, 0, 0).AB @ embedded.T / toy.blocks[0].attn.attn_scale
    assert torch.allclose(cache["blocks.0.attn.hook_attn_scores"][0, 0], expected, atol=1e-5)


def test_token_map_circuit_is_the_block_of_the_full_circuit(gpt2):
    everything = torch.arange(40, 60)
    full = full_ov_circuit(gpt2, 1, 2, everything)
    sources, targets = [41, 45, 59], [50, 40]
    block = token_map_circuit(gpt2, 1, 2, sources, targets)
    assert block.shape == (3, 2)
    assert torch.allclose(block, full[[1, 5, 19]][:, [10, 0]], atol=1e-5)


def test_gpt2_circuits_equal_the_weight_products_by_hand(gpt2):
    attn = gpt2.blocks[1].attn
    ov, qk = ov_circuit(gpt2, 1, 3), qk_circuit(gpt2, 1, 3)
    assert ov.AB.shape == qk.AB.shape == (64, 64)
    assert torch.allclose(ov.AB, attn.W_V[3] @ attn.W_O[3], atol=1e-6)
    assert torch.allclose(qk.AB, attn.W_Q[3] @ attn.W_K[3].T, atol=1e-6)
    assert torch.allclose(ov_circuit(gpt2, -1, 3).AB, ov.AB)  # negative layers count from the end
    assert not torch.allclose(ov_circuit(gpt2, 1, 2).AB, ov.AB)  # it is that head, not any head


def test_gpt2_full_ov_circuit_uses_embedding_and_unembedding(gpt2):
    tokens = torch.tensor([6342, 11, 262])
    expected = gpt2.W_E[tokens] @ ov_circuit(gpt2, 0, 1).AB @ gpt2.W_U[:, tokens]
    assert torch.allclose(full_ov_circuit(gpt2, 0, 1, tokens), expected, atol=1e-5)


# ---------------------------------------------------------------------- singular directions


@pytest.mark.parametrize("circuit", ["ov", "qk"])
def test_singular_values_match_svdvals_of_the_dense_circuit(gpt2, circuit):
    dense = (ov_circuit if circuit == "ov" else qk_circuit)(gpt2, 0, 2).AB
    directions = singular_directions(gpt2, 0, 2, k=6, circuit=circuit, top_tokens=3)
    found = torch.tensor([d.singular_value for d in directions])
    assert torch.allclose(found, torch.linalg.svdvals(dense)[:6], rtol=1e-4)
    assert [d.index for d in directions] == list(range(6))
    assert all(d.circuit == circuit for d in directions)

    # Sign convention, checked against the dense SVD whatever orientation LAPACK picks: the
    # largest-magnitude output projection comes out positive and the input side flips with it.
    U, _, Vh = torch.linalg.svd(dense.double())
    W_E = gpt2.W_E.detach().double()
    reader = W_E if circuit == "qk" else gpt2.W_U.detach().double().T
    for i, d in enumerate(directions):
        out = reader @ Vh[i]  # [vocab]
        sign = torch.sign(out[out.abs().argmax()])
        assert d.output_scores[0] == pytest.approx(float(out.abs().max()), rel=1e-3)
        assert d.input_scores[0] == pytest.approx(float((sign * W_E @ U[:, i]).max()), rel=1e-3)
        assert d.output_ids[0] == int(out.abs().argmax())


def test_rank_one_head_reads_its_source_and_writes_its_target(gpt2_folder):
    """OV = W_E[s]ᵀ W_U[:, t]: the only direction reads s and writes t, with σ = |W_E[s]||W_U[:, t]|."""
    model = load_model(gpt2_folder)
    s, t = 6342, 1110  # " Paris", an arbitrary other token
    attn = model.blocks[1].attn
    with torch.no_grad():
        attn.W_V[2].zero_()
        attn.W_O[2].zero_()
        attn.W_V[2, :, 0] = model.W_E[s]
        attn.W_O[2, 0, :] = model.W_U[:, t]
    (first, second) = singular_directions(model, 1, 2, k=2, top_tokens=5)
    assert t in first.output_ids and s in first.input_ids
    assert first.output_ids[0] == t and first.input_ids[0] == s
    assert first.input_tokens[0] == " Paris"  # labelled through the tokenizer
    norms = (model.W_E[s].norm() * model.W_U[:, t].norm()).detach()
    assert first.singular_value == pytest.approx(float(norms), rel=1e-4)
    assert second.singular_value < 1e-4 * first.singular_value
    # Sign convention: the top scores are positive and listed in descending order.
    assert first.output_scores == sorted(first.output_scores, reverse=True) and first.output_scores[0] > 0
    assert first.input_scores == sorted(first.input_scores, reverse=True) and first.input_scores[0] > 0


def test_singular_directions_of_eq51_toy_use_token_labels():
    task = LCATask(m=3, context_len=8)
    toy = theory.theorem1_toy(task, d=10)
    directions = singular_directions(toy, 0, 0, k=2, top_tokens=3, token_labels=partial(token_label, m=3))
    for d in directions:
        assert d.output_tokens == [token_label(i, 3) for i in d.output_ids]
    unlabelled = singular_directions(toy, 0, 0, k=1, top_tokens=3)[0]
    assert unlabelled.output_tokens == [str(i) for i in unlabelled.output_ids]
    json.dumps(directions[0].to_dict())
    # Eq 5.1 with orthonormal W_E over "all": W_E W_V W_Eᵀ is the 3-cube's adjacency, with
    # eigenvalues ±3 (once each), ±1 (three times each), so singular values 3, 3, 1, ..., 1.
    values = [d.singular_value for d in singular_directions(toy, 0, 0, k=10, top_tokens=1)]
    assert values == pytest.approx([3, 3, 1, 1, 1, 1, 1, 1, 0, 0], abs=1e-4)


# ---------------------------------------------------------------------- memory score


def test_memory_score_is_perfect_for_the_reference_itself_and_its_affine_copies():
    reference = pairs_reference(20, 20, [(i, (3 * i + 1) % 20) for i in range(20)])
    perfect = memory_score(reference.float(), reference)
    assert perfect.cosine == pytest.approx(1.0)
    assert perfect.retrieval_accuracy == 1.0 and perfect.mean_rank == 1.0
    shifted = 5.0 * reference.float() + torch.randn(20, 1)  # per-row offsets, as a softmax ignores
    assert memory_score(shifted, reference).cosine == pytest.approx(1.0)
    assert (perfect.n_sources, perfect.n_targets) == (20, 20)
    json.dumps(perfect.to_dict())


def test_memory_score_is_low_for_permuted_random_and_constant_circuits():
    n = 50
    reference = pairs_reference(n, n, [(i, i) for i in range(n)])
    permuted = memory_score(reference.float().roll(1, dims=1), reference)  # every row off by one
    assert permuted.retrieval_accuracy == 0.0 and permuted.cosine < 0
    random = memory_score(torch.randn(n, n, generator=torch.Generator().manual_seed(1)), reference)
    assert random.retrieval_accuracy < 0.2 and abs(random.cosine) < 0.3
    assert 15 < random.mean_rank < 36  # chance: 1 + 49 / 2
    constant = memory_score(torch.zeros(n, n), reference)  # ties count against
    assert (constant.retrieval_accuracy, constant.cosine, constant.mean_rank) == (0.0, 0.0, float(n))
    noisy = memory_score(reference.float() + 0.1 * torch.randn(n, n), reference)
    # Signal and noise norms² ≈ 49 and 25 after centring: cosine ≈ 7 / √74 ≈ 0.81.
    assert noisy.retrieval_accuracy == 1.0 and 0.7 < noisy.cosine < 0.9


def test_memory_score_with_several_targets_needs_all_of_them_on_top():
    reference = torch.tensor([[1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]])  # last row has no target
    circuit = torch.tensor([[3.0, 2.0, 1.0, 0.0], [0.0, 0.0, 1.0, 1.0], [9.0, 0.0, 0.0, 0.0]])
    score = memory_score(circuit, reference)
    assert score.n_sources == 2
    assert score.retrieval_accuracy == 0.5  # row 1 ties its target with a non-target
    assert score.mean_rank == pytest.approx((1 + 1 + 2) / 3)


def test_memory_score_and_pairs_reference_refuse_bad_input():
    with pytest.raises(ValueError, match="no positive entry"):
        memory_score(torch.randn(3, 3), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="constant"):
        memory_score(torch.randn(3, 3), torch.ones(3, 3))
    with pytest.raises((ValueError, TypeError)):  # the runtime shape checker may answer first
        memory_score(torch.randn(3, 3), torch.ones(3, 4))
    with pytest.raises(ValueError, match="out of range"):
        pairs_reference(3, 3, [(0, 3)])
    with pytest.raises(ValueError, match="no pairs"):
        pairs_reference(3, 3, [])
    assert torch.equal(pairs_reference(2, 3, [(0, 2), (1, 0)]), torch.tensor([[0, 0, 1], [1, 0, 0]]).bool())


# ---------------------------------------------------------------------- paper A: Eq 5.1 as a memory


@pytest.mark.parametrize("neighbourhood", ["all", "cluster1"])
def test_eq51_value_matrix_is_a_perfect_memory_and_random_ones_are_not(neighbourhood):
    task = LCATask(m=4, context_len=8, neighbourhood=neighbourhood)
    toy = theory.theorem1_toy(task, d=20, seed=1)
    reference = toy_reference_map(task)
    tokens = torch.arange(task.vocab_size)

    constructed = memory_score(full_ov_circuit(toy, 0, 0, tokens), reference)
    assert constructed.retrieval_accuracy == 1.0 and constructed.mean_rank == 1.0
    assert constructed.cosine == pytest.approx(1.0, abs=1e-5)

    W_E = toy.W_E.detach()
    gaussian = theory.with_value_matrix(toy, torch.randn(20, 20, generator=torch.Generator().manual_seed(2)))
    shuffled = theory.with_value_matrix(toy, theory.random_value_matrix(W_E, task, seed=3))
    for baseline in (gaussian, shuffled):
        score = memory_score(full_ov_circuit(baseline, 0, 0, tokens), reference)
        assert score.retrieval_accuracy < 0.3 and score.cosine < 0.5 and score.mean_rank > 2


def test_toy_reference_map_respects_the_neighbourhood_and_the_direction():
    """cluster1 keeps only Hamming-1 pairs sharing z_1; an asymmetric N makes the direction matter."""
    cluster = LCATask(m=4, context_len=8, neighbourhood="cluster1")
    assert torch.equal(toy_reference_map(cluster), (hamming_distances(4) == 1) & cluster.mask)
    assert not torch.equal(toy_reference_map(cluster), hamming_distances(4) == 1)

    V = 8
    upward = torch.arange(V)[None, :] > torch.arange(V)[:, None]  # N(z*) = tokens above z*
    upward[V - 1, 0] = True  # the top token needs a non-empty neighbourhood
    task = LCATask(m=3, context_len=8, neighbourhood=upward)
    toy = theory.theorem1_toy(task, d=8)
    circuit = full_ov_circuit(toy, 0, 0, torch.arange(V))
    assert memory_score(circuit, toy_reference_map(task)).retrieval_accuracy == 1.0
    assert memory_score(circuit, toy_reference_map(task).T).retrieval_accuracy == 0.0


# ---------------------------------------------------------------------- bad input


def test_bad_layer_head_circuit_k_and_tokens_are_refused(gpt2, make_toy):
    with pytest.raises(ValueError, match="layer 2 does not exist"):
        ov_circuit(gpt2, 2, 0)
    with pytest.raises(ValueError, match="head 4 does not exist"):
        qk_circuit(gpt2, 0, 4)
    with pytest.raises(ValueError, match="head -1 does not exist"):
        full_ov_circuit(gpt2, 0, -1, [1, 2])
    with pytest.raises(ValueError, match="circuit must be one of"):
        singular_directions(gpt2, 0, 0, circuit="vo")
    with pytest.raises(ValueError, match="k must be"):
        singular_directions(gpt2, 0, 0, k=0)
    with pytest.raises(ValueError, match="k must be"):
        singular_directions(gpt2, 0, 0, k=17)  # d_head = 16 singular values at most
    with pytest.raises(ValueError, match="top_tokens must be"):
        singular_directions(make_toy(), 0, 0, top_tokens=9)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        token_map_circuit(make_toy(), 0, 0, [0, 8], [1])
    with pytest.raises(ValueError, match="non-empty"):
        full_ov_circuit(make_toy(), 0, 0, [])


# ---------------------------------------------------------------------- Gemma-3-270m


@needs_gemma
def test_gemma_singular_directions_are_sane_without_a_vocab_by_vocab_matrix(gemma):
    """262,144 tokens: a vocab × vocab float32 matrix would need 275 GB, so finishing is the check."""
    layer, head = 6, 1
    directions = singular_directions(gemma, layer, head, k=4, top_tokens=6)
    values = [d.singular_value for d in directions]
    assert len(directions) == 4 and values == sorted(values, reverse=True) and values[-1] > 0
    dense = ov_circuit(gemma, layer, head).AB  # [640, 640]
    assert torch.allclose(torch.tensor(values), torch.linalg.svdvals(dense)[:4], rtol=1e-3)
    for d in directions:
        assert len(d.output_tokens) == len(d.input_tokens) == 6
        assert all(isinstance(token, str) for token in d.output_tokens + d.input_tokens)
        assert all(0 <= i < gemma.cfg.d_vocab for i in d.output_ids + d.input_ids)
        assert d.output_scores == sorted(d.output_scores, reverse=True) and d.output_scores[0] > 0
    json.dumps([d.to_dict() for d in directions])
    # Grouped-query attention with one KV head: the heads of a layer share W_V, not W_O.
    other = ov_circuit(gemma, layer, 0)
    assert torch.equal(other.A, ov_circuit(gemma, layer, head).A)
    assert not torch.allclose(other.AB, dense)
    tokens = torch.tensor([2, 1000, 200_000])
    expected = gemma.W_E[tokens] @ dense @ gemma.W_U[:, tokens]
    assert torch.allclose(full_ov_circuit(gemma, layer, head, tokens), expected, rtol=1e-4, atol=1e-4)
