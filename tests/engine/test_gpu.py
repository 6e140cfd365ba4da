"""CuPy paths: the same graphs on the GPU give NumPy's values and gradients.

Marked ``gpu``: skipped where CuPy or a CUDA device is missing (``bench/gpu_check.sh`` runs
them on a GPU machine).
"""

import numpy
import pytest

import engine
from engine import backend
from engine.errors import ResourceExhausted

pytestmark = pytest.mark.gpu


def _run(device: str) -> tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray, str]:
    rng = numpy.random.default_rng(0)
    options = {"dtype": "float32", "requires_grad": True, "device": device}
    a = engine.tensor(rng.standard_normal((8, 5)), **options)
    b = engine.tensor(rng.standard_normal((5, 3)), **options)
    h = (a @ b).tanh()
    loss = (engine.softmax(h, dim=1) * h.exp()).sum() + a.norm() + h.max()
    loss.backward()
    return (
        backend.to_numpy(loss.data),
        backend.to_numpy(a.grad.data),
        backend.to_numpy(b.grad.data),
        repr(h.detach()),
    )


def test_gpu_matches_cpu() -> None:
    cpu = _run("cpu")
    gpu = _run("cuda")
    for c, g in zip(cpu[:3], gpu[:3], strict=True):
        numpy.testing.assert_allclose(g, c, rtol=1e-4, atol=1e-5)
    assert gpu[3].startswith("tensor([[")


def test_gpu_tensors_live_on_the_device() -> None:
    x = engine.arange(4.0, device="cuda", requires_grad=True)
    y = (x * x).sum()
    y.backward()
    assert x.device.startswith("cuda")
    assert x.grad is not None and x.grad.device.startswith("cuda")
    assert repr(x.grad) == "tensor([0., 2., 4., 6.])"


def test_gpu_out_of_memory_is_resource_exhausted() -> None:
    with pytest.raises(ResourceExhausted):
        engine.zeros((1 << 40,), device="cuda")


def test_mixing_devices_is_an_error() -> None:
    with pytest.raises(engine.EngineError, match="same device"):
        engine.ones(2) + engine.ones(2, device="cuda")
