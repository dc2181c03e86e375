"""pool ops (kernels in cpp/pool.cpp)."""
from __future__ import annotations

__all__: list[str] = []
