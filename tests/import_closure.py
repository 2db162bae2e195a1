"""The project files a pipeline stage runs: its import closure, found by reading the code (not by
running it), plus the data files that code reads. tests/test_audit.py checks dvc.yaml against it.

A stage's command is `agora NAME ...`; it runs flows/cli.py's module-level code and the NAME command's
function. From there every import counts, wherever it is written (a function-level import runs when
that function does, and a stage may call any function of a module it imports), and so does:
- a module named in a string (`python -m agorabench.models.transformers_serve` in a subprocess);
- for an import by computed name (`import_module(f"{__name__}.{name}")`, `f"pkg.{name}.task"`), every
  module the pattern can name: one per folder or module under the named package;
- the non-Python files beside a module that reads files next to itself (`__file__`, importlib.resources)
  and in that folder's plain (non-package) subfolders (prompts, templates).
Over-counting only makes a stage re-run more often; under-counting makes an audit lie.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGES = ("agorabench", "flows", "tasks")
_DOTTED = re.compile(r"\b((?:agorabench|flows|tasks)(?:\.\w+)+)")


def module_file(root: Path, name: str) -> Path | None:
    """The file of module `name` under `root`, or None when it is not one of ours."""
    if name.split(".")[0] not in PACKAGES:
        return None
    base = root.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def module_name(root: Path, path: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _imports(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Dotted names a piece of code imports (for `from X import Y`, both X and X.Y: Y may be a module)."""
    names: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's package, up `level - 1` levels
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names.add(target)
            names.update(f"{target}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names.update(_DOTTED.findall(node.value))
    return names


def _computed_imports(tree: ast.AST, module: str, root: Path) -> set[str]:
    """The modules `import_module(f"PREFIX{x}SUFFIX")` calls can import: PREFIX + each name under the
    package PREFIX names + SUFFIX (`{__name__}` in PREFIX is the module's own name)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
                and node.args and isinstance(node.args[0], ast.JoinedStr)):
            continue
        parts = node.args[0].values
        variable = [i for i, v in enumerate(parts) if isinstance(v, ast.FormattedValue)
                    and not (isinstance(v.value, ast.Name) and v.value.id == "__name__")]
        if len(variable) != 1:
            continue
        text = lambda vs: "".join(v.value if isinstance(v, ast.Constant) else module for v in vs)
        prefix, suffix = text(parts[:variable[0]]), text(parts[variable[0] + 1:])
        package = root.joinpath(*prefix.rstrip(".").split("."))
        if prefix.endswith(".") and package.is_dir():
            names.update(prefix + p.stem + suffix for p in package.iterdir()
                         if (p.is_dir() and (p / "__init__.py").exists()) or (p.suffix == ".py" and p.stem != "__init__"))
    return names


def closure(root: Path, entry: str, function: str | None = None) -> set[Path]:
    """Every project file that running `entry` (only its module-level code and `function`, when given)
    can import, and the data files beside them."""
    seen: set[Path] = set()
    todo: list[tuple[str, str | None]] = [(entry, function)]
    while todo:
        name, only = todo.pop()
        path = module_file(root, name)
        if path is None or (path in seen and only is None):
            continue
        seen.add(path)
        tree = ast.parse(path.read_text())
        is_package = path.name == "__init__.py"
        if only is not None:  # module-level statements, and that one function
            body = [n for n in tree.body if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                    or getattr(n, "name", None) == only]
            tree = ast.Module(body=body, type_ignores=[])
        found = _imports(tree, name, is_package)
        parts = name.split(".")
        found.update(".".join(parts[:i]) for i in range(1, len(parts)))  # a module's packages run first
        found.update(_computed_imports(tree, name, root))
        for dotted in found:
            target = module_file(root, dotted)
            if target is not None and target not in seen:
                todo.append((dotted, None))
    data: set[Path] = set()
    for path in seen:
        source = path.read_text()
        if "__file__" in source or "resources.files" in source:
            data.update(_data_files(path.parent))
    return seen | data


def _data_files(folder: Path) -> set[Path]:
    """Non-Python files of a folder and of its plain subfolders (not packages: those are modules)."""
    out: set[Path] = set()
    for p in folder.iterdir():
        if p.is_file() and p.suffix not in (".py", ".pyc"):
            out.add(p)
        elif p.is_dir() and p.name != "__pycache__" and not (p / "__init__.py").exists():
            out.update(q for q in p.rglob("*") if q.is_file() and "__pycache__" not in q.parts)
    return out
