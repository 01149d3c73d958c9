"""The LCA task: latent space, neighbourhoods, sampler, exact likelihood, Bayes ceiling, config.

Everything is checked against slow, independent Python definitions written from the paper's text
(bit strings, sets, per-token loops), or statistically against the distribution it should follow.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare

from lca_interp.task import LCATask, hamming_distances, latent_bits, mix_contexts, neighbourhood_mask

P_MIN = 1e-3  # chi-square acceptance threshold


# ---------------------------------------------------------------------- slow reference definitions


def bitstring(t: int, m: int) -> str:
    return format(t, f"0{m}b")


def slow_hamming(a: int, b: int, m: int) -> int:
    return sum(x != y for x, y in zip(bitstring(a, m), bitstring(b, m)))


def slow_neighbourhood(m: int, name: str, z_star: int) -> set[int]:
    """N(z*) from its set definition in the paper."""
    s_star = bitstring(z_star, m)
    members = set()
    for z in range(2**m):
        if z == z_star:
            continue
        s = bitstring(z, m)
        if (
            name == "all"
            or (name == "hamming1" and slow_hamming(z, z_star, m) == 1)
            or (name == "cluster1" and s[0] == s_star[0])
            or (name == "cluster2" and s[:2] == s_star[:2])
        ):
            members.add(z)
    return members


def slow_distributions(
    m: int, omega: float, beta: float, neighbourhoods: list[set[int]]
) -> tuple[list[list[float]], list[list[float]]]:
    """(π, p) as nested lists from the formulas: π ∝ exp(-D_H/β) on N(z*), p = ωπ + (1-ω)/V."""
    V = 2**m
    pi, p = [], []
    for z_star in range(V):
        weights = [
            math.exp(-slow_hamming(z, z_star, m) / beta) if z in neighbourhoods[z_star] else 0.0
            for z in range(V)
        ]
        total = sum(weights)
        pi.append([w / total for w in weights])
        p.append([omega * w / total + (1 - omega) / V for w in weights])
    return pi, p


def slow_log_likelihood(
    pi: list[list[float]], p: list[list[float]], x: torch.Tensor
) -> torch.Tensor:
    """log p(x | y) for every y by a loop over samples, candidates and tokens."""

    def log(value: float) -> float:
        return math.log(value) if value > 0 else -math.inf

    V = len(pi)
    rows = []
    for tokens in x.tolist():
        row = []
        for y in range(V):
            total = sum(log(p[y][t]) for t in tokens[:-1]) + log(pi[y][tokens[-1]])
            row.append(total)
        rows.append(row)
    return torch.tensor(rows, dtype=torch.float64)


def assert_same_log_likelihood(fast: torch.Tensor, slow: torch.Tensor) -> None:
    assert fast.dtype == torch.float64
    assert fast.shape == slow.shape
    assert torch.equal(torch.isneginf(fast), torch.isneginf(slow))
    assert not torch.isnan(fast).any() and not torch.isposinf(fast).any()
    finite = torch.isfinite(slow)
    torch.testing.assert_close(fast[finite], slow[finite], rtol=1e-10, atol=1e-9)


def exact_bayes_accuracy_omega0(task: LCATask) -> float:
    """With ω = 0 only t_L carries information: the exact accuracy of the Bayes rule on t_L."""
    pi = task.pi.tolist()
    V = task.vocab_size
    accuracy = 0.0
    for t in range(V):
        column = [pi[y][t] for y in range(V)]
        best = max(column)
        winners = [y for y in range(V) if column[y] >= best - 1e-12]
        accuracy += sum(pi[y][t] for y in winners) / V / len(winners)
    return accuracy


def counts_by_label(tokens: torch.Tensor, y: torch.Tensor, V: int) -> torch.Tensor:
    """counts[z*, t] = how often token t occurs in the given columns of samples with label z*."""
    counts = torch.zeros(V, V, dtype=torch.float64)
    rows = y[:, None].expand_as(tokens)
    ones = torch.ones(tokens.numel(), dtype=torch.float64)
    counts.index_put_((rows.reshape(-1), tokens.reshape(-1)), ones, accumulate=True)
    return counts


def conditional_chisquare(counts: torch.Tensor, probs: torch.Tensor) -> float:
    """p-value of a chi-square test of each row's counts against that row's distribution.

    Cells with zero probability are left out of the statistic (the caller asserts they are empty);
    the degrees of freedom are (cells - rows) because every row's total is conditioned on.
    """
    expected = counts.sum(dim=1, keepdim=True) * probs
    keep = probs > 0
    n_rows = int((counts.sum(dim=1) > 0).sum())
    return float(
        chisquare(counts[keep].numpy(), expected[keep].numpy(), ddof=n_rows - 1).pvalue
    )


def asymmetric_mask(m: int, seed: int = 0) -> torch.Tensor:
    """A random custom neighbourhood: no self, no empty row, and (almost surely) not symmetric,
    so that row/column mix-ups of π and p cannot hide behind the symmetry of the named ones."""
    V = 2**m
    gen = torch.Generator().manual_seed(seed)
    mask = torch.rand(V, V, generator=gen) < 0.35
    mask.fill_diagonal_(False)
    mask[torch.arange(V), (torch.arange(V) + 1) % V] = True
    assert not torch.equal(mask, mask.T)
    return mask


def neighbourhood_sets(m: int, name) -> list[set[int]]:
    if isinstance(name, str):
        return [slow_neighbourhood(m, name, z) for z in range(2**m)]
    return [set(row.nonzero().flatten().tolist()) for row in name]


# ---------------------------------------------------------------------- latent space


@pytest.mark.parametrize("m", range(1, 8))
def test_latent_bits_match_binary_strings(m):
    bits = latent_bits(m)
    assert bits.shape == (2**m, m)
    assert not bits.dtype.is_floating_point
    expected = torch.tensor([[int(c) for c in bitstring(t, m)] for t in range(2**m)])
    assert torch.equal(bits, expected)


@pytest.mark.parametrize("m", range(1, 7))
def test_hamming_distances_match_slow_loop(m):
    distances = hamming_distances(m)
    V = 2**m
    expected = torch.tensor([[slow_hamming(a, b, m) for b in range(V)] for a in range(V)])
    assert torch.equal(distances, expected)


@pytest.mark.parametrize("m", range(1, 6))
@pytest.mark.parametrize("name", ["all", "hamming1", "cluster1", "cluster2"])
def test_neighbourhood_mask_matches_set_definition(m, name):
    if name == "cluster2" and m < 2:
        with pytest.raises(ValueError):
            neighbourhood_mask(m, name)
        return
    mask = neighbourhood_mask(m, name)
    assert mask.dtype == torch.bool and mask.shape == (2**m, 2**m)
    assert not mask.diagonal().any()
    for z_star in range(2**m):
        got = set(mask[z_star].nonzero().flatten().tolist())
        assert got == slow_neighbourhood(m, name, z_star), (name, z_star)


def test_unknown_neighbourhood_name_raises():
    with pytest.raises(ValueError):
        neighbourhood_mask(3, "hamming2")


@pytest.mark.parametrize(
    "m, name, omega, beta",
    [
        (3, "all", 0.5, 1.0),
        (4, "hamming1", 0.3, 2.0),
        (4, "cluster1", 1.0, 0.5),
        (4, "cluster2", 0.0, 3.0),
        (4, asymmetric_mask(4), 0.6, 0.9),
    ],
    ids=["all", "hamming1", "cluster1", "cluster2", "custom"],
)
def test_pi_and_p_match_their_formulas(m, name, omega, beta):
    task = LCATask(m=m, omega=omega, beta=beta, context_len=4, neighbourhood=name)
    neighbourhoods = neighbourhood_sets(m, name)
    pi, p = slow_distributions(m, omega, beta, neighbourhoods)
    exact = dict(rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(task.pi, torch.tensor(pi, dtype=torch.float64), **exact)
    torch.testing.assert_close(task.p, torch.tensor(p, dtype=torch.float64), **exact)
    ones = torch.ones(2**m, dtype=torch.float64)
    torch.testing.assert_close(task.pi.sum(1), ones)
    torch.testing.assert_close(task.p.sum(1), ones)


@pytest.mark.parametrize("beta", [1e-3, 1e-4])
@pytest.mark.parametrize("name", ["all", "cluster1"])
def test_small_beta_gives_nearest_neighbour_distributions(beta, name):
    """β → 0: π(·|z*) becomes uniform on the members of N(z*) closest to z*. A positive finite β
    is accepted by validation, so π must stay a distribution (not 0/0) and the sampler must stay
    in range."""
    m = 3
    task = LCATask(m=m, omega=0.5, beta=beta, context_len=6, neighbourhood=name)
    V = 2**m
    expected = torch.zeros(V, V, dtype=torch.float64)
    for z_star in range(V):
        members = slow_neighbourhood(m, name, z_star)
        nearest = min(slow_hamming(z, z_star, m) for z in members)
        closest = [z for z in members if slow_hamming(z, z_star, m) == nearest]
        expected[z_star, closest] = 1.0 / len(closest)
    assert torch.isfinite(task.pi).all() and torch.isfinite(task.p).all()
    torch.testing.assert_close(task.pi, expected, rtol=0, atol=1e-12)
    x, y = task.sample(500, seed=0)
    assert x.min() >= 0 and x.max() < V
    assert torch.isfinite(task.log_likelihood(x).gather(1, y[:, None])).all()


# ---------------------------------------------------------------------- sampler


@pytest.mark.parametrize(
    "m, name",
    [(3, "all"), (3, "hamming1"), (3, "cluster1"), (4, "cluster2"), (4, asymmetric_mask(4))],
    ids=["all", "hamming1", "cluster1", "cluster2", "custom"],
)
def test_sampler_last_token_in_neighbourhood_and_tokens_in_range(m, name):
    task = LCATask(m=m, omega=0.7, beta=1.0, context_len=12, neighbourhood=name)
    x, y = task.sample(5000, seed=11)
    V = task.vocab_size
    assert x.shape == (5000, 12) and y.shape == (5000,)
    assert not x.dtype.is_floating_point and not y.dtype.is_floating_point
    assert x.min() >= 0 and x.max() < V and y.min() >= 0 and y.max() < V
    allowed = neighbourhood_sets(m, name)
    for last, label in zip(x[:, -1].tolist(), y.tolist()):
        assert last in allowed[label]
        assert last != label


def test_sampler_with_omega_one_keeps_context_in_neighbourhood():
    task = LCATask(m=4, omega=1.0, beta=1.0, context_len=10, neighbourhood="hamming1")
    x, y = task.sample(2000, seed=3)
    assert task.mask[y[:, None].expand_as(x), x].all()
    # Hamming-1 neighbours of z* differ from it in exactly one bit.
    assert ((x ^ y[:, None]).bitwise_and((x ^ y[:, None]) - 1) == 0).all()
    assert (x != y[:, None]).all()


def test_labels_are_uniform():
    task = LCATask(m=4, omega=0.5, beta=1.0, context_len=2)
    _, y = task.sample(20000, seed=5)
    counts = torch.bincount(y, minlength=16).double()
    assert chisquare(counts.numpy()).pvalue > P_MIN
    assert counts.min() > 0


@pytest.mark.parametrize(
    "m, name",
    [(3, "all"), (3, "hamming1"), (3, "cluster1"), (4, "cluster2"), (3, asymmetric_mask(3))],
    ids=["all", "hamming1", "cluster1", "cluster2", "custom"],
)
def test_sampled_frequencies_follow_p_and_pi(m, name):
    task = LCATask(m=m, omega=0.5, beta=1.0, context_len=16, neighbourhood=name)
    x, y = task.sample(20000, seed=2024)
    V = task.vocab_size
    context_counts = counts_by_label(x[:, :-1], y, V)
    last_counts = counts_by_label(x[:, -1:], y, V)
    assert (last_counts[task.pi == 0] == 0).all()  # never a zero-probability last token
    assert conditional_chisquare(context_counts, task.p) > P_MIN
    assert conditional_chisquare(last_counts, task.pi) > P_MIN


def test_chisquare_rejects_wrong_distributions():
    """Negative control: the same counts tested against π for another β, or p for another ω."""
    task = LCATask(m=3, omega=0.5, beta=1.0, context_len=16, neighbourhood="all")
    x, y = task.sample(20000, seed=2024)
    V = task.vocab_size
    last_counts = counts_by_label(x[:, -1:], y, V)
    context_counts = counts_by_label(x[:, :-1], y, V)
    other_beta = LCATask(m=3, omega=0.5, beta=2.0, context_len=16, neighbourhood="all")
    other_omega = LCATask(m=3, omega=0.3, beta=1.0, context_len=16, neighbourhood="all")
    assert conditional_chisquare(last_counts, task.pi) > P_MIN
    assert conditional_chisquare(last_counts, other_beta.pi) < P_MIN
    assert conditional_chisquare(context_counts, task.p) > P_MIN
    assert conditional_chisquare(context_counts, other_omega.p) < P_MIN


def test_same_seed_same_samples_and_generator_continues_stream(small_task):
    x1, y1 = small_task.sample(300, seed=7)
    x2, y2 = small_task.sample(300, seed=7)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    x3, _ = small_task.sample(300, seed=8)
    assert not torch.equal(x1, x3)

    gen = torch.Generator().manual_seed(7)
    a_x, a_y = small_task.sample(300, gen)
    b_x, b_y = small_task.sample(300, gen)  # continues the stream: a new draw
    assert torch.equal(a_x, x1) and torch.equal(a_y, y1)  # an int seed = a fresh generator
    assert not torch.equal(a_x, b_x)

    replay = torch.Generator().manual_seed(7)
    assert torch.equal(small_task.sample(300, replay)[0], a_x)
    assert torch.equal(small_task.sample(300, replay)[0], b_x)


@settings(max_examples=40, deadline=None)
@given(
    m=st.integers(1, 5),
    name=st.sampled_from(["all", "hamming1", "cluster1", "cluster2"]),
    omega=st.floats(0.0, 1.0),
    beta=st.floats(0.05, 20.0),
    context_len=st.integers(1, 12),
    batch=st.integers(1, 40),
    seed=st.integers(0, 2**31 - 1),
)
def test_sampler_invariants_property(m, name, omega, beta, context_len, batch, seed):
    if (name == "cluster1" and m < 2) or (name == "cluster2" and m < 3):
        with pytest.raises(ValueError):
            LCATask(m=m, omega=omega, beta=beta, context_len=context_len, neighbourhood=name)
        return
    task = LCATask(m=m, omega=omega, beta=beta, context_len=context_len, neighbourhood=name)
    x, y = task.sample(batch, seed)
    V = 2**m
    assert x.shape == (batch, context_len) and y.shape == (batch,)
    assert x.min() >= 0 and x.max() < V and y.min() >= 0 and y.max() < V
    allowed = [slow_neighbourhood(m, name, z) for z in range(V)]
    for tokens, label in zip(x.tolist(), y.tolist()):
        assert tokens[-1] in allowed[label]
        if omega == 1.0:
            assert all(t in allowed[label] for t in tokens)
    # Every sample is possible under its own label, and the posterior is a distribution.
    ll = task.log_likelihood(x)
    assert torch.isfinite(ll.gather(1, y[:, None])).all()
    torch.testing.assert_close(task.posterior(x).sum(-1), torch.ones(batch, dtype=torch.float64))
    x_again, y_again = task.sample(batch, seed)
    assert torch.equal(x, x_again) and torch.equal(y, y_again)


# ---------------------------------------------------------------------- exact likelihood


@pytest.mark.parametrize(
    "m, name, omega, beta, L",
    [
        (3, "all", 0.5, 1.0, 6),
        (3, "hamming1", 1.0, 1.0, 5),  # many impossible contexts: -inf
        (3, "all", 1.0, 0.7, 4),  # z* itself is impossible in the context
        (4, "cluster1", 0.2, 2.0, 7),
        (4, "cluster2", 0.9, 0.5, 3),
        (3, "hamming1", 0.6, 1.0, 1),  # last token only
        (3, asymmetric_mask(3), 0.7, 0.8, 5),  # π and p not symmetric
        (4, asymmetric_mask(4, seed=1), 1.0, 1.3, 4),
    ],
    ids=[
        "all", "hamming1-omega1", "all-omega1", "cluster1", "cluster2", "L=1", "custom",
        "custom-omega1",
    ],
)
def test_log_likelihood_matches_slow_loop(m, name, omega, beta, L):
    task = LCATask(m=m, omega=omega, beta=beta, context_len=L, neighbourhood=name)
    V = task.vocab_size
    neighbourhoods = neighbourhood_sets(m, name)
    pi, p = slow_distributions(m, omega, beta, neighbourhoods)
    gen = torch.Generator().manual_seed(0)
    arbitrary = torch.randint(V, (40, L), generator=gen)  # not sampled: impossible ones too
    sampled, _ = task.sample(40, seed=1)
    x = torch.cat([arbitrary, sampled])
    fast = task.log_likelihood(x)
    slow = slow_log_likelihood(pi, p, x)
    assert_same_log_likelihood(fast, slow)
    assert torch.isfinite(slow).any()
    if omega == 1.0 or not (isinstance(name, str) and name == "all"):
        assert torch.isneginf(slow).any()  # the -inf branch is exercised


@settings(max_examples=30, deadline=None)
@given(
    m=st.integers(1, 4),
    name=st.sampled_from(["all", "hamming1", "cluster1"]),
    omega=st.sampled_from([0.0, 0.25, 1.0]),
    beta=st.floats(0.1, 5.0),
    context_len=st.integers(1, 6),
    data=st.data(),
)
def test_log_likelihood_property(m, name, omega, beta, context_len, data):
    if name == "cluster1" and m < 2:
        return
    task = LCATask(m=m, omega=omega, beta=beta, context_len=context_len, neighbourhood=name)
    V = 2**m
    rows = data.draw(
        st.lists(
            st.lists(st.integers(0, V - 1), min_size=context_len, max_size=context_len),
            min_size=1,
            max_size=6,
        )
    )
    x = torch.tensor(rows)
    pi, p = slow_distributions(m, omega, beta, [slow_neighbourhood(m, name, z) for z in range(V)])
    assert_same_log_likelihood(task.log_likelihood(x), slow_log_likelihood(pi, p, x))


def test_log_likelihood_rejects_bad_input(small_task):
    with pytest.raises(ValueError):
        small_task.log_likelihood(torch.zeros(2, small_task.context_len + 1, dtype=torch.long))
    with pytest.raises(ValueError):
        small_task.log_likelihood(torch.full((2, small_task.context_len), 8))
    with pytest.raises(ValueError):
        small_task.log_likelihood(torch.full((2, small_task.context_len), -1))


# ---------------------------------------------------------------------- Bayes ceiling


def binomial_sigma(accuracy: float, n: int) -> float:
    return math.sqrt(max(accuracy * (1 - accuracy), 1e-4) / n)


def test_bayes_accuracy_with_omega_zero_does_not_depend_on_L():
    n = 20000
    accuracies = {}
    for L in (2, 32):
        task = LCATask(m=3, omega=0.0, beta=1.0, context_len=L, neighbourhood="all")
        x, y = task.sample(n, seed=100 + L)
        accuracies[L] = task.bayes_accuracy(x, y)
    exact = exact_bayes_accuracy_omega0(task)
    sigma = binomial_sigma(exact, n)
    assert abs(accuracies[2] - accuracies[32]) < 4 * math.sqrt(2) * sigma
    for accuracy in accuracies.values():
        assert abs(accuracy - exact) < 4 * sigma


def test_bayes_accuracy_with_omega_positive_rises_with_L():
    n = 20000
    accuracies = []
    for L in (2, 8, 32):
        task = LCATask(m=4, omega=0.5, beta=1.0, context_len=L, neighbourhood="all")
        x, y = task.sample(n, seed=200 + L)
        accuracies.append(task.bayes_accuracy(x, y))
    for short, long in zip(accuracies, accuracies[1:]):
        assert long > short + 8 * binomial_sigma(0.5, n)


def test_bayes_accuracy_beats_other_predictors():
    n = 20000
    task = LCATask(m=4, omega=0.5, beta=1.0, context_len=16, neighbourhood="all")
    x, y = task.sample(n, seed=9)
    bayes = task.bayes_accuracy(x, y)
    assert 0.0 <= bayes <= 1.0

    last = x[:, -1]
    context_mode = torch.mode(x[:, :-1], dim=1).values
    predictors = {
        "flip lowest bit of t_L": last ^ 1,
        "flip highest bit of t_L": last ^ (1 << (task.m - 1)),
        "t_L itself": last,
        "most frequent context token": context_mode,
        "posterior of a mis-specified task (ω=0.2, β=2)": LCATask(
            m=4, omega=0.2, beta=2.0, context_len=16
        ).bayes_predict(x),
        "ignore the last token": LCATask(m=4, omega=0.5, beta=1.0, context_len=15).bayes_predict(
            x[:, :-1]
        ),
    }
    for name, prediction in predictors.items():
        accuracy = (prediction == y).double().mean().item()
        assert bayes >= accuracy - 0.005, name
    # The deterministic Bayes rule and the tie-averaged ceiling agree up to sampling noise.
    deterministic = (task.bayes_predict(x) == y).double().mean().item()
    assert abs(deterministic - bayes) < 4 * binomial_sigma(bayes, n)
    # Calibration: the expected maximum posterior is the Bayes accuracy.
    confidence = task.posterior(x).max(dim=-1).values.mean().item()
    assert abs(confidence - bayes) < 4 * binomial_sigma(bayes, n)


@pytest.mark.parametrize("m", [3, 5, 8])
def test_bayes_predict_returns_lowest_token_among_ties(m):
    """With ω = 0 and N = all, the context is uninformative and π(t_L | y) is maximal exactly for
    the Hamming-1 neighbours y of t_L (the normaliser is the same for every y): a tie among m
    candidates, of which the documented rule returns the lowest."""
    task = LCATask(m=m, omega=0.0, beta=0.7, context_len=16, neighbourhood="all")
    x, _ = task.sample(2000, seed=0)
    last = x[:, -1]
    lowest_neighbour = torch.stack([last ^ (1 << i) for i in range(m)]).min(dim=0).values
    predicted = task.bayes_predict(x)
    mismatches = int((predicted != lowest_neighbour).sum())
    assert mismatches == 0, f"{mismatches} of {len(x)} predictions are not the lowest tied token"


def test_bayes_accuracy_is_one_when_the_context_determines_the_label():
    """ω = 1, Hamming-1 neighbourhoods, long contexts: all m neighbours seen ⇒ z* is known."""
    task = LCATask(m=3, omega=1.0, beta=1.0, context_len=48, neighbourhood="hamming1")
    x, y = task.sample(2000, seed=4)
    assert task.bayes_accuracy(x, y) == pytest.approx(1.0, abs=2e-3)
    assert task.bayes_accuracy(x, (y + 1) % 8) == pytest.approx(0.0, abs=2e-3)


# ---------------------------------------------------------------------- validation and config


def _custom_mask_with_empty_row() -> torch.Tensor:
    mask = neighbourhood_mask(3, "all").clone()
    mask[5] = False
    return mask


def _custom_mask_with_diagonal() -> torch.Tensor:
    mask = neighbourhood_mask(3, "hamming1").clone()
    mask[2, 2] = True
    return mask


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param(dict(m=0), id="m=0"),
        pytest.param(dict(m=13), id="m=13"),
        pytest.param(dict(m=3, omega=-0.1), id="omega=-0.1"),
        pytest.param(dict(m=3, omega=1.1), id="omega=1.1"),
        pytest.param(dict(m=3, omega=float("nan")), id="omega=nan"),
        pytest.param(dict(m=3, beta=0), id="beta=0"),
        pytest.param(dict(m=3, beta=-1), id="beta=-1"),
        pytest.param(dict(m=3, beta=0.0), id="beta=0.0"),
        pytest.param(dict(m=3, beta=float("inf")), id="beta=inf"),
        pytest.param(dict(m=3, context_len=0), id="context_len=0"),
        pytest.param(dict(m=2, neighbourhood="cluster2"), id="cluster2-m2-empty"),
        pytest.param(dict(m=1, neighbourhood="cluster1"), id="cluster1-m1-empty"),
        pytest.param(dict(m=3, neighbourhood="nearest"), id="unknown-name"),
        pytest.param(dict(m=3, neighbourhood=_custom_mask_with_empty_row()), id="mask-empty-row"),
        pytest.param(dict(m=3, neighbourhood=_custom_mask_with_diagonal()), id="mask-diagonal"),
        pytest.param(
            dict(m=3, neighbourhood=~torch.eye(4, dtype=torch.bool)),
            id="mask-wrong-shape",
        ),
        pytest.param(
            dict(m=3, neighbourhood=neighbourhood_mask(3, "all").long()), id="mask-not-bool"
        ),
    ],
)
def test_invalid_parameters_raise_value_error(kwargs):
    with pytest.raises(ValueError):
        LCATask(**kwargs)


def test_non_integer_m_is_rejected():
    # In production LCATask raises ValueError; under pytest the runtime type checker sees the
    # float against `m: int` first and raises its TypeError. Either way nothing is built.
    with pytest.raises((ValueError, TypeError)):
        LCATask(m=1.5)


def test_integer_valued_real_parameters_are_accepted():
    """omega = 1 and beta = 2 are valid values; writing them as ints must not change that."""
    task = LCATask(m=3, omega=1, beta=2, context_len=4, neighbourhood="hamming1")
    reference = LCATask(m=3, omega=1.0, beta=2.0, context_len=4, neighbourhood="hamming1")
    assert torch.equal(task.p, reference.p)


def test_sample_rejects_empty_batch(small_task):
    with pytest.raises(ValueError):
        small_task.sample(0, seed=0)


@pytest.mark.parametrize("name", ["all", "hamming1", "cluster1", "cluster2"])
def test_to_dict_from_dict_round_trip(name):
    task = LCATask(m=4, omega=0.25, beta=1.5, context_len=9, neighbourhood=name)
    data = json.loads(json.dumps(task.to_dict()))
    again = LCATask.from_dict(data)
    assert again.to_dict() == task.to_dict()
    assert again.neighbourhood_name == name
    assert torch.equal(again.mask, task.mask)
    assert torch.equal(again.pi, task.pi) and torch.equal(again.p, task.p)


def test_to_dict_from_dict_round_trip_custom_mask():
    gen = torch.Generator().manual_seed(1)
    mask = torch.rand(8, 8, generator=gen) < 0.4
    mask.fill_diagonal_(False)
    mask[torch.arange(8), (torch.arange(8) + 1) % 8] = True  # no empty row
    task = LCATask(m=3, omega=0.8, beta=0.5, context_len=5, neighbourhood=mask)
    assert task.neighbourhood_name == "custom"
    data = json.loads(json.dumps(task.to_dict()))
    assert isinstance(data["neighbourhood"], list)
    again = LCATask.from_dict(data)
    assert torch.equal(again.mask, mask)
    assert torch.equal(again.pi, task.pi) and torch.equal(again.p, task.p)
    assert again.to_dict() == task.to_dict()
    # The mask is copied: mutating the caller's tensor does not change the task.
    mask[0] = False
    assert again.mask[0].any() and task.mask[0].any()


def test_from_dict_rejects_unknown_fields():
    with pytest.raises(ValueError):
        LCATask.from_dict({"m": 3, "omega": 0.5, "temperature": 1.0})


def test_runtime_shape_checking_is_active_under_pytest():
    """pyproject turns on jaxtyping + beartype for lca_interp; a batch mismatch must be caught."""
    import jaxtyping

    with pytest.raises(jaxtyping.TypeCheckError):
        mix_contexts(torch.zeros(2, 5, dtype=torch.long), torch.zeros(3, 5, dtype=torch.long), 0.5)


@pytest.mark.parametrize("m, name", [(3, "all"), (4, "hamming1"), (4, "cluster1"), (5, "cluster2")])
def test_alias_tables_hold_exactly_the_offset_distributions(m, name):
    """A named neighbourhood looks the same from every z*, so one alias table per distribution
    serves every output; each column's mass, read back from the table, is V·P(offset)."""
    from lca_interp.task import XOR_ALIAS, _alias_table

    task = LCATask(m=m, omega=0.3, beta=0.7, context_len=8, neighbourhood=name)
    assert task.sampler == XOR_ALIAS
    tokens = torch.arange(task.vocab_size)
    for probs in (task.p, task.pi):  # row z* is row 0 read through z ↦ z ⊕ z*
        torch.testing.assert_close(probs[tokens[:, None], tokens[:, None] ^ tokens[None, :]], probs[0].expand_as(probs),
                                   rtol=0, atol=1e-15)
        threshold, alias = _alias_table(probs[0])
        mass = threshold.clone().index_add_(0, alias, 1 - threshold)
        torch.testing.assert_close(mass / task.vocab_size, probs[0], rtol=0, atol=1e-13)
        assert (threshold[probs[0] == 0] == 0).all() and (probs[0][alias] > 0).all()


def test_a_mask_that_differs_by_output_is_sampled_row_by_row():
    from lca_interp.task import ROW_CDF

    assert LCATask(m=3, context_len=4, neighbourhood=asymmetric_mask(3)).sampler == ROW_CDF
