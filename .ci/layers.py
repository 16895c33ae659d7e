#!/usr/bin/env python3
"""Checks the dependency direction of the server crate (ARCHITECTURE.md):

    main -> cli -> app -> http -> service -> ports <- adapters,  domain/error/config at the bottom

1. Every top-level module of src/ sits in a layer; a module may use modules of its own layer or
   below, never above, and the graph of top-level modules has no circle.
2. Inside every folder of src/ (a backend such as store/sqlite/), the files form no circle:
   a file may use a sibling or a lower file, and child files never use their parent's items.

Edges come from `crate::a::b` and `super::x` paths in code (comments are ignored).
Run: python3 .ci/layers.py   (prints the graph; exits 1 on a violation)
"""
import pathlib
import re
import sys

LAYERS = [
    ["cli"],
    ["app"],
    ["http", "worker"],
    ["service"],
    ["events", "sequencer", "idempotency", "search", "store", "streams", "redis_conn", "metrics"],
    ["config", "domain", "error"],
]
RANK = {m: i for i, layer in enumerate(LAYERS) for m in layer}
SRC = pathlib.Path(__file__).resolve().parent.parent / "src"


def code(path):
    text = path.read_text()
    text = text.split("#[cfg(test)]")[0]  # unit tests at the end of a file use `super::`
    text = re.sub(r"//[^\n]*", "", text)  # line and doc comments
    return re.sub(r"/\*.*?\*/", "", text, flags=re.S)


def module_path(path):
    """src/store/sqlite/apply.rs -> ['store', 'sqlite', 'apply']; mod.rs names its folder."""
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "mod":
        parts.pop()
    return parts


def paths_used(text):
    """Every `crate::…` path (brace groups expanded one level) as a list of segments."""
    used = []
    for m in re.finditer(r"\b(crate|super)((?:::\w+)*)(::\{([^{}]*(?:\{[^{}]*\}[^{}]*)*)\})?", text):
        head = [m.group(1)] + [s for s in m.group(2).split("::") if s]
        if m.group(4) is None:
            used.append(head)
            continue
        for item in re.split(r",(?![^{]*\})", m.group(4)):
            item = item.strip()
            if item:
                used.append(head + [s for s in re.split(r"::|\s", item) if s and s != "{"][:1])
    return used


def main():
    files = [p for p in SRC.rglob("*.rs") if "bin" not in p.relative_to(SRC).parts]
    top = {}  # top-level module -> set of modules it uses
    local = {}  # folder -> {file module -> set of sibling file modules (or '<parent>')}
    bad = []
    for path in sorted(files):
        mod = module_path(path)
        if not mod or mod[0] in ("lib", "main"):
            continue
        is_mod_rs = path.name == "mod.rs" or (path.with_suffix("").is_dir() and len(mod) == 1)
        text = code(path)
        for used in paths_used(text):
            if used[0] == "crate":
                target = used[1:]
            else:  # super::x from a file: its parent module's path
                parent = mod[:-1] if not is_mod_rs else mod[:-1]
                target = parent + used[1:] if not is_mod_rs else mod[:-1] + used[1:]
            if not target:
                continue
            if target[0] != mod[0]:
                top.setdefault(mod[0], set()).add(target[0])
            # Within one folder: which sibling file does this reach?
            folder = mod[:-1] if not is_mod_rs else mod[:-1]
            if len(mod) >= 2 and target[: len(folder)] == folder and len(target) > len(folder):
                sibling = target[len(folder)]
                children = {p.stem if p.name != "mod.rs" else p.parent.name
                            for p in (SRC.joinpath(*folder)).glob("*")
                            if p.suffix == ".rs" or p.is_dir()}
                if sibling != mod[-1]:
                    node = sibling if sibling in children else "<parent>"
                    local.setdefault("/".join(folder), {}).setdefault(mod[-1], set()).add(node)
        top.setdefault(mod[0], set())
        if is_mod_rs and len(mod) >= 1:
            folder = mod
            # `mod x;` and `pub use x::Y;` re-exports declare the folder; they are no dependency.
            body = re.sub(r"^\s*(pub(\([^)]*\))? )?(mod \w+;|use \w+::[^;]*;)", "", text, flags=re.M)
            for child in re.findall(r"\b(\w+)::", body):
                if (SRC.joinpath(*folder, child + ".rs").exists()
                        or SRC.joinpath(*folder, child, "mod.rs").exists()):
                    local.setdefault("/".join(folder), {}).setdefault("<parent>", set()).add(child)

    for module, uses in sorted(top.items()):
        print(f"{module:12} -> {', '.join(sorted(uses)) or '-'}")
        if module not in RANK:
            bad.append(f"{module}: not in any layer of .ci/layers.py")
            continue
        for used in uses:
            if used in RANK and RANK[used] < RANK[module]:
                bad.append(f"{module} uses {used}, a layer above it")
    bad += cycles(top, "top-level modules")
    for folder, graph in sorted(local.items()):
        bad += cycles(graph, f"files of src/{folder}")
    for line in bad:
        print("layers: " + line, file=sys.stderr)
    print(f"layers: {'FAILED' if bad else 'ok'} ({len(top)} modules, {len(local)} folders)")
    return 1 if bad else 0


def cycles(graph, what):
    state, found = {}, []

    def visit(node, stack):
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                found.append(f"circle among {what}: " + " -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


if __name__ == "__main__":
    sys.exit(main())
