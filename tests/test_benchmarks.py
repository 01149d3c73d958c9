"""The benchmarks' own arithmetic: code whose numbers land in BENCHMARKS.md is tested like the package."""

import importlib.util
from pathlib import Path

import pytest
import torch


def _benchmark(name: str):
    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def products_in_float32():
    return _benchmark("dtype_agreement").Bfloat16ProductsInFloat32


def _bf16(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(sum(shape))).bfloat16()


def test_emulated_bfloat16_products_are_float32_products_rounded_once(products_in_float32):
    # Shapes large enough that PyTorch's own bfloat16 kernels round some entries differently here.
    a, b, bias = _bf16(64, 576), _bf16(576, 256), _bf16(256)
    batch_a, batch_b, batch_bias = _bf16(3, 64, 576), _bf16(3, 576, 64), _bf16(3, 64, 64)
    expected = {
        "matmul": (a.float() @ b.float()).bfloat16(),
        "linear": torch.nn.functional.linear(a.float(), b.float().T, bias.float()).bfloat16(),
        "bmm": torch.bmm(batch_a.float(), batch_b.float()).bfloat16(),
        "baddbmm": torch.baddbmm(batch_bias.float(), batch_a.float(), batch_b.float()).bfloat16(),
        "einsum": torch.einsum("bik,bkj->bij", batch_a.float(), batch_b.float()).bfloat16(),
    }
    with products_in_float32():
        got = {
            "matmul": a @ b,
            "linear": torch.nn.functional.linear(a, b.T, bias),
            "bmm": torch.bmm(batch_a, batch_b),
            "baddbmm": torch.baddbmm(batch_bias, batch_a, batch_b),
            "einsum": torch.einsum("bik,bkj->bij", batch_a, batch_b),
        }
    for name in expected:
        assert got[name].dtype == torch.bfloat16, name
        assert torch.equal(got[name], expected[name]), name


def test_emulation_leaves_other_dtypes_and_ops_alone(products_in_float32):
    a, b = _bf16(9, 40).float(), _bf16(40, 6).float()
    x = _bf16(4, 40)
    with products_in_float32():
        product, softmax = a @ b, x.softmax(-1)
    assert torch.equal(product, a @ b)  # float32 products: PyTorch's own kernel, bit for bit
    assert softmax.dtype == torch.bfloat16 and torch.equal(softmax, x.softmax(-1))


@pytest.mark.parametrize("freeze_embed, freeze_wv", [(False, False), (True, False), (False, True), (True, True)])
def test_a_toy_steps_least_work_is_the_hand_count_of_its_products(freeze_embed, freeze_wv):
    """Six products of B rows (three d × d, three d × V) forward, two gradients each backward,
    less the gradients a frozen weight does not need: W_E enters one d × d product (through the
    query's gathered rows) and all three d × V ones, W_V one d × d product."""
    from lca_interp.toy import ToyConfig

    B, V, d, L = 32, 16, 24, 8
    toy = ToyConfig(d_vocab=V, d_model=d, n_ctx=L, freeze_embed=freeze_embed, freeze_wv=freeze_wv)
    forward_macs = B * (3 * d * d + 3 * d * V)
    skipped = (B * d * d + 3 * B * d * V) * freeze_embed + B * d * d * freeze_wv
    assert _benchmark("zoo_work").step_flops(toy, B, L) == (2 * (3 * forward_macs - skipped), 2 * forward_macs // B)
