"""Direct logit attribution adds up to the model's own logit difference (toy, GPT-2 with and
without weight processing, Gemma with its post-norms), and the logit lens ends at the model's
output distribution."""

from __future__ import annotations

import pytest
import torch
from conftest import needs_gemma

from lca_interp.hooks.attribution import direct_logit_attribution
from lca_interp.hooks.lens import logit_lens
from lca_interp.pretrained import load_model

PROMPTS = ["The Eiffel Tower is located in the city of", "Do not think of Chicago. The Eiffel Tower is in the city of"]


def last_logits(model, prompts) -> torch.Tensor:
    """The model's own last-position logits, one prompt at a time (no padding involved)."""
    with torch.no_grad():
        return torch.stack([model(model.to_tokens(p))[0, -1] for p in prompts])


def assert_adds_up(model, prompts, a, b):
    attribution = direct_logit_attribution(model, prompts, a, b)
    logits = last_logits(model, prompts)
    a_id, b_id = model.to_single_token(" " + a), model.to_single_token(" " + b)
    expected = logits[:, a_id] - logits[:, b_id]
    total = attribution.contributions.sum(1)
    scale = expected.abs().clamp_min(1.0)  # relative 1e-4, absolute below a difference of 1
    assert bool(((attribution.logit_diff - expected).abs() / scale < 1e-4).all()), (attribution.logit_diff, expected)
    assert bool(((total - expected).abs() / scale < 1e-4).all()), (total, expected)
    assert len(set(attribution.labels)) == len(attribution.labels)
    return attribution


@pytest.mark.parametrize("processing", [True, False])
def test_gpt2_contributions_add_up_to_the_logit_difference(gpt2_folder, processing):
    model = load_model(gpt2_folder, processing=processing)
    if not processing:  # GPT-2 initialises LayerNorm biases at zero: give the final one a value to carry
        bias = next(p for name, p in model.ln_final.named_parameters() if name.endswith("bias"))
        with torch.no_grad():
            bias.copy_(torch.randn(bias.shape, generator=torch.Generator().manual_seed(0)))
    attribution = assert_adds_up(model, PROMPTS, "Paris", "Chicago")
    assert attribution.heads().shape == (2, model.cfg.n_layers, model.cfg.n_heads)
    assert ("final norm bias" in attribution.labels) == (not processing)  # folded into W_U when processed


def test_single_target_attribution_adds_up_to_its_logit(gpt2_folder):
    model = load_model(gpt2_folder, processing=False)
    attribution = direct_logit_attribution(model, PROMPTS, "Paris")
    expected = last_logits(model, PROMPTS)[:, model.to_single_token(" Paris")]
    assert torch.allclose(attribution.contributions.sum(1), expected, rtol=1e-4, atol=1e-4)


def test_gpt2_head_contribution_by_hand(gpt2_folder):
    """One head: z W_O, centred, divided by ln_final's scale on this run, read along ΔW_U."""
    model = load_model(gpt2_folder)
    a, b = model.to_single_token(" Paris"), model.to_single_token(" Chicago")
    with torch.no_grad():
        _, cache = model.run_with_cache(model.to_tokens(PROMPTS[0]))
        head = cache["blocks.1.attn.hook_z"][0, -1, 2] @ model.blocks[1].attn.W_O[2]
        head = (head - head.mean()) / cache["ln_final.hook_scale"][0, -1]
        expected = head @ (model.W_U[:, a] - model.W_U[:, b])
    attribution = direct_logit_attribution(model, PROMPTS[0], a, b)
    assert attribution.mean()["L1H2"] == pytest.approx(float(expected), rel=1e-4, abs=1e-6)


def test_toy_attribution_is_the_head_alone(make_toy, randomize):
    toy = randomize(make_toy(d_vocab=16, d_model=8, n_ctx=8))
    x = torch.randint(16, (5, 8), generator=torch.Generator().manual_seed(0))
    attribution = direct_logit_attribution(toy, x, 3, 7)
    assert attribution.labels == ["L0H0", "L0 attn bias", "unembed bias"]  # no residual: no embed term
    logits = toy(x)[:, -1]
    assert torch.allclose(attribution.contributions.sum(1), logits[:, 3] - logits[:, 7], atol=1e-5)


def test_bad_targets_are_refused(gpt2_folder):
    model = load_model(gpt2_folder)
    with pytest.raises(ValueError, match="3 targets for 2 prompts"):
        direct_logit_attribution(model, PROMPTS, [1, 2, 3], 0)
    with pytest.raises(ValueError, match="target ids must lie"):
        direct_logit_attribution(model, PROMPTS, 10**7, 0)


def test_logit_lens_ends_at_the_output_and_starts_at_the_embedding(gpt2_folder):
    model = load_model(gpt2_folder)
    lens = logit_lens(model, PROMPTS, ["Paris", "Chicago"])
    assert lens.stages == ["embed", "L0", "L1"] and lens.probabilities.shape == (2, 3, 2)
    ids = [model.to_single_token(" Paris"), model.to_single_token(" Chicago")]
    output = last_logits(model, PROMPTS).softmax(-1)
    assert torch.allclose(lens.probabilities[:, -1], output[:, ids], rtol=1e-4, atol=1e-7)
    assert torch.equal(lens.top_tokens[:, -1], output.argmax(-1))
    _, cache = model.run_with_cache(model.to_tokens(PROMPTS[0]))
    embed = model.ln_final(cache["blocks.0.hook_resid_pre"][:, -1:]) @ model.W_U + model.b_U
    assert torch.allclose(lens.probabilities[0, 0], embed[0, -1].softmax(-1)[ids], rtol=1e-4, atol=1e-7)


@needs_gemma
def test_gemma_contributions_add_up_through_its_post_norms(gemma):
    attribution = assert_adds_up(gemma, PROMPTS, "Paris", "Chicago")
    assert attribution.logit_diff[0] > 0 > attribution.logit_diff[1]  # Paris, then hijacked to Chicago
    lens = logit_lens(gemma, PROMPTS[:1], ["Paris"])
    assert lens.probabilities[0, -1, 0] > 0.5 and lens.probabilities[0, 0, 0] < 0.01


@pytest.mark.parametrize("d", [8, 7])
def test_a_norm_is_read_as_the_affine_map_it_is(d):
    """`norm_as_affine` against the modules' own parameters: LayerNorm centres and has a bias,
    RMSNorm neither; an odd width reads its last coordinate too."""
    from lca_interp.hooks.model import norm_as_affine

    gen = torch.Generator().manual_seed(d)
    layer_norm, rms_norm = torch.nn.LayerNorm(d), torch.nn.RMSNorm(d)
    with torch.no_grad():
        for parameter in [*layer_norm.parameters(), *rms_norm.parameters()]:
            parameter.copy_(torch.randn(d, generator=gen))
    centres, weight, bias = norm_as_affine(layer_norm)
    assert centres
    torch.testing.assert_close(weight, layer_norm.weight.double().detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(bias, layer_norm.bias.double().detach(), atol=1e-5, rtol=1e-5)
    centres, weight, bias = norm_as_affine(rms_norm)
    assert not centres and bias.abs().max() < 1e-6
    torch.testing.assert_close(weight, rms_norm.weight.double().detach(), atol=1e-5, rtol=1e-5)
