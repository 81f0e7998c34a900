#!/usr/bin/env python3
"""File-level import cycles of a Rust crate, from `crate::` paths in non-test code.

(Copied from the workplace's shared tools so that `make lint` and `make test` run it from a clean clone.)

usage: crate_cycles.py SRC_DIR   — prints each cycle (strongly connected set of files) and the
count last; exit 0 when there is none. Approximate by design: it reads text, skips files named
*test*.rs and everything after a `#[cfg(test)]` line, and resolves `crate::a::b` to the deepest
existing file among src/a/b.rs, src/a/b/mod.rs, src/a.rs, src/a/mod.rs.
"""
import os
import re
import sys

PATH = re.compile(r"crate::((?:[a-z_][a-z0-9_]*::)*[a-z_][a-z0-9_]*)")
SUPER = re.compile(r"\bsuper::((?:[a-z_][a-z0-9_]*::)*[a-z_][a-z0-9_]*)")
GROUP = re.compile(r"crate::\{([^}]*)\}", re.S)
SUPER_GROUP = re.compile(r"\bsuper::\{([^}]*)\}", re.S)


def files(src):
    for root, _, names in os.walk(src):
        for n in names:
            if n.endswith(".rs") and "test" not in n:
                yield os.path.join(root, n)


def resolve(src, segs):
    for i in range(len(segs), 0, -1):
        base = os.path.join(src, *segs[:i])
        for cand in (base + ".rs", os.path.join(base, "mod.rs")):
            if os.path.isfile(cand):
                return cand
    return None


def code_of(path):
    text = open(path, encoding="utf-8", errors="replace").read()
    cut = text.find("#[cfg(test)]")
    return text if cut < 0 else text[:cut]


def main(src):
    src = os.path.abspath(src)
    graph = {}
    for f in files(src):
        code = code_of(f)
        targets = set()
        for m in PATH.finditer(code):
            t = resolve(src, m.group(1).split("::"))
            if t and t != f:
                targets.add(t)
        rel = os.path.relpath(f, src)[:-3].split(os.sep)
        modpath = rel[:-1] if rel[-1] == "mod" else rel
        for m in SUPER.finditer(code):
            t = resolve(src, modpath[:-1] + m.group(1).split("::"))
            if t and t != f:
                targets.add(t)
        for m in SUPER_GROUP.finditer(code):
            for part in m.group(1).split(","):
                segs = [p for p in part.strip().split("::") if re.fullmatch(r"[a-z_][a-z0-9_]*", p)]
                if segs and segs[0] != "self":
                    t = resolve(src, modpath[:-1] + segs)
                    if t and t != f:
                        targets.add(t)
        for m in GROUP.finditer(code):
            for part in m.group(1).split(","):
                part = part.strip().split("::")
                if part and part[0] and part[0] != "self":
                    t = resolve(src, [p for p in part if re.fullmatch(r"[a-z_][a-z0-9_]*", p)])
                    if t and t != f:
                        targets.add(t)
        graph[f] = targets
    # Tarjan's strongly connected components
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
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

    for v in list(graph):
        if v not in index:
            visit(v)
    for comp in out:
        print("cycle: " + ", ".join(os.path.relpath(c, os.path.dirname(src)) for c in comp))
    print(f"{len(out)} import cycles among {len(graph)} files")
    return 0 if not out else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "src"))
