"""`cache gc` from a home that no run has used (no journal): nothing to collect, said in one
line, exit 0, and the folder left as it is (a wrong --home must not lose anything)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def gc(root: Path, *args: str, store: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    if store is not None:
        env["ETHEREALFABRIC_STORE"] = str(store)
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, "-m", "etherealfabric", "cache", "gc", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_gc_of_a_home_without_journal_collects_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "never"
    out = gc(tmp_path, "--home", str(missing))
    assert out.returncode == 0, out.stderr
    [line] = out.stdout.strip().splitlines()
    assert "nothing to collect" in line and str(missing / "journal.db") in line
    assert not missing.exists()  # gc made no home
    kept = tmp_path / "home"
    (kept / "objects" / "ab").mkdir(parents=True)
    (kept / "objects" / "ab" / "cdef").write_bytes(b"x")
    shared = tmp_path / "shared"
    out = gc(tmp_path, "--home", str(kept), "--json", store=shared)
    assert out.returncode == 0, out.stderr
    assert "nothing to collect" in json.loads(out.stdout)["nothing_to_collect"]
    assert (kept / "objects" / "ab" / "cdef").read_bytes() == b"x"
    assert sorted(p.name for p in kept.iterdir()) == ["objects"] and not shared.exists()
