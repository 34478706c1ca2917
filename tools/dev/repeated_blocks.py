#!/usr/bin/env python3
"""Repeated blocks of six or more lines in the Rust sources at a git revision.

usage: tools/dev/repeated_blocks.py REV [TOP]   (e.g. HEAD 10)

A block is 6 consecutive lines (whitespace-trimmed; blank lines, lone braces/brackets and
comment-only lines skipped) that occurs at two or more places. Overlapping windows of one
longer repeated run are merged, so each maximal repeated run counts once."""
import subprocess, sys, collections, re
rev = sys.argv[1]
files = [f for f in subprocess.run(["git","ls-tree","-r","--name-only",rev],capture_output=True,text=True).stdout.split()
         if f.endswith(".rs") and not f.startswith(("fuzz/",))]
trivial = re.compile(r'^([\}\)\]\{;,]+|//.*|)$')
seqs = {}
for f in files:
    text = subprocess.run(["git","show",f"{rev}:{f}"],capture_output=True,text=True).stdout
    lines = [(i, l.strip()) for i, l in enumerate(text.splitlines())]
    seqs[f] = [(i, l) for i, l in lines if not trivial.match(l)]
W = 6
where = collections.defaultdict(list)
for f, seq in seqs.items():
    for k in range(len(seq) - W + 1):
        key = tuple(l for _, l in seq[k:k+W])
        where[key].append((f, k))
rep = {key: locs for key, locs in where.items() if len(locs) > 1}
# merge consecutive windows of the same file into runs
runs = 0
marked = set()
for key, locs in rep.items():
    for f, k in locs:
        marked.add((f, k))
for f, k in sorted(marked):
    if (f, k - 1) not in marked:
        runs += 1
pairs = collections.Counter()
for key, locs in rep.items():
    fs = sorted({f for f, _ in locs})
    pairs[" & ".join(fs) if len(fs) > 1 else fs[0] + " (within)"] += 1
print(f"{rev}: {runs} repeated runs of >= {W} lines ({len(rep)} distinct 6-line windows)")
for p, n in pairs.most_common(int(sys.argv[2]) if len(sys.argv) > 2 else 8):
    print(f"  {n:4d} windows  {p}")
