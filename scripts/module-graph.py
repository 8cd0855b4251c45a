#!/usr/bin/env python3
"""The graph of a Rust crate's top-level modules, and its cycles.

    scripts/module-graph.py gateway/src [rules/src ...]        fails (exit 1) listing the cycles
    scripts/module-graph.py --dot gateway/src [rules/src ...]  prints the graph (Graphviz dot)

For each src dir: the modules reached from lib.rs (or main.rs) through `mod` declarations, minus
those under `#[cfg(test)]` (test files and inline test modules are never reached). An edge A -> B
means some file of top-level module A names `crate::B...` (a `use` line, a group
`use crate::{b, c::d}`, or a path in code) or reaches B through `super::`. A reference to an item
of the crate root (`crate::SOME_ITEM`) is an edge to `crate` (lib.rs). Comments, strings and
items under `#[cfg(test)]` are ignored; `pub(crate)` and `pub(in crate::x)` are visibility, not use.

No dependencies: python3 only. Tested by scripts/test_module_graph.py.
"""

import os
import re
import sys

ROOT = "crate"

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def tokenize(text):
    """Rust source -> [(kind, value, line)], kind one of ident, str, punct.

    Comments are dropped; string, byte-string, raw-string and char literals become one `str`
    token; lifetimes are dropped; `::` is one token."""
    toks = []
    i, n, line = 0, len(text), 1
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
            i += 1
        elif c.isspace():
            i += 1
        elif text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    line += text[i] == "\n"
                    i += 1
        elif (m := re.compile(r'(?:br|cr|r)(#*)"').match(text, i)) is not None:
            # Raw string: ends at `"` followed by as many `#` as it opened with.
            close = '"' + m.group(1)
            j = text.find(close, m.end())
            j = n if j < 0 else j + len(close)
            toks.append(("str", text[m.end() : j - len(close)], line))
            line += text.count("\n", i, j)
            i = j
        elif c == '"' or (c in "bc" and text.startswith('"', i + 1)):
            j = i + (1 if c == '"' else 2)
            start = j
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            toks.append(("str", text[start:j], line))
            line += text.count("\n", i, j)
            i = j + 1
        elif c == "'" or (c == "b" and text.startswith("'", i + 1)):
            j = i + (1 if c == "'" else 2)
            if text.startswith("\\", j):  # '\n', '\'', '\u{..}'
                k = text.find("'", j + 2)
                i = n if k < 0 else k + 1
                toks.append(("str", "", line))
            elif j + 1 < n and text[j + 1] == "'":  # 'a'
                i = j + 2
                toks.append(("str", text[j], line))
            else:  # a lifetime or a label: 'a, 'static
                m = _IDENT.match(text, j)
                i = m.end() if m else j
        elif c.isalpha() or c == "_":
            m = re.compile(r"(?:r#)?[A-Za-z_][A-Za-z0-9_]*").match(text, i)
            toks.append(("ident", m.group(0).removeprefix("r#"), line))
            i = m.end()
        elif c.isdigit():
            m = re.compile(r"[0-9][0-9A-Za-z_]*").match(text, i)
            i = m.end()
        elif text.startswith("::", i):
            toks.append(("punct", "::", line))
            i += 2
        else:
            toks.append(("punct", c, line))
            i += 1
    return toks


def _close(toks, i):
    """Index just past the bracket group opening at toks[i]."""
    pairs = {"(": ")", "[": "]", "{": "}"}
    stack = []
    while i < len(toks):
        v = toks[i][1] if toks[i][0] == "punct" else None
        if v in pairs:
            stack.append(pairs[v])
        elif stack and v == stack[-1]:
            stack.pop()
            if not stack:
                return i + 1
        i += 1
    return i


def _item_end(toks, i):
    """Index just past the item starting at toks[i]: its `;` or its first top-level `{...}`."""
    while i < len(toks):
        kind, v, _ = toks[i]
        if kind == "punct" and v == ";":
            return i + 1
        if kind == "punct" and v == "{":
            return _close(toks, i)
        if kind == "punct" and v in "([":
            i = _close(toks, i)
            continue
        i += 1
    return i


def _is(tok, kind, value=None):
    return tok is not None and tok[0] == kind and (value is None or tok[1] == value)


class Crate:
    """The module graph of one src dir."""

    def __init__(self, src):
        self.src = src
        self.modules = []  # top-level module names, in declaration order
        self.edges = {}  # (from, to) -> "file:line" of the first reference
        self.files = []
        entry = next((f for f in ("lib.rs", "main.rs") if os.path.isfile(os.path.join(src, f))), None)
        if entry is None:
            raise SystemExit(f"module-graph: no lib.rs or main.rs in {src}")
        self._refs = []  # (from, to, where), resolved once every top-level module is known
        self._file(os.path.join(src, entry), [], mod_rs=True)
        for frm, to, where in self._refs:
            if to != ROOT and to not in self.modules:
                to = ROOT  # an item of the crate root, or a root re-export
            if frm != to:
                self.edges.setdefault((frm, to), where)

    def _file(self, path, modpath, mod_rs):
        self.files.append(path)
        with open(path, encoding="utf-8") as f:
            toks = tokenize(f.read())
        base = os.path.dirname(path)
        child_dir = base if mod_rs else os.path.join(base, os.path.splitext(os.path.basename(path))[0])
        self._items(toks, 0, len(toks), path, modpath, child_dir, base, inline=False)

    def _items(self, toks, i, end, path, modpath, child_dir, base, inline):
        test, path_attr = False, None
        while i < end:
            t = toks[i]
            nxt = toks[i + 1] if i + 1 < end else None
            if _is(t, "punct", "#") and (_is(nxt, "punct", "[") or _is(nxt, "punct", "!")):
                inner = _is(nxt, "punct", "!")
                j = i + 2 if inner else i + 1
                k = _close(toks, j)
                attr = [v for _, v, _ in toks[j + 1 : k - 1]]
                if attr == ["cfg", "(", "test", ")"]:
                    if inner:
                        return  # the whole file or module is test-only
                    test = True
                elif attr[:2] == ["path", "="] and len(attr) == 3:
                    path_attr = attr[2]
                i = k
                continue
            if test:  # an item under #[cfg(test)]: not part of the graph
                i = _item_end(toks, i)
                test, path_attr = False, None
                continue
            if _is(t, "ident", "mod") and _is(nxt, "ident"):
                name = nxt[1]
                after = toks[i + 2] if i + 2 < end else None
                if not modpath:
                    self.modules.append(name)
                if _is(after, "punct", ";"):
                    self._child(name, path_attr, modpath + [name], child_dir, base, inline)
                    i += 3
                elif _is(after, "punct", "{"):
                    k = _close(toks, i + 2)
                    self._items(
                        toks, i + 3, k - 1, path, modpath + [name], os.path.join(child_dir, name), child_dir, True
                    )
                    i = k
                else:
                    i += 2
                path_attr = None
                continue
            if _is(t, "ident") and t[1] in ("crate", "super") and _is(nxt, "punct", "::"):
                prev = toks[i - 1] if i > 0 else None
                prev2 = toks[i - 2] if i > 1 else None
                is_path_start = not _is(prev, "punct", "::")
                visibility = _is(prev, "ident", "in") and _is(prev2, "punct", "(")
                if is_path_start and not visibility:
                    i = self._path(toks, i, end, path, modpath)
                    continue
            if _is(t, "punct") and t[1] in ";}":
                path_attr = None
            i += 1

    def _child(self, name, path_attr, modpath, child_dir, base, inline):
        if path_attr is not None:
            target = os.path.join(child_dir if inline else base, path_attr)
            self._file(target, modpath, mod_rs=True)
            return
        flat, nested = os.path.join(child_dir, name + ".rs"), os.path.join(child_dir, name, "mod.rs")
        if os.path.isfile(flat):
            self._file(flat, modpath, mod_rs=False)
        elif os.path.isfile(nested):
            self._file(nested, modpath, mod_rs=True)
        else:
            raise SystemExit(f"module-graph: `mod {name};` declared but neither {flat} nor {nested} exists")

    def _path(self, toks, i, end, path, modpath):
        """Records the top-level module a path starting at toks[i] (`crate` or `super`) names."""
        line = toks[i][2]
        frm = modpath[0] if modpath else ROOT
        at = list(modpath)
        if toks[i][1] == "crate":
            at, i = [], i + 2
        else:
            while i + 1 < end and _is(toks[i], "ident", "super") and _is(toks[i + 1], "punct", "::"):
                if not at:
                    return i + 2  # `super` above the root: not valid Rust, not ours to judge
                at.pop()
                i += 2
        where = f"{os.path.relpath(path, self.src)}:{line}"
        if at:
            self._refs.append((frm, at[0], where))
            return i
        t = toks[i] if i < end else None
        if _is(t, "ident"):
            self._refs.append((frm, ROOT if t[1] == "self" else t[1], where))
            return i + 1
        if _is(t, "punct", "{"):  # use crate::{a, b::c, self}
            k = _close(toks, i)
            depth, first = 0, True
            for kind, v, ln in toks[i + 1 : k - 1]:
                if depth == 0 and first and kind == "ident":
                    self._refs.append((frm, ROOT if v == "self" else v, f"{os.path.relpath(path, self.src)}:{ln}"))
                first = depth == 0 and kind == "punct" and v == ","
                if kind == "punct" and v in "{([":
                    depth += 1
                elif kind == "punct" and v in "})]":
                    depth -= 1
            return k
        if _is(t, "punct", "*"):
            self._refs.append((frm, ROOT, where))
        return i + 1

    def nodes(self):
        used = {n for e in self.edges for n in e}
        return ([ROOT] if ROOT in used else []) + self.modules

    def levels(self):
        """The modules by height (0: imports no module of the crate; n: its highest import is at
        n - 1), lowest first: the rows of the drawing. Empty while there is a cycle."""
        if self.cycles():
            return []
        succ = {n: [b for a, b in self.edges if a == n] for n in self.nodes()}
        height = {}

        def h(n):
            if n not in height:
                height[n] = 1 + max((h(m) for m in succ[n]), default=-1)
            return height[n]

        rows = {}
        for n in self.nodes():
            rows.setdefault(h(n), []).append(n)
        return [sorted(rows[k]) for k in sorted(rows)]

    def cycles(self):
        """The strongly connected components with more than one module (Tarjan), sorted."""
        succ = {n: sorted(b for a, b in self.edges if a == n) for n in self.nodes()}
        index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]

        def visit(v):
            index[v] = low[v] = counter[0]
            counter[0] += 1
            stack.append(v)
            on.add(v)
            for w in succ.get(v, ()):
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
        for v in succ:
            if v not in index:
                visit(v)
        return sorted(out)


def crate_name(src):
    """The package name from the Cargo.toml beside src, else the dir."""
    try:
        with open(os.path.join(src, "..", "Cargo.toml"), encoding="utf-8") as f:
            m = re.search(r'^name\s*=\s*"([^"]+)"', f.read(), re.M)
            if m:
                return m.group(1)
    except OSError:
        pass
    return os.path.normpath(src)


def dot(crates):
    lines = ["digraph modules {", "  rankdir=BT;", '  node [shape=box, fontname="monospace"];']
    for n, c in enumerate(crates):
        name = crate_name(c.src)
        lines.append(f"  subgraph cluster_{n} {{")
        lines.append(f'    label="{name}";')
        for m in c.nodes():
            lines.append(f'    "{name}::{m}" [label="{m}"];')
        for level in c.levels():
            same = " ".join(f'"{name}::{m}";' for m in level)
            lines.append(f"    {{ rank=same; {same} }}")
        for a, b in sorted(c.edges):
            lines.append(f'    "{name}::{a}" -> "{name}::{b}";')
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines)


def main(argv):
    args = [a for a in argv if a != "--dot"]
    if not args or any(a.startswith("-") for a in args):
        print(__doc__, file=sys.stderr)
        return 2
    crates = [Crate(src) for src in args]
    if "--dot" in argv:
        print(dot(crates))
        return 0
    failed = False
    for c in crates:
        cycles = c.cycles()
        if not cycles:
            print(f"module-graph: {c.src}: {len(c.modules)} modules, {len(c.edges)} edges, no cycles")
            continue
        failed = True
        print(f"module-graph: {c.src}: {len(cycles)} import cycle(s) between top-level modules:")
        for comp in cycles:
            print(f"  cycle: {' , '.join(comp)}")
            members = set(comp)
            for (a, b), where in sorted(c.edges.items()):
                if a in members and b in members:
                    print(f"    {a} -> {b}   ({where})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
