"""augment ops (kernels in cpp/augment.cpp)."""
from __future__ import annotations

__all__: list[str] = []
