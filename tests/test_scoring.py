"""Batched target scoring against slow references: a per-prompt full-logits loop in TL, and plain
transformers on the real Gemma-3-270m."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from lca_interp import scoring, shared_prefixes
from lca_interp.facts import Fact, load_counterfact
from lca_interp.pretrained import load_model
from lca_interp.prompts import hijack_sentence, hijacked_prompt
from lca_interp.scoring import (
    encode_prompt,
    encode_target,
    hijack_requests,
    hijack_scores,
    next_token_log_probs,
    score_targets,
    target_log_probs,
)
from lca_interp.shared_prefixes import Stems, covering_rows, even_chunks, padding_chunks

COUNTERFACT = Path(__file__).resolve().parents[2] / "shared" / "data" / "counterfact" / "counterfact.json"

PROMPTS = [
    "The Eiffel Tower is located in the city of",
    "Do not think of Chicago. Do not think of Chicago. The Eiffel Tower is located in the city of",
    "The mother tongue of Danielle Darrieux is",
    "Toko Yasuda, the",
    "The capital of France is",
]
TARGETS = ["Paris", "Chicago", "French", "guitar player and singer", "Port of Spain"]
EIFFEL = Fact.from_template("{} is located in the city of", "The Eiffel Tower", "Paris", "Chicago", case_id="e")


def slow_log_prob(model, prompt: str, target: str) -> float:
    """One prompt at a time, full logits over the whole sequence, summed token by token."""
    prompt_ids, target_ids = encode_prompt(model, prompt), encode_target(model, target)
    tokens = torch.tensor([prompt_ids + target_ids])
    with torch.no_grad():
        log_probs = model(tokens)[0].double().log_softmax(-1)
    return sum(float(log_probs[len(prompt_ids) - 1 + j, t]) for j, t in enumerate(target_ids))


@pytest.fixture(scope="module")
def gpt2(gpt2_folder):
    return load_model(gpt2_folder)


@pytest.mark.parametrize("batch_size", [1, 2, 16])
def test_batched_scores_equal_the_slow_loop(gpt2, batch_size):
    assert any(len(encode_target(gpt2, t)) > 1 for t in TARGETS)  # multi-token targets covered
    fast = target_log_probs(gpt2, PROMPTS, TARGETS, batch_size=batch_size)
    slow = torch.tensor([slow_log_prob(gpt2, p, t) for p, t in zip(PROMPTS, TARGETS)], dtype=torch.float64)
    assert torch.allclose(fast, slow, atol=1e-4, rtol=0)


@pytest.mark.parametrize("batch_size", [1, 3])
def test_rows_run_from_a_shared_stem_score_as_if_run_whole(gpt2, batch_size, monkeypatch):
    """A fact behind k = 1..3 hijack sentences with every target, as one group: one stem, and rows
    that share from one sentence up to the whole prompt with it, some reading inside that part."""
    hijacked = [hijacked_prompt(EIFFEL, "generic", k) for k in (1, 2, 3)]
    prompts, targets = [p for p in hijacked for _ in TARGETS], TARGETS * len(hijacked)
    stems_used = []
    monkeypatch.setattr(scoring, "stem_streams", lambda *a, **kw: stems_used.append(a[2]) or real_stem_streams(*a, **kw))
    shared = score_targets(gpt2, prompts, targets, batch_size=batch_size, groups=[0] * len(prompts))
    slow = torch.tensor([slow_log_prob(gpt2, p, t) for p, t in zip(prompts, targets)], dtype=torch.float64)
    (stems,) = stems_used
    first_sentence = len(encode_prompt(gpt2, hijack_sentence(EIFFEL, "generic")))
    assert len(stems.stems) == 1 and min(stems.shared.values()) == first_sentence
    assert max(stems.shared.values()) >= len(encode_prompt(gpt2, hijacked[-1]))
    assert torch.allclose(shared.log_prob, slow, atol=1e-4, rtol=0)


real_stem_streams = scoring.stem_streams


def test_under_hooks_every_row_runs_whole(gpt2, monkeypatch):
    monkeypatch.setattr(scoring, "stem_streams", lambda *a, **kw: pytest.fail("stems used under a hook"))
    with gpt2.hooks(fwd_hooks=[("blocks.0.hook_resid_pre", lambda x, hook: x)]):
        hooked = target_log_probs(gpt2, PROMPTS, TARGETS)
    monkeypatch.undo()
    assert torch.allclose(hooked, target_log_probs(gpt2, PROMPTS, TARGETS), atol=1e-4, rtol=0)


@pytest.mark.parametrize("cap", [None, 5.0])
def test_blockwise_log_probs_equal_a_whole_log_softmax(gpt2, monkeypatch, cap):
    """Blocks that do not divide GPT-2's 50,257 entries, with and without an output softcap: the
    running logsumexp gives log_softmax(softcap(x W_U + b_U)) at the target, written out whole."""
    monkeypatch.setattr(scoring, "VOCAB_BLOCK_CPU", 4000)
    monkeypatch.setattr(gpt2.cfg, "output_logits_soft_cap", cap)
    torch.manual_seed(0)
    normalized, next_ids = 3 * torch.randn(7, gpt2.cfg.d_model), torch.randint(0, gpt2.cfg.d_vocab, (7,))
    logits = normalized.double() @ gpt2.unembed.W_U.double() + gpt2.unembed.b_U.double()
    if cap is not None:
        logits = cap * torch.tanh(logits / cap)
    expected = logits.log_softmax(-1)[torch.arange(7), next_ids]
    with torch.no_grad():
        got = next_token_log_probs(gpt2, normalized, next_ids)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), expected, rtol=0, atol=2e-5)


def test_facts_whose_hijack_context_is_the_same_share_one_group():
    willis = Fact.from_template("{} is located in the city of", "The Willis Tower", "Chicago", "Paris")
    louvre = Fact.from_template("{} is located in the city of", "The Louvre", "Paris", "Chicago")
    prompts, targets, groups = hijack_requests([EIFFEL, willis, louvre], "generic", 2)
    assert len(prompts) == len(targets) == len(groups) == 3 * 3 * 2
    assert groups[:6] == [groups[0]] * 2 + [groups[2]] * 2 + [groups[0]] * 2 and groups[0] != groups[2]
    assert groups[0] == "Do not think of Chicago. Do not think of Chicago."
    assert prompts[6 * 2 : 6 * 2 + 2] == [hijacked_prompt(EIFFEL, "generic", 2)] * 2 and targets[12:14] == ["Paris", "Chicago"]


@pytest.mark.parametrize("batch_size, stems_per_block", [(1, 16), (2, 1)])
def test_stems_shared_across_facts_and_batches_score_as_if_run_whole(gpt2, monkeypatch, batch_size, stems_per_block):
    """Facts sharing a hijack context read their rows off another fact's stem; stems span several
    batches (and, with one stem per block, several blocks): every score equals the slow loop."""
    monkeypatch.setattr(shared_prefixes, "STEMS_PER_BLOCK", stems_per_block)
    willis = Fact.from_template("{} is located in the city of", "The Willis Tower", "Chicago", "Paris")
    facts = [EIFFEL, willis, Fact.from_template("The mother tongue of {} is", "Danielle Darrieux", "French", "Chicago"),
             Fact.from_template("{}, the", "Toko Yasuda", "guitar player and singer", "Paris")]
    stems_used = []
    monkeypatch.setattr(scoring, "stem_streams", lambda *a, **kw: stems_used.append(a[2]) or real_stem_streams(*a, **kw))
    scores = hijack_scores(gpt2, facts, "generic", 3, batch_size=batch_size)
    prompts, targets, _ = hijack_requests(facts, "generic", 3)
    slow = torch.tensor([slow_log_prob(gpt2, p, t) for p, t in zip(prompts, targets)], dtype=torch.float64)
    # Rows are read off two stems, one per context: "Chicago" (three facts) and "Paris". (GPT-2
    # prepends no BOS, so a k = 0 row shares no token with them and runs as a stem of its own.)
    assert len(set(stems_used[0].stem_of.values())) == 2
    torch.testing.assert_close(scores.log_prob.flatten(), slow, rtol=0, atol=1e-4)


def test_even_chunks_are_fewest_and_balanced():
    for n in range(0, 40):
        for cap in (1, 3, 4, 16):
            chunks = even_chunks(list(range(n)), cap)
            sizes = [len(c) for c in chunks]
            assert [x for c in chunks for x in c] == list(range(n))
            assert len(chunks) == -(-n // cap) and all(0 < size <= cap for size in sizes)
            assert not sizes or max(sizes) - min(sizes) <= 1


def test_padding_chunks_reach_the_fewest_token_slots_of_any_cut():
    """Against every way of cutting the length-sorted rows into consecutive chunks of ≤ cap."""
    import itertools

    generator = torch.Generator().manual_seed(0)
    for n, cap, overhead in [(1, 4, 16), (6, 3, 0), (7, 4, 5), (8, 8, 16), (8, 2, 1)]:
        lengths = torch.randint(1, 30, (n,), generator=generator).tolist()
        items = [f"row{i}" for i in range(n)]
        chunks = padding_chunks(items, lengths, cap, overhead)
        assert sorted(x for c in chunks for x in c) == sorted(items) and all(0 < len(c) <= cap for c in chunks)
        length_of = dict(zip(items, lengths))
        cost = sum(len(c) * max(length_of[x] for x in c) + overhead for c in chunks)
        ordered = sorted(lengths, reverse=True)
        best = min(sum((b - a) * ordered[a] + overhead for a, b in zip((0, *cuts), (*cuts, n)))
                   for k in range(n) for cuts in itertools.combinations(range(1, n), k)
                   if all(b - a <= cap for a, b in zip((0, *cuts), (*cuts, n))))
        assert cost == best


def test_stems_are_the_longest_run_of_each_group_and_unshared_runs_stand_alone():
    runs = [(1, 2, 3), (1, 2, 3, 4, 5), (1, 2, 9), (7, 8), (4,)]
    stems = Stems.of(runs, ["a", "a", "a", "a", "b"])
    assert stems.stems == [1, 3, 4] and stems.stem_of == {0: 1, 2: 1} and stems.shared == {0: 3, 2: 2}


def test_covering_rows_reads_prefixes_off_longer_sequences():
    sequences = [(1, 2), (1, 2, 3), (1, 2), (4,), (1, 3), (1,), (4, 5, 6)]
    runs, run_of = covering_rows(sequences)
    assert sorted(runs) == [(1, 2, 3), (1, 3), (4, 5, 6)]
    for sequence, run in zip(sequences, run_of):
        assert runs[run][: len(sequence)] == sequence


@pytest.mark.parametrize("batch_size", [1, 3])
def test_requests_sharing_a_row_score_like_separate_runs(gpt2, batch_size):
    """Both targets of a fact, a repeated request and a prefix request share rows; each score still
    equals its own slow full-logits run."""
    prompts = [PROMPTS[0]] * 4 + [PROMPTS[1], PROMPTS[0]]
    targets = ["Paris", "Paris Hilton", "Chicago", "Paris", "Chicago", "guitar player and singer"]
    fast = target_log_probs(gpt2, prompts, targets, batch_size=batch_size)
    slow = torch.tensor([slow_log_prob(gpt2, p, t) for p, t in zip(prompts, targets)], dtype=torch.float64)
    assert torch.allclose(fast, slow, atol=1e-4, rtol=0)
    assert fast[0] == fast[3]


def test_scores_are_log_probabilities_of_whole_targets(gpt2):
    """P(" Paris") + P(" Paris" continued by anything) ≤ 1, and a longer target is less likely than
    its own first token."""
    scores = target_log_probs(gpt2, [PROMPTS[0]] * 2, ["Paris", "Paris Hilton"])
    assert scores[0] <= 0 and scores[1] < scores[0]


def test_bad_input_is_refused(gpt2):
    with pytest.raises(ValueError, match="2 prompts but 1 targets"):
        target_log_probs(gpt2, PROMPTS[:2], TARGETS[:1])
    with pytest.raises(ValueError, match="longer than the model's context of 128"):
        target_log_probs(gpt2, ["Do not think of Chicago. " * 40], ["Paris"])
    with pytest.raises(ValueError, match="batch_size"):
        target_log_probs(gpt2, PROMPTS[:1], TARGETS[:1], batch_size=0)


@pytest.mark.skipif(not COUNTERFACT.exists(), reason="../shared/data is not beside the checkout")
@pytest.mark.parametrize("name", ["google/gemma-3-270m", "HuggingFaceTB/SmolLM2-135M-Instruct"])
def test_real_model_scores_equal_plain_transformers_on_counterfact(name, request):
    """The issue's check: on 10 CounterFact records, behind k = 0 and k = 2 generic sentences,
    both targets: log P from the project equals transformers on the same dequantized weights,
    with the text tokenized by the model's own tokenizer (BOS as it has it) as one string. The
    reference reads the weights from the GGUF itself; its config and tokenizer are transformers'
    own readings of the GGUF, kept in the converted cache (parsing the metadata again costs a
    minute on Gemma)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from lca_interp.pretrained import OFFLINE_MODELS, default_cache_dir
    from lca_interp.pretrained.convert import cache_folder
    from lca_interp.pretrained.registry import gguf_path

    offline = OFFLINE_MODELS[name]
    if importlib.util.find_spec(offline.package.replace("-", "_")) is None:
        pytest.skip(f"{offline.package} is not installed")
    model = request.getfixturevalue({"google/gemma-3-270m": "gemma"}.get(name, "smollm2"))  # converts if needed
    assert model.cfg.default_prepend_bos is offline.prepends_bos
    facts = load_counterfact(COUNTERFACT, limit=10).facts
    pairs = [(hijacked_prompt(f, "generic", k), target) for k in (0, 2) for f in facts for target in (f.target_true, f.target_false)]
    gguf, cached = gguf_path(offline), cache_folder(offline, True, default_cache_dir())
    config = AutoConfig.from_pretrained(cached / "hf_config")
    reference = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, config=config, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(cached / "tokenizer")
    tokenizer.add_bos_token = offline.prepends_bos  # the hub tokenizer's convention
    expected = []
    for prompt, target in pairs:
        n_prompt, ids = len(tokenizer(prompt)["input_ids"]), tokenizer(f"{prompt} {target}")["input_ids"]
        with torch.no_grad():  # logits only where the target is read
            logits = reference(torch.tensor([ids]), logits_to_keep=len(ids) - n_prompt + 1).logits[0, :-1].double()
        expected.append(float(logits.log_softmax(-1).gather(1, torch.tensor(ids[n_prompt:])[:, None]).sum()))
    ours = target_log_probs(model, [p for p, _ in pairs], [t for _, t in pairs], batch_size=8)
    torch.testing.assert_close(ours, torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-3)


