"""host_client depends on edge_common, never on edge_server: a host has no
board code installed, and a board-side change must not break the client."""
import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _imports(path: Path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module


def test_no_host_client_module_imports_edge_server():
    offenders = [(str(p.relative_to(REPO)), name)
                 for p in sorted((REPO / "host_client").rglob("*.py"))
                 for name in _imports(p) if name.split(".")[0] == "edge_server"]
    assert offenders == []


def test_edge_common_imports_only_itself_and_the_standard_library():
    offenders = [(str(p.relative_to(REPO)), name)
                 for p in sorted((REPO / "edge_common").rglob("*.py"))
                 for name in _imports(p)
                 if name.split(".")[0] in ("edge_server", "host_client", "tvm", "tests")]
    assert offenders == []


def test_importing_every_host_client_module_loads_no_edge_server_code():
    modules = sorted("host_client." + ".".join(p.relative_to(REPO / "host_client")
                                               .with_suffix("").parts)
                     for p in (REPO / "host_client").rglob("*.py")
                     if p.name != "__init__.py")
    code = ("import importlib, sys\n"
            "for m in %r: importlib.import_module(m)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'edge_server'))"
            % modules)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=str(REPO), timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_listing_boards_needs_no_tvm():
    """`edge-client list` answers without the ~1 s `import tvm` (issue 15)."""
    code = ("import sys, host_client, host_client.boards, host_client.cli.main, "
            "host_client.cli.tables\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'tvm'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=str(REPO), timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
