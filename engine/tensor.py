"""The Tensor: an array of the backend, its autograd state, and PyTorch's methods."""

from __future__ import annotations

import weakref
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import numpy

from engine import autograd, grad_mode, journal, parallel
from engine.backend import device_of, to_numpy, xp_of
from engine.dtypes import DTYPES, legacy_name
from engine.errors import FailedPrecondition, InvalidArgument
from engine.graph import WRITES, AccumulateGrad, Node

if TYPE_CHECKING:
    from engine.graph import GraphNode


# The C++ type names PyTorch prints when an assigned .grad has the wrong dtype.
_CPP_NAMES = {
    "float32": "float", "float64": "double", "float16": "c10::Half", "int64": "long int",
    "int32": "int", "int16": "short int", "int8": "signed char", "uint8": "unsigned char",
    "bool": "bool",
}  # fmt: skip

Layout: TypeAlias = tuple[type, numpy.dtype[Any], tuple[int, ...]] | Literal[False]

_LAYOUTS: dict[Layout, Layout] = {}  # see Tensor.layout
_MAX_LAYOUTS = 4096

# dtype.name goes through Python code in NumPy; a dict lookup is far cheaper on the hot path.
DTYPE_NAMES = {dt: name for name, dt in DTYPES.items()}


class VersionCounter:
    """Counts in-place writes; shared by a tensor, its views and its detached aliases.

    A tensor creates its counter on first need (``Tensor.counter``): most tensors are never
    written in place nor aliased, and their version is 0. So does a node of the fast path for
    the output it saves (``Node.out_version``), through the output's ``counter``.
    """

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0


_new = object.__new__


def new_tensor(data: Any, requires_grad: bool, grad_fn: Node | None, layout: Layout) -> Tensor:
    """``Tensor(data, requires_grad, grad_fn, None, layout)`` for the fast paths of
    engine.ops.fast (which set these fields inline where they record a node): a class
    call runs ``__init__`` in a nested interpreter call, ~280 instructions more."""
    t: Tensor = _new(Tensor)
    t.data = data
    t._requires_grad = requires_grad
    t.grad = None
    t.grad_fn = grad_fn
    t._version = None
    t._base = None
    t._retains_grad = False
    t._accumulator = None
    t._layout = layout
    return t


def owned(array: Any) -> Any:
    """``array`` itself when nothing else can see its memory, else a writable copy."""
    if isinstance(array, numpy.generic):  # NumPy reductions of 0-d arrays give scalars
        return numpy.array(array)
    if array.base is None and array.flags.writeable:
        return array
    return array.copy()


class Tensor:
    """An n-dimensional array that can record the operations applied to it."""

    __slots__ = (
        "__weakref__",
        "_accumulator",
        "_base",
        "_layout",
        "_requires_grad",
        "_retains_grad",
        "_version",
        "data",
        "grad",
        "grad_fn",
    )

    def __init__(
        self,
        data: Any,
        requires_grad: bool = False,
        grad_fn: Node | None = None,
        version: VersionCounter | None = None,
        layout: Layout | None = None,
    ) -> None:
        self.data = data  # never replaced: in-place ops write into it
        self._requires_grad = requires_grad
        self.grad: Tensor | None = None
        self.grad_fn = grad_fn
        self._version = version  # None until needed: see VersionCounter
        self._base: Tensor | None = None
        self._retains_grad = False
        self._accumulator: weakref.ref[AccumulateGrad] | None = None
        self._layout = layout  # None until needed: see layout()

    # ----- metadata -----

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def dtype(self) -> str:
        """PyTorch's name for the dtype, without the ``torch.`` prefix."""
        return DTYPE_NAMES[self.data.dtype]

    @property
    def ndim(self) -> int:
        return int(self.data.ndim)

    @property
    def device(self) -> str:
        return device_of(self.data)

    @property
    def xp(self) -> ModuleType:
        return xp_of(self.data)

    @property
    def is_leaf(self) -> bool:
        return self.grad_fn is None

    @property
    def retains_grad(self) -> bool:
        return self._retains_grad

    @property
    def version(self) -> int:
        counter = self._version
        return 0 if counter is None else counter.value

    def layout(self) -> Layout:
        """What ``apply``'s fast path needs to know of the array, worked out once.

        (array type, dtype, shape) for a floating array of one dimension or more, too small
        for threads (``parallel.MIN_SIZE``): two tensors of equal layouts take the fast path
        together. False for any other array.
        """
        data = self.data
        layout: Layout = False
        if data.dtype.kind == "f" and data.ndim and data.size < parallel.MIN_SIZE:
            layout = (type(data), data.dtype, data.shape)
            # Equal layouts as one object, so that the fast path mostly tells them by ``is``
            # (a weight against the chain it multiplies); bounded, past which it compares.
            if len(_LAYOUTS) < _MAX_LAYOUTS:
                layout = _LAYOUTS.setdefault(layout, layout)
            else:
                layout = _LAYOUTS.get(layout, layout)
        self._layout = layout
        return layout

    def counter(self) -> VersionCounter:
        """This tensor's version counter, created on first need (to share it or bump it)."""
        counter = self._version
        if counter is None:
            node = self.grad_fn
            if node is not None and node.out is self.data:
                # The node saved this output, and shares the counter: the fast path records
                # it without one (version 0 when saved), which its first need creates here.
                counter = node.out_version
                if counter is None:
                    counter = node.out_version = VersionCounter()
            else:
                counter = VersionCounter()
            self._version = counter
        return counter

    def numel(self) -> int:
        return int(self.data.size)

    def size(self, dim: int | None = None) -> tuple[int, ...] | int:
        return self.shape if dim is None else self.shape[dim]

    def dim(self) -> int:
        return self.ndim

    def nbytes(self) -> int:
        return int(self.data.nbytes)

    # ----- autograd state -----

    def edge(self) -> GraphNode:
        """The node a gradient for this tensor flows into."""
        if self.grad_fn is not None:
            return self.grad_fn
        acc = self._accumulator() if self._accumulator is not None else None
        if acc is None:
            acc = AccumulateGrad(self)
            self._accumulator = weakref.ref(acc)
        return acc

    @property
    def requires_grad(self) -> bool:
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, requires_grad: bool) -> None:
        """``t.requires_grad = flag``: PyTorch's checks, which differ from requires_grad_'s
        on a non-leaf (any change is refused, True included)."""
        if type(requires_grad) is not bool:
            raise InvalidArgument("requires_grad must be a bool")
        if self.grad_fn is not None and requires_grad:
            raise FailedPrecondition("you can only change requires_grad flags of leaf variables.")
        if requires_grad and self.grad_fn is None and self.data.dtype.kind != "f":
            raise InvalidArgument(
                "only Tensors of floating point and complex dtype can require gradients"
            )
        self._set_requires_grad(requires_grad, factory=False)

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        """Set ``requires_grad`` on a leaf (PyTorch's checks and texts)."""
        self._set_requires_grad(requires_grad, factory=False)
        return self

    def _set_requires_grad(self, requires_grad: bool, *, factory: bool) -> None:
        if self.grad_fn is not None:
            if requires_grad:
                return
            raise FailedPrecondition(
                "you can only change requires_grad flags of leaf variables. If you want to use "
                "a computed variable in a subgraph that doesn't require differentiation use "
                "var_no_grad = var.detach()."
            )
        if requires_grad and self.data.dtype.kind != "f":
            if factory:
                raise InvalidArgument(
                    "Only Tensors of floating point and complex dtype can require gradients"
                )
            raise InvalidArgument("only Tensors of floating point dtype can require gradients")
        if requires_grad != self._requires_grad:
            old = self._requires_grad
            journal.record(lambda: setattr(self, "_requires_grad", old))
            self._requires_grad = requires_grad

    def retain_grad(self) -> None:
        """Populate ``.grad`` of this non-leaf during backward passes."""
        if self.grad_fn is None:
            if not self._requires_grad:
                raise FailedPrecondition("can't retain_grad on Tensor that has requires_grad=False")
            return
        if self._retains_grad:
            return
        node = self.grad_fn
        old_retained = None if node.retained is None else list(node.retained)

        def undo() -> None:
            self._retains_grad = False
            node.retained = old_retained

        journal.record(undo)
        self._retains_grad = True
        node.retained = [*(node.retained or []), weakref.ref(self)]

    def set_graph_(self, node: Node) -> None:
        """After an in-place op: this tensor's value now comes from ``node``."""
        old = (self.grad_fn, self._requires_grad, node.retained)

        def undo() -> None:
            self.grad_fn, self._requires_grad, node.retained = old

        journal.record(undo)
        self.grad_fn = node
        self._requires_grad = True
        if self._retains_grad:
            node.retained = [*(node.retained or []), weakref.ref(self)]

    def accumulate_grad_(self, g: Any, create_graph: bool, retained: bool = False) -> None:
        """Add ``g`` into ``.grad`` or set it the first time, as PyTorch does.

        A leaf's grad accumulates in place; a retained non-leaf grad and a grad with a graph
        (``create_graph``) are replaced by the sum.
        """
        old = self.grad
        if isinstance(g, Tensor):  # create_graph: the grad keeps its graph
            from engine.ops import elementwise

            with grad_mode.set_grad_enabled(True):
                if old is not None:
                    new = old + g  # type: ignore[operator]
                elif retained:  # PyTorch stores a copy: CloneBackward0 here,
                    new = elementwise.clone(g)
                else:  # CopyBackwards on a leaf
                    new = elementwise.copy(Tensor(g.xp.empty_like(g.data)), g)
            journal.record(lambda: setattr(self, "grad", old))
            self.grad = new
            return
        g = g.astype(self.data.dtype, copy=False)
        if old is None:
            journal.record(lambda: setattr(self, "grad", None))
            self.grad = Tensor(owned(g))
        elif retained or old.grad_fn is not None or old.shape != tuple(g.shape):
            journal.record(lambda: setattr(self, "grad", old))
            self.grad = Tensor(owned(old.data + g))
        else:
            old.write_(old.data + g)

    def set_grad(self, grad: Tensor | None) -> None:
        """Assign ``.grad`` (``x.grad = None`` resets it)."""
        if grad is not None and grad.dtype != self.dtype:
            raise InvalidArgument(
                f"attempting to assign a gradient with dtype '{_CPP_NAMES[grad.dtype]}' to a "
                f"tensor with grad_dtype '{legacy_name(self.data.dtype)}'. The gradient must "
                "match the tensor's grad_dtype (defaults to the tensor's dtype). You can set the "
                "tensor's grad_dtype attribute with a specific dtype, or None to allow any "
                "dtype. Set grad_dtype with caution. Diverging the dtypes of a tensor and its "
                "gradient may break downstream systems that assume they match."
            )
        if grad is not None and grad.shape != self.shape:
            raise InvalidArgument(
                f"attempting to assign a gradient of size '[{', '.join(map(str, grad.shape))}]' "
                f"to a tensor of size '[{', '.join(map(str, self.shape))}]'. Please ensure that "
                "the gradient and the tensor are the same size"
            )
        old = self.grad
        journal.record(lambda: setattr(self, "grad", old))
        self.grad = grad

    def write_(self, values: Any) -> None:
        """Overwrite this tensor's memory in place and bump its version (journaled)."""
        if not self.data.flags.writeable:
            raise InvalidArgument(
                "unsupported operation: more than one element of the written-to tensor refers "
                "to a single memory location. Please clone() the tensor before performing the "
                "operation."
            )
        counter = self.counter()
        if journal.active():
            saved = self.data.copy()
            version = counter.value

            def undo() -> None:
                self.data[...] = saved
                counter.value = version

            journal.record(undo)
        self.data[...] = values
        counter.value += 1
        WRITES.note()  # after the version: see Node.check_saved

    def detach(self) -> Tensor:
        """A tensor sharing this one's memory and version counter, outside any graph."""
        out = Tensor(self.data, version=self.counter())
        out._base = self._base
        return out

    def zeros_like_detached(self) -> Tensor:
        return Tensor(self.xp.zeros_like(self.data))

    def backward(
        self,
        gradient: Tensor | None = None,
        retain_graph: bool | None = None,
        create_graph: bool = False,
        inputs: Tensor | list[Tensor] | None = None,
    ) -> None:

        autograd.backward(
            self,
            None if gradient is None else [gradient],
            retain_graph=retain_graph,
            create_graph=create_graph,
            inputs=inputs,
        )

    # ----- conversion -----

    def numpy(self) -> numpy.ndarray:
        if self._requires_grad:
            raise FailedPrecondition(
                "Can't call numpy() on Tensor that requires grad. Use tensor.detach().numpy() "
                "instead."
            )
        return to_numpy(self.data)

    def tolist(self) -> Any:
        return to_numpy(self.data).tolist()

    def item(self) -> bool | int | float:
        if self.data.size != 1:
            raise InvalidArgument(
                f"a Tensor with {self.data.size} elements cannot be converted to Scalar"
            )
        return to_numpy(self.data).reshape(()).item()  # type: ignore[no-any-return]

    def __float__(self) -> float:
        return float(self._scalar())

    def __int__(self) -> int:
        return int(self._scalar())

    def _scalar(self) -> bool | int | float:
        if self.data.size != 1:
            raise InvalidArgument(
                "only one element tensors can be converted to Python scalars",
                torch_type="ValueError",
            )
        return self.item()

    def __bool__(self) -> bool:
        if self.data.size != 1:
            raise InvalidArgument("Boolean value of Tensor with more than one value is ambiguous")
        return bool(self.item())

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __repr__(self) -> str:
        from engine.format import format_tensor

        return format_tensor(
            to_numpy(self.data),
            self.dtype,
            grad_fn=self.grad_fn.name if self.grad_fn is not None else None,
            requires_grad=self._requires_grad,
        )

    __str__ = __repr__

    def __hash__(self) -> int:
        return id(self)

    def __iter__(self) -> Any:
        return (self[i] for i in range(len(self)))  # type: ignore[index]
