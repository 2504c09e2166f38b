"""The team cache against a loopback S3 server (``moto.server``): transfers and warm runs.

1. **A 200 MB artifact up and down.** *upload*: an object of the local layer sent to a new
   prefix (``LayeredStore.upload``, what a run and ``cache push`` do: a HEAD, then s3fs'
   multipart upload above 100 MB) against ``s3fs.put_file`` of the same file.
   *write_and_upload*: the whole path of a node output (``LayeredStore.writer()``: hashed while
   spilled to the local layer, renamed in place, then uploaded) against the same put.
   *download*: read back through the engine with an empty local layer (``open_object``:
   parallel ranged GETs into the local layer, digest check) against ``s3fs.get_file``. Best of
   N; the ratio is s3fs time / engine time (1.0 = as fast as s3fs).
2. **A 1,000-node warm run.** 950 nodes with small (inline) outputs and 50 with 128 KB arrays
   (stored objects), all feeding one sum. Timed, each in a fresh process (``execute()`` only,
   not the interpreter start): a warm run of a purely local home; a teammate's first run with
   an empty home against the shared store (every record and small output from the bucket;
   the large outputs checked there), then the same teammate's second warm run (journal and
   local layer full), which should be within 1.2x of the purely local one.

    python benchmarks/stores.py               # 200 MB, best of 3
    python benchmarks/stores.py --mb 64 --repeat 2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

KEY = "benchmark-team-key-0123456789abcdef"

CHILD = r"""
import json, sys, time
import numpy as np
from etherealfabric import Workflow, node

@node
def small(i):
    return i * 3

@node
def big(i):
    return np.full(16384, float(i))  # 128 KB: stored as an object

@node
def total(xs, arrays):
    return sum(xs) + sum(float(a[0]) for a in arrays)

with Workflow("thousand") as wf:
    total([small(i) for i in range(950)], [big(i) for i in range(50)])

t0 = time.perf_counter()
results = wf.execute()
elapsed = time.perf_counter() - t0
print(json.dumps({"seconds": elapsed, "executed": results.executed, "cached": results.cached}))
"""


class Moto:
    """A ``moto.server`` on 127.0.0.1 with one bucket."""

    bucket = "ef-bench"

    def __enter__(self) -> Moto:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.endpoint = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self.fs().mkdir(self.bucket)
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait()

    @property
    def options(self) -> dict[str, Any]:
        return {"key": "testing", "secret": "testing", "endpoint_url": self.endpoint}

    def fs(self) -> Any:
        import fsspec

        return fsspec.filesystem("s3", skip_instance_cache=True, **self.options)

    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_EC2_METADATA_DISABLED": "true",
            "ETHEREALFABRIC_S3_ENDPOINT_URL": self.endpoint,
            "ETHEREALFABRIC_SIGNING_KEY": KEY,
        }


def best(repeat: int, fn: Any) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def transfers(moto: Moto, mb: int, repeat: int, scratch: Path) -> dict[str, Any]:
    from etherealfabric.store import LayeredStore, LocalStore, ObjectStore

    source = scratch / "artifact.bin"
    with open(source, "wb") as fh:
        for _ in range(mb):
            fh.write(os.urandom(1024 * 1024))
    size = source.stat().st_size
    fs = moto.fs()

    def s3fs_put() -> None:
        fs.put_file(str(source), f"{moto.bucket}/raw/{uuid.uuid4().hex}")

    target = f"{moto.bucket}/raw/fixed"
    fs.put_file(str(source), target)

    def s3fs_get() -> None:
        fs.get_file(target, str(scratch / "got.bin"))

    def layers() -> LayeredStore:
        url = f"s3://{moto.bucket}/{uuid.uuid4().hex}"
        remote = ObjectStore(url, storage_options=moto.options, signing_key=KEY)
        home = scratch / f"home-{uuid.uuid4().hex}"
        return LayeredStore(LocalStore(home), remote)

    digests: list[tuple[LayeredStore, str]] = []

    def engine_put() -> None:
        store = layers()  # a new prefix: the upload is never skipped
        with store.writer() as writer, open(source, "rb") as fh:
            while chunk := fh.read(8 * 1024 * 1024):
                writer.write(chunk)
            digests.append((store, writer.commit().digest))

    def engine_get() -> None:
        store, digest = digests[-1]
        fresh = LayeredStore(LocalStore(scratch / f"home-{uuid.uuid4().hex}"), store.remote)
        with fresh.open_object(digest) as fh:
            fh.seek(0, 2)
            assert fh.tell() == size

    def engine_push() -> None:
        store, digest = digests[-1]
        fresh = layers()  # a new prefix, the same local layer: what `cache push` does
        LayeredStore(store.local, fresh.remote).upload(digest)

    put_s3fs, put_engine = best(repeat, s3fs_put), best(repeat, engine_put)
    push_engine = best(repeat, engine_push)
    get_s3fs, get_engine = best(repeat, s3fs_get), best(repeat, engine_get)
    mbs = size / 1e6
    return {
        "mb": round(mbs),
        "upload": {"s3fs_s": round(put_s3fs, 3), "engine_s": round(push_engine, 3),
                   "ratio": round(put_s3fs / push_engine, 2)},
        "write_and_upload": {"s3fs_put_s": round(put_s3fs, 3), "engine_s": round(put_engine, 3),
                             "ratio": round(put_s3fs / put_engine, 2)},
        "download": {"s3fs_s": round(get_s3fs, 3), "engine_s": round(get_engine, 3),
                     "ratio": round(get_s3fs / get_engine, 2)},
    }  # fmt: skip


def run_child(script: Path, env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def warm_runs(moto: Moto, repeat: int, scratch: Path) -> dict[str, Any]:
    script = scratch / "thousand.py"
    script.write_text(CHILD)
    base = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    base["ETHEREALFABRIC_LOG_LEVEL"] = "WARNING"
    base.pop("PYTHONDONTWRITEBYTECODE", None)  # compiling modules is not what is measured

    local_env = {**base, "ETHEREALFABRIC_HOME": str(scratch / "solo")}
    run_child(script, local_env)  # cold

    url = f"s3://{moto.bucket}/{uuid.uuid4().hex}"
    shared = {**base, **moto.env(), "ETHEREALFABRIC_STORE": url}
    run_child(script, {**shared, "ETHEREALFABRIC_HOME": str(scratch / "alice")})  # publishes
    local, empty, full = [], [], []
    for i in range(repeat):  # interleaved, so that a busy moment of the machine hits all three
        bob = {**shared, "ETHEREALFABRIC_HOME": str(scratch / f"bob{i}")}
        empty.append(run_child(script, bob))
        local.append(run_child(script, local_env))
        full.append(run_child(script, bob))
    for figures in (*local, *empty, *full):
        assert figures["executed"] == 0, figures
    t_local = min(f["seconds"] for f in local)
    t_full = min(f["seconds"] for f in full)
    return {
        "nodes": 1001,
        "local_warm_s": round(t_local, 3),
        "shared_empty_local_layer_s": round(min(f["seconds"] for f in empty), 3),
        "shared_full_local_layer_s": round(t_full, 3),
        "full_vs_local": round(t_full / t_local, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200, help="size of the artifact (MB)")
    parser.add_argument("--repeat", type=int, default=3, help="best of N")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    scratch = Path(tempfile.mkdtemp(prefix="ef-bench-stores-"))
    try:
        os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"})
        with Moto() as moto:
            figures = {
                "transfers": transfers(moto, args.mb, args.repeat, scratch),
                "warm_runs": warm_runs(moto, args.repeat, scratch),
            }
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    figures["load_before"] = round(load, 2)
    figures["load_after"] = round(os.getloadavg()[0], 2)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
