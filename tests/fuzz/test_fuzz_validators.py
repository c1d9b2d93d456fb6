"""Run the validators' fuzz target briefly (20 s, fixed seed) in CI; longer runs: see the README."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
REPO = HERE.parents[1]
SECONDS = int(os.environ.get("AILURO_FUZZ_SECONDS", "20"))

pytestmark = pytest.mark.timeout(SECONDS + 240)


def test_validators_survive_fuzzing(tmp_path: Path) -> None:
    pytest.importorskip("atheris", reason="atheris has no wheel for this platform (README: Security model)")
    sys.path.insert(0, str(HERE))
    try:
        from fuzz_validators import seeds
    finally:
        sys.path.remove(str(HERE))
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, seed in enumerate(seeds()):
        (corpus / f"seed{i}").write_bytes(seed)
    argv = [sys.executable, str(HERE / "fuzz_validators.py"), f"-max_total_time={SECONDS}", "-seed=1"]
    argv += ["-rss_limit_mb=2048", "-max_len=65536", f"-artifact_prefix={tmp_path}/", str(corpus)]
    res = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, timeout=SECONDS + 200, check=False)
    crashes = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("crash-", "oom-", "timeout-")))
    assert res.returncode == 0 and not crashes, f"rc={res.returncode} {crashes}\n{res.stderr[-4000:]}"
    assert "Done" in res.stderr or "DONE" in res.stderr, res.stderr[-2000:]
