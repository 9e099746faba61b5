#!/usr/bin/env bash
# Usage: check-import-circles.sh [--quiet | --self-test]
# Lists file-level import circles inside each crate of the workspace and exits 1 if there is any.
# An import circle: file a refers to an item of file b (`use crate::b::…`, `use super::…`, a
# child module's name, or a `crate::b::…` / `super::…` path in code) and b, directly or through
# other files of the same crate, refers back to a. Re-exports are followed to the file that
# defines the item (`crate::Config` re-exported by lib.rs from config.rs is an edge to config.rs),
# test code counts like any other, and each crate's binaries (main.rs, src/bin/) are their own
# module trees. Prints each circle as `crate: a.rs:LINE -> b.rs:LINE -> a.rs`, LINE being where
# that file first refers to the next one. `--self-test` runs the check on a small workspace
# with known circles and known non-circles instead.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 - "$@" <<'PY'
import os, re, sys

quiet = "--quiet" in sys.argv[1:]
# What an import of another crate's item resolves to.
EXTERNAL = object()

def strip(src):
    """The source with comments, string and char literals blanked out (lengths and lines kept)."""
    out, i, n = [], 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i)); i = j
        elif src.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if src.startswith("/*", j): depth += 1; j += 2
                elif src.startswith("*/", j): depth -= 1; j += 2
                else: j += 1
            out.append(re.sub(r"[^\n]", " ", src[i:j])); i = j
        elif c == "r" and re.match(r'r#*"', src[i:i + 40]) and (i == 0 or not (src[i - 1].isalnum() or src[i - 1] == "_")):
            m = re.match(r'r(#*)"', src[i:])
            end = src.find('"' + m.group(1), i + len(m.group(0)))
            end = n if end < 0 else end + 1 + len(m.group(1))
            out.append(re.sub(r"[^\n]", " ", src[i:end])); i = end
        elif c == '"':
            j = i + 1
            while j < n and src[j] != '"':
                j += 2 if src[j] == "\\" else 1
            out.append(re.sub(r"[^\n]", " ", src[i:j + 1])); i = j + 1
        elif c == "'":
            m = re.match(r"'(\\.[^']*|[^\\'])'", src[i:i + 12])
            if m:
                out.append(" " * len(m.group(0))); i += len(m.group(0))
            else:  # a lifetime
                out.append(c); i += 1
        else:
            out.append(c); i += 1
    return "".join(out)

def expand_use(tree):
    """`a::{b, c::{d, e}}` (whitespace removed) -> [['a','b'], ['a','c','d'], ['a','c','e']]."""
    results = []
    def walk(prefix, s):
        parts, depth, cur = [], 0, ""
        for ch in s:
            if ch == "{": depth += 1
            if ch == "}": depth -= 1
            if ch == "," and depth == 0:
                parts.append(cur); cur = ""
            else:
                cur += ch
        if cur: parts.append(cur)
        for p in parts:
            brace = p.find("{")
            if brace >= 0 and p.endswith("}"):
                walk(prefix + [x for x in p[:brace].split("::") if x], p[brace + 1:-1])
            elif p:
                results.append(prefix + p.split("::"))
    walk([], re.sub(r"\s+", "", tree))
    return results

def parse_use_items(raw):
    """Splits a raw `use` tree (whitespace kept, so `x as y` is readable) into (path, alias)."""
    # normalise `as` aliases into a marker before whitespace is removed
    raw = re.sub(r"\s+as\s+", "@", raw.strip())
    out = []
    for segs in expand_use(raw):
        alias = None
        if "@" in segs[-1]:
            last, alias = segs[-1].split("@", 1)
            segs = segs[:-1] + [last]
        out.append((segs, alias))
    return out

class Crate:
    def __init__(self, name, root_file):
        self.name = name
        self.files = {}      # module path tuple -> file path
        self.children = {}   # module path tuple -> set of child names (file or inline)
        self.reexports = {}  # module path tuple -> {name: absolute path list}
        self.edges = {}      # file -> set of files
        self.where = {}      # (file, file) -> line of the first reference
        self.add_file((), root_file)

    def add_file(self, modpath, path):
        self.files[modpath] = path
        raw = open(path, encoding="utf-8").read()
        src = strip(raw)
        self.children.setdefault(modpath, set())
        for m in re.finditer(r"\bmod\s+([A-Za-z_][A-Za-z0-9_]*)\s*;", src):
            name = m.group(1)
            # a #[path] attribute just before the declaration
            before = raw[:m.start()]
            pm = re.search(r'#\[path\s*=\s*"([^"]+)"\]\s*(?:#\[[^\]]*\]\s*|pub(?:\([^)]*\))?\s*)*$', before)
            base = os.path.dirname(path)
            stem = os.path.basename(path)[:-3]
            if stem not in ("lib", "main", "mod") and not modpath == ():
                base = os.path.join(base, stem)
            if pm:
                child = os.path.join(os.path.dirname(path), pm.group(1))
            else:
                child = os.path.join(base, name + ".rs")
                if not os.path.exists(child):
                    child = os.path.join(base, name, "mod.rs")
            self.children[modpath].add(name)
            if os.path.exists(child):
                self.add_file(modpath + (name,), child)

    def scopes(self, src, modpath):
        """(offset, module path) from each offset on: inline `mod x { … }` blocks change the module."""
        spans = []
        stack = []  # (name, depth at open)
        depth = 0
        for m in re.finditer(r"\bmod\s+([A-Za-z_][A-Za-z0-9_]*)\s*\{|[{}]", src):
            tok = m.group(0)
            if tok.startswith("mod"):
                depth += 1
                stack.append((m.group(1), depth))
                inner = modpath + tuple(n for n, _ in stack)
                self.children.setdefault(inner[:-1], set()).add(m.group(1))
                spans.append((m.end(), inner))
            elif tok == "{":
                depth += 1
            else:
                if stack and stack[-1][1] == depth:
                    stack.pop()
                    spans.append((m.end(), modpath + tuple(n for n, _ in stack)))
                depth -= 1
        return spans

    def module_at(self, spans, offset, modpath):
        cur = modpath
        for start, mp in spans:
            if start <= offset: cur = mp
            else: break
        return cur

    def absolute(self, segs, here):
        """A path as written in module `here` -> absolute module path list, or None if external."""
        if not segs: return None
        if segs[0] == "crate":
            return list(segs[1:])
        if segs[0] in ("self", "super"):
            base = list(here)
            rest = list(segs)
            while rest and rest[0] in ("self", "super"):
                if rest[0] == "super":
                    if not base: return None
                    base.pop()
                rest.pop(0)
            return base + rest
        if segs[0] in self.children.get(tuple(here), ()):
            return list(here) + list(segs)
        return None

    def owner(self, abspath, seen=0):
        """The file that defines what an absolute path names (following re-exports)."""
        for k in range(len(abspath), -1, -1):
            mp = tuple(abspath[:k])
            if mp in self.files:
                rest = abspath[k:]
                if rest and seen < 8:
                    target = self.reexports.get(mp, {}).get(rest[0])
                    if target is EXTERNAL:
                        return None
                    if target is not None:
                        return self.owner(target + rest[1:], seen + 1)
                return self.files[mp]
        return None

    def scan(self):
        refs = []  # (file, absolute path)
        for modpath, path in self.files.items():
            src = strip(open(path, encoding="utf-8").read())
            spans = self.scopes(src, modpath)
            for m in re.finditer(r"\b(pub(?:\s*\([^)]*\))?\s+)?use\s+([^;]+);", src):
                here = self.module_at(spans, m.start(), modpath)
                for segs, alias in parse_use_items(m.group(2)):
                    if segs and segs[0] == "": segs = segs[1:]  # `::name` is an extern crate
                    if not segs: continue
                    absp = self.absolute(segs, here)
                    last = segs[-2] if segs[-1] == "self" and len(segs) > 1 else segs[-1]
                    name = alias or (None if last in ("*", "self", "crate", "super") else last)
                    # Every import is followed (descendants see private ones too); one of
                    # another crate names nothing in this crate.
                    if name:
                        self.reexports.setdefault(tuple(here), {})[name] = EXTERNAL if absp is None else (absp[:-1] if segs[-1] == "self" else absp)
                    if absp is None: continue
                    if segs[-1] == "self": absp = absp[:-1]
                    refs.append((path, absp[:-1] if segs[-1] == "*" else absp, src.count("\n", 0, m.start()) + 1))
            for m in re.finditer(r"(?<![A-Za-z0-9_:$])((?:crate|super|self)(?:\s*::\s*[A-Za-z_][A-Za-z0-9_]*)+)", src):
                # `use` trees were handled above; skip paths inside them
                line_start = src.rfind(";", 0, m.start())
                if re.search(r"\buse\b[^;{}]*$", src[max(line_start, 0):m.start()]) or re.search(r"\buse\s+[^;]*\{[^;]*$", src[max(line_start, 0):m.start()]):
                    continue
                if src[m.end():m.end() + 1] == "!":
                    continue  # a macro path
                segs = [s.strip() for s in m.group(1).split("::")]
                here = self.module_at(spans, m.start(), modpath)
                absp = self.absolute(segs, here)
                if absp is not None:
                    refs.append((path, absp, src.count("\n", 0, m.start()) + 1))
            for child in self.children.get(modpath, ()):
                for m in re.finditer(r"(?<![A-Za-z0-9_:$.])%s\s*::\s*[A-Za-z_]" % re.escape(child), src):
                    here = self.module_at(spans, m.start(), modpath)
                    if tuple(here) != tuple(modpath): continue
                    line_start = src.rfind(";", 0, m.start())
                    if re.search(r"\buse\b[^;]*$", src[max(line_start, 0):m.start()]):
                        continue
                    rest = re.match(r"[A-Za-z_][A-Za-z0-9_]*(?:\s*::\s*[A-Za-z_][A-Za-z0-9_]*)*", src[m.start():]).group(0)
                    refs.append((path, list(modpath) + [s.strip() for s in rest.split("::")], src.count("\n", 0, m.start()) + 1))
        for path, absp, line in refs:
            target = self.owner(absp)
            if target and target != path:
                self.edges.setdefault(path, set()).add(target)
                self.where.setdefault((path, target), line)

    def circles(self):
        """Strongly connected components with more than one file, each as one shortest cycle."""
        index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]
        nodes = set(self.edges) | {t for ts in self.edges.values() for t in ts}
        sys.setrecursionlimit(10000)
        def visit(v):
            index[v] = low[v] = counter[0]; counter[0] += 1
            stack.append(v); on.add(v)
            for w in self.edges.get(v, ()):
                if w not in index:
                    visit(w); low[v] = min(low[v], low[w])
                elif w in on:
                    low[v] = min(low[v], index[w])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop(); on.discard(w); comp.append(w)
                    if w == v: break
                if len(comp) > 1: sccs.append(sorted(comp))
        for v in sorted(nodes):
            if v not in index: visit(v)
        out = []
        for comp in sccs:
            members = set(comp)
            # every two-file circle, then one cycle through each remaining file
            pairs = []
            for a in comp:
                for b in self.edges.get(a, ()):
                    if b in members and a < b and a in self.edges.get(b, ()):
                        pairs.append([a, b, a])
            out.extend(pairs)
            covered = {f for p in pairs for f in p}
            for start in comp:
                if start in covered: continue
                # BFS for the shortest cycle through start
                prev, queue, found = {start: None}, [start], None
                while queue and not found:
                    nxt = []
                    for v in queue:
                        for w in sorted(self.edges.get(v, ())):
                            if w not in members: continue
                            if w == start: found = v; break
                            if w not in prev: prev[w] = v; nxt.append(w)
                        if found: break
                    queue = nxt
                if found:
                    cyc, v = [start], found
                    path = []
                    while v is not None and v != start:
                        path.append(v); v = prev[v]
                    cyc += list(reversed(path)) + [start]
                    out.append(cyc)
                    covered.update(cyc)
        return out

def roots(base):
    """(crate name, root file) for every module tree: lib, main and src/bin/* of each crate."""
    crates = os.path.join(base, "crates")
    dirs = sorted(os.path.join(crates, d) for d in os.listdir(crates)) + [os.path.join(base, "tests")]
    for d in dirs:
        src = os.path.join(d, "src")
        if not os.path.isdir(src): continue
        name = os.path.basename(d)
        for root in ("lib.rs", "main.rs"):
            p = os.path.join(src, root)
            if os.path.exists(p): yield f"{name} ({root})", p
        bindir = os.path.join(src, "bin")
        if os.path.isdir(bindir):
            for f in sorted(os.listdir(bindir)):
                p = os.path.join(bindir, f)
                if f.endswith(".rs"): yield f"{name} (bin/{f})", p
                elif os.path.exists(os.path.join(p, "main.rs")): yield f"{name} (bin/{f}/)", os.path.join(p, "main.rs")

def check(base):
    """Every circle under `base` as a printable line, and how many module trees were read."""
    lines, trees = [], 0
    for name, root in roots(base):
        crate = Crate(name, root)
        crate.scan()
        trees += 1
        for cyc in crate.circles():
            rel = lambda f: os.path.relpath(f, os.path.dirname(root))
            steps = [f"{rel(a)}:{crate.where[(a, b)]}" for a, b in zip(cyc, cyc[1:])]
            lines.append(f"{name}: " + " -> ".join(steps + [rel(cyc[-1])]))
    return lines, trees

def self_test():
    """The check on a small workspace written here: each way of referring to a file is seen,
    and what is not a circle (re-exports, inline tests, other crates' items) is not one."""
    import tempfile
    files = {
        # a <-> b through `use crate::`, and b's `super::` path in code
        "crates/one/src/lib.rs": "mod a;\nmod b;\npub use a::A;\n",
        "crates/one/src/a.rs": "use crate::b::B;\npub struct A(B);\n",
        "crates/one/src/b.rs": "pub struct B;\nfn f() -> super::a::A { todo!() }\n",
        # parent <-> child: mod.rs names its child, the child uses `super::`
        "crates/two/src/lib.rs": "mod p;\n",
        "crates/two/src/p/mod.rs": "mod c;\npub struct P;\nfn f() { c::g(); }\n",
        "crates/two/src/p/c.rs": "use super::P;\npub fn g() {}\n",
        # no circle: a re-export in lib.rs is followed to the defining file, inline tests'
        # `super::*` is the file itself, another crate's module of the same name is not ours,
        # and a comment or string naming a file is no reference
        "crates/three/src/lib.rs": "mod x;\nmod y;\npub use x::X;\npub use other::y as z;\nfn f() -> crate::y::Y { todo!() }\n",
        "crates/three/src/x.rs": "pub struct X;\n// crate::y::Y\nconst S: &str = \"crate::y::Y\";\n#[cfg(test)]\nmod tests { use super::*; }\n",
        "crates/three/src/y.rs": "use crate::X;\npub struct Y(X);\n",
    }
    with tempfile.TemporaryDirectory() as base:
        for path, text in files.items():
            os.makedirs(os.path.dirname(os.path.join(base, path)), exist_ok=True)
            with open(os.path.join(base, path), "w") as f: f.write(text)
        lines, trees = check(base)
    want = ["one (lib.rs): a.rs:1 -> b.rs:2 -> a.rs", "two (lib.rs): p/c.rs:1 -> p/mod.rs:3 -> p/c.rs"]
    if sorted(lines) != want or trees != 3:
        print(f"check-import-circles: self-test failed: {trees} trees, found {lines}, want {want}", file=sys.stderr)
        sys.exit(1)
    print("check-import-circles: self-test ok")

if "--self-test" in sys.argv[1:]:
    self_test()
    sys.exit(0)
lines, trees = check(".")
for line in lines:
    print(line, flush=True)
if lines:
    print(f"check-import-circles: {len(lines)} import circle(s) in {trees} module trees", file=sys.stderr)
    sys.exit(1)
if not quiet:
    print(f"check-import-circles: ok (no import circles in {trees} module trees)")
PY
