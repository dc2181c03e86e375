"""eltwise ops (kernels in cpp/eltwise.cpp)."""
from __future__ import annotations

__all__: list[str] = []
