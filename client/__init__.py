"""gradserve's Python client: PyTorch's API on a remote autograd session, sent in batches.

    import gradserve

    with gradserve.connect("http://127.0.0.1:8000") as client, client.session() as torch:
        x = torch.arange(4.0, requires_grad=True)
        y = 2 * torch.dot(x, x)
        y.backward()
        print(x.grad)  # tensor([ 0.,  4.,  8., 12.])

``grpc://host:port`` speaks gRPC instead, with the same behaviour; every failure is a
``gradserve.Error``.
"""

from .client import Client, connect
from .dtypes import DTYPES, Size, device, dtype
from .errors import Error
from .results import CommandResult, SessionInfo, TensorInfo
from .session import Session
from .tensor import Tensor

Error.__module__ = __name__  # tracebacks say gradserve.Error

globals().update(DTYPES)  # gradserve.float32, ...

__all__ = [
    "Client", "CommandResult", "Error", "Session", "SessionInfo", "Size", "Tensor", "TensorInfo",
    "connect", "device", "dtype",
]  # fmt: skip
