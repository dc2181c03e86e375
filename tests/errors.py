"""The one helper bad-input tests use: the error must name the argument first.

Every message of our checks starts with the argument it is about ("x: expected float32 ...",
"lr: expected a number >= 0 ..."), so the match is anchored there: ``match="x"`` would pass
on any message that merely contains an x.
"""
from __future__ import annotations

import re

import pytest


def raises_arg(exc, name: str):
    """``pytest.raises(exc)`` whose message must start with the argument ``name`` (or the
    phrase ``name``), not followed by more of a word."""
    return pytest.raises(exc, match=rf"^{re.escape(name)}(?!\w)")
