"""`bench/run --compare REV`: the tool at REV against the tool of the working tree, in one run.

The old binary is built in a git worktree under bench/work/compare/ (`cargo build --release
--locked`) and kept as bench/work/compare/bin/<commit>/cargo-containerize, so a second compare
against the same commit builds nothing; the worktree is removed again only if this run made it.

Each measurement runs both binaries interleaved (warm-up A B A B ..., then timed A B A B ...), so
a change of machine load hits both alike, and reports per binary mean ± σ, min–max and the
median, then the ratio new/old of the means. Statistics follow hyperfine: warm-up runs first,
then at least `min_runs` runs and at least `min_time` seconds of them (capped at `max_runs`),
unless --runs fixes the count; outliers by hyperfine's rule (modified Z-score
0.6745·|x − median| / MAD above 3.5, Iglewicz and Hoaglin) give a warning.

Timing: each run is one child process started without a shell or wrapper (no /usr/bin/time, no
pipes read while it runs: stdout and stderr go to files). The clock (time.perf_counter_ns) is
read immediately before subprocess.Popen and immediately after os.wait4 returns, so the timed
region is the fork/exec of the child, the child itself and its exit, not the harness's own
Python work (output parsing, file preparation, registry log reading happen outside it). wait4
also gives the child's user + system CPU time (its waited-for descendants included: cargo).

Sections: P1 (cold pack of the padded binary, gzip, per size), P3 (no-op rerun; rerun after
touching main.rs), P4 (push to a loopback registry: cold into an empty registry, unchanged
re-push). Every binary gets its own crate copies, target directories and user cache, so one's
caches never answer the other. Results: printed, and written to bench/work/compare.md and
bench/work/compare.json; BENCHMARKS.md is not touched.
"""

import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import harness
from harness import REPO, TAG, WORK, Failed, Registry, fresh_dir, log, q, rm, sh

CWORK = WORK / "compare"


# --------------------------------------------------------------------------------------------
# The old binary


def build_at(rev):
    """The cargo-containerize binary of commit `rev`, built once per commit."""
    try:
        commit = sh(["git", "-C", REPO, "rev-parse", "--verify", f"{rev}^{{commit}}"]).strip()
    except Failed as e:
        raise Failed(f"--compare {rev}: not a commit of this repository; give a commit, tag or "
                     f"branch (git rev-parse said: {str(e).splitlines()[-1].strip()})") from e
    cached = CWORK / "bin" / commit / "cargo-containerize"
    if cached.is_file():
        log(f"compare: the tool at {commit[:12]} is already built ({q([cached])})")
        return commit, cached
    src = CWORK / f"src-{commit[:12]}"
    made = False
    if not src.exists():
        log(f"compare: git worktree add {q([src])} {commit[:12]}")
        src.parent.mkdir(parents=True, exist_ok=True)
        sh(["git", "-C", REPO, "worktree", "add", "--detach", "--quiet", src, commit])
        made = True
    try:
        log(f"compare: building the tool at {commit[:12]}: cargo build --release --locked")
        target = CWORK / "target"  # shared by every old commit: cargo rebuilds only what changed
        sh(["cargo", "build", "--release", "--locked", "--quiet", "--manifest-path",
            src / "Cargo.toml", "--target-dir", target], timeout=3600)
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(".tmp")
        shutil.copy2(target / "release" / "cargo-containerize", tmp)
        tmp.rename(cached)
    finally:
        if made:
            sh(["git", "-C", REPO, "worktree", "remove", "--force", src])
    return commit, cached


# --------------------------------------------------------------------------------------------
# Timing and statistics


class Binary:
    """One side of the comparison: its binary, its own user cache and work directory."""

    def __init__(self, key, label, tool):
        self.key, self.label, self.tool = key, label, str(tool)
        self.dir = fresh_dir(CWORK / "run" / key)
        self.env = dict(os.environ, CARGO_CONTAINERIZE_CACHE=str(self.dir / "user-cache"))


def run_child(argv, env):
    """Runs argv once; returns (wall seconds, user + system CPU seconds, stdout text).

    See the module's notes: only the child is inside the timed region.
    """
    out_path, err_path = CWORK / "child.out", CWORK / "child.err"
    argv = [str(a) for a in argv]
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        start = time.perf_counter_ns()
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = (time.perf_counter_ns() - start) / 1e9
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4, not by Popen
    if proc.returncode != 0:
        tail = err_path.read_text(errors="replace").strip().splitlines()[-15:]
        raise Failed(f"exit {proc.returncode}: {q(argv)}\n    " + "\n    ".join(tail))
    return wall, usage.ru_utime + usage.ru_stime, out_path.read_text(errors="replace")


def summary(walls, cpus):
    mean = statistics.fmean(walls)
    sd = statistics.stdev(walls) if len(walls) > 1 else 0.0
    median = statistics.median(walls)
    mad = statistics.median(abs(x - median) for x in walls)
    # hyperfine's outlier rule (modified Z-score, Iglewicz and Hoaglin).
    outliers = [x for x in walls if mad > 0 and 0.6745 * abs(x - median) / mad > 3.5]
    return {"mean": mean, "sd": sd, "median": median, "min": min(walls), "max": max(walls),
            "n": len(walls), "cpu_mean": statistics.fmean(cpus), "outliers": len(outliers),
            "all": walls}


def compare(cfg, sides, name, make, before=None, check=None):
    """Measures one thing for every side, interleaved.

    make(side) -> argv; before(side), untimed, before each run; check(side, stdout), untimed,
    after each run (raises Failed when the run did not do what is measured).
    """
    def once(side):
        if before:
            before(side)
        wall, cpu, out = run_child(make(side), side.env)
        if check:
            check(side, out)
        return wall, cpu

    log(f"compare: {name}")
    for _ in range(cfg.warmup):
        for side in sides:
            once(side)
    walls = {s.key: [] for s in sides}
    cpus = {s.key: [] for s in sides}
    while True:
        n = len(walls[sides[0].key])
        least = min(sum(w) for w in walls.values())
        if cfg.runs_fixed:
            if n >= cfg.runs:
                break
        elif n >= cfg.max_runs or (n >= cfg.min_runs and least >= cfg.min_time):
            break
        for side in sides:  # A B A B ...: load drift hits both
            wall, cpu = once(side)
            walls[side.key].append(wall)
            cpus[side.key].append(cpu)
    row = {"name": name, **{s.key: summary(walls[s.key], cpus[s.key]) for s in sides}}
    old, new = row["old"], row["new"]
    row["ratio"] = new["mean"] / old["mean"]
    # σ of the ratio by first-order propagation of both relative σ (as hyperfine's --export).
    row["ratio_sd"] = row["ratio"] * math.hypot(old["sd"] / old["mean"], new["sd"] / new["mean"])
    return row


# --------------------------------------------------------------------------------------------
# Sections


def ours(side, manifest, *args):
    return [side.tool, "containerize", "--manifest-path", manifest, *args]


def compare_p1(inputs, cfg, sides, rows):
    for mb in cfg.sizes:
        binary = inputs.binary(mb)

        def make(side, binary=binary):
            return ours(side, inputs.hello / "Cargo.toml", "--binary", binary, "--target-dir",
                        side.dir / "p1-target", "-q", "--message-format", "json",
                        "-o", f"oci:{side.dir / 'p1-out'}:{TAG}")

        def before(side):  # cold: no layer cache, no remembered `cargo metadata` answer
            rm(side.dir / "p1-target")
            rm(side.dir / "p1-out")
            rm(side.dir / "user-cache")

        rows.append(compare(cfg, sides, f"P1 pack {mb} MB, cold (gzip)", make, before))
        for side in sides:
            rm(side.dir / "p1-target")
            rm(side.dir / "p1-out")


def compare_p3(inputs, cfg, sides, rows):
    crates = {s.key: inputs.copy_fixture("hello", s.dir / "p3" / "hello") for s in sides}

    def make(side):
        return ours(side, crates[side.key] / "Cargo.toml", "-q", "--message-format", "json")

    def nothing_compressed(side, out):
        if json.loads(out)["layers_built"] != 0:
            raise Failed(f"{side.label}: the rerun compressed layers, so it was no no-op")

    for side in sides:  # the first build (untimed, not a warm-up: it builds the crate)
        run_child(make(side), side.env)
    # A file's recorded stat is trusted once the file is older than 2 s at recording (racy
    # stat, as git's index): reruns within 2 s of the build read the blobs again. Wait that
    # out, as the full run does (harness.RACY_WINDOW_S), then warm up.
    time.sleep(harness.RACY_WINDOW_S)
    rows.append(compare(cfg, sides, "P3 no-op rerun", make, check=nothing_compressed))

    def touch(side):
        (crates[side.key] / "src" / "main.rs").touch()

    rows.append(compare(cfg, sides, "P3 rerun after touching main.rs", make, before=touch))


def compare_p4(inputs, cfg, sides, rows):
    binary = inputs.binary(cfg.p4_size)
    registries = {}

    def push(side, reg):
        return ours(side, inputs.hello / "Cargo.toml", "--binary", binary, "--target-dir",
                    side.dir / "p4-target", "-q", "--message-format", "json",
                    "--push", "-t", f"{reg.host}/ours:{TAG}")

    def fresh_registry(side):  # untimed: a new, empty registry before each cold push
        if side.key in registries:
            registries.pop(side.key).stop()
        registries[side.key] = Registry(f"compare-{side.key}")

    try:
        rows.append(compare(cfg, sides, f"P4 push {cfg.p4_size} MB, cold registry",
                            lambda s: push(s, registries[s.key]), before=fresh_registry))
        rows.append(compare(cfg, sides, f"P4 unchanged re-push {cfg.p4_size} MB",
                            lambda s: push(s, registries[s.key])))
    finally:
        for reg in registries.values():
            reg.stop()
            rm(reg.dir)


SECTIONS = {"P1": compare_p1, "P3": compare_p3, "P4": compare_p4}


# --------------------------------------------------------------------------------------------
# Report


def ms(seconds):
    return f"{seconds * 1000:.1f} ms" if seconds < 10 else f"{seconds:.2f} s"


def cell(s):
    text = f"{ms(s['mean'])} ± {ms(s['sd'])} ({ms(s['min'])} – {ms(s['max'])}, n={s['n']})"
    return text + (f" ⚠ {s['outliers']} outlier(s)" if s["outliers"] else "")


def table(result):
    lines = [
        f"# {result['new_label']} against {result['old_label']}",
        "",
        f"{result['date']}, {result['machine']}; load average {result['loadavg']} at the start, "
        f"{result['loadavg_end']} at the end. Wall time of the child process only: mean ± σ "
        "(min – max, runs); CPU is user + system time of the child and what it waited for. "
        "Ratio new/old of the means, ± its propagated σ; below 1 is faster.",
        "",
        "| measurement | old | new | new/old | CPU old | CPU new |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(f"| {r['name']} | {cell(r['old'])} | {cell(r['new'])} | "
                     f"{r['ratio']:.3f} ± {r['ratio_sd']:.3f} | {ms(r['old']['cpu_mean'])} | "
                     f"{ms(r['new']['cpu_mean'])} |")
    notes = [f"{r['name']}, {side}: {r[side]['outliers']} of {r[side]['n']} runs are outliers "
             "(modified Z-score over 3.5); rerun on a quieter machine or with more --runs."
             for r in result["rows"] for side in ("old", "new") if r[side]["outliers"]]
    notes += result["notes"]
    if notes:
        lines += ["", *(f"- {n}" for n in notes)]
    return "\n".join(lines) + "\n"


def describe_new():
    head = sh(["git", "-C", REPO, "rev-parse", "--short=12", "HEAD"]).strip()
    dirty = sh(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"]).strip()
    return f"new {head}{' + uncommitted changes' if dirty else ''}"


def run(cfg):
    """The --compare mode of bench/harness.py."""
    only = [s.strip().upper() for s in cfg.only.split(",")] if cfg.only else list(SECTIONS)
    unknown = [s for s in only if s not in SECTIONS]
    if unknown:
        sys.exit(f"bench: --compare measures {', '.join(SECTIONS)}, not {', '.join(unknown)}")
    cfg.runs_fixed = cfg.runs is not None
    cfg.min_runs, cfg.min_time, cfg.max_runs = (5, 1.0, 30) if cfg.quick else (10, 3.0, 100)
    CWORK.mkdir(parents=True, exist_ok=True)
    commit, old_tool = build_at(cfg.compare)
    sides = [Binary("old", f"old {commit[:12]}", old_tool), Binary("new", describe_new(), cfg.tool)]
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": "{cpu} × {cores} cores".format(**harness.machine()),
        "loadavg": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
        "old_label": sides[0].label, "new_label": sides[1].label, "old_commit": commit,
        "rows": [], "notes": [],
    }
    try:
        inputs = harness.Inputs(cfg.tool)
        for key in SECTIONS:
            if key in only:
                try:
                    SECTIONS[key](inputs, cfg, sides, result["rows"])
                except Failed as e:
                    log(f"compare: {key} failed: {e}")
                    result["notes"].append(f"{key} could not be measured: {str(e).splitlines()[0]}")
    finally:
        harness.stop_everything()
    result["loadavg_end"] = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    text = table(result)
    (WORK / "compare.md").write_text(text)
    (WORK / "compare.json").write_text(json.dumps(result, indent=1))
    print(text, end="")
    log(f"wrote {(WORK / 'compare.md').relative_to(REPO)}")
    if result["notes"]:
        sys.exit(1)
