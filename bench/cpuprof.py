#!/usr/bin/env python3
"""Top self-time functions of a V8 .cpuprofile (node --cpu-prof).

usage: cpuprof.py FILE.cpuprofile [TOP]
Self time of a node = sum of the time deltas of the samples taken in it. Lines are printed
1-based (V8 call frames are 0-based). Also prints self time per file.
"""
import json, os, sys
from collections import defaultdict

path = sys.argv[1]
top = int(sys.argv[2]) if len(sys.argv) > 2 else 25
prof = json.load(open(path))
nodes = {n["id"]: n for n in prof["nodes"]}
self_us = defaultdict(float)
samples, deltas = prof.get("samples", []), prof.get("timeDeltas", [])
# delta[i] is the time since the previous sample; attribute delta[i+1] to sample i
for i, nid in enumerate(samples):
    d = deltas[i + 1] if i + 1 < len(deltas) else 0
    self_us[nid] += max(d, 0)
total = sum(self_us.values()) or 1
idle = sum(v for k, v in self_us.items() if nodes[k]["callFrame"]["functionName"] == "(idle)")


def short(url):
    if not url:
        return ""
    url = url.replace("file://", "")
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
    return os.path.relpath(url, root) if url.startswith(root) else url


by_fn = defaultdict(float)
by_file = defaultdict(float)
for nid, us in self_us.items():
    cf = nodes[nid]["callFrame"]
    key = (cf["functionName"] or "(anonymous)", short(cf["url"]), cf["lineNumber"] + 1, cf["columnNumber"] + 1)
    by_fn[key] += us
    by_file[short(cf["url"]) or cf["functionName"]] += us

busy = total - idle
print(f"profile {path}: {total / 1e6:.1f} s sampled, idle {100 * idle / total:.1f}%, busy {busy / 1e6:.1f} s")
print(f"{'self%':>6} {'of busy':>7} {'self ms':>9}  function  file:line:col")
for (fn, url, line, col), us in sorted(by_fn.items(), key=lambda kv: -kv[1])[:top]:
    loc = f"{url}:{line}:{col}" if url else ""
    print(f"{100 * us / total:6.1f} {100 * us / busy if busy else 0:7.1f} {us / 1000:9.0f}  {fn}  {loc}")
print()
print("self time per file (top 15):")
for f, us in sorted(by_file.items(), key=lambda kv: -kv[1])[:15]:
    print(f"{100 * us / total:6.1f} {100 * us / busy if busy else 0:7.1f}  {f}")

# inclusive time: a sample counts once for every distinct function on its stack
parent = {}
for n in prof["nodes"]:
    for c in n.get("children", []):
        parent[c] = n["id"]
incl = defaultdict(float)
for nid, us in self_us.items():
    seen = set()
    x = nid
    while x is not None:
        cf = nodes[x]["callFrame"]
        key = (cf["functionName"] or "(anonymous)", short(cf["url"]), cf["lineNumber"] + 1)
        if key not in seen:
            seen.add(key)
            incl[key] += us
        x = parent.get(x)
print()
print(f"inclusive time, project functions (src/, top {top}):")
print(f"{'incl%':>6} {'of busy':>7}  function  file:line")
for (fn, url, line), us in sorted(((k, v) for k, v in incl.items() if k[1].startswith("src/")), key=lambda kv: -kv[1])[:top]:
    print(f"{100 * us / total:6.1f} {100 * us / busy if busy else 0:7.1f}  {fn}  {url}:{line}")
