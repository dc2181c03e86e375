"""optim ops (kernels in cpp/optim.cpp)."""
from __future__ import annotations

__all__: list[str] = []
