"""The DDM/task SDK and its CLI commands import nothing server-side (no dispatcher, no database)."""

from __future__ import annotations

import subprocess
import sys


def test_ddm_and_task_client_side_imports_no_server_package() -> None:
    code = (
        "import sys\n"
        "import ailuro.ddm, ailuro.client, ailuro_cli.ddm, ailuro_cli.task\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('dispatcher', 'sqlalchemy', 'ddm', 'monitor'))\n"
        "print(','.join(bad))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "", done.stdout


def test_no_server_import_anywhere_in_the_ddm_client_modules() -> None:
    """Also imports inside functions (the old ``ailuro ddm`` opened the database lazily)."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    for rel in ("ailuro/ddm.py", "ailuro_cli/ddm.py", "ailuro_cli/task.py", "ailuro/client.py"):
        tree = ast.parse((root / rel).read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in ("dispatcher", "sqlalchemy", "ddm", "monitor"), f"{rel}: {name}"
