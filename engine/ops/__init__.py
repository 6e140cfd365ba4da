"""Op families. Importing this package registers every op in ``registry.OPS``."""

from engine.ops import elementwise, index, linalg, reduce, shape

__all__ = ["elementwise", "index", "linalg", "reduce", "shape"]
