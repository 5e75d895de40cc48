#!/usr/bin/env python3
"""Cost of proving and copying cached blobs (issue 11): OLD (outputs hard-link the cache, no
proof) vs NEW (cached blobs proven, outputs get copies).

usage: bench/cache_copy_cost.py OLD_BIN NEW_BIN BIG_BINARY RUNS [WORK_DIR]

BIG_BINARY: a static binary to package with --binary, e.g. the 100 MB one bench/run makes
(bench/work/inputs/bin-100MB: the hello fixture's binary, then toolchain machine code). Both
tools get a target dir of their own; runs alternate between them so that load from elsewhere
falls on both alike. Prints, per tool: the cold build, the first rerun into a new layout (NEW
reads and proves every cached blob once there), reruns into new layouts (every layer cached,
the layout lacks them all: NEW copies where OLD hard-linked) and no-op reruns (the layout is
up to date: nothing is read or copied)."""
import shutil, statistics, subprocess, sys, time, pathlib
old, new, big, runs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
root = pathlib.Path(sys.argv[5] if len(sys.argv) > 5 else "/tmp/cache-copy-cost")
shutil.rmtree(root, ignore_errors=True)
root.mkdir(parents=True)
fixture = pathlib.Path(__file__).resolve().parent.parent / "tests/fixtures/hello"
tools = {"old": old, "new": new}

def run(name, out):
    proj, target = root / name / "hello", root / name / "target"
    t = time.perf_counter()
    subprocess.run([tools[name], "containerize", "build", "--binary", big, "--target-dir",
                    str(target), "-q", "-o", f"oci:{root / name / out}:t"], cwd=proj,
                   check=True, stdout=subprocess.DEVNULL)
    return (time.perf_counter() - t) * 1000

res = {n: {"cold": [], "first": [], "fresh": [], "noop": []} for n in tools}
for n in tools:
    shutil.copytree(fixture, root / n / "hello")
for n in tools:
    res[n]["cold"].append(run(n, "L0"))
time.sleep(3)  # past the racy window of the blobs just written
for n in tools:
    res[n]["first"].append(run(n, "Lfirst"))  # new: reads and proves every cached blob once
for i in range(runs):
    for n in tools:
        res[n]["fresh"].append(run(n, f"L{i}"))  # all layers cached, the layout lacks them all
    for n in tools:
        res[n]["noop"].append(run(n, "L0"))  # the layout is up to date
med = lambda v: f"{statistics.median(v):.1f} ms ({min(v):.1f}-{max(v):.1f})"
for n in tools:
    r = res[n]
    print(f"{n}: cold {r['cold'][0]:.0f} ms | first rerun to a new layout {r['first'][0]:.1f} ms"
          f" | rerun to a new layout {med(r['fresh'])} | no-op rerun {med(r['noop'])}")
