"""loss ops (kernels in cpp/loss.cpp)."""
from __future__ import annotations

__all__: list[str] = []
