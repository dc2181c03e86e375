"""linear ops (kernels in cpp/linear.cpp)."""
from __future__ import annotations

__all__: list[str] = []
