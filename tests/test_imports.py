"""How the package imports: each module on its own, in a fresh
interpreter, without an import cycle; no optional driver loaded by the
package itself; and the production code never importing the test kit.

Each check runs in a subprocess: in this process the modules are already
imported, in whatever order the other tests happened to import them, which
hides a cycle.
"""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import flask_openai_webhooks

PACKAGE = flask_openai_webhooks.__name__
ROOT = Path(flask_openai_webhooks.__file__).parent

#: Imported by the package only on demand: the extras.
OPTIONAL = ("redis", "sqlalchemy", "openai", "celery", "prometheus_client")
#: The tracing SDK; its API package too (``opentelemetry.*``).
OPTIONAL_PREFIXES = ("opentelemetry",)


def _modules() -> list[str]:
    found = [PACKAGE]
    for info in pkgutil.walk_packages([str(ROOT)], prefix=f"{PACKAGE}."):
        found.append(info.name)
    return sorted(found)


MODULES = _modules()


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_module_list_is_complete() -> None:
    """The discovery below finds the modules, so the parametrized test
    cannot pass by finding none."""
    for expected in (
        "cli",
        "cli_log",
        "state",
        "blueprint",
        "process",
        "attempt",
        "dispatch",
        "log",
        "testing",
        "samples",
        "pytest_plugin",
        "stores",
        "stores.memory",
        "stores.sqlite",
        "stores.redis",
        "stores.sql",
    ):
        assert f"{PACKAGE}.{expected}" in MODULES


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_first_in_a_fresh_interpreter(module: str) -> None:
    result = _python(f"import {module}")

    assert result.returncode == 0, result.stderr
    assert "partially initialized module" not in result.stderr


def _loaded_after(module: str) -> list[str]:
    """The optional packages in ``sys.modules`` after importing
    ``module`` in a fresh interpreter."""
    code = (
        "import sys\n"
        f"import {module}\n"
        f"optional = {OPTIONAL!r}\n"
        f"prefixes = {OPTIONAL_PREFIXES!r}\n"
        "loaded = sorted(\n"
        "    name for name in sys.modules\n"
        "    if name.split('.')[0] in optional or name.startswith(prefixes)\n"
        ")\n"
        "print('\\n'.join(loaded))\n"
    )
    result = _python(code)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_the_package_does_not_import_optional_drivers() -> None:
    assert _loaded_after(PACKAGE) == []


@pytest.mark.parametrize(
    ("module", "driver"),
    [
        (f"{PACKAGE}.stores.redis", "redis"),
        (f"{PACKAGE}.stores.sql", "sqlalchemy"),
    ],
)
def test_a_backend_module_does_import_its_driver(module: str, driver: str) -> None:
    """The check above sees a driver when one is imported: without this,
    it could pass by looking at the wrong names."""
    assert driver in _loaded_after(module)


def _imported_modules(path: Path, root: Path = ROOT) -> set[str]:
    """Every module a file of the package at ``root`` imports, relative
    imports resolved: ``from . import testing`` and ``from .testing import
    x`` both give ``flask_openai_webhooks.testing``."""
    relative = path.relative_to(root.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    package = parts if path.name == "__init__.py" else parts[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def _importers_of(target: str) -> list[str]:
    return sorted(
        str(path.relative_to(ROOT))
        for path in ROOT.rglob("*.py")
        if any(
            name == target or name.startswith(f"{target}.")
            for name in _imported_modules(path)
        )
    )


def test_only_the_pytest_plugin_imports_the_test_kit() -> None:
    assert _importers_of(f"{PACKAGE}.testing") == ["pytest_plugin.py"]


def test_only_the_pytest_plugin_imports_pytest() -> None:
    assert _importers_of("pytest") == ["pytest_plugin.py"]


@pytest.mark.parametrize(
    ("where", "statement"),
    [
        ("thing.py", "from . import testing"),
        ("thing.py", "from .testing import post_event"),
        ("thing.py", f"from {PACKAGE}.testing import post_event"),
        ("thing.py", f"from {PACKAGE} import testing"),
        ("thing.py", f"import {PACKAGE}.testing"),
        ("stores/thing.py", "from .. import testing"),
        ("stores/thing.py", "from ..testing import post_event"),
        ("stores/thing.py", "if True:\n    from .. import testing as kit"),
        ("stores/__init__.py", "from ..testing import post_event"),
    ],
)
def test_every_spelling_of_an_import_is_found(
    tmp_path: Path, where: str, statement: str
) -> None:
    """The finder above sees the test kit imported from the package and
    from a subpackage, however the import is written."""
    root = tmp_path / PACKAGE
    (root / "stores").mkdir(parents=True)
    path = root / where
    path.write_text(statement, "utf-8")

    assert f"{PACKAGE}.testing" in _imported_modules(path, root)


@pytest.mark.parametrize(
    ("where", "statement"),
    [
        ("thing.py", "import testing"),
        ("stores/thing.py", "from . import testing"),
        ("stores/thing.py", "from .testing import post_event"),
        ("thing.py", "from .testing_extra import x"),
    ],
)
def test_other_modules_named_testing_are_not_the_kit(
    tmp_path: Path, where: str, statement: str
) -> None:
    root = tmp_path / PACKAGE
    (root / "stores").mkdir(parents=True)
    path = root / where
    path.write_text(statement, "utf-8")

    found = _imported_modules(path, root)

    assert not any(
        name == f"{PACKAGE}.testing" or name.startswith(f"{PACKAGE}.testing.")
        for name in found
    )
