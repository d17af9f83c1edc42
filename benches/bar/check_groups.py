"""Sanity check of a BAR grouping benchmark run: the groups `etx bar-group` wrote (its manifest)
and the ones pandas_baseline.py wrote (NNNNN.csv in key order) hold the same keys and row counts
as a plain reading of the input. Cell text is not compared: pandas rewrites it by design."""
import csv
import os
import sys
from collections import Counter

src, ours, theirs = sys.argv[1], sys.argv[2], sys.argv[3]

expected = Counter()
with open(src, newline="", encoding="utf-8-sig") as f:
    for row in csv.DictReader(f):
        org, es = row["orgFullName"], row["emissionSourceName"]
        if org.strip() and es.strip():
            expected[f"{org} : {es}"] += 1
want = sorted(expected.items(), key=lambda kv: kv[0].encode())

with open(os.path.join(ours, "manifest.csv"), newline="", encoding="utf-8") as f:
    got = [(r["key"], int(r["rows"])) for r in csv.DictReader(f)]
if got != want:
    sys.exit(f"etx groups differ from the input: {len(got)} groups, {len(want)} expected")

names = sorted(n for n in os.listdir(theirs) if n.endswith(".csv"))
counts = []
for n in names:
    with open(os.path.join(theirs, n), newline="", encoding="utf-8") as f:
        counts.append(sum(1 for _ in csv.reader(f)) - 1)
if counts != [n for _, n in want]:
    sys.exit(f"pandas groups differ: {len(counts)} groups, {len(want)} expected")
print(f"same {len(want)} groups and row counts ({sum(expected.values())} rows) in both outputs")
