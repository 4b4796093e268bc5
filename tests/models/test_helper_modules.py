"""distiller.modules: functional operations as named modules."""

from __future__ import annotations

import pytest
import torch

from distiller.modules import (
    BatchMatmul,
    Chunk,
    Concat,
    EltwiseAdd,
    EltwiseDiv,
    EltwiseMult,
    EltwiseSub,
    Matmul,
    Mean,
    Norm,
    Split,
    Stack,
)


@pytest.mark.parametrize(
    ("module", "expected"),
    [(EltwiseAdd, lambda a, b, c: a + b + c), (EltwiseSub, lambda a, b, c: a - b - c),
     (EltwiseMult, lambda a, b, c: a * b * c)],
)  # fmt: skip
@pytest.mark.parametrize("inplace", [False, True])
def test_eltwise_folds_all_inputs(module: type, expected, inplace: bool) -> None:
    a, b, c = torch.randn(3, 2, 4).unbind(0)
    want = expected(a, b, c)
    first = a.clone()
    out = module(inplace=inplace)(first, b, c)
    torch.testing.assert_close(out, want)
    assert (out is first) == inplace  # in-place reuses the first input's storage, otherwise it is untouched
    if not inplace:
        assert torch.equal(first, a)


def test_eltwise_div() -> None:
    x, y = torch.randn(4), torch.rand(4) + 1
    torch.testing.assert_close(EltwiseDiv()(x, y), x / y)
    x2 = x.clone()
    assert EltwiseDiv(inplace=True)(x2, y) is x2


def test_eltwise_add_gradients() -> None:
    a = torch.randn(3, requires_grad=True)
    b = torch.randn(3, requires_grad=True)
    EltwiseAdd()(a, b).sum().backward()
    assert torch.equal(a.grad, torch.ones(3)) and torch.equal(b.grad, torch.ones(3))


def test_eltwise_needs_an_input() -> None:
    with pytest.raises(ValueError):
        EltwiseAdd()()


def test_tensor_ops() -> None:
    a, b = torch.randn(2, 3, 4), torch.randn(2, 4, 5)
    torch.testing.assert_close(Matmul()(a, b), a @ b)
    torch.testing.assert_close(BatchMatmul()(a, b), torch.bmm(a, b))
    torch.testing.assert_close(Concat(dim=1)(a, a), torch.cat([a, a], 1))
    torch.testing.assert_close(Stack(dim=0)(a, a), torch.stack([a, a]))
    assert [t.shape for t in Chunk(2, dim=2)(a)] == [(2, 3, 2), (2, 3, 2)]
    assert [t.shape for t in Split([1, 3], dim=2)(a)] == [(2, 3, 1), (2, 3, 3)]
    torch.testing.assert_close(Mean(2, 3)(torch.ones(2, 3, 4, 4)), torch.ones(2, 3))
    assert Mean(1, keepdim=True)(a).shape == (2, 1, 4)
    torch.testing.assert_close(Norm(p=2, dim=1)(a), a.norm(p=2, dim=1))


def test_modules_show_in_repr() -> None:
    assert "inplace=True" in repr(EltwiseAdd(inplace=True))
    assert "dim=1" in repr(Concat(dim=1))
