"""Per-file pipeline: a mapped node cleans each CSV file of a folder, a collector aggregates.

    data/daily/*.csv ─► list_days ─► clean.map(days) ─► totals ─► report
                        (a dict        (one child per       (the cleaned files,
                         name → File)   file: clean[day_007.csv])  a dict by name)

The folder's files are only known when the workflow runs: ``list_days`` lists them, and
``clean.map(days)`` runs one child per file, keyed by the file's *content* (not its place in
the list). So:

    python examples/per_file.py             # first run: 300 children, then the totals
    python examples/per_file.py             # nothing changed: nothing runs (one lookup)
    python examples/per_file.py --add-day   # one new file: exactly one child and the totals
    python examples/per_file.py --touch 7   # one file edited: that child and the totals

The files are made on the first run if the folder is missing (deterministically: the same
bytes, hence the same keys, everywhere), under the folder of this file (the workflow's root),
from whichever folder it is run; the home (``.etherealfabric``) is made in the current folder.
``etherealfabric run examples/per_file.py:build`` runs it too (``build`` returns the workflow).
Only the standard library is needed.
"""

from __future__ import annotations

import argparse
import csv
import random
import shutil
from pathlib import Path

from etherealfabric import Directory, File, Workflow, node, root_path

FOLDER = "data/daily"
STORES = ["north", "south", "east", "west"]


def make_day(folder: Path, day: int) -> Path:
    """One day of sales lines, a few of them broken (the same bytes for the same day)."""
    rng = random.Random(day)
    path = folder / f"day_{day:03d}.csv"
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["store", "units", "price"])
        for _ in range(40):
            units = rng.choice(["", "-1", *map(str, range(1, 30))])  # "" and -1: bad lines
            out.writerow([rng.choice(STORES), units, rng.choice(["9.99", "19.99", "49.00"])])
    return path


@node
def list_days(folder: Directory) -> dict[str, File]:
    """The CSV files of the folder, by name (the map's items)."""
    return {p.name: File(str(p)) for p in sorted(Path(folder).glob("*.csv"))}


@node
def clean(day: File) -> dict[str, float]:
    """One file's sales by store, without its broken lines."""
    totals = dict.fromkeys(STORES, 0.0)
    with open(day, newline="") as fh:
        for row in csv.DictReader(fh):
            if row["units"] and int(row["units"]) > 0:
                totals[row["store"]] += int(row["units"]) * float(row["price"])
    return totals


@node
def totals(days: dict[str, dict[str, float]]) -> dict[str, float]:
    """Every day's sales added up, by store (the collector's consumer)."""
    return {s: round(sum(day[s] for day in days.values()), 2) for s in STORES}


def build(days: int = 300) -> Workflow:
    """The workflow; its folder of files is made first if missing (``days`` files), so that
    ``etherealfabric run examples/per_file.py:build`` works from any folder too."""
    folder = Path(__file__).resolve().parent / FOLDER  # under the workflow's root
    if not folder.exists():  # made beside, then renamed: whole or not at all if killed
        part = folder.with_name(f"{folder.name}.part")
        shutil.rmtree(part, ignore_errors=True)
        part.mkdir(parents=True)
        for day in range(days):
            make_day(part, day)
        part.rename(folder)
    with Workflow("per-file") as wf:
        totals(clean.map(list_days(Directory(root_path(FOLDER)))))
    return wf


def main() -> None:
    parser = argparse.ArgumentParser(description="clean each CSV file, then add them up")
    parser.add_argument("--days", type=int, default=300, help="files to make the first time")
    parser.add_argument("--add-day", action="store_true", help="add one file, then run")
    parser.add_argument("--touch", type=int, default=None, help="edit the file of this day")
    args = parser.parse_args()
    workflow = build(args.days)  # (makes the files the first time)
    folder = Path(__file__).resolve().parent / FOLDER
    if args.add_day:
        make_day(folder, len(list(folder.glob("*.csv"))))
    if args.touch is not None:
        with (folder / f"day_{args.touch:03d}.csv").open("a") as fh:
            fh.write("north,3,49.00\n")
    results = workflow.execute()
    report = results.map_report("clean")
    ran = "the whole map came from the cache" if report.whole else (
        f"{len(report.executed)} ran, {report.cached} cached"
    )  # fmt: skip
    print(f"clean: {report.items or len(results['clean']['result'])} files: {ran}")
    for store, amount in results["totals"]["result"].items():
        print(f"  {store:<6} {amount:>12,.2f}")
    print(f"{results.executed} nodes executed, {results.cached} cached, {results.failed} failed")


if __name__ == "__main__":
    main()
