"""batchnorm ops (kernels in cpp/batchnorm.cpp)."""
from __future__ import annotations

__all__: list[str] = []
