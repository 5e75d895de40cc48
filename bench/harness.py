#!/usr/bin/env python3
"""The benchmark harness behind bench/run (run that, not this: it installs what this needs).

Measures cargo-containerize against the tools users pick instead, on the same content, and
writes BENCHMARKS.md and bench/pack-time.png:

  P1 pack    prebuilt static binary + CA bundle + all tzdata -> OCI layout on disk:
             ours (gzip, zstd), podman build + save, buildah, umoci; floors gzip -6, pigz -6
  P2 size    image bytes minus the gzipped binary, per fixture, all zones vs a subset
  P3 rerun   no-op rerun vs a no-op `cargo build`; rerun after touching main.rs
  P4 push    to a loopback docker-registry: ours vs `skopeo copy` of the same layout
  P5 memory  peak RSS (/usr/bin/time) per pack size
  P6 repro   manifest digests of builds from two directories
  P7 loop    edit-to-image loop on real crates: ours vs podman build (ours' Dockerfile,
             classic multi-stage, cargo-chef)                        (bench/realworld.py)
  P8 arm64   --platform linux/amd64,linux/arm64 vs emulated podman build  (bench/realworld.py)
  P9 malloc  the binary's speed: glibc, musl, musl + mimalloc         (bench/realworld.py)

Everything it generates lives under bench/work/.
"""

import argparse
import datetime
import hashlib
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path


REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
WORK = BENCH / "work"
FIXTURES = REPO / "tests" / "fixtures"
USER_CACHE = WORK / "user-cache"  # CARGO_CONTAINERIZE_CACHE for every run of ours
REPORT = REPO / "BENCHMARKS.md"
PNG = BENCH / "pack-time.png"
MUSL = "x86_64-unknown-linux-musl"
MB = 1_000_000  # decimal units throughout: 1 MB = 10^6 bytes, 1 KB = 10^3 bytes
KB = 1_000
TAG = "bench"
BIN_IN_IMAGE = "/usr/local/bin/hello"
ZONE_SUBSET = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"]
# The seeds' published image sizes (issue 6), in bytes.
SEED_PUBLISHED = {"hello": ("hello", 1.55 * MB), "certs": ("https-get", 5.71 * MB)}
# Targets (issue 6).
P2_MAX_OVERHEAD = 250 * KB
P3_MAX_RATIO = 1.1  # issue 25 (issue 6 asked 1.2)
# src/blobs.rs RACY_NS, plus a margin.
RACY_WINDOW_S = 2.5
P5_MAX_RSS = 64 * MB


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


class Failed(Exception):
    pass


def q(argv):
    """A command line as one would type it, with the work dir abbreviated."""
    text = " ".join(shlex.quote(str(a)) for a in argv)
    return text.replace(str(WORK), "$WORK").replace(str(REPO), ".")


def sh(argv, *, cwd=None, stdout=None, env=None, timeout=7200):
    """Runs a command; returns its stdout (text) unless stdout is a path. Raises Failed."""
    argv = [str(a) for a in argv]
    out_file = open(stdout, "wb") if stdout else None
    try:
        proc = subprocess.run(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out_file if out_file else subprocess.PIPE,
            stderr=subprocess.PIPE,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as e:
        raise Failed(f"timed out after {timeout}s: {q(argv)}") from e
    except OSError as e:
        raise Failed(f"{q(argv)}: {e}") from e
    finally:
        if out_file:
            out_file.close()
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip().splitlines()[-15:]
        raise Failed(f"exit {proc.returncode}: {q(argv)}\n    " + "\n    ".join(err))
    return "" if out_file else proc.stdout.decode(errors="replace")


def rm(path):
    path = Path(path)
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def fresh_dir(path):
    rm(path)
    path.mkdir(parents=True)
    return path


def measure(steps):
    """Runs steps [(argv, stdout_path_or_None)] one after the other under /usr/bin/time.

    Returns wall seconds for the whole sequence, the largest peak RSS of any step (bytes),
    and each step's captured stdout.
    """
    rss_file = WORK / "rss.txt"
    outputs = []
    peak = 0
    start = time.perf_counter()
    for argv, stdout in steps:
        out = sh(["/usr/bin/time", "-f", "%M", "-o", rss_file, *argv], stdout=stdout)
        outputs.append(out)
        try:
            peak = max(peak, int(rss_file.read_text().split()[-1]) * 1024)
        except (ValueError, IndexError):
            pass
    elapsed = time.perf_counter() - start
    return elapsed, peak, outputs


def stats(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
        "all": values,
    }


def layout_size(layout, tag=TAG):
    """Bytes a client pulls for the image tagged `tag` in an OCI layout: manifest + config +
    layers (compressed). Returns (bytes, number of layers, layer media types)."""
    layout = Path(layout)
    index = json.loads((layout / "index.json").read_text())
    entries = index["manifests"]
    chosen = [
        m for m in entries if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag
    ] or entries[-1:]
    desc = chosen[0]

    def blob(digest):
        algo, hexd = digest.split(":", 1)
        return json.loads((layout / "blobs" / algo / hexd).read_text())

    total = desc["size"]
    doc = blob(desc["digest"])
    if "manifests" in doc:  # an image index: take the first platform
        desc = doc["manifests"][0]
        total += desc["size"]
        doc = blob(desc["digest"])
    total += doc["config"]["size"] + sum(layer["size"] for layer in doc["layers"])
    kinds = sorted({layer["mediaType"].rsplit(".", 1)[-1] for layer in doc["layers"]})
    return total, len(doc["layers"]), kinds


def layout_manifest_digest(layout, tag=TAG):
    index = json.loads((Path(layout) / "index.json").read_text())
    for m in index["manifests"]:
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag:
            return m["digest"]
    return index["manifests"][0]["digest"]


def gzip_size(path):
    """Bytes of `gzip -6 -n` of a file."""
    proc = subprocess.run(
        ["sh", "-c", 'gzip -6 -n -c "$1" | wc -c', "sh", str(path)],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(proc.stdout.strip())


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------------
# Processes this harness starts (registries); stopped on exit, Ctrl-C and SIGTERM.

RUNNING = []


class Registry:
    """A docker-registry on a free 127.0.0.1 port with storage in a fresh directory."""

    def __init__(self, name):
        self.dir = fresh_dir(WORK / "registry" / name)
        self.port = free_port()
        config = self.dir / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: info\n  accesslog:\n    disabled: false\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.dir / 'data'}\n"
            f"http:\n  addr: 127.0.0.1:{self.port}\n"
        )
        self.log_path = self.dir / "log"
        self.log_file = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            ["docker-registry", "serve", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        RUNNING.append(self)
        deadline = time.time() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/v2/", timeout=1):
                    break
            except (urllib.error.URLError, OSError):
                if self.proc.poll() is not None or time.time() > deadline:
                    self.stop()
                    raise Failed(f"docker-registry did not start; see {self.log_path}")
                time.sleep(0.1)

    @property
    def host(self):
        return f"127.0.0.1:{self.port}"

    def log_offset(self):
        self.log_file.flush()
        return self.log_path.stat().st_size

    def uploads_since(self, offset):
        """Digests whose upload completed (PUT .../blobs/uploads/...?digest=) after offset."""
        self.log_file.flush()
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
        digests = []
        for line in text.splitlines():
            if '"PUT /v2/' in line and "/blobs/uploads/" in line and "digest=" in line:
                d = line.split("digest=", 1)[1].split("&", 1)[0].split(" ", 1)[0]
                digests.append(urllib.parse.unquote(d))
        return digests

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log_file.close()
        if self in RUNNING:
            RUNNING.remove(self)


def stop_everything():
    for reg in list(RUNNING):
        try:
            reg.stop()
        except Exception as e:  # keep stopping the others
            log(f"stopping registry {reg.port}: {e}")


# --------------------------------------------------------------------------------------------
# Inputs


class Inputs:
    def __init__(self, tool):
        self.tool = str(tool)
        self.fixtures = WORK / "fixtures"
        self.inputs = WORK / "inputs"
        self.inputs.mkdir(parents=True, exist_ok=True)
        # The crate whose metadata ours reads for --binary (the hello fixture, copied).
        self.hello = self.copy_fixture("hello", self.fixtures / "hello")
        self.hello_bin = self.build_hello()
        self.rootfs = self.make_rootfs()
        self._pool = None

    @staticmethod
    def copy_fixture(name, dest):
        rm(dest)
        shutil.copytree(FIXTURES / name, dest, ignore=shutil.ignore_patterns("target"))
        return dest

    def build_hello(self):
        target = WORK / "fixture-target"
        log("building tests/fixtures/hello for x86_64-unknown-linux-musl (the static ELF to pad)")
        sh(
            [
                "cargo", "build", "--release", "--target", MUSL, "--quiet",
                "--manifest-path", self.hello / "Cargo.toml", "--target-dir", target,
            ]
        )
        return target / MUSL / "release" / "hello"

    def ours(self, *args):
        return [
            self.tool, "containerize", "--manifest-path", self.hello / "Cargo.toml", *args,
        ]

    def make_rootfs(self):
        """The non-binary files of our image (base files, CA bundle, all tzdata), extracted,
        so that every contender packs exactly the same content."""
        out = WORK / "rootfs-image"
        rm(out)
        target = WORK / "rootfs-target"
        rm(target)
        result = json.loads(
            sh(
                self.ours(
                    "--binary", self.hello_bin, "--target-dir", target, "-q",
                    "--message-format", "json", "-o", f"oci:{out}:{TAG}",
                )
            )
        )
        rootfs = fresh_dir(WORK / "rootfs")
        for layer in result["layers"]:
            if layer["what"] == "binary":
                continue
            algo, hexd = layer["digest"].split(":", 1)
            sh(["tar", "-xzf", out / "blobs" / algo / hexd, "-C", rootfs])
        self.shared_layers = [layer for layer in result["layers"] if layer["what"] != "binary"]
        return rootfs

    def padding_pool(self):
        """Real machine code to pad the binary with (compresses like a real binary does):
        the shared libraries and rlibs of the active Rust toolchain, distinct files only."""
        if self._pool is None:
            sysroot = Path(sh(["rustc", "--print", "sysroot"]).strip())
            host = next(
                line.split(":", 1)[1].strip()
                for line in sh(["rustc", "-vV"]).splitlines()
                if line.startswith("host:")
            )
            candidates = sorted((sysroot / "lib").glob("*.so*")) + sorted(
                (sysroot / "lib" / "rustlib" / host / "lib").glob("*")
            )
            seen = set()
            pool = []
            for p in candidates:
                if p.is_symlink() or not p.is_file():
                    continue
                st = p.stat()
                if st.st_size < MB or (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
                pool.append(p)
            if not pool:
                raise Failed(f"no toolchain libraries under {sysroot} to pad binaries with")
            self._pool = pool
        return self._pool

    def binary(self, size_mb):
        """A static ELF of exactly size_mb MB: the hello binary, then toolchain machine code."""
        path = self.inputs / f"bin-{size_mb}MB"
        stamp = path.with_suffix(".stamp")
        want = size_mb * MB
        hello = self.hello_bin.read_bytes()
        pool = self.padding_pool()
        key = hashlib.sha256(hello + "\n".join(map(str, pool)).encode()).hexdigest()
        if path.exists() and path.stat().st_size == want and stamp.exists() and stamp.read_text() == key:
            return path
        if want < len(hello):
            raise Failed(f"{size_mb} MB is smaller than the hello binary ({len(hello)} bytes)")
        log(f"writing the {size_mb} MB binary")
        with open(path, "wb") as out:
            out.write(hello)
            left = want - len(hello)
            i = 0
            while left > 0:
                with open(pool[i % len(pool)], "rb") as src:
                    while left > 0:
                        chunk = src.read(min(left, 8 * MB))
                        if not chunk:
                            break
                        out.write(chunk)
                        left -= len(chunk)
                i += 1
        path.chmod(0o755)
        stamp.write_text(key)
        return path


class ToolOnly:
    """What P7-P9 need of Inputs: the tool."""

    def __init__(self, tool):
        self.tool = str(tool)


# --------------------------------------------------------------------------------------------
# P1 contenders: each packs the same binary + rootfs into an OCI layout (or, for the floors,
# compresses a tar of the same files).


class SizeCase:
    """Per-size inputs: the binary, a podman/buildah build context and a tar for the floors."""

    def __init__(self, inputs, size_mb):
        self.mb = size_mb
        self.bin = inputs.binary(size_mb)
        self.dir = fresh_dir(WORK / "p1" / f"{size_mb}MB")
        # Build context: rootfs/ and the binary as hard links, and the seeds' final stage.
        self.ctx = self.dir / "ctx"
        self.ctx.mkdir()
        sh(["cp", "-al", inputs.rootfs, self.ctx / "rootfs"])
        os.link(self.bin, self.ctx / "app")
        (self.ctx / "Dockerfile").write_text(DOCKERFILE)
        # The same files as one tar, for gzip -6 and pigz -6.
        stage = self.dir / "stage"
        sh(["cp", "-al", inputs.rootfs, stage])
        (stage / "usr/local/bin").mkdir(parents=True, exist_ok=True)
        os.link(self.bin, stage / BIN_IN_IMAGE.lstrip("/"))
        self.tar = self.dir / "all.tar"
        sh(
            [
                "tar", "--sort=name", "--numeric-owner", "--mtime=@0", "-C", stage,
                "-cf", self.tar, ".",
            ]
        )
        rm(stage)
        self.out_root = self.dir / "out"
        self.out_root.mkdir()

    def cleanup(self):
        rm(self.dir)


DOCKERFILE = f"""\
# The seeds' final stage: scratch, the root files, the binary, the config.
FROM scratch
COPY rootfs/ /
COPY app {BIN_IN_IMAGE}
ENV PATH=/usr/local/bin SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 65532:65532
ENTRYPOINT ["{BIN_IN_IMAGE}"]
"""


class Contender:
    key = ""
    label = ""
    is_ours = False

    def commands(self, case, out):  # -> list of (argv, stdout path or None), timed
        raise NotImplementedError

    def before(self, case, out):  # untimed
        rm(out)

    def after(self, case, out):  # untimed
        pass

    def size(self, out):  # -> (bytes, layers, kinds)
        return layout_size(out)


class Ours(Contender):
    is_ours = True

    def __init__(self, inputs, compression, level=None):
        self.inputs = inputs
        self.compression = compression
        self.level = level
        suffix = f"-{level}" if level else ""
        self.key = f"ours-{compression}{suffix}"
        self.label = f"cargo containerize ({compression}{f' level {level}' if level else ''})"
        self.target = WORK / "p1" / f"target-{compression}{suffix}"

    def commands(self, case, out):
        level = ["--compression-level", str(self.level)] if self.level else []
        return [
            (
                self.inputs.ours(
                    "--binary", case.bin, "--target-dir", self.target,
                    "--compression", self.compression, *level, "-q", "--message-format", "json",
                    "-o", f"oci:{out}:{TAG}",
                ),
                None,
            )
        ]

    def before(self, case, out):
        rm(out)
        rm(self.target)  # cold: no layer cache
        rm(USER_CACHE)  # and no remembered `cargo metadata` answer


class ContainersStorage:
    """Flags for an isolated containers-storage (podman and buildah each get their own)."""

    def __init__(self, name, driver):
        self.root = WORK / name
        self.driver = driver

    def flags(self, tool):
        f = [
            "--root", self.root / "root", "--runroot", self.root / "runroot",
            "--storage-driver", self.driver,
        ]
        if tool == "podman":
            f += [
                "--tmpdir", self.root / "tmp", "--cgroup-manager=cgroupfs",
                "--events-backend=file",
            ]
        return f

    def reset(self, tool):
        try:
            sh([tool, *self.flags(tool), "rmi", "-a", "-f"])
        except Failed:
            pass

    def remove(self, tool):
        """Empties and deletes the storage, even after an interrupted run."""
        if not self.root.exists():
            return
        for argv in (["rm", "-a", "-f"] if tool == "podman" else ["rm", "-a"], ["rmi", "-a", "-f"]):
            try:
                sh([tool, *self.flags(tool), *argv])
            except Failed:
                pass
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
        for m in sorted((m for m in mounts if m.startswith(str(self.root) + "/")), reverse=True):
            subprocess.run(["umount", m], check=False)
        rm(self.root)


class Podman(Contender):
    key = "podman"
    label = "podman build + save"

    def __init__(self, storage):
        self.storage = storage

    def commands(self, case, out):
        p = ["podman", *self.storage.flags("podman")]
        image = f"localhost/bench:{case.mb}"
        return [
            (p + ["build", "--no-cache", "-q", "-t", image, "-f", case.ctx / "Dockerfile", case.ctx], None),
            (p + ["save", "-q", "--format", "oci-dir", "-o", out, image], None),
        ]

    def after(self, case, out):
        self.storage.reset("podman")


class Buildah(Contender):
    key = "buildah"
    label = "buildah"

    def __init__(self, storage):
        self.storage = storage

    def commands(self, case, out):
        b = ["buildah", *self.storage.flags("buildah")]
        return [
            (b + ["from", "--name", "bench-ctr", "scratch"], None),
            (b + ["copy", "-q", "bench-ctr", f"{case.ctx / 'rootfs'}/", "/"], None),
            (b + ["copy", "-q", "bench-ctr", case.bin, BIN_IN_IMAGE], None),
            (
                b
                + [
                    "config", "--entrypoint", json.dumps([BIN_IN_IMAGE]), "--user", "65532:65532",
                    "--env", "PATH=/usr/local/bin",
                    "--env", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt", "bench-ctr",
                ],
                None,
            ),
            (b + ["commit", "-q", "--disable-compression=false", "bench-ctr", f"oci:{out}:{TAG}"], None),
        ]

    def before(self, case, out):
        rm(out)
        self.after(case, out)

    def after(self, case, out):
        b = ["buildah", *self.storage.flags("buildah")]
        try:
            sh(b + ["rm", "-a"])
        except Failed:
            pass
        self.storage.reset("buildah")


class Umoci(Contender):
    key = "umoci"
    label = "umoci"

    def commands(self, case, out):
        img = f"{out}:{TAG}"
        return [
            (["umoci", "init", "--layout", out], None),
            (["umoci", "new", "--image", img], None),
            (["umoci", "insert", "--image", img, case.ctx / "rootfs", "/"], None),
            (["umoci", "insert", "--image", img, case.bin, BIN_IN_IMAGE], None),
            (
                [
                    "umoci", "config", "--image", img, "--config.entrypoint", BIN_IN_IMAGE,
                    "--config.user", "65532:65532", "--config.env", "PATH=/usr/local/bin",
                    "--config.env", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
                ],
                None,
            ),
        ]


class Floor(Contender):
    def __init__(self, program):
        self.program = program
        self.key = program
        self.label = f"{program} -6 (floor)"

    def commands(self, case, out):
        return [([self.program, "-6", "-n", "-c", case.tar], out)]

    def size(self, out):
        return Path(out).stat().st_size, 1, ["gzip"]


def storage_driver():
    """overlay when podman can use it here, else vfs."""
    probe = ContainersStorage("probe-storage", "overlay")
    ctx = fresh_dir(WORK / "probe-ctx")
    (ctx / "f").write_text("x\n")
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY f /f\n")
    driver = "overlay"
    try:
        sh(["podman", *probe.flags("podman"), "build", "-q", "-t", "localhost/probe:1", ctx])
    except Failed as e:
        log(f"podman cannot use overlay storage here ({e}); using vfs")
        driver = "vfs"
    probe.reset("podman")
    rm(probe.root)
    rm(ctx)
    return driver


def run_p1(inputs, cfg, results):
    driver = storage_driver()
    results["p1_storage_driver"] = driver
    pod = ContainersStorage("podman-storage", driver)
    bud = ContainersStorage("buildah-storage", driver)
    pod.remove("podman")
    bud.remove("buildah")
    contenders = [
        Ours(inputs, "gzip"), Ours(inputs, "zstd"), Podman(pod), Buildah(bud), Umoci(),
        Floor("gzip"), Floor("pigz"),
    ]
    results["p1_contenders"] = [{"key": c.key, "label": c.label} for c in contenders]
    # Ours runs `cargo metadata` when its cache is cold; its RSS counts in ours' figure (GNU time
    # reports the largest of a process and the children it waited for).
    _, results["p1_cargo_metadata_rss"], _ = measure(
        [(["cargo", "metadata", "--format-version", "1", "--manifest-path", inputs.hello / "Cargo.toml"], WORK / "metadata.json")])
    rows = results.setdefault("p1", {})
    example = {}
    for mb in cfg.sizes:
        log(f"P1 pack: {mb} MB binary, {cfg.runs} runs of each contender")
        case = SizeCase(inputs, mb)
        data = {c.key: {"time": [], "rss": [], "size": [], "layers": None, "kinds": None, "error": None} for c in contenders}
        try:
            rounds = ([False] if mb <= cfg.warmup_max_mb else []) + [True] * cfg.runs
            for timed in rounds:
                for c in contenders:
                    d = data[c.key]
                    if d["error"]:
                        continue
                    out = case.out_root / c.key
                    try:
                        c.before(case, out)
                        cmds = c.commands(case, out)
                        example.setdefault(c.key, [q(a) + (f" > {q([s])}" if s else "") for a, s in cmds])
                        elapsed, peak, outs = measure(cmds)
                        size, layers, kinds = c.size(out)
                        c.after(case, out)
                    except Failed as e:
                        log(f"P1 {c.key} {mb} MB failed: {e}")
                        d["error"] = str(e).splitlines()[0]
                        continue
                    finally:
                        rm(out)
                    if timed:
                        d["time"].append(elapsed)
                        d["rss"].append(peak)
                        d["size"].append(size)
                        d["layers"], d["kinds"] = layers, kinds
                        if c.is_ours:
                            d.setdefault("built", set()).add(json.loads(outs[0])["layers_built"])
        finally:
            case.cleanup()
        rows[str(mb)] = {
            k: {
                "time": stats(v["time"]), "rss": stats(v["rss"]), "size": stats(v["size"]),
                "layers": v["layers"], "kinds": v["kinds"], "error": v["error"],
                "layers_built": sorted(v.get("built", [])),
            }
            for k, v in data.items()
        }
        for k, v in rows[str(mb)].items():
            if v["time"]:
                log(f"  {k:10s} {v['time']['median']:8.3f} s  {v['size']['median'] / MB:9.3f} MB  rss {v['rss']['max'] / MB:7.1f} MB")
    results["p1_commands"] = example
    pod.remove("podman")
    bud.remove("buildah")
    run_zstd_sweep(inputs, cfg, results)


ZSTD_SWEEP_LEVELS = [3, 4, 5, 6, 7]


def run_zstd_sweep(inputs, cfg, results):
    """zstd levels at one size, for the zstd target's two halves (speed and size) side by side."""
    sizes = [s for s in cfg.sizes if s <= 100]
    if not sizes or "umoci" not in results["p1"].get(str(max(sizes)), {}):
        return
    mb = max(sizes)
    log(f"P1 zstd levels: {mb} MB binary, levels {ZSTD_SWEEP_LEVELS}, {cfg.runs} runs each")
    case = SizeCase(inputs, mb)
    contenders = [Ours(inputs, "zstd", level) for level in ZSTD_SWEEP_LEVELS]
    data = {c.level: {"time": [], "size": []} for c in contenders}
    try:
        for _ in range(cfg.runs):
            for c in contenders:
                out = case.out_root / c.key
                try:
                    c.before(case, out)
                    elapsed, _, _ = measure(c.commands(case, out))
                    size, _, _ = c.size(out)
                finally:
                    rm(out)
                data[c.level]["time"].append(elapsed)
                data[c.level]["size"].append(size)
    finally:
        case.cleanup()
    results["p1_zstd_sweep"] = {
        "size_mb": mb,
        "levels": {str(level): {"time": stats(v["time"]), "size": stats(v["size"])} for level, v in data.items()},
    }


# --------------------------------------------------------------------------------------------
# P2 size overhead


def run_p2(inputs, cfg, results):
    rows = []
    commands = []
    for name in cfg.p2_fixtures:
        log(f"P2 size: {name}")
        crate = inputs.copy_fixture(name, WORK / "p2" / name)
        manifest = crate / "Cargo.toml"
        original = manifest.read_text()
        variants = [
            ("all zones, full CA bundle", original, []),
            (
                f"zones = {len(ZONE_SUBSET)} of them, full CA bundle",
                original
                + "\n[package.metadata.containerize]\nzones = ["
                + ", ".join(json.dumps(z) for z in ZONE_SUBSET)
                + "]\n",
                [],
            ),
            ("no CA bundle, no tzdata", original, ["--ca-certs", "none", "--tzdata", "none"]),
        ]
        for variant, toml, extra in variants:
            manifest.write_text(toml)
            out = WORK / "p2" / f"out-{name}"
            rm(out)
            argv = [
                inputs.tool, "containerize", "--manifest-path", manifest, *extra, "-q",
                "--message-format", "json", "-o", f"oci:{out}:{TAG}",
            ]
            if name == cfg.p2_fixtures[0]:
                commands.append(q(argv))
            try:
                res = json.loads(sh(argv))
            except Failed as e:
                log(f"P2 {name} ({variant}) failed: {e}")
                rows.append({"fixture": name, "variant": variant, "error": str(e).splitlines()[0]})
                continue
            binary = crate / "target" / MUSL / "release" / res["bin"]
            gz = gzip_size(binary)
            layers = {layer["what"]: layer["size"] for layer in res["layers"]}
            rows.append(
                {
                    "fixture": name,
                    "variant": variant,
                    "all_zones_full_certs": not extra and toml == original,
                    "image": res["size"],
                    "binary_raw": binary.stat().st_size,
                    "binary_gz": gz,
                    "binary_layer": layers.get("binary"),
                    "overhead": res["size"] - gz,
                    "layers": layers,
                }
            )
            rm(out)
        manifest.write_text(original)
    results["p2"] = rows
    results["p2_commands"] = commands


# --------------------------------------------------------------------------------------------
# P3 rerun


def run_p3(inputs, cfg, results):
    log(f"P3 rerun: hello, {cfg.runs} runs")
    ours_crate = inputs.copy_fixture("hello", WORK / "p3" / "ours" / "hello")
    cargo_crate = inputs.copy_fixture("hello", WORK / "p3" / "cargo" / "hello")
    ours = [
        inputs.tool, "containerize", "--manifest-path", ours_crate / "Cargo.toml", "-q",
        "--message-format", "json",
    ]
    cargo = [
        "cargo", "build", "--release", "--target", MUSL, "--quiet",
        "--manifest-path", cargo_crate / "Cargo.toml",
    ]
    # As users type it: cargo finds cargo-containerize on PATH and runs it, which costs what
    # starting any cargo subcommand costs (measured alone with --version).
    typed = ["cargo", *ours[1:]]
    dispatch = ["cargo", "containerize", "--version"]
    old_path = os.environ["PATH"]
    os.environ["PATH"] = f"{Path(inputs.tool).parent}{os.pathsep}{old_path}"
    try:
        # Warm both: the first build, then one no-op each.
        for argv in (ours, ours, cargo, cargo, typed, dispatch):
            sh(argv)
        # Then wait out the racy window: ours trusts a file's recorded stat only once the file
        # is older than 2 s at recording (as git does with its index), so a rerun within 2 s
        # of the build reads the binary and the blobs again. A rerun typed by hand comes later.
        time.sleep(RACY_WINDOW_S)
        for argv in (ours, typed):
            sh(argv)
        data = {"noop": {"ours": [], "cargo": [], "layers_built": [], "typed": [], "dispatch": []},
                "touch": {"ours": [], "cargo": [], "layers_built": []}}
        for _ in range(cfg.runs):
            t, _, outs = measure([(ours, None)])
            data["noop"]["ours"].append(t)
            data["noop"]["layers_built"].append(json.loads(outs[0])["layers_built"])
            t, _, _ = measure([(cargo, None)])
            data["noop"]["cargo"].append(t)
            t, _, _ = measure([(typed, None)])
            data["noop"]["typed"].append(t)
            t, _, _ = measure([(dispatch, None)])
            data["noop"]["dispatch"].append(t)
    finally:
        os.environ["PATH"] = old_path
    for _ in range(cfg.runs):
        (ours_crate / "src" / "main.rs").touch()
        t, _, outs = measure([(ours, None)])
        data["touch"]["ours"].append(t)
        data["touch"]["layers_built"].append(json.loads(outs[0])["layers_built"])
        (cargo_crate / "src" / "main.rs").touch()
        t, _, _ = measure([(cargo, None)])
        data["touch"]["cargo"].append(t)
    results["p3"] = {
        kind: {
            "ours": stats(v["ours"]), "cargo": stats(v["cargo"]),
            "layers_built": sorted(set(v["layers_built"])),
            **({"typed": stats(v["typed"]), "dispatch": stats(v["dispatch"])} if "typed" in v else {}),
        }
        for kind, v in data.items()
    }
    results["p3_commands"] = {"ours": q(ours), "cargo": q(cargo), "typed": q(typed), "dispatch": q(dispatch)}


# --------------------------------------------------------------------------------------------
# P4 push


def run_p4(inputs, cfg, results):
    mb = cfg.p4_size
    log(f"P4 push: {mb} MB image, {cfg.runs} runs")
    binary = inputs.binary(mb)
    target = WORK / "p4" / "target"
    layout = WORK / "p4" / "layout"
    rm(target)
    rm(layout)
    # The layout skopeo pushes, written by ours; this also fills ours' layer cache, so both
    # tools push already compressed layers.
    res = json.loads(
        sh(inputs.ours("--binary", binary, "--target-dir", target, "-q", "--message-format", "json",
                       "-o", f"oci:{layout}:{TAG}"))
    )
    digest = res["digest"]
    manifest = json.loads((layout / "blobs" / digest.replace(":", "/")).read_text())
    blob_sizes = {b["digest"]: b["size"] for b in [manifest["config"], *manifest["layers"]]}
    total = layout_size(layout)[0]

    def ours_cmd(reg):
        return inputs.ours("--binary", binary, "--target-dir", target, "-q", "--message-format", "json",
                           "--push", "-t", f"{reg.host}/ours:{TAG}")

    def bare_cmd(reg):  # like for like with skopeo: the image alone, no referrers
        return inputs.ours("--binary", binary, "--target-dir", target, "-q", "--message-format", "json",
                           "--sbom", "none", "--provenance=false",
                           "--push", "-t", f"{reg.host}/bare:{TAG}")

    def skopeo_cmd(reg):
        return ["skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{layout}:{TAG}",
                f"docker://{reg.host}/skopeo:{TAG}"]

    data = {
        tool: {phase: {"time": [], "uploads": [], "bytes_reported": [], "digest_ok": []} for phase in ("cold", "again")}
        for tool in ("ours", "bare", "skopeo")
    }
    for i in range(cfg.runs):
        for tool, make in (("ours", ours_cmd), ("bare", bare_cmd), ("skopeo", skopeo_cmd)):
            reg = Registry(f"{tool}-{i}")
            try:
                for phase in ("cold", "again"):
                    off = reg.log_offset()
                    t, _, outs = measure([(make(reg), None)])
                    time.sleep(0.05)  # let the access log catch up
                    ups = reg.uploads_since(off)
                    d = data[tool][phase]
                    d["time"].append(t)
                    d["uploads"].append(ups)
                    if tool in ("ours", "bare"):
                        j = json.loads(outs[0])
                        d["bytes_reported"].append(j.get("bytes_uploaded"))
                        d["digest_ok"].append(j["digest"] == digest)
                    else:
                        got = urllib.request.urlopen(urllib.request.Request(
                            f"http://{reg.host}/v2/skopeo/manifests/{TAG}", method="HEAD",
                            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}))
                        d["digest_ok"].append(got.headers.get("Docker-Content-Digest") == digest)
            finally:
                reg.stop()
                rm(reg.dir)

    def summarize(d):
        blob_counts = [len(u) for u in d["uploads"]]
        blob_bytes = [sum(blob_sizes.get(x, 0) for x in u) for u in d["uploads"]]
        return {
            "time": stats(d["time"]),
            "blobs_uploaded": [min(blob_counts), max(blob_counts)],
            "blob_bytes_uploaded": [min(blob_bytes), max(blob_bytes)],
            "bytes_reported": [min(d["bytes_reported"]), max(d["bytes_reported"])] if d["bytes_reported"] else None,
            "digest_ok": all(d["digest_ok"]),
        }

    results["p4"] = {
        "size_mb": mb, "image_bytes": total, "digest": digest,
        **{tool: {phase: summarize(data[tool][phase]) for phase in ("cold", "again")} for tool in data},
    }
    reg = type("R", (), {"host": "127.0.0.1:$PORT"})()
    results["p4_commands"] = {"ours": q(ours_cmd(reg)), "bare": q(bare_cmd(reg)), "skopeo": q(skopeo_cmd(reg))}
    rm(target)
    rm(layout)


# --------------------------------------------------------------------------------------------
# P6 reproducibility


def run_p6(inputs, cfg, results):
    rows = []
    for name in cfg.p6_fixtures:
        log(f"P6 reproducibility: {name} from two directories")
        dirs = [WORK / "p6" / "a" / name, WORK / "p6" / "second-place" / "nested" / name]
        digests = []
        cmds = []
        for d in dirs:
            crate = inputs.copy_fixture(name, d)
            argv = [inputs.tool, "containerize", "--manifest-path", crate / "Cargo.toml", "-q",
                    "--message-format", "json"]
            cmds.append(q(argv))
            try:
                digests.append(json.loads(sh(argv))["digest"])
            except Failed as e:
                digests.append(f"failed: {str(e).splitlines()[0]}")
        rows.append({"fixture": name, "dirs": [q([d]) for d in dirs], "digests": digests,
                     "identical": len(set(digests)) == 1 and digests[0].startswith("sha256:"),
                     "commands": cmds})
        for d in dirs:
            rm(d)
    results["p6"] = rows


# --------------------------------------------------------------------------------------------
# Report


def machine():
    def first(cmd):
        try:
            return sh(cmd).strip().splitlines()[0]
        except (Failed, IndexError):
            return "?"

    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = "?"
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal"):
            mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    osname = "?"
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("PRETTY_NAME="):
            osname = line.split("=", 1)[1].strip('"')
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": mem,
        "os": osname,
        "kernel": platform.release(),
        "loadavg": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
        "versions": {
            "rustc": first(["rustc", "--version"]),
            "podman": first(["podman", "--version"]),
            "buildah": first(["buildah", "--version"]),
            "umoci": first(["umoci", "--version"]),
            "skopeo": first(["skopeo", "--version"]),
            "docker-registry": first(["docker-registry", "--version"]),
            "gzip": first(["gzip", "--version"]),
            "pigz": first(["pigz", "--version"]),
            "qemu-aarch64-static": first(["qemu-aarch64-static", "--version"]),
        },
    }


def tool_revision():
    try:
        rev = sh(["git", "-C", REPO, "rev-parse", "--short", "HEAD"]).strip()
        dirty = sh(["git", "-C", REPO, "status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock"]).strip()
        return rev + ("-dirty (uncommitted changes in src/)" if dirty else "")
    except Failed:
        return "?"


def fs(seconds):
    if seconds is None:
        return "—"
    if seconds >= 10:
        return f"{seconds:.1f} s"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    return f"{seconds * 1000:.0f} ms"


def fb(n):
    if n is None:
        return "—"
    if n == 0:
        return "0 B"
    if n >= 10 * MB:
        return f"{n / MB:.1f} MB"
    if n >= MB:
        return f"{n / MB:.2f} MB"
    return f"{n / KB:.1f} KB"


def fr(x):
    return "—" if x is None else f"{x:.2f}×"


def built_note(v):
    built = v.get("layers_built")
    return f" ({'/'.join(map(str, built))} compressed)" if built else ""


def verdict(ok):
    return "**met**" if ok else "**not met**"


def targets(results):
    """[(measure, target, measured, verdict)]"""
    rows = []
    p1 = results.get("p1")
    if p1:
        def med(size, key, what="time"):
            v = p1[size].get(key, {})
            return v[what]["median"] if v and v.get(what) else None

        sizes = list(p1)
        # a) 5x faster than podman build
        parts, ok = [], True
        for s in sizes:
            o, p = med(s, "ours-gzip"), med(s, "podman")
            if o and p:
                parts.append(f"{s} MB: {p / o:.2f}×")
                ok &= p / o >= 5
            else:
                ok = False
        rows.append(("P1 pack", "ours (gzip) ≥ 5× faster than `podman build` + save",
                     "podman/ours time: " + ", ".join(parts), verdict(ok and parts)))
        # b) no slower than umoci while no larger
        parts, ok = [], True
        for s in sizes:
            o, u = med(s, "ours-gzip"), med(s, "umoci")
            os_, us = med(s, "ours-gzip", "size"), med(s, "umoci", "size")
            if o and u and os_ and us:
                parts.append(f"{s} MB: umoci/ours time {u / o:.2f}×, ours/umoci size {os_ / us:.3f}×")
                ok &= (o <= u) and (os_ <= us)
            else:
                ok = False
        rows.append(("P1 pack", "ours (gzip) no slower than umoci, output no larger",
                     "; ".join(parts), verdict(ok and parts)))
        # c) zstd: 2x faster and 15% smaller than umoci
        parts, ok = [], True
        for s in sizes:
            o, u = med(s, "ours-zstd"), med(s, "umoci")
            os_, us = med(s, "ours-zstd", "size"), med(s, "umoci", "size")
            if o and u and os_ and us:
                parts.append(f"{s} MB: umoci/ours time {u / o:.2f}×, {100 * (1 - os_ / us):.1f}% smaller")
                ok &= (u / o >= 2) and (os_ <= 0.85 * us)
            else:
                ok = False
        rows.append(("P1 pack", "ours (zstd) ≥ 2× faster than umoci and ≥ 15% smaller",
                     "; ".join(parts), verdict(ok and parts)))
        # The issue's claim: packing costs no more than compressing the bytes once.
        parts, ok = [], True
        for s in sizes:
            o, pz, gz = med(s, "ours-gzip"), med(s, "pigz"), med(s, "gzip")
            if o and pz and gz:
                parts.append(f"{s} MB: ours/pigz {o / pz:.2f}×, ours/gzip {o / gz:.2f}×")
                ok &= o <= pz
            else:
                ok = False
        rows.append(("P1 floor (headline)", "ours (gzip) costs no more than `pigz -6` of the same bytes (same cores)",
                     "; ".join(parts), verdict(ok and parts)))
    p2 = results.get("p2")
    if p2:
        full = [r for r in p2 if r.get("all_zones_full_certs")]
        ok = bool(full) and all(r["overhead"] <= P2_MAX_OVERHEAD for r in full)
        rows.append(("P2 size", "overhead ≤ 250 KB with the full CA bundle and all zones",
                     ", ".join(f"{r['fixture']}: {fb(r['overhead'])}" for r in full), verdict(ok)))
    p3 = results.get("p3")
    if p3:
        n = p3["noop"]
        ratio = n["ours"]["median"] / n["cargo"]["median"]
        typed = ""
        if n.get("typed"):
            typed = (f"; typed as `cargo containerize` {fs(n['typed']['median'])}: "
                     f"{n['typed']['median'] / n['cargo']['median']:.2f}×, of which {fs(n['dispatch']['median'])} "
                     "is cargo starting a subcommand (verdict on the tool's own run; see P3)")
        rows.append(("P3 rerun", "no-op rerun ≤ 1.1× a no-op `cargo build` (issue 25; issue 6 asked 1.2×)",
                     f"{fs(n['ours']['median'])} vs {fs(n['cargo']['median'])}: {ratio:.2f}×; layers compressed: {', '.join(map(str, n['layers_built']))}{typed}",
                     verdict(ratio <= P3_MAX_RATIO and n["layers_built"] == [0])))
    p4 = results.get("p4")
    if p4:
        rc = p4["ours"]["cold"]["time"]["median"] / p4["skopeo"]["cold"]["time"]["median"]
        ra = p4["ours"]["again"]["time"]["median"] / p4["skopeo"]["again"]["time"]["median"]
        rows.append(("P4 push", "≤ 1.0× `skopeo copy` (cold and unchanged re-push)",
                     f"cold {rc:.2f}×, re-push {ra:.2f}×", verdict(rc <= 1.0 and ra <= 1.0)))
        again = p4["ours"]["again"]
        zero = again["blob_bytes_uploaded"] == [0, 0] and again["blobs_uploaded"] == [0, 0] and (
            again["bytes_reported"] in (None, [0, 0]))
        rows.append(("P4 push", "0 blob bytes on an unchanged re-push",
                     f"blobs uploaded {again['blobs_uploaded'][1]}, bytes_uploaded {again['bytes_reported'][1] if again['bytes_reported'] else '?'}",
                     verdict(zero)))
    if p1:
        big = max(p1, key=int)
        parts, ok = [], True
        for key in ("ours-gzip", "ours-zstd"):
            v = p1[big].get(key)
            if v and v["rss"]:
                parts.append(f"{key}: {fb(v['rss']['max'])}")
                ok &= v["rss"]["max"] <= P5_MAX_RSS
            else:
                ok = False
        if big == "500":
            rows.append(("P5 memory", "≤ 64 MB peak RSS for the 500 MB binary", ", ".join(parts),
                         verdict(ok and parts)))
        else:
            rows.append(("P5 memory", "≤ 64 MB peak RSS for the 500 MB binary",
                         ", ".join(parts) + f" at {big} MB, the largest size in this run",
                         "not measured (no 500 MB run)"))
    p6 = results.get("p6")
    if p6:
        ok = all(r["identical"] for r in p6)
        rows.append(("P6 reproducibility", "identical digests from two directories",
                     ", ".join(f"{r['fixture']}: {'identical' if r['identical'] else 'DIFFERENT'}" for r in p6),
                     verdict(ok)))
    return rows


def write_report(results, cfg):
    m = results["machine"]
    L = []
    w = L.append
    w("# Benchmarks")
    w("")
    w("<!-- Written by bench/run; edit the harness (bench/harness.py), not this file. -->")
    w("")
    w(f"Generated by `bench/run{' --quick' if cfg.quick else ''}` on {results['date']}, "
      f"cargo-containerize {results['revision']}, in {fs(results['duration'])}.")
    w("")
    if cfg.quick:
        w("> **This is a `--quick` run** (fewer sizes, fewer runs): a smoke test of the harness, "
          "not numbers to publish. Run `bench/run` for those.")
        w("")
    if results.get("busy_warning"):
        w(f"> **The machine was not idle**: {results['busy_warning']} Timings are inflated and noisy.")
        w("")
    w("Units are decimal: 1 MB = 10^6 bytes, 1 KB = 10^3 bytes. Times are wall-clock; a cell reads "
      f"*median* (min–max) over {cfg.runs} runs. In P1 a ratio is the other tool's median divided "
      "by ours (gzip), so above 1× means ours is faster or smaller; in P3 and P4 it is ours divided "
      "by the reference, as the targets are phrased, so below 1× means ours is faster.")
    w("")
    for issue, rows in (("issue 6", targets(results)), ("issue 14", realworld.targets(results))):
        if not rows:
            continue
        w(f"## Targets ({issue})")
        w("")
        w("| measure | target | measured | verdict |")
        w("|---|---|---|---|")
        for r in rows:
            w("| " + " | ".join(str(x) for x in r) + " |")
        w("")
    if results.get("notes"):
        for n in results["notes"]:
            w(f"- {n}")
        w("")

    w("## Machine")
    w("")
    w(f"- CPU: {m['cpu']}, {m['cores']} cores; memory {m['memory']}")
    w(f"- OS: {m['os']}, kernel {m['kernel']}")
    w(f"- Load average (1, 5, 15 min) at the start: {m['loadavg']}; at the end: {results.get('loadavg_end', '?')}")
    w("- " + "; ".join(f"{k}: `{v}`" for k, v in m["versions"].items()))
    if "p1_storage_driver" in results:
        w(f"- podman and buildah use containers-storage with the `{results['p1_storage_driver']}` driver, "
          "in directories of their own under `bench/work/`")
    w("")

    p1 = results.get("p1")
    if p1:
        w("## P1 pack: binary + CA bundle + all tzdata → image on disk")
        w("")
        w("The binary is the `hello` fixture built for x86_64-unknown-linux-musl, padded to the "
          "size with machine code from the Rust toolchain's own libraries (librustc_driver, "
          "libLLVM, rlibs), so it compresses like a real binary. Beside it, every contender packs "
          "the same root files: those of our image (base files, Mozilla's CA bundle, all of "
          "IANA's zones), extracted into a directory. Each run is cold: ours has no layer cache "
          "(nor its per-user `cargo metadata` cache), "
          "podman builds with `--no-cache`, and each contender's storage is emptied between runs "
          "(untimed). Contenders run in turn within each round, so load drifts hit all alike. "
          f"{'One untimed warm-up round precedes the runs at sizes up to ' + str(cfg.warmup_max_mb) + ' MB.' if cfg.warmup_max_mb else ''} "
          "Output size is every byte a client pulls (manifest + config + compressed layers), "
          "or the .gz file for the floors.")
        w("")
        if PNG.exists() and results.get("png"):
            w("![pack time against binary size](bench/pack-time.png)")
            w("")
        labels = {c["key"]: c["label"] for c in results["p1_contenders"]}
        for size, row in p1.items():
            w(f"### {size} MB binary")
            w("")
            w("| tool | time | vs ours (gzip) | output | vs ours (gzip) | layers | peak RSS |")
            w("|---|---|---|---|---|---|---|")
            base = row.get("ours-gzip", {})
            bt = base["time"]["median"] if base.get("time") else None
            bs = base["size"]["median"] if base.get("size") else None
            for key, v in row.items():
                if v["error"] and not v["time"]:
                    w(f"| {labels[key]} | failed: {v['error']} | | | | | |")
                    continue
                t = v["time"]
                s = v["size"]["median"]
                w(f"| {labels[key]} | {fs(t['median'])} ({fs(t['min'])}–{fs(t['max'])}) | "
                  f"{fr(t['median'] / bt) if bt else '—'} | {fb(s)} | {fr(s / bs) if bs else '—'} | "
                  f"{v['layers']} {'/'.join(v['kinds'] or [])}{built_note(v)} | {fb(v['rss']['max'])} |")
            w("")
        sweep = results.get("p1_zstd_sweep")
        umoci = p1.get(str(sweep["size_mb"]), {}).get("umoci") if sweep else None
        if sweep and umoci and umoci.get("time"):
            ut, us = umoci["time"]["median"], umoci["size"]["median"]
            w(f"### zstd levels, {sweep['size_mb']} MB binary")
            w("")
            w("The zstd target asks for two things at once: at least 2× umoci's speed and at least "
              "15% fewer bytes. Every level, measured the same way as above (cold, "
              f"{results['runs']} runs), against umoci's median from the table above:")
            w("")
            w("| zstd level | time | umoci/ours time | output | smaller than umoci | both halves met |")
            w("|---|---|---|---|---|---|")
            for level, v in sweep["levels"].items():
                t, s = v["time"]["median"], v["size"]["median"]
                both = ut / t >= 2 and s <= 0.85 * us
                w(f"| {level}{' (default)' if level == '7' else ''} | {fs(t)} ({fs(v['time']['min'])}–{fs(v['time']['max'])}) | "
                  f"{ut / t:.2f}× | {fb(s)} | {100 * (1 - s / us):.1f}% | {'yes' if both else 'no'} |")
            w("")

    p2 = results.get("p2")
    if p2:
        w("## P2 size: overhead over the gzipped binary")
        w("")
        w("Overhead = image bytes (manifest + config + every layer, compressed) − `gzip -6 -n` of "
          "the packaged (stripped) binary. The seeds' published sizes are whole images built the "
          "usual way; `certs` (loads the CA bundle with rustls-native-certs) is our nearest "
          "fixture to their `https-get`, which also carries an HTTP client, so only the overhead "
          "compares directly.")
        w("")
        w("| fixture | content | image | binary (raw) | binary (gzip -6) | overhead | seed image (published) |")
        w("|---|---|---|---|---|---|---|")
        for r in p2:
            if r.get("error"):
                w(f"| {r['fixture']} | {r['variant']} | failed: {r['error']} | | | | |")
                continue
            seed = SEED_PUBLISHED.get(r["fixture"])
            seed_txt = f"{seed[0]}: {fb(seed[1])} ({fr(seed[1] / r['image'])} ours)" if seed and r.get("all_zones_full_certs") else ""
            w(f"| {r['fixture']} | {r['variant']} | {fb(r['image'])} | {fb(r['binary_raw'])} | "
              f"{fb(r['binary_gz'])} | {fb(r['overhead'])} | {seed_txt} |")
        w("")
        w("Layers of the first fixture, all zones: " + ", ".join(
            f"{k} {fb(v)}" for k, v in next(r for r in p2 if not r.get("error"))["layers"].items()) + ".")
        w("")

    p3 = results.get("p3")
    if p3:
        w("## P3 rerun")
        w("")
        w("The `hello` fixture in two copies with their own target directories, each warmed by a "
          "first build and one no-op, then, after a wait of 2.5 s, one more no-op of ours: ours "
          "trusts a file's recorded stat only once the file was older than 2 s when it was "
          "recorded (racy stat, as git's index), so a rerun within 2 s of a build reads the binary "
          "and the image's blobs again, and a rerun typed by hand comes later than that. For the second row `src/main.rs` is touched (untimed) before "
          "each run, so cargo recompiles the crate; when the recompiled binary is byte-identical, "
          "ours finds every layer in its cache (0 layers compressed).")
        w("")
        w("| case | cargo containerize | cargo build | ratio ours/cargo | layers ours compressed |")
        w("|---|---|---|---|---|")
        for kind, title in (("noop", "no-op rerun"), ("touch", "after touching main.rs")):
            v = p3[kind]
            o, c = v["ours"], v["cargo"]
            w(f"| {title} | {fs(o['median'])} ({fs(o['min'])}–{fs(o['max'])}) | "
              f"{fs(c['median'])} ({fs(c['min'])}–{fs(c['max'])}) | {o['median'] / c['median']:.2f}× | "
              f"{', '.join(map(str, v['layers_built']))} |")
        n = p3["noop"]
        if n.get("typed"):
            t, d, c = n["typed"], n["dispatch"], n["cargo"]
            w(f"| no-op rerun typed as `cargo containerize` | {fs(t['median'])} ({fs(t['min'])}–{fs(t['max'])}) | "
              f"{fs(c['median'])} | {t['median'] / c['median']:.2f}× | {', '.join(map(str, n['layers_built']))} |")
            w(f"| `cargo containerize --version` (cargo starting a subcommand) | {fs(d['median'])} "
              f"({fs(d['min'])}–{fs(d['max'])}) | | | |")
        w("")
        if n.get("typed"):
            w("The first rows run the tool itself, as the target is about its own cost. Typed as "
              "`cargo containerize`, cargo first starts (through the rustup proxy), reads its "
              "configuration and looks the subcommand up on PATH; the last row measures that step "
              "alone. No cargo subcommand can avoid it. Run that way, the tool's inner `cargo build` "
              "skips the rustup proxy (cargo passes its own path in `CARGO`), which is why the "
              "typed run costs less than dispatch plus the direct run.")
            w("")

    p4 = results.get("p4")
    if p4:
        w("## P4 push to a loopback docker-registry")
        w("")
        w(f"The {p4['size_mb']} MB binary's image ({fb(p4['image_bytes'])}, gzip). Ours writes an OCI "
          "layout first (untimed), which also fills its layer cache; skopeo copies that layout. "
          "Each run starts a fresh registry (empty storage) for each tool, pushes once (cold), "
          "then pushes the same image again (unchanged re-push). Blob uploads are counted from the "
          "registry's access log (completed `PUT …/blobs/uploads/…?digest=`), the same way for "
          "both tools. Ours pushes the provenance and two SBOMs as referrers too, as by default "
          "(4 more blobs, 3 manifests, and on this registry, which has no referrers API, the "
          "`sha256-…` index, read back after at least 25 ms); skopeo copies the image alone, as "
          "does ours with `--sbom none --provenance=false` (the rows marked so).")
        w("")
        w("| tool | push | time | ours / skopeo | blobs uploaded | blob bytes uploaded | manifest digest as the layout's |")
        w("|---|---|---|---|---|---|---|")
        names = {"ours": "cargo containerize --push", "bare": "cargo containerize --push, no referrers",
                 "skopeo": "skopeo copy"}
        for tool in [t for t in ("ours", "bare", "skopeo") if t in p4]:
            for phase, title in (("cold", "cold"), ("again", "unchanged re-push")):
                v = p4[tool][phase]
                t = v["time"]
                ratio = p4[tool][phase]["time"]["median"] / p4["skopeo"][phase]["time"]["median"]
                ratio_txt = f"{ratio:.2f}×" if tool != "skopeo" else ""
                rng = lambda p: str(p[0]) if p[0] == p[1] else f"{p[0]}–{p[1]}"  # noqa: E731
                w(f"| {names[tool]} | {title} | "
                  f"{fs(t['median'])} ({fs(t['min'])}–{fs(t['max'])}) | {ratio_txt} | {rng(v['blobs_uploaded'])} | "
                  f"{fb(v['blob_bytes_uploaded'][1])} | {'yes' if v['digest_ok'] else 'no'} |")
        w("")

    if p1:
        w("## P5 memory: peak RSS while packing")
        w("")
        w("`/usr/bin/time -f %M` around each command; for several commands (podman, buildah, umoci) "
          "the largest of them. Largest value over the runs. GNU time reports the largest of the "
          "process and the children it waited for, so ours' figure is at least that of the "
          "`cargo metadata` it runs on a cold cache"
          + (f" ({fb(results['p1_cargo_metadata_rss'])} here on its own)." if results.get("p1_cargo_metadata_rss") else "."))
        w("")
        labels = {c["key"]: c["label"] for c in results["p1_contenders"]}
        sizes = list(p1)
        w("| tool | " + " | ".join(f"{s} MB" for s in sizes) + " |")
        w("|---|" + "---|" * len(sizes))
        for key in labels:
            cells = []
            for s in sizes:
                v = p1[s].get(key)
                cells.append(fb(v["rss"]["max"]) if v and v["rss"] else "—")
            w(f"| {labels[key]} | " + " | ".join(cells) + " |")
        w("")

    p6 = results.get("p6")
    if p6:
        w("## P6 reproducibility")
        w("")
        w("Each fixture copied to two different directories, each built cold with its own target "
          "directory, same tool and toolchain.")
        w("")
        w("| fixture | directory | manifest digest |")
        w("|---|---|---|")
        for r in p6:
            for d, dg in zip(r["dirs"], r["digests"]):
                w(f"| {r['fixture']} | `{d}` | `{dg}` |")
        w("")

    realworld.write_sections(results, w)

    w("## Exact commands")
    w("")
    w("`$WORK` is `bench/work`, `.` the repository. P1 is shown for its first size; the others "
      "differ only in the size in the paths.")
    w("")
    w("Two commits compared: `bench/run --compare REV --only P3,P4` builds the tool at REV as well "
      "(once per commit, kept under bench/work/compare/), runs both binaries interleaved with warm-up "
      "runs and hyperfine's run counts and outlier rule, and writes the new/old ratios to "
      "bench/work/compare.md (not here). The hot paths in-process (tar, gzip, zstd, ELF "
      "verification, blob proofs, sha256): `cargo bench --bench micro` (divan; "
      "`-- --sample-count 5` for fewer samples, `-- gzip` for the names matching a filter).")
    w("")
    w("```sh")
    if "p1_commands" in results:
        w("# P1: one timed run of each contender (podman/buildah storage flags shortened to $STORAGE)")
        for key, cmds in results["p1_commands"].items():
            w(f"# {key}")
            for c in cmds:
                w(shorten(c))
    if "p2_commands" in results:
        w("# P2, per fixture (shown for the first): all zones; then with")
        w(f"#   [package.metadata.containerize] zones = {json.dumps(ZONE_SUBSET)} added to its Cargo.toml;")
        w("#   then the CA bundle and tzdata left out")
        for c in results["p2_commands"]:
            w(c)
    if "p3_commands" in results:
        w("# P3")
        for key in ("ours", "cargo", "typed", "dispatch"):
            if key in results["p3_commands"]:
                w(results["p3_commands"][key])
    if "p4_commands" in results:
        w("# P4")
        w(results["p4_commands"]["ours"])
        if "bare" in results["p4_commands"]:
            w(results["p4_commands"]["bare"])
        w(results["p4_commands"]["skopeo"])
    if "p6" in results:
        w("# P6")
        for r in results["p6"]:
            for c in r["commands"]:
                w(c)
    realworld.write_commands(results, w)
    w("```")
    w("")
    realworld.write_dockerfiles(results, w)
    REPORT.write_text("\n".join(L))


def shorten(cmd):
    """podman/buildah with the isolated-storage flags written as $STORAGE."""
    return re.sub(
        r"^(podman|buildah) --root \S+ --runroot \S+ --storage-driver \S+"
        r"( --tmpdir \S+ --cgroup-manager=cgroupfs --events-backend=file)?",
        r"\1 $STORAGE",
        cmd,
    )


def plot(results, plot_python):
    if not plot_python or "p1" not in results:
        return False
    data = WORK / "plot-data.json"
    labels = {c["key"]: c["label"] for c in results["p1_contenders"]}
    series = {}
    for size, row in results["p1"].items():
        for key, v in row.items():
            if v["time"]:
                series.setdefault(labels[key], []).append(
                    (int(size), v["time"]["median"], v["time"]["min"], v["time"]["max"]))
    data.write_text(json.dumps({"series": series, "title": results["plot_title"], "out": str(PNG)}))
    try:
        sh([plot_python, BENCH / "plot.py", data])
        return True
    except Failed as e:
        log(f"drawing {PNG} failed: {e}")
        return False


# --------------------------------------------------------------------------------------------


# bench/realworld.py (P7-P9) imports this module as `harness`, and uses what is defined above:
# run as a script, this module is __main__, so make it that one (else its helpers and Failed
# would exist twice).
if __name__ == "__main__":
    sys.modules.setdefault("harness", sys.modules["__main__"])
import realworld  # noqa: E402


def main():
    ap = argparse.ArgumentParser(prog="bench/run", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="fewer sizes (1, 10 MB) and runs (3), one fixture; P7-P9 on the small "
                         "fixtures only: P1-P6 under 2 minutes, P7-P9 about 15")
    ap.add_argument("--tool", help="the cargo-containerize binary to measure (bench/run passes it)")
    ap.add_argument("--plot-python", default="", help="a python with matplotlib (for the PNG)")
    ap.add_argument("--runs", type=int, help="timed runs per measurement (default 5; --quick 3)")
    ap.add_argument("--sizes", help="P1 binary sizes in MB, comma separated (default 1,10,100,500)")
    ap.add_argument("--only", help="measures to run, comma separated (P1,P2,P3,P4,P6,P7,P8,P9; P5 comes with P1)")
    ap.add_argument("--real-crates",
                    help="P7-P9: hello-server and/or ripgrep, comma separated (default both; --quick hello-server)")
    ap.add_argument("--settle", type=int, default=120,
                    help="seconds to wait at most for the load average to fall before measuring (default 120)")
    ap.add_argument("--compare", metavar="REV",
                    help="build the tool at commit REV too and measure both, interleaved (P1, P3, P4 "
                         "or --only's subset); prints new/old ratios and writes bench/work/compare.md, "
                         "not BENCHMARKS.md (bench/compare.py)")
    ap.add_argument("--warmup", type=int, default=1,
                    help="--compare: untimed runs of each binary before each measurement (default 1)")
    ap.add_argument("--report-only", action="store_true",
                    help="rewrite BENCHMARKS.md and the PNG from bench/work/results.json, measuring nothing")
    cfg = ap.parse_args()
    runs_given = cfg.runs
    cfg.runs = cfg.runs or (3 if cfg.quick else 5)
    cfg.sizes = [int(s) for s in cfg.sizes.split(",")] if cfg.sizes else ([1, 10] if cfg.quick else [1, 10, 100, 500])
    cfg.warmup_max_mb = 10 if cfg.quick else 100
    cfg.p2_fixtures = ["hello"] if cfg.quick else ["hello", "certs", "tz", "cdep"]
    cfg.p6_fixtures = ["hello"] if cfg.quick else ["hello", "certs", "tz"]
    cfg.p4_size = 10 if cfg.quick else 100
    # P7-P9 (bench/realworld.py): real crates. --quick builds the small fixtures only; the full
    # run adds ripgrep (its emulated arm64 build stopped after cfg.p8_caps seconds).
    real = cfg.real_crates.split(",") if cfg.real_crates else (
        ["hello-server"] if cfg.quick else ["hello-server", "ripgrep"])
    if set(real) - {"hello-server", "ripgrep"}:
        sys.exit("bench: --real-crates takes hello-server and/or ripgrep")
    cfg.p7_crates = real
    cfg.p7_warm_runs = {"ours": 2 if cfg.quick else 3, "classic": 1}
    cfg.p7_podman_warm_runs = 2
    cfg.p8_crates = real
    cfg.p8_caps = {"ripgrep": 300}
    cfg.p9_workloads = ["alloc-churn"] + (["ripgrep"] if "ripgrep" in real else [])
    cfg.p9_runs = 3 if cfg.quick else 5
    cfg.p9_corpus_mb = 50 if cfg.quick else 200
    cfg.p9_churn_args = "5 2 2" if cfg.quick else "10 3 2"
    cfg.cold_timeout = 1800
    cfg.warm_timeout = 900
    sections = {"P1": run_p1, "P2": run_p2, "P3": run_p3, "P4": run_p4, "P6": run_p6,
                "P7": realworld.run_p7, "P8": realworld.run_p8, "P9": realworld.run_p9}
    only = {s.strip().upper() for s in cfg.only.split(",")} if cfg.only else set(sections)
    if only - set(sections) - {"P5"}:
        sys.exit(f"bench: no section {', '.join(sorted(only - set(sections) - {'P5'}))}; "
                 f"choose from {', '.join(sections)} (P5 comes with P1)")
    if cfg.report_only:
        results = json.loads((WORK / "results.json").read_text())
        cfg.quick, cfg.runs = results["quick"], results["runs"]
        cfg.warmup_max_mb = results["warmup_max_mb"]
        results["png"] = plot(results, cfg.plot_python)
        results["notes"] = [n for n in results["notes"] if "pack-time.png" not in n]
        if not results["png"] and "p1" in results:
            results["notes"].append("bench/pack-time.png was not drawn (matplotlib unavailable); see bench/run's log.")
        write_report(results, cfg)
        return
    if not cfg.tool or not Path(cfg.tool).is_file():
        sys.exit(f"bench: no tool at {cfg.tool}")
    cfg.tool = str(Path(cfg.tool).resolve())

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    WORK.mkdir(parents=True, exist_ok=True)
    # Ours keeps a per-user cache (the `cargo metadata` answer); keep it out of $HOME.
    os.environ["CARGO_CONTAINERIZE_CACHE"] = str(USER_CACHE)
    if cfg.compare:
        import compare  # noqa: E402 (after `harness` is registered, like realworld)

        # Adaptive run counts (hyperfine's) unless --runs was given.
        cfg.runs = runs_given
        try:
            compare.run(cfg)
        except Failed as e:
            sys.exit(f"bench: {e}")
        return
    started = time.perf_counter()
    results = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "revision": tool_revision(),
        "quick": cfg.quick,
        "runs": cfg.runs,
        "warmup_max_mb": cfg.warmup_max_mb,
        "p9_runs": cfg.p9_runs,
        "notes": [],
    }
    # bench/run has just compiled the tool; let the load average settle (up to two minutes) so
    # the first measurements do not pay for the compile.
    settle_until = time.monotonic() + cfg.settle
    while (float(Path("/proc/loadavg").read_text().split()[0]) > 0.5 * (os.cpu_count() or 1)
           and time.monotonic() < settle_until):
        time.sleep(5)
    results["machine"]["loadavg"] = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    load = float(results["machine"]["loadavg"].split()[0])
    if load > 0.5 * (os.cpu_count() or 1):
        results["busy_warning"] = (f"1-minute load average {load:.2f} on {os.cpu_count()} cores "
                                   "when the run started.")
    try:
        # P1-P6 pack the hello fixture and the image's root files; P7-P9 need only the tool.
        inputs = Inputs(cfg.tool) if only & {"P1", "P2", "P3", "P4", "P6"} else ToolOnly(cfg.tool)
        for key, fn in sections.items():
            if key not in only:
                continue
            try:
                fn(inputs, cfg, results)
            except Failed as e:
                log(f"{key} failed: {e}")
                results["notes"].append(f"{key} could not be measured: {str(e).splitlines()[0]}")
    finally:
        stop_everything()
        realworld.drop_binfmt()
    results["loadavg_end"] = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    results["duration"] = time.perf_counter() - started
    results["plot_title"] = (f"Pack time, {results['machine']['cpu']} × {results['machine']['cores']} cores"
                             + (" (--quick)" if cfg.quick else ""))
    results["png"] = plot(results, cfg.plot_python)
    if not results["png"] and "p1" in results:
        results["notes"].append("bench/pack-time.png was not drawn (matplotlib unavailable); see bench/run's log.")
    (WORK / "results.json").write_text(json.dumps(results, indent=1, default=str))
    write_report(results, cfg)
    log(f"wrote {REPORT.relative_to(REPO)}{' and ' + str(PNG.relative_to(REPO)) if results['png'] else ''} "
        f"in {fs(results['duration'])}")


if __name__ == "__main__":
    main()
