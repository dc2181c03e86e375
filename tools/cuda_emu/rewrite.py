"""rewrite.py SRC DST: turns ``kernel<<<grid, block, smem, stream>>>(args);`` into
``emu_launch_args(dim3(grid), dim3(block), [](auto... a) { kernel(a...); }, args);`` for the
CPU emulation (arguments are evaluated and copied at launch, as CUDA does, so a launch can
be recorded by graph capture and replayed later)."""
from __future__ import annotations

import sys


def split_top_level(text: str) -> list[str]:
    """Split at commas outside (), [] and <>."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch in "([<":
            depth += 1
        elif ch in ")]>":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return parts + [cur]


def rewrite(src: str) -> str:
    out, i = [], 0
    while (j := src.find("<<<", i)) >= 0:
        # The kernel name: an identifier, possibly with template arguments, before <<<.
        k, depth = j, 0
        while k > 0:
            ch = src[k - 1]
            if ch == ">":
                depth += 1
            elif ch == "<":
                depth -= 1
            elif depth == 0 and not (ch.isalnum() or ch in "_:"):
                break
            k -= 1
        name = src[k:j]
        e = src.index(">>>", j)
        grid, block = (p.strip() for p in split_top_level(src[j + 3:e])[:2])
        if src[e + 3] != "(":
            raise SystemExit(f"unexpected launch syntax near: {src[j:e + 20]!r}")
        p, depth = e + 3, 0
        while True:  # the matching ')' of the argument list
            depth += {"(": 1, ")": -1}.get(src[p], 0)
            if depth == 0:
                break
            p += 1
        out += [src[i:k], f"emu_launch_args(dim3({grid}), dim3({block}), "
                          f"[](auto... a) {{ {name}(a...); }}, {src[e + 4:p]})"]
        i = p + 1
    return "".join(out) + src[i:]


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        text = f.read()
    with open(sys.argv[2], "w") as f:
        f.write(rewrite(text))
