"""conv ops (kernels in cpp/conv.cpp)."""
from __future__ import annotations

__all__: list[str] = []
