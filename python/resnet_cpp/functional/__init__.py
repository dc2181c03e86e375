"""Forward and backward of every ResNet op as NumPy float32 functions.

Every op has a forward returning ``(y, cache)`` and a ``*_backward(dy, cache)``; arrays at
this boundary are NCHW float32. Each family lives in its own module and is re-exported here.
"""
from __future__ import annotations
from .conv import *  # noqa: F401,F403
from .batchnorm import *  # noqa: F401,F403
from .eltwise import *  # noqa: F401,F403
from .pool import *  # noqa: F401,F403
from .linear import *  # noqa: F401,F403
from .loss import *  # noqa: F401,F403
from .optim import *  # noqa: F401,F403
from .augment import *  # noqa: F401,F403
