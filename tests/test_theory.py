"""Paper A's constructions and measurements against slow references and known results."""

from __future__ import annotations

import math

import pytest
import torch

from lca_interp import theory
from lca_interp.hooks.attention import class_attention_matrix
from lca_interp.task import LCATask, hamming_distances
from lca_interp.training import evaluate


def slow_constructed_value_matrix(W_E: torch.Tensor, task: LCATask) -> torch.Tensor:
    """Eq 5.1 term by term, in the paper's column convention, then transposed to TL's."""
    E = W_E.double().T  # [d, V]: column t is token t's embedding
    d, V = E.shape
    W_V = torch.zeros(d, d, dtype=torch.float64)
    for t in range(V):
        for t2 in range(V):
            in_neighbourhood = bool(task.mask[t, t2])
            hamming_one = bin(t ^ t2).count("1") == 1
            if in_neighbourhood and hamming_one:
                W_V += torch.outer(E[:, t], E[:, t2])
    return W_V.T


@pytest.mark.parametrize("neighbourhood", ["all", "hamming1", "cluster1", "cluster2"])
@pytest.mark.parametrize("d", [5, 12])
def test_eq51_construction_matches_slow_loop(neighbourhood, d):
    task = LCATask(m=3, context_len=4, neighbourhood=neighbourhood)
    W_E = torch.randn(8, d, generator=torch.Generator().manual_seed(d), dtype=torch.float64)
    built = theory.constructed_value_matrix(W_E, task)
    assert torch.allclose(built, slow_constructed_value_matrix(W_E, task), atol=1e-10)


def test_eq51_with_orthonormal_embeddings_maps_each_token_to_its_hamming1_neighbours():
    """u_t W_V = Σ_{s : t ∈ N_1(s)} u_s: reading t writes every token that has t as a neighbour."""
    task = LCATask(m=3, context_len=4)
    W_E = theory.orthonormal_embeddings(8, 10, seed=0)
    W_V = theory.constructed_value_matrix(W_E, task)
    readout = W_E @ W_V @ W_E.T  # [V, V]: row t = logits written when t is read
    expected = (hamming_distances(3) == 1).float()
    assert torch.allclose(readout, expected, atol=1e-5)


def test_random_partners_keep_counts_exclude_self_and_follow_the_seed():
    task = LCATask(m=4, context_len=4, neighbourhood="cluster1")
    partners = theory.hamming1_partners(task)
    random = theory.random_partners(partners, seed=3)
    assert torch.equal(random.sum(1), partners.sum(1))
    assert not random.diagonal().any()
    assert torch.equal(random, theory.random_partners(partners, seed=3))
    assert not torch.equal(random, theory.random_partners(partners, seed=4))
    assert not torch.equal(random, partners)


def test_orthonormal_embeddings_are_orthonormal_and_need_d_at_least_v():
    W_E = theory.orthonormal_embeddings(16, 20, seed=1)
    assert torch.allclose(W_E @ W_E.T, torch.eye(16), atol=1e-5)
    with pytest.raises(ValueError):
        theory.orthonormal_embeddings(16, 15, seed=1)


def test_lemma2_exhaustively_z_star_always_attains_the_maximal_logit():
    """Every context of m = 3, L = 3 under N = Hamming-1, ω = 1 (each token a neighbour of z*).

    The constructed W_V gives z* the largest logit on every one of them; the maximum is shared
    only when all context tokens are common neighbours of z* and another output y, and then the
    task itself cannot tell z* from y (their likelihoods are equal).
    """
    import itertools

    m, L = 3, 3
    task = LCATask(m=m, omega=1.0, context_len=L, neighbourhood="hamming1")
    model = theory.theorem1_toy(task, 8, "constructed", seed=0)
    contexts, outputs = [], []
    for z_star in range(8):
        neighbours = task.mask[z_star].nonzero().flatten().tolist()
        for context in itertools.product(neighbours, repeat=L):
            contexts.append(context)
            outputs.append(z_star)
    x, y = torch.tensor(contexts), torch.tensor(outputs)
    logits = model(x, last_position_only=True)
    best = logits.max(-1).values
    assert torch.all(logits[torch.arange(len(y)), y] >= best - 1e-5)
    tied = ((logits >= best[:, None] - 1e-5).sum(-1) > 1)
    indistinguishable = (task.log_likelihood(x) >= task.log_likelihood(x).max(-1, keepdim=True).values - 1e-9).sum(-1) > 1
    assert torch.equal(tied, indistinguishable)


def test_lemma2_constructed_value_matrix_has_error_zero_identity_does_not():
    """N = Hamming-1, ω = 1, orthonormal W_E, W_K = W_Q = 0: exactly 0 errors in 20,000 samples
    (at m = 5, L = 32 an indistinguishable context has probability below 1e-11)."""
    task = LCATask(m=5, omega=1.0, context_len=32, neighbourhood="hamming1")
    x, y = task.sample(20_000, seed=0)
    constructed = theory.theorem1_toy(task, 32, "constructed", seed=0)
    identity = theory.theorem1_toy(task, 32, "identity", seed=0)
    assert evaluate(constructed, x, y)[0] == 1.0
    # z* never appears in its own context under ω = 1, so W_V = I never scores it highest.
    assert evaluate(identity, x, y)[0] < 0.5


def test_theorem1_error_falls_with_context_length():
    errors = []
    for L in (4, 32, 256):
        task = LCATask(m=3, omega=1.0, context_len=L, neighbourhood="all")
        x, y = task.sample(4000, seed=L)
        errors.append(1 - evaluate(theory.theorem1_toy(task, 8, "constructed", seed=0), x, y)[0])
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.01


def test_theorem1_toy_attends_uniformly():
    task = LCATask(m=3, omega=1.0, context_len=6)
    model = theory.theorem1_toy(task, 8, seed=0)
    _, cache = model.run_with_cache(task.sample(3, seed=0)[0])
    assert torch.allclose(cache["blocks.0.attn.hook_pattern"], torch.full((3, 1, 6, 6), 1 / 6))


def test_principal_angle_is_zero_with_itself_and_right_angle_with_orthogonal_complement():
    gen = torch.Generator().manual_seed(0)
    basis, _ = torch.linalg.qr(torch.randn(12, 12, generator=gen, dtype=torch.float64))
    A = basis[:, :4] @ torch.diag(torch.tensor([4.0, 3.0, 2.0, 1.0], dtype=torch.float64)) @ basis[:, 4:8].T
    B = basis[:, 6:10] @ basis[:, :4].T  # column space spanned by basis[:, 6:10], orthogonal to A's
    assert theory.smallest_principal_angle(A, A, 4) == pytest.approx(0.0, abs=1e-6)
    assert theory.smallest_principal_angle(A, 5 * A + 0, 4) == pytest.approx(0.0, abs=1e-6)
    assert theory.smallest_principal_angle(A, B, 4) == pytest.approx(math.pi / 2, abs=1e-6)


def test_principal_angle_uses_only_the_top_k_directions():
    gen = torch.Generator().manual_seed(1)
    basis, _ = torch.linalg.qr(torch.randn(10, 10, generator=gen, dtype=torch.float64))
    # Top direction e0 in A, but only the third-largest in B: rank-1 subspaces are orthogonal.
    A = basis[:, [0, 1]] @ torch.diag(torch.tensor([5.0, 1.0], dtype=torch.float64)) @ basis[:, [0, 1]].T
    B = basis[:, [2, 3, 0]] @ torch.diag(torch.tensor([5.0, 4.0, 1.0], dtype=torch.float64)) @ basis[:, [2, 3, 0]].T
    assert theory.smallest_principal_angle(A, B, 1) == pytest.approx(math.pi / 2, abs=1e-6)
    assert theory.smallest_principal_angle(A, B, 3) == pytest.approx(0.0, abs=1e-6)


def _factor(gram: torch.Tensor) -> torch.Tensor:
    """An embedding matrix W_E with W_E W_Eᵀ = gram (gram must be PSD)."""
    values, vectors = torch.linalg.eigh(gram)
    assert values.min() > -1e-9 * values.max(), "the synthetic Gram matrix must be PSD"
    values = torch.where(values > 1e-10 * values.max(), values, torch.zeros_like(values))  # round-off
    return vectors * values.sqrt()


@pytest.mark.parametrize("m", [3, 5, 6])
def test_lemma5_rank_bound_when_b_equals_b0(m):
    # b = b0 ≥ a·m/2 keeps b·11ᵀ − a·D positive semi-definite.
    a, b = 0.8, 0.8 * m / 2 + 0.3
    W_E = _factor(theory.eq52_gram(m, a, b, b0=b))
    singular = torch.linalg.svdvals(W_E)
    rank = int((singular > 1e-8 * singular[0]).sum())
    assert rank <= m + 2
    assert rank >= m  # the bound is not vacuous: the structure has about m directions


def test_eigengap_after_about_m_when_b0_exceeds_b():
    m = 6
    a, b = 0.8, 0.8 * m / 2 + 0.3
    W_E = _factor(theory.eq52_gram(m, a, b, b0=b + 0.05))  # small isotropic part on top
    found = theory.spectrum(W_E)
    assert m <= found.gap_after <= m + 2
    assert found.gap_ratio > 3


def test_geometry_fit_recovers_known_parameters():
    m, a, b, b0 = 5, 0.7, 2.5, 4.0
    W_E = _factor(theory.eq52_gram(m, a, b, b0))
    fit = theory.embedding_geometry(W_E.float(), m)
    assert fit.a == pytest.approx(a, rel=1e-4)
    assert fit.b == pytest.approx(b, rel=1e-4)
    assert fit.b0 == pytest.approx(b0, rel=1e-4)
    assert fit.r2 == pytest.approx(1.0, abs=1e-6)
    assert fit.mean_by_distance == pytest.approx([b0] + [b - a * k for k in range(1, m + 1)], rel=1e-4)


def test_geometry_fit_r2_drops_for_random_embeddings():
    W_E = torch.randn(32, 16, generator=torch.Generator().manual_seed(0))
    assert theory.embedding_geometry(W_E, 5).r2 < 0.1


def test_cluster_attention_measures_against_loops():
    task = LCATask(m=3, context_len=5, neighbourhood="cluster1")
    clusters = theory.cluster_ids(task, 2)
    assert clusters.tolist() == [int(f"{t:03b}"[:2], 2) for t in range(8)]
    x, _ = task.sample(6, seed=0)
    pattern = torch.softmax(torch.randn(6, 5, generator=torch.Generator().manual_seed(0)), dim=-1)
    mass = theory.same_cluster_attention(pattern, x, clusters)
    for i in range(6):
        expected = sum(float(pattern[i, j]) for j in range(5) if clusters[x[i, j]] == clusters[x[i, -1]])
        assert float(mass[i]) == pytest.approx(expected, abs=1e-6)
    heat = class_attention_matrix(pattern, clusters[x], clusters[x[:, -1]], 4)
    present = torch.unique(clusters[x[:, -1]])
    assert torch.allclose(heat[present].sum(1), torch.ones(len(present)))
    row = int(clusters[x[0, -1]])
    rows = [i for i in range(6) if clusters[x[i, -1]] == row]
    expected_row = torch.zeros(4)
    for i in rows:
        for j in range(5):
            expected_row[clusters[x[i, j]]] += pattern[i, j] / len(rows)
    assert torch.allclose(heat[row], expected_row, atol=1e-6)


def test_with_value_matrix_replaces_only_w_v():
    task = LCATask(m=3, context_len=4)
    model = theory.theorem1_toy(task, 8, seed=0)
    W_V = torch.randn(8, 8)
    clone = theory.with_value_matrix(model, W_V)
    assert torch.equal(clone.W_V[0, 0], W_V)
    assert torch.equal(clone.W_E, model.W_E)
    assert not torch.equal(model.W_V[0, 0], W_V)
