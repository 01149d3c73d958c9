"""Weight processing one block at a time (`pretrained.processing`) against TL's own
`load_and_process_state_dict`, on random-weight models of the three architectures lca-interp
loads: GPT-2 (LayerNorm with biases, learned positions, tied embeddings), Llama (RMSNorm,
grouped-query attention, untied) and Gemma-3 (RMSNorm with its weight
as an offset, grouped-query attention, tied). Every parameter, norms and biases included, is
random, so each fold and centring moves numbers."""

from __future__ import annotations

import warnings

import pytest
import torch

from lca_interp.pretrained import processing


def _gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(n_layer=2, n_head=4, n_embd=32, n_positions=64, vocab_size=300)
    config.n_ctx = 64  # transformers 5 dropped n_ctx from GPT2Config; TL's converter reads it
    return GPT2LMHeadModel(config)


def _llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    return LlamaForCausalLM(LlamaConfig(vocab_size=300, hidden_size=48, intermediate_size=80, num_hidden_layers=2,
                                        num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=64,
                                        tie_word_embeddings=False))  # TL's Llama converter drops biases


def _gemma3():
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    return Gemma3ForCausalLM(Gemma3TextConfig(vocab_size=300, hidden_size=48, intermediate_size=80, num_hidden_layers=2,
                                              num_attention_heads=4, num_key_value_heads=1, head_dim=16,
                                              max_position_embeddings=64, sliding_window=8))


ARCHITECTURES = {"gpt2": _gpt2, "llama": _llama, "gemma3": _gemma3}


def _tl_inputs(build, folder):
    """A random-weight model, TL's config for it (processing on) and TL's state dict of it."""
    from transformer_lens.loading_from_pretrained import get_pretrained_model_config, get_pretrained_state_dict

    torch.manual_seed(0)
    hf_model = build().eval()  # no dropout
    with torch.no_grad():
        for parameter in hf_model.parameters():
            parameter.normal_(0.3, 0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        if build is _gemma3:  # TL knows Gemma-3 by name only: its 270m config, shrunk to this model
            cfg = _shrunk(get_pretrained_model_config(GEMMA, hf_cfg=hf_model.config.to_dict(), fold_ln=True),
                          hf_model.config)
            return hf_model, cfg, get_pretrained_state_dict(GEMMA, cfg, hf_model)
        hf_model.config.architectures = [type(hf_model).__name__]
        hf_model.config.save_pretrained(folder)
        cfg = get_pretrained_model_config(str(folder), fold_ln=True)
        cfg.tokenizer_name = None  # the folder holds a config only
        return hf_model, cfg, get_pretrained_state_dict(str(folder), cfg, hf_model=hf_model)


GEMMA = "google/gemma-3-270m"


def _shrunk(cfg, config):
    from transformer_lens import HookedTransformerConfig

    sizes = dict(d_model=config.hidden_size, d_head=config.head_dim, n_layers=config.num_hidden_layers,
                 n_ctx=config.max_position_embeddings, n_heads=config.num_attention_heads,
                 n_key_value_heads=config.num_key_value_heads, d_mlp=config.intermediate_size,
                 d_vocab=config.vocab_size, d_vocab_out=config.vocab_size, rotary_dim=config.head_dim,
                 window_size=config.sliding_window, tokenizer_name=None,
                 attn_types=["local" if kind == "sliding_attention" else "global" for kind in config.layer_types])
    data = {**cfg.to_dict(), **sizes}
    return HookedTransformerConfig(**{k: v for k, v in data.items()
                                      if k in HookedTransformerConfig.__dataclass_fields__ and k != "n_params"})


def _tl_processed(cfg, state):
    from transformer_lens import HookedTransformer

    model = HookedTransformer(cfg, move_to_device=False)
    model.load_and_process_state_dict({k: v.clone() for k, v in state.items()})
    return model


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
def test_processing_block_by_block_gives_tls_processed_model(architecture, tmp_path, monkeypatch):
    hf_model, cfg, state = _tl_inputs(ARCHITECTURES[architecture], tmp_path)
    tokens = torch.randint(0, cfg.d_vocab, (2, 12))
    with torch.no_grad():  # before processing, which changes the transformers weights in place
        reference = torch.log_softmax(hf_model(tokens).logits.float(), -1)
    expected = _tl_processed(cfg, state)
    monkeypatch.setattr(processing, "_through_tl", lambda *args: pytest.fail("fell back to TL's own path"))
    model = processing.hooked_with_processed_weights(cfg, None, dict(state), processing=True)
    got, want = model.state_dict(), expected.state_dict()
    assert set(got) == set(want)
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-6, atol=1e-6, msg=name)
    torch.testing.assert_close(model(tokens), expected(tokens), rtol=1e-5, atol=1e-5)
    # and both compute what the transformers model computes, up to the softmax-invariant shift
    torch.testing.assert_close(torch.log_softmax(model(tokens), -1), reference, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
def test_no_processing_hands_over_the_checkpoints_weights_untouched(architecture, tmp_path):
    _, cfg, state = _tl_inputs(ARCHITECTURES[architecture], tmp_path)
    originals = {k: v.clone() for k, v in state.items()}
    model = processing.hooked_with_processed_weights(cfg, None, dict(state), processing=False)
    for name, tensor in model.named_parameters():
        expected = originals.get(name, torch.zeros_like(tensor))  # a bias the checkpoint lacks is zero
        assert torch.equal(tensor, expected), name


def test_a_state_dict_missing_a_weight_goes_through_tls_path(tmp_path, monkeypatch):
    _, cfg, state = _tl_inputs(_llama, tmp_path)
    del state["blocks.0.mlp.W_in"]
    taken = []
    monkeypatch.setattr(processing, "_through_tl", lambda *args: taken.append(args) or "TL's")
    assert processing.hooked_with_processed_weights(cfg, None, state, processing=True) == "TL's" and taken


def test_a_logit_softcap_keeps_the_unembedding_uncentred(tmp_path):
    _, cfg, state = _tl_inputs(_gemma3, tmp_path)
    cfg.output_logits_soft_cap = 30.0  # as Gemma-2 has: softcapped logits are not shift-invariant
    W_U = state["unembed.W_U"].clone()
    model = processing.hooked_with_processed_weights(cfg, None, dict(state), processing=True)
    # the final RMSNorm's weight is folded in (TL stores Gemma's 1 + w), and nothing else is done
    assert torch.equal(model.unembed.W_U.detach(), W_U * state["ln_final.w"][:, None])


def test_a_checkpoint_tls_converter_only_partly_reads_is_refused_in_one_sentence(tmp_path):
    """TL 3.9's Llama converter drops attention and MLP biases: loading such a folder would give
    wrong log-probabilities without a word."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from lca_interp.pretrained import load_model
    from lca_interp.pretrained.random_weights import gpt2_tokenizer

    tokenizer = gpt2_tokenizer()
    for biases, folder in ((False, tmp_path / "plain"), (True, tmp_path / "biased")):
        tokenizer.save_pretrained(folder)
        torch.manual_seed(0)
        llama = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=48, intermediate_size=80,
                                             num_hidden_layers=2, num_attention_heads=6, num_key_value_heads=2,
                                             attention_bias=biases, mlp_bias=biases))
        with torch.no_grad():
            for name, parameter in llama.named_parameters():
                if name.endswith("bias"):  # initialised to zero
                    parameter.normal_(0.0, 0.5)
        llama.save_pretrained(folder)
    assert load_model(tmp_path / "plain", device="cpu").cfg.n_layers == 2
    with pytest.raises(ValueError, match=r"disagrees with transformers by .* misses part of this checkpoint"):
        load_model(tmp_path / "biased", device="cpu")
