"""What an artifact's notebook depends on, at the granularity of top-level definitions.

``reproduce.run`` recomputes an artifact when something it depends on changed. Hashing whole library files made
every artifact that imports a module stale when an unrelated function was added to it, which pushed code into
modules that existed only to keep hashes stable. This module follows names instead:

- the notebook's code is parsed; every project name it imports (``from crossflow.x import f``, ``import
  crossflow.x as m`` then ``m.f``) is a request for that definition;
- a request for ``module:name`` includes the top-level statement that defines ``name`` (a function, a class,
  an assignment), unparsed (so comments and formatting do not count), and every request that statement
  makes in turn: names of its own module, names it imports (also lazily, inside functions), attributes of
  imported modules, and modules named in strings (``importlib.import_module("crossflow.tasks.sr")``);
- a module's other top-level statements (calls, ``if``/``try`` blocks, definitions decorated by project code
  such as a registry's ``@register``: what runs on import) are included whenever anything of the module, or
  of a module below its package, is used;
- what cannot be followed (a module used as a value, ``from m import *``) includes the whole module;
- a module named in a string is included whole, unless the caller says the code never loads it (the other
  tasks' modules of the task registry: ``run.py`` passes them as ``unused_modules``);
- a registry written as a dict literal counts with the caller's entries only (``registries``: ``run.py`` keeps
  the artifact's own profile of ``crossflow.profiles._PROFILES``).

``dependencies(code, roots)`` returns the included statements as ``{(module, key): source}``; ``run.py``
hashes them with the notebook file, pyproject and the parameters.
"""
from __future__ import annotations

import ast
import re
from functools import lru_cache
from pathlib import Path
from typing import Mapping, Sequence

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("crossflow", "reproduce")
WHOLE = "*"                                            # request: every definition of a module
STRING = "*str"                                        # request: a module named in a string (WHOLE, unless unused)


class Module:
    """One project module: its top-level definitions, what each requests, and its always-run statements."""

    def __init__(self, name: str, path: Path, packages: tuple[str, ...], root: Path = ROOT, text: str | None = None,
                 keep: tuple[tuple[str, tuple[str, ...]], ...] = ()):
        self.name, self.path, self.packages, self.root = name, path, packages, root
        self.package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text() if text is None else text)
        self.defs: dict[str, list[int]] = {}          # name -> indices of the statements that bind it
        self.aliases: dict[str, tuple[str, str]] = {}  # local name -> (module, name or WHOLE) it imports
        self.sources: list[str] = []
        self.always: list[int] = []
        body = tree.body
        if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
            body = body[1:]                            # the module docstring
        keep_entries = dict(keep)
        for i, stmt in enumerate(body):
            if (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name)
                    and stmt.targets[0].id in keep_entries and isinstance(stmt.value, ast.Dict)):
                stmt = body[i] = _prune_registry(stmt, keep_entries[stmt.targets[0].id])
            self.sources.append(ast.unparse(stmt))
            if isinstance(stmt, (ast.Import, ast.ImportFrom)):
                for local, target in self._import_targets(stmt):
                    self.aliases[local] = target       # a use of the name requests its target directly
            elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                self.defs.setdefault(stmt.name, []).append(i)
                if any(self._is_project_name(d) for d in stmt.decorator_list):
                    self.always.append(i)              # @register-style: decorating runs on import
            elif isinstance(stmt, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                for t in targets:
                    for n in ast.walk(t):
                        if isinstance(n, ast.Name):
                            self.defs.setdefault(n.id, []).append(i)
            else:                                      # runs on import: if/try/with/for blocks, calls
                self.always.append(i)
                for n in ast.walk(stmt):
                    if isinstance(n, (ast.FunctionDef, ast.ClassDef)):
                        self.defs.setdefault(n.name, []).append(i)
                    elif isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
                        self.defs.setdefault(n.id, []).append(i)
                    elif isinstance(n, (ast.Import, ast.ImportFrom)):
                        for local, target in self._import_targets(n):
                            self.aliases.setdefault(local, target)
        self.body = body

    def _is_project_name(self, node) -> bool:
        """A decorator that is this project's code (a registry's ``register``), not ``dataclass`` or ``property``."""
        node = node.func if isinstance(node, ast.Call) else node
        while isinstance(node, ast.Attribute):
            node = node.value
        return isinstance(node, ast.Name) and (node.id in self.defs or node.id in self.aliases)

    def _import_targets(self, node) -> list[tuple[str, tuple[str, str]]]:
        """(local name, (project module, name or WHOLE)) for each project name an import statement binds."""
        out = []
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] in self.packages:
                    out.append((a.asname or a.name.split(".")[0], (a.name if a.asname else a.name.split(".")[0],
                                                                    WHOLE)))
            return out
        base = node.module or ""
        if node.level:
            parts = self.package.split(".")
            parts = parts[: len(parts) - node.level + 1]
            base = ".".join(parts + ([base] if base else []))
        if base.split(".")[0] not in self.packages:
            return out
        for a in node.names:
            out.append((a.asname or a.name, (base, a.name)))
        return out

    def requests(self, i: int) -> set[tuple[str, str]]:
        """What statement ``i`` needs: (module, name) pairs, WHOLE for a module used as a value."""
        stmt, out = self.body[i], set()
        local_imports = {}
        for n in ast.walk(stmt):
            if isinstance(n, (ast.Import, ast.ImportFrom)) and n is not stmt:
                for local, target in self._import_targets(n):
                    local_imports[local] = target
                    out.add(target)                    # lazy imports: the imported name itself
        aliases = {**self.aliases, **local_imports}
        attr_roots = set()
        for n in ast.walk(stmt):
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id in aliases:
                mod, name = aliases[n.value.id]
                target = mod if name == WHOLE else f"{mod}.{name}"
                if _module_path(target, self.packages, self.root) is not None:   # m.f, m a module: just f
                    out.add((target, n.attr))
                    attr_roots.add(id(n.value))
        for n in ast.walk(stmt):
            if isinstance(n, ast.Name) and id(n) not in attr_roots:
                if n.id in aliases:
                    out.add(aliases[n.id])
                elif n.id in self.defs:
                    out.add((self.name, n.id))
            elif isinstance(n, ast.Constant) and isinstance(n.value, str) and re.fullmatch(
                    r"(%s)(\.\w+)+" % "|".join(self.packages), n.value):
                if _module_path(n.value, self.packages, self.root) is not None:   # import_module("...")
                    out.add((n.value, STRING))
        return out


def _module_path(name: str, packages, root: Path = None) -> Path | None:
    root = root or ROOT
    if name.split(".")[0] not in packages:
        return None
    path = root.joinpath(*name.split("."))
    for f in (path / "__init__.py", path.with_suffix(".py")):
        if f.exists():
            return f
    return None


def _prune_registry(stmt: ast.Assign, keys: tuple[str, ...]) -> ast.Assign:
    """``NAME = {"a": ..., "b": ...}`` with only the entries whose string key is in ``keys`` (others dropped)."""
    d = stmt.value
    pairs = [(k, v) for k, v in zip(d.keys, d.values)
             if not (isinstance(k, ast.Constant) and isinstance(k.value, str)) or k.value in keys]
    new = ast.Dict(keys=[k for k, _ in pairs], values=[v for _, v in pairs])
    return ast.copy_location(ast.Assign(targets=stmt.targets, value=new, lineno=stmt.lineno), stmt)


@lru_cache(maxsize=256)
def _load(name: str, root: Path, packages: tuple[str, ...], text: str, keep: tuple = ()) -> Module:
    """Parsed once per module text (the text is the cache key: an edited file is parsed again)."""
    return Module(name, _module_path(name, packages, root), packages, root, text, keep)


def _module(name: str, root: Path, packages: tuple[str, ...], registries: tuple = ()) -> Module | None:
    path = _module_path(name, packages, root)
    keep = tuple((var, keys) for (mod, var), keys in registries if mod == name)
    return _load(name, root, packages, path.read_text(), keep) if path is not None else None


def dependencies(code: str, root: Path = ROOT, packages: tuple[str, ...] = PACKAGES,
                 unused_modules: frozenset[str] = frozenset(),
                 registries: Mapping[tuple[str, str], Sequence[str]] | None = None) -> dict[tuple[str, str], str]:
    """The project statements ``code`` (a notebook's cells, magics removed) depends on: {(module, index): source}.

    ``unused_modules``: modules that a registry names in a string but that this code never loads (the other tasks'
    modules of ``crossflow.tasks.TASKS``, which ``task_of(cfg).impl()`` imports only for their own configs); a
    string naming one of them is not followed. Explicit imports of them always are.

    ``registries``: {(module, variable): keys}: a registry assigned as a dict literal (the profiles) counts only
    with the entries of those keys, so an artifact does not depend on other profiles' entries."""
    root = Path(root)
    regs = tuple(sorted((k, tuple(sorted(v))) for k, v in (registries or {}).items()))
    top = ast.parse(code)
    notebook = Module.__new__(Module)                  # the notebook as a module named "__main__"
    notebook.name, notebook.package, notebook.packages, notebook.root = "__main__", "", packages, root
    notebook.defs, notebook.aliases, notebook.always, notebook.body = {}, {}, [], top.body
    notebook.sources = [ast.unparse(s) for s in top.body]
    for i, stmt in enumerate(top.body):
        for n in ast.walk(stmt):
            if isinstance(n, (ast.Import, ast.ImportFrom)):
                for local, target in notebook._import_targets(n):
                    notebook.aliases[local] = target
    todo = [r for i in range(len(top.body)) for r in notebook.requests(i)]
    seen_req, included, entered = set(), {}, set()

    def enter(modname: str):
        """Importing a module runs its packages' and its own always-run statements."""
        parts = modname.split(".")
        for k in range(1, len(parts) + 1):
            name = ".".join(parts[:k])
            if name in entered:
                continue
            entered.add(name)
            m = _module(name, root, packages, regs)
            if m is not None:
                for i in m.always:
                    include(m, i)

    def include(m: Module, i: int):
        key = (m.name, str(i))
        if key not in included:
            included[key] = m.sources[i]
            todo.extend(m.requests(i))

    while todo:
        req = todo.pop()
        if req in seen_req:
            continue
        seen_req.add(req)
        modname, name = req
        if name == STRING and modname in unused_modules:
            continue
        if name == STRING:
            name = WHOLE
        m = _module(modname, root, packages, regs)
        if m is None:
            continue
        enter(modname)
        if name == WHOLE:
            for i in range(len(m.body)):
                include(m, i)
            todo.extend(m.aliases.values())
        elif name in m.defs:
            for i in m.defs[name]:
                include(m, i)
        elif name in m.aliases:                        # re-exported: `from .pool import Job` in __init__
            todo.append(m.aliases[name])
        elif _module_path(f"{modname}.{name}", packages, root) is not None:
            todo.append((f"{modname}.{name}", WHOLE))   # `from pkg import submodule` used as a value
        else:                                          # not found statically: the whole module
            todo.append((modname, WHOLE))
    return included
