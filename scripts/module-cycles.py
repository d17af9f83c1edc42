#!/usr/bin/env python3
"""Fails when modules of a crate import each other in a cycle.

Each source file is a module (`src/wallet/group.rs` is `wallet::group`). A module depends on
another when it names it through `crate::`, `super::` or a `use` of a sibling; a module's own
submodules and its parent are the same unit here (a file and its `mod` children share
private items by design), so the graph is drawn between top-level modules, and separately
between the children of each top-level module. Prints every cycle found; exit status 1 if any.
"""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def modules(src):
    mods = {}
    for dirpath, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, f), src)[:-3].split(os.sep)
            if rel[-1] == "mod":
                rel = rel[:-1]
            if rel in (["lib"], ["main"]):
                rel = []
            mods[tuple(rel)] = open(os.path.join(dirpath, f)).read()
    return mods


def strip(text):
    # One pass, so a `//` inside a string and a quote inside a comment are both left alone.
    text = re.sub(
        r'r#+"[\s\S]*?"#+|//[^\n]*|"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])\'',
        lambda m: "" if m.group(0).startswith("//") else '""',
        text,
    )
    # Tests may reach anywhere in their crate.
    return re.split(r"#\[cfg\(test\)\]\s*mod tests", text)[0]


def references(path, text, mods):
    """Module paths this file names, resolved to the longest existing module."""
    out = set()
    for m in re.finditer(r"\b(crate|super)((?:::\w+)+)", text):
        parts = m.group(2).split("::")[1:]
        if m.group(1) == "crate":
            base = []
        else:
            # `super` in a file module means its parent (a mod.rs-style file means itself's parent).
            base = list(path[:-1])
        full = base + parts
        for n in range(len(full), 0, -1):
            if tuple(full[:n]) in mods:
                out.add(tuple(full[:n]))
                break
    # `use` groups like `crate::{a, b::c}`
    for m in re.finditer(r"\bcrate::\{([^}]*)\}", text):
        for item in m.group(1).split(","):
            first = item.strip().split("::")[0]
            if (first,) in mods:
                out.add((first,))
    return out


def cycles(graph):
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def check(crate_src):
    mods = modules(crate_src)
    found = []
    # Between top-level modules, and between the children of each module.
    levels = {()} | {p[:-1] for p in mods if len(p) >= 2}
    for parent in sorted(levels):
        depth = len(parent) + 1
        graph = {}
        for path, text in mods.items():
            if len(path) < depth or path[: depth - 1] != parent:
                continue
            unit = path[:depth]
            for r in references(path, strip(text), mods):
                if len(r) >= depth and r[: depth - 1] == parent and r[:depth] != unit:
                    graph.setdefault(unit, set()).add(r[:depth])
            graph.setdefault(unit, set())
        for c in cycles(graph):
            found.append(" <-> ".join("::".join(m) for m in c))
    return found


def main():
    crates = sys.argv[1:] or sorted(
        os.path.join(ROOT, "crates", c, "src") for c in os.listdir(os.path.join(ROOT, "crates"))
    )
    bad = 0
    for src in crates:
        for c in check(src):
            print(f"{os.path.relpath(src, ROOT)}: module cycle: {c}")
            bad += 1
    if bad:
        sys.exit(1)
    print(f"no module cycles in {len(crates)} crates")


if __name__ == "__main__":
    main()
