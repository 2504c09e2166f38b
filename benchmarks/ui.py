"""The web UI on a big journal: 10,000 runs, one of them of 5,000 nodes.

Builds the journal in a few seconds with direct inserts that mirror the schema (through
``Journal.write()``, the journal's own transaction), starts a real ``etherealfabric ui`` server
(uvicorn, a child process, a free loopback port) and times what a browser asks for:

- the runs page: its HTML, then ``/api/runs`` (the list the page draws);
- the run page of the 5,000-node run: its HTML (which carries the graph's compact layout and
  the page's first status: statuses and attempts for the colours, the timeline and the table),
  and ``/api/runs/ID/status`` (what a live page polls);
- and, when Chromium and Playwright are installed, both pages in a headless browser: the time
  Playwright waits (navigation until the table, the timeline and the graph are drawn, plus the
  driver's own round trips), and the page's own marks from navigation start: ``ef-run-drawn``
  (its script has drawn everything) and ``ef-run-painted`` (that frame is on the screen).

Target: each page under 1 s. The machine may be shared: the load average is printed before and
after, and every figure is the median of ``--repeat`` loads after a first one (shown apart: it
includes laying the graph out).

    python benchmarks/ui.py              # 10,000 runs, a 5,000-node run, 5 repetitions
    python benchmarks/ui.py --quick      # 2,000 runs, a 1,000-node run
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote

from etherealfabric.journal import Journal

WIDTH = 100  # nodes per layer of the big run


def build(home: Path, runs: int, big: int) -> str:
    """A journal of ``runs`` runs (small ones of 5 nodes, and one of ``big`` nodes); its id."""
    home.mkdir(parents=True)
    rng = random.Random(7)
    start = time.time() - runs * 60
    run_rows, node_rows, actions = [], [], []
    for i in range(runs - 1):
        run_id = f"20260101-000000-{i:06x}"
        t = start + i * 60
        status = "failed" if i % 17 == 0 else "succeeded"
        run_rows.append((run_id, f"wf{i % 7}", status, t, t + 3.0, "bench", 1, "local", "{}",
                         None, 5, 3, 2, int(status == "failed"), None))  # fmt: skip
        for n in range(5):
            node_rows.append((run_id, f"step{n}", 1, "succeeded" if n < 3 else "cached",
                              f"{i:016x}{n:016x}", None, t + n * 0.5, t + n * 0.5 + 0.4, 0.4,
                              None, None, "bench", 1, None, 0))  # fmt: skip
    big_id = "20261231-235959-b16b16"
    t = time.time() - 30
    run_rows.append((big_id, "big", "succeeded", t, t + 25.0, "bench", 1, "local", "{}", None,
                     big, big // 2, big - big // 2, 0, None))  # fmt: skip
    for n in range(big):
        name, layer = f"node_{n:05d}", n // WIDTH
        ups = [] if layer == 0 else rng.sample(range((layer - 1) * WIDTH, layer * WIDTH), 2)
        components = json.dumps({
            "kind": f"flow.{name}", "code": "c" * 32, "code_parts": {f"flow.{name}": "d" * 32},
            "code_source": "ast", "version": None, "params": {"x": "e" * 32},
            "params_repr": {"x": str(n)},
            "inputs": {f"in{k}": [f"node_{u:05d}.result@{'f' * 32}"] for k, u in enumerate(ups)},
        })  # fmt: skip
        key = f"{n:032x}"
        begun = t + layer * 0.4 + rng.random() * 0.2
        if n % 2:  # cached: its components live with its action record
            node_rows.append((big_id, name, 1, "cached", key, None, None, None, None, None,
                              None, "bench", 1, None, 0))  # fmt: skip
            record = {"node": name, "outputs": {"result": {"digest": "a" * 32,
                      "serializer": "json", "size": 100 + n, "type": "builtins.int",
                      "inline": True}}}  # fmt: skip
            actions.append((key, name, json.dumps(record), components, t))
        else:
            node_rows.append((big_id, name, 1, "succeeded", key, components, begun, begun + 0.3,
                              0.3, None, None, "bench", 1, "printed\n", 0))  # fmt: skip
    with Journal(home / "journal.db") as journal, journal.write() as conn:
        conn.executemany(
            "INSERT INTO runs (id, workflow, status, started_at, finished_at, host, pid, "
            "backend, params, resumed_from, nodes, executed, cached, failed, error) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            run_rows,
        )
        conn.executemany(
            "INSERT INTO node_runs (run_id, node, attempt, status, cache_key, components, "
            "started_at, finished_at, duration, error, traceback, host, pid, output, fallback) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            node_rows,
        )
        conn.executemany(
            "INSERT INTO actions (key, node, record, components, created_at) VALUES (?,?,?,?,?)",
            actions,
        )
    return big_id


def load_average() -> str:
    """The 1, 5 and 15-minute load averages (``-`` where the system does not say)."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "-"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=120) as response:
        return len(response.read())


def timed(fn: object, repeat: int) -> tuple[float, float]:
    """(first, median of the rest) in seconds."""
    times = []
    for _ in range(repeat + 1):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - t0)
    return times[0], statistics.median(times[1:])


#: The run page is drawn: its graph (canvas or SVG), its timeline and its table (one check, so
#: the driver's round trips add as little as they can to what is measured).
DRAWN = (
    "performance.getEntriesByName('ef-run-drawn').length > 0"
    " && document.querySelector('#gantt canvas') && document.querySelector('#nodes tbody tr')"
    " && document.querySelector('#graph-box canvas[data-drawn], #graph-box svg')"
)
#: The page's own marks, from navigation start: its script is done, its first frame is shown.
MARKS = (
    "['ef-run-drawn', 'ef-run-painted']"
    ".map((m) => performance.getEntriesByName(m)[0].startTime / 1000)"
)
PAINTED = "performance.getEntriesByName('ef-run-painted').length > 0"


def browser_times(base: str, big_id: str, repeat: int) -> dict[str, tuple[float, float]]:
    """Both pages in headless Chromium, until the runs table / the run page is drawn."""
    chromium = shutil.which("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return {}
    if chromium is None:
        return {}
    found = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1360, "height": 1000})
        page.set_default_timeout(120_000)

        def runs_page() -> None:
            page.goto(base + "/")
            page.wait_for_selector("#runs tbody tr[data-run]")

        marks: list[list[float]] = []

        def run_page() -> None:
            page.goto(f"{base}/runs/{big_id}", wait_until="commit")
            page.wait_for_function(DRAWN, polling=10)

        def run_page_marked() -> None:
            run_page()
            page.wait_for_function(PAINTED, polling=10)
            marks.append([float(t) for t in page.evaluate(MARKS)])

        found["runs page (browser)"] = timed(runs_page, repeat)
        found["run page (browser)"] = timed(run_page, repeat)
        timed(run_page_marked, repeat)
        for i, what in enumerate(("script done", "first frame shown")):
            times = [m[i] for m in marks]
            found[f"  run page {what} (its own mark)"] = (times[0], statistics.median(times[1:]))
        browser.close()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 runs and a 1,000-node run")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    runs, big = (2_000, 1_000) if args.quick else (10_000, 5_000)
    folder = Path(tempfile.mkdtemp(prefix="etherealfabric-ui-bench-"))
    server = None
    print(f"load average before: {load_average()}")
    try:
        t0 = time.perf_counter()
        big_id = build(folder / "home", runs, big)
        print(f"journal: {runs:,} runs, one of {big:,} nodes, built in "
              f"{time.perf_counter() - t0:.1f}s")  # fmt: skip
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
        server = subprocess.Popen(
            [sys.executable, "-m", "etherealfabric", "ui", "--home", str(folder / "home"),
             "--port", str(port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while True:
            try:
                get(base + "/api/health")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("the UI server did not start") from None
                time.sleep(0.1)
        with urllib.request.urlopen(f"{base}/api/runs/{big_id}") as response:
            version = json.loads(response.read())["version"]
        results = {
            "runs page HTML + /api/runs": timed(
                lambda: (get(base + "/"), get(base + "/api/runs")), args.repeat
            ),
            "run page HTML + /api/runs/ID/status": timed(
                lambda: (get(f"{base}/runs/{big_id}"), get(f"{base}/api/runs/{big_id}/status")),
                args.repeat,
            ),
            "  /api/runs/ID/graph (layout JSON)": timed(
                lambda: get(f"{base}/api/runs/{big_id}/graph"), args.repeat
            ),
            "  /api/runs/ID/status?version=current (a live poll)": timed(
                lambda: get(f"{base}/api/runs/{big_id}/status?version={quote(version)}"),
                args.repeat,
            ),
            "cache page /api/cache": timed(lambda: get(base + "/api/cache"), args.repeat),
        }
        results.update(browser_times(base, big_id, args.repeat))
        size = get(f"{base}/runs/{big_id}")
        print(f"run page HTML: {size / 1e6:.1f} MB")
        print(f"{'what':58} {'first':>8} {'median':>8}")
        for what, (first, median) in results.items():
            flag = "" if what.startswith("  ") or median < 1.0 else "  (over the 1 s target)"
            print(f"{what:58} {first:7.3f}s {median:7.3f}s{flag}")
        print(f"load average after: {load_average()}")
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
