"""The researcher's first REPL calls on the offline models: TL's tokenizer helpers, and the
probes on grouped-query attention (SmolLM2, Qwen2), q/k-normalised attention (Gemma 3) and
attention with query/key/value biases (Qwen2), with no architecture-specific code of ours."""

from __future__ import annotations

import pytest
import torch
from conftest import needs_gemma, needs_qwen, needs_smollm2
from transformer_lens.utilities import get_act_name

from lca_interp.hooks.attention import attention_mass, capture_patterns
from lca_interp.hooks.attribution import direct_logit_attribution
from lca_interp.hooks.circuits import ov_circuit, qk_circuit
from lca_interp.hooks.model import normalizes_queries_and_keys
from lca_interp.hooks.interventions import ablate_heads, mean_head_outputs

EIFFEL = "The Eiffel Tower is in"


@pytest.fixture(params=["gemma", "smollm2", "qwen"])
def model(request):
    mark = {"gemma": needs_gemma, "smollm2": needs_smollm2, "qwen": needs_qwen}[request.param]
    if mark.args[0]:
        pytest.skip(mark.kwargs["reason"])
    return request.getfixturevalue(request.param)


def test_tokenizer_helpers_work_as_written(model):
    tokens = model.to_tokens(EIFFEL)
    str_tokens = model.to_str_tokens(EIFFEL)
    assert len(str_tokens) == tokens.shape[1]
    assert "".join(str_tokens).endswith(EIFFEL) and (str_tokens[0] == model.tokenizer.bos_token) is model.cfg.default_prepend_bos
    assert model.to_str_tokens(tokens[0]) == str_tokens
    paris = model.to_single_token(" Paris")
    assert model.to_string(torch.tensor([paris])) == " Paris"
    assert model.to_string(tokens[0, int(model.cfg.default_prepend_bos):]) == EIFFEL


def test_bos_follows_the_models_own_tokenizer(model, request):
    assert model.cfg.default_prepend_bos is (request.node.callspec.params["model"] == "gemma")
    with torch.no_grad():
        logits = model(model.to_tokens("The Eiffel Tower is located in the city of"))[0, -1]
    assert logits.softmax(-1)[model.to_single_token(" Paris")] > 0.5  # SmolLM2 gives 0.30 if TL's default BOS is forced


def test_probes_run_and_add_up(model):
    prompts = [EIFFEL, "Do not think of Chicago. " + EIFFEL]
    attribution = direct_logit_attribution(model, prompts, " Paris", " Chicago")
    torch.testing.assert_close(attribution.contributions.sum(1), attribution.logit_diff, rtol=1e-3, atol=1e-3)
    _, cache = model.run_with_cache(model.to_tokens(prompts[0]))
    torch.testing.assert_close(capture_patterns(model, prompts[0], layers=3)[3], cache[get_act_name("pattern", 3)])
    mass = attention_mass(model, prompts[:1], [[0]], layers=3)
    torch.testing.assert_close(mass[0, 0], cache[get_act_name("pattern", 3)][0, :, -1, 0])
    means = mean_head_outputs(model, prompts, [(3, 1)])
    with ablate_heads(model, [(3, 1)], mode="mean", means=means):
        _, ablated = model.run_with_cache(model.to_tokens(prompts[0]))
    torch.testing.assert_close(ablated[get_act_name("z", 3)][0, :, 1], means[(3, 1)].expand(cache[get_act_name("z", 3)].shape[1], -1))
    assert ov_circuit(model, 3, 1).AB.shape == (model.cfg.d_model, model.cfg.d_model)


def test_qk_circuits_refuse_q_k_normalised_attention_and_work_on_grouped_queries(model):
    if normalizes_queries_and_keys(model):  # Gemma 3 (a bridge's cfg.use_qk_norm says False)
        with pytest.raises(ValueError, match="RMS-normalises each head's queries and keys"):
            qk_circuit(model, 0, 0)
    else:  # SmolLM2: 9 query heads share 3 KV heads; Qwen2: 14 share 2
        heads = (model.cfg.n_heads, model.cfg.n_key_value_heads)
        assert heads in [(9, 3), (14, 2)]
        group = 4 // (heads[0] // heads[1])  # query head 4's KV head
        attn = model.blocks[2].attn
        torch.testing.assert_close(qk_circuit(model, 2, 4).AB, attn.W_Q[4].detach() @ attn.W_K[group].detach().T)
        assert attn.W_K.shape[0] == heads[1]  # one key matrix per KV head, as the bridge stores them


@needs_smollm2
def test_a_bfloat16_load_gives_float32_probabilities_to_bfloat16_precision(smollm2):
    """In half precision the load's probe check allows for rounding (bridge and transformers
    differ by 0.29 nats in bfloat16), so a bfloat16 load works, and reads what float32 reads."""
    from lca_interp.pretrained import load_model

    half = load_model("HuggingFaceTB/SmolLM2-135M-Instruct", device="cpu", dtype="bfloat16")
    assert half.W_E.dtype == torch.bfloat16 and half.plain_stack.dtype == torch.bfloat16
    with torch.no_grad():
        p_half, p_full = (m(m.to_tokens("The Eiffel Tower is located in the city of"))[0, -1].float().softmax(-1)[m.to_single_token(" Paris")] for m in (half, smollm2))
    assert abs(float(p_half - p_full)) < 0.05 and float(p_full) > 0.5


@needs_gemma
def test_gemma_in_float16_is_refused_in_one_sentence():
    from lca_interp.pretrained import load_model

    with pytest.raises(ValueError, match="overflows in float16.*load it in bfloat16 or float32"):
        load_model("google/gemma-3-270m", device="cpu", dtype="float16")
