"""P7, P8 and P9 of bench/run: what users feel on real crates (issue 14).

  P7 loop       cold build to image, then append a comment to a source file and rebuild the
                image (the warm loop): ours, `podman build` of the Dockerfile ours generates,
                a classic multi-stage Dockerfile, the cargo-chef pattern
  P8 platforms  `--platform linux/amd64,linux/arm64` against `podman build --platform
                linux/arm64` of the classic Dockerfile under qemu-user emulation (binfmt_misc)
  P9 allocator  the binary's speed on two allocation-heavy workloads: glibc build, musl with
                its own malloc, musl with the `allocator = "mimalloc"` setting

Crates: ripgrep 14.1.1 (from crates.io; C code through jemalloc on musl) and the fixtures in
bench/crates/. Every contender builds from the same copy of the sources with the crates
vendored (`cargo vendor`, once per crate), so none of them touches the network for crates and
all read the same bytes. Builder images are made with `podman import` of a skeleton root file
system, the host's /usr and Rust toolchain lent read-only to RUN steps (`podman build -v`), as
tests/it/podman_build.rs does; the emulated arm64 builder is Debian's arm64 packages
(mmdebstrap) with an arm64 Rust toolchain of the host's version lent the same way.

Run through bench/run: `bench/run --only P7` etc.
"""

import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

import harness as H

WORK = H.WORK
CRATES_DIR = H.BENCH / "crates"
TAG = "bench"
RIPGREP_VERSION = "14.1.1"
# sha256 of ripgrep-14.1.1.crate, as the crates.io index records it.
RIPGREP_SHA256 = "f77b8032dc584527975f34aa5a897d0ef5a785573fda778771a614ff9da501d9"
BUILD_PLATFORM = "linux/amd64"
# Targets (issue 14).
P7_MIN_SPEEDUP = 5.0
P7_MAX_OVERHEAD = 0.03  # issue 25 (issue 14 asked 5%)
P8_MIN_SPEEDUP = 10.0
P9_MAX_RATIO = 1.1


def log(msg):
    H.log(msg)


def sh(argv, **kw):
    return H.sh(argv, **kw)


def descendants(pid):
    """Every process below pid (from /proc: a container's processes hang below runc, below
    podman, whatever session or process group they are in)."""
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        ppid = int(text.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def timed(argv, *, cwd=None, env=None, timeout):
    """Runs a command to completion; returns (wall seconds, stdout). On the timeout its whole
    process tree is killed (killing podman alone would leave its RUN step's container running,
    killing the tool alone its cargo)."""
    argv = [str(a) for a in argv]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=err, start_new_session=True)
        try:
            rc = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            for pid in [proc.pid, *descendants(proc.pid)]:
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
            proc.wait()
            raise H.Failed(f"timed out after {timeout}s: {H.q(argv)}") from None
        seconds = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        if rc != 0:
            said = err.read().decode(errors="replace").strip() or out.read().decode(errors="replace").strip()
            tail = said.splitlines()[-15:]
            raise H.Failed(f"exit {rc}: {H.q(argv)}\n    " + "\n    ".join(tail))
        return seconds, out.read().decode(errors="replace")


# --------------------------------------------------------------------------------------------
# Crates


class Crate:
    """A crate's pristine sources, vendored, and how to touch and check its binary."""

    def __init__(self, name, src, bin, touch, check_args, expect):
        self.name = name
        self.src = src
        self.bin = bin
        self.touch = touch  # the source file the warm loop appends a comment to
        self.check_args = check_args  # what proves the binary runs
        self.expect = expect  # ... by printing this

    def copy_to(self, dest):
        H.rm(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        sh(["cp", "-a", self.src, dest])
        return dest

    def edit(self, crate_dir, n):
        with open(crate_dir / self.touch, "a") as f:
            f.write(f"\n// bench/run: edit {n}\n")


def vendored(crate_dir):
    return crate_dir.with_name(crate_dir.name + ".vendored")


def vendor(crate_dir):
    """`cargo vendor` once; afterwards cargo reads the crates from crate_dir/vendor (the source
    replacement is added to the crate's own .cargo/config.toml, which ripgrep has)."""
    if vendored(crate_dir).exists():
        return
    log(f"vendoring the dependencies of {crate_dir.name} (cargo vendor --locked)")
    sh(["cargo", "vendor", "--locked", "--versioned-dirs", "vendor"], cwd=crate_dir, timeout=900)
    config = crate_dir / ".cargo" / "config.toml"
    config.parent.mkdir(exist_ok=True)
    with open(config, "a") as f:
        f.write(VENDORED)
    vendored(crate_dir).write_text("")


VENDORED = ('\n[source.crates-io]\nreplace-with = "vendored-sources"\n\n'
            '[source.vendored-sources]\ndirectory = "vendor"\n')


def unvendor(crate_dir):
    """Back to crates.io (through the host's cargo registry cache): for builds that fetch
    crates of their own, as the allocator setting does (libmimalloc-sys)."""
    config = crate_dir / ".cargo" / "config.toml"
    config.write_text(config.read_text().replace(VENDORED.strip(), ""))
    if not config.read_text().strip():
        config.unlink()
    H.rm(crate_dir / "vendor")


def fetch_ripgrep():
    """ripgrep's .crate from crates.io (checked against the index's checksum), unpacked."""
    dest = WORK / "crates" / "ripgrep"
    if vendored(dest).exists():
        return dest
    archive = WORK / "downloads" / f"ripgrep-{RIPGREP_VERSION}.crate"
    archive.parent.mkdir(parents=True, exist_ok=True)
    if not archive.exists():
        url = f"https://static.crates.io/crates/ripgrep/ripgrep-{RIPGREP_VERSION}.crate"
        log(f"downloading {url}")
        part = archive.with_suffix(".part")
        sh(["curl", "-fsSL", "--retry", "3", "--max-time", "300", "-o", part, url], timeout=360)
        part.rename(archive)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    if digest != RIPGREP_SHA256:
        archive.unlink()
        raise H.Failed(f"{archive.name}: sha256 {digest}, expected {RIPGREP_SHA256}; removed it, run again")
    H.rm(dest)
    H.rm(vendored(dest))
    unpack = WORK / "crates" / "ripgrep.unpack"
    H.fresh_dir(unpack)
    with tarfile.open(archive) as t:
        t.extractall(unpack, filter="data")
    (unpack / f"ripgrep-{RIPGREP_VERSION}").rename(dest)
    H.rm(unpack)
    vendor(dest)
    return dest


def fixture(name):
    """A crate of bench/crates, copied and vendored (again when its sources changed)."""
    src = CRATES_DIR / name
    dest = WORK / "crates" / name
    key = hashlib.sha256(
        b"".join(p.read_bytes() for p in sorted(src.rglob("*")) if p.is_file() and "target" not in p.parts)
    ).hexdigest()
    stamp = WORK / "crates" / f"{name}.stamp"
    if dest.exists() and stamp.exists() and stamp.read_text() == key:
        return dest
    H.rm(dest)
    H.rm(vendored(dest))
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("target"))
    vendor(dest)
    stamp.write_text(key)
    return dest


def crate(name):
    if name == "ripgrep":
        return Crate("ripgrep", fetch_ripgrep(), "rg", "crates/core/main.rs", ["--version"],
                     f"ripgrep {RIPGREP_VERSION}")
    if name == "hello-server":
        return Crate(name, fixture(name), name, "src/main.rs", ["--self-test"], "self-test ok")
    raise H.Failed(f"no crate {name}")


# --------------------------------------------------------------------------------------------
# podman in a sandbox of its own (as tests/it/support/podman.rs): private storage, cgroupfs,
# and an OCI runtime wrapper that drops process.rlimits (this sandbox cannot set them).

RUNC_WRAPPER = r"""#!/bin/sh
bundle=.
prev=
for arg in "$@"; do
  case "$prev" in --bundle|-b) bundle=$arg ;; esac
  case "$arg" in --bundle=*) bundle=${arg#--bundle=} ;; esac
  prev=$arg
done
if [ -f "$bundle/config.json" ]; then
  jq 'del(.process.rlimits)' "$bundle/config.json" >"$bundle/config.json.norlimits" &&
    mv "$bundle/config.json.norlimits" "$bundle/config.json"
fi
exec runc "$@"
"""

_DRIVER = []


class PodmanBox:
    """podman with storage, cache mounts (TMPDIR) and runtime of its own; remove() empties it."""

    def __init__(self, name, driver=None):
        self.dir = H.fresh_dir(WORK / "podman" / name)
        # podman refuses a run root longer than 50 characters: that one lives in /tmp.
        self.run_root = Path(tempfile.mkdtemp(prefix="ccb-", dir="/tmp"))
        self.driver = driver or podman_driver()
        wrapper = self.dir / "runc-wrapper"
        wrapper.write_text(RUNC_WRAPPER)
        wrapper.chmod(0o755)
        (self.dir / "tmp").mkdir()
        (self.dir / "storage.conf").write_text(
            f'[storage]\ndriver = "{self.driver}"\ngraphroot = "{self.dir / "root"}"\n'
            f'runroot = "{self.run_root}"\n'
        )
        (self.dir / "containers.conf").write_text(
            '[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n'
            f'events_logfile_path = "{self.dir / "events.log"}"\ntmp_dir = "{self.dir / "tmp"}"\n'
            f'runtime = "ccbwrap"\n\n[engine.runtimes]\nccbwrap = ["{wrapper}"]\n'
        )

    def env(self):
        # TMPDIR: buildah keeps RUN --mount=type=cache directories there.
        return dict(os.environ, CONTAINERS_CONF=str(self.dir / "containers.conf"),
                    CONTAINERS_STORAGE_CONF=str(self.dir / "storage.conf"), TMPDIR=str(self.dir / "tmp"))

    def argv(self, *args):
        return ["podman", "--log-level=error", *args]

    def podman(self, *args, cwd=None, timeout=600):
        return sh(self.argv(*args), cwd=cwd, env=self.env(), timeout=timeout)

    def remove(self):
        for args in (["rm", "-a", "-f"], ["rmi", "-a", "-f"]):
            try:
                self.podman(*args, timeout=300)
            except H.Failed:
                pass
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
        for root in (self.dir, self.run_root):
            for m in sorted((m for m in mounts if m.startswith(f"{root}/")), reverse=True):
                subprocess.run(["umount", m], check=False)
        H.rm(self.dir)
        H.rm(self.run_root)


def podman_driver():
    """overlay when podman can use it here (a probe build), else vfs."""
    if not _DRIVER:
        box = PodmanBox("probe", driver="overlay")
        ctx = H.fresh_dir(box.dir / "ctx")
        (ctx / "f").write_text("x\n")
        (ctx / "Dockerfile").write_text("FROM scratch\nCOPY f /f\n")
        try:
            box.podman("build", "-q", "-t", "localhost/probe:1", ctx, timeout=120)
            _DRIVER.append("overlay")
        except H.Failed as e:
            log(f"podman cannot use overlay storage here ({str(e).splitlines()[0]}); using vfs")
            _DRIVER.append("vfs")
        box.remove()
    return _DRIVER[0]


def host_lent_dirs():
    """Host directories lent read-only to every RUN step of the amd64 builder, and where."""
    home = Path.home()
    rustup = Path(os.environ.get("RUSTUP_HOME", home / ".rustup"))
    cargo = Path(os.environ.get("CARGO_HOME", home / ".cargo"))
    dirs = [(Path("/") / d, f"/{d}") for d in
            ("usr/bin", "usr/sbin", "usr/lib", "usr/lib64", "usr/libexec", "usr/include",
             "usr/share", "etc/ssl", "etc/alternatives", "etc/apt")]
    for d in ("bin", "sbin", "lib", "lib64"):
        host = Path("/") / d
        if host.is_dir() and not host.is_symlink():
            dirs.append((host, f"/{d}"))
    dirs.append((rustup, "/usr/local/rustup"))
    dirs.append((cargo / "bin", "/usr/local/cargo/bin"))
    return [(h, i) for h, i in dirs if h.exists()]


def skeleton_tar(dest, inside_dirs, *, dpkg_status=True):
    """A root file system with empty mount points for the lent directories."""
    root = H.fresh_dir(dest.parent / (dest.name + ".d"))
    for inside in inside_dirs:
        (root / inside.lstrip("/")).mkdir(parents=True, exist_ok=True)
    for d in ("bin", "sbin", "lib", "lib64"):
        host = Path("/") / d
        if host.is_symlink():
            os.symlink(os.readlink(host), root / d)
    for d in ("tmp", "root", "build", "usr/local/cargo/registry", "var/lib/apt/lists/partial",
              "var/cache/apt/archives/partial", "var/lib/dpkg/updates"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "tmp").chmod(0o1777)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\n")
    if dpkg_status:
        # The generated Dockerfile installs musl-tools with apt-get for crates with C code: the
        # lent /usr has it, and the host's dpkg status says so, so that step only updates lists.
        shutil.copy("/var/lib/dpkg/status", root / "var/lib/dpkg" / "status")
    sh(["tar", "-C", root, "-cf", dest, "."])
    H.rm(root)
    return dest


def import_image(box, tar, names, *, arch="amd64", env):
    sh(box.argv("import", "--arch", arch, *[a for kv in env for a in ("--change", f"ENV={kv}")],
                tar, names[0]), env=box.env(), timeout=600)
    for n in names[1:]:
        box.podman("tag", names[0], n)


AMD64_ENV = ["PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
             "RUSTUP_HOME=/usr/local/rustup", "CARGO_HOME=/usr/local/cargo"]
BUILDER = "localhost/bench-builder:latest"


def dockerfile_builder(dockerfile):
    """The builder image a generated Dockerfile names, its ARG defaults filled in."""
    args = dict(re.findall(r"^ARG (\w+)=(\S+)", dockerfile, re.M))
    line = next(l for l in dockerfile.splitlines() if l.startswith("FROM ") and l.endswith(" AS builder"))
    image = next(w for w in line.split()[1:] if not w.startswith("--"))
    return re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), image)


def podman_build(box, ctx, *, dockerfile, tag, platform, lent, timeout, build_args=()):
    argv = box.argv("build", "--network", "host", "--platform", platform,
                    # podman 4 sets BUILDPLATFORM to the target platform; name the build machine's.
                    "--build-arg", f"BUILDPLATFORM={BUILD_PLATFORM}",
                    *[a for ba in build_args for a in ("--build-arg", ba)],
                    *[a for host, inside in lent for a in ("-v", f"{host}:{inside}:ro")],
                    "-f", dockerfile, "-t", tag, ".")
    return timed(argv, cwd=ctx, env=box.env(), timeout=timeout)


# --------------------------------------------------------------------------------------------
# Images: the binary out of an OCI layout, run (under qemu for arm64)


def binary_from_layout(layout, platform, dest):
    """Writes the entrypoint's file of the image for `platform` in an OCI layout to dest."""
    layout = Path(layout)

    def blob(digest):
        return (layout / "blobs" / digest.replace(":", "/")).read_bytes()

    arch = platform.split("/")[1]
    doc = json.loads((layout / "index.json").read_text())
    while "manifests" in doc:
        entries = doc["manifests"]
        chosen = [m for m in entries if m.get("platform", {}).get("architecture") == arch] or entries[:1]
        doc = json.loads(blob(chosen[0]["digest"]))
    config = json.loads(blob(doc["config"]["digest"]))
    if config.get("architecture") != arch:
        raise H.Failed(f"{layout}: the image is for {config.get('architecture')}, not {arch}")
    entry = (config["config"].get("Entrypoint") or config["config"].get("Cmd"))[0].lstrip("/")
    found = None
    for layer in doc["layers"]:
        path = layout / "blobs" / layer["digest"].replace(":", "/")
        with tarfile.open(path) as t:  # gzip or plain; zstd layers are not used here
            for m in t.getmembers():
                if m.name.lstrip("./") == entry and m.isfile():
                    dest.write_bytes(t.extractfile(m).read())
                    found = True
    if not found:
        raise H.Failed(f"{layout}: no {entry} in the {arch} image")
    dest.chmod(0o755)
    return dest


def run_binary(binary, platform, args, expect):
    """Runs an image's binary (arm64 under qemu-aarch64-static); its first line must be `expect`."""
    argv = (["qemu-aarch64-static"] if platform.endswith("arm64") else []) + [binary, *args]
    out = sh(argv, timeout=120).strip()
    if not out.startswith(expect):
        raise H.Failed(f"{H.q(argv)} printed {out[:200]!r}, not {expect!r}")
    return out.splitlines()[0]


def check_layout(layout, platform, c, scratch):
    return run_binary(binary_from_layout(layout, platform, scratch / f"bin-{platform.split('/')[1]}"),
                      platform, c.check_args, c.expect)


def check_podman_image(box, image, platform, c, scratch):
    out = H.fresh_dir(scratch / "saved")
    box.podman("save", "--format", "oci-dir", "-o", out / "oci", image, timeout=600)
    try:
        return check_layout(out / "oci", platform, c, scratch)
    finally:
        H.rm(out)


# --------------------------------------------------------------------------------------------
# P7 contenders. Each builds one crate in a copy of its own: prepare() (untimed), then build()
# (timed) cold, then again after each edit; check() runs the image (untimed).


def ours_env(cargo_log):
    """The tool's environment: CARGO is a wrapper that logs how long each cargo command took,
    so that the tool's own time (wall time minus its inner `cargo build`) can be told apart."""
    wrapper = WORK / "p7" / "cargo-timer"
    wrapper.parent.mkdir(parents=True, exist_ok=True)
    real = shutil.which("cargo")
    wrapper.write_text(
        "#!/bin/sh\n# bench/run: runs cargo, then logs `SUBCOMMAND START_NS END_NS`.\n"
        'start=$(date +%s%N)\n'
        f'"{real}" "$@"\nrc=$?\n'
        'echo "$1 $start $(date +%s%N)" >>"$BENCH_CARGO_LOG"\nexit $rc\n'
    )
    wrapper.chmod(0o755)
    return dict(os.environ, CARGO=str(wrapper), BENCH_CARGO_LOG=str(cargo_log))


class LoopContender:
    key = ""
    label = ""

    def __init__(self, c, root, tool, timeouts):
        self.c = c
        self.root = H.fresh_dir(root / self.key)
        self.dir = c.copy_to(self.root / c.name)
        self.tool = tool
        self.timeouts = timeouts
        self.extra = {}

    def prepare(self):
        pass

    def build(self, phase):  # -> seconds
        raise NotImplementedError

    def check(self):  # -> the binary's first output line
        raise NotImplementedError

    def close(self):
        H.rm(self.root)


# The cargo subcommands that build the binary (the tool runs `cargo rustc` when it passes rustc
# arguments to the binary's crate alone).
INNER_BUILD = ("build", "rustc", "zigbuild")


class OursLoop(LoopContender):
    key = "ours"
    label = "cargo containerize"

    def prepare(self):
        H.rm(H.USER_CACHE)  # cold: no remembered `cargo metadata` answer either
        self.layout = self.root / "image"
        self.cargo_log = self.root / "cargo.log"
        self.env = ours_env(self.cargo_log)
        self.extra = {"cargo": [], "overhead": [], "layers_built": []}

    def build(self, phase):
        self.cargo_log.write_text("")
        seconds, out = timed(
            [self.tool, "containerize", "--manifest-path", self.dir / "Cargo.toml", "-q",
             "--message-format", "json", "-o", f"oci:{self.layout}:{TAG}"],
            env=self.env, timeout=self.timeouts[phase])
        cargo = sum((int(end) - int(start)) / 1e9 for sub, start, end in
                    (line.split() for line in self.cargo_log.read_text().splitlines()) if sub in INNER_BUILD)
        if phase == "warm":
            self.extra["cargo"].append(cargo)
            self.extra["overhead"].append(seconds - cargo)
            self.extra["layers_built"].append(json.loads(out)["layers_built"])
        return seconds

    def check(self):
        return check_layout(self.layout, BUILD_PLATFORM, self.c, self.root)

    def command(self):
        return ("CARGO=$WORK/p7/cargo-timer " +
                H.q([self.tool, "containerize", "--manifest-path", self.dir / "Cargo.toml", "-q",
                     "--message-format", "json", "-o", f"oci:{self.layout}:{TAG}"]))


class PodmanLoop(LoopContender):
    """podman build of a Dockerfile in the crate's directory, with the amd64 builder image."""

    platform = BUILD_PLATFORM
    build_args = ()

    def dockerfile(self):  # -> text; written as Dockerfile.bench
        raise NotImplementedError

    def builder_names(self, text):
        return [BUILDER]

    def prepare(self):
        self.box = PodmanBox(f"p7-{self.key}")
        text = self.dockerfile()
        (self.dir / "Dockerfile.bench").write_text(text)
        if not (self.dir / ".dockerignore").exists():
            (self.dir / ".dockerignore").write_text("target\n")
        self.lent = host_lent_dirs() + self.extra_lent()
        tar = skeleton_tar(self.root / "builder.tar", [i for _, i in self.lent])
        import_image(self.box, tar, self.builder_names(text), env=AMD64_ENV)
        self.image = f"localhost/{self.c.name}-{self.key}:latest"

    def extra_lent(self):
        return []

    def build(self, phase):
        seconds, _ = podman_build(self.box, self.dir, dockerfile="Dockerfile.bench", tag=self.image,
                                  platform=self.platform, lent=self.lent, build_args=self.build_args,
                                  timeout=self.timeouts[phase])
        return seconds

    def check(self):
        return check_podman_image(self.box, self.image, self.platform, self.c, self.root)

    def command(self):
        return " ".join(["podman build --network host --platform", self.platform,
                         f"--build-arg BUILDPLATFORM={BUILD_PLATFORM}",
                         *[f"--build-arg {a}" for a in self.build_args],
                         "-v $HOST_DIR:$DIR:ro... -f Dockerfile.bench -t", self.image, "."])

    def close(self):
        self.box.remove()
        super().close()


class OursDockerfile(PodmanLoop):
    key = "ours-dockerfile"
    label = "podman build of `cargo containerize dockerfile`'s Dockerfile (cache mounts)"
    build_args = ("SOURCE_DATE_EPOCH=0",)

    def dockerfile(self):
        sh([self.tool, "containerize", "dockerfile", "--manifest-path", self.dir / "Cargo.toml",
            "-o", self.dir / "Dockerfile.generated", "--dockerignore", "--force", "-q"], cwd=self.dir)
        return (self.dir / "Dockerfile.generated").read_text()

    def builder_names(self, text):
        return [BUILDER, dockerfile_builder(text)]


def classic_dockerfile(c, triple, builder, cc=True):
    cc_env = "TARGET_CC=musl-gcc " if cc else ""
    return f"""\
# The classic multi-stage build: all sources in, one cargo build, the binary onto scratch.
FROM {builder} AS builder
WORKDIR /build
COPY . .
RUN {cc_env}cargo build --release --locked --target {triple} --bin {c.bin}

FROM scratch
COPY --from=builder /build/target/{triple}/release/{c.bin} /usr/local/bin/{c.bin}
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/{c.bin}"]
"""


class Classic(PodmanLoop):
    key = "classic"
    label = "podman build of the classic multi-stage Dockerfile"

    def dockerfile(self):
        return classic_dockerfile(self.c, H.MUSL, BUILDER)


CHEF_DIR = WORK / "tools" / "cargo-chef"


class Chef(PodmanLoop):
    key = "chef"
    label = "podman build of the cargo-chef pattern (recipe, cook, build)"

    def extra_lent(self):
        return [(CHEF_DIR / "bin", "/opt/cargo-chef/bin")]

    def dockerfile(self):
        c = self.c
        return f"""\
# The cargo-chef pattern: a recipe of the dependencies, cooked in a layer of its own, then the
# crate's own sources. (cargo-chef comes from the host, lent at /opt/cargo-chef/bin.)
FROM {BUILDER} AS chef
ENV PATH=/opt/cargo-chef/bin:/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
WORKDIR /build

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS cook
COPY --from=planner /build/recipe.json recipe.json
# The vendored crates are the dependencies' sources, as the registry would be.
COPY .cargo .cargo
COPY vendor vendor
RUN TARGET_CC=musl-gcc cargo chef cook --release --locked --target {H.MUSL} --recipe-path recipe.json
COPY . .
RUN TARGET_CC=musl-gcc cargo build --release --locked --target {H.MUSL} --bin {c.bin}

FROM scratch
COPY --from=cook /build/target/{H.MUSL}/release/{c.bin} /usr/local/bin/{c.bin}
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/{c.bin}"]
"""


def ensure_cargo_chef():
    chef = CHEF_DIR / "bin" / "cargo-chef"
    if not chef.exists():
        log("installing cargo-chef (cargo install cargo-chef --locked) into bench/work/tools")
        sh(["cargo", "install", "cargo-chef", "--locked", "--root", CHEF_DIR,
            "--target-dir", WORK / "tools" / "cargo-chef-target"], timeout=1800)
        H.rm(WORK / "tools" / "cargo-chef-target")
    return "cargo-chef " + sh([chef, "chef", "--version"]).split()[-1]


P7_CONTENDERS = (OursLoop, OursDockerfile, Classic, Chef)
DOCKERFILES = {}  # contender -> the Dockerfile it built (of the first crate), for the report


def run_p7(inputs, cfg, results):
    try:
        results["p7_chef_version"] = ensure_cargo_chef()
    except H.Failed as e:
        log(f"P7: no cargo-chef ({e}); that contender is left out")
        results["p7_chef_version"] = None
    rows = {}
    commands = {}
    for name in cfg.p7_crates:
        c = crate(name)
        rows[name] = {}
        for cls in P7_CONTENDERS:
            if cls is Chef and not results["p7_chef_version"]:
                rows[name][cls.key] = {"label": cls.label, "error": "cargo-chef could not be installed"}
                continue
            warm_runs = cfg.p7_warm_runs.get(cls.key, cfg.p7_podman_warm_runs)
            rows[name][cls.key] = loop(cls, c, inputs, cfg, warm_runs, commands)
    results["p7"] = rows
    results["p7_commands"] = commands
    results["p7_dockerfiles"] = dict(DOCKERFILES)
    results["p7_storage_driver"] = podman_driver()


def loop(cls, c, inputs, cfg, warm_runs, commands):
    row = {"label": cls.label, "cold": None, "warm": [], "error": None, "check": None}
    contender = cls(c, WORK / "p7", inputs.tool, {"cold": cfg.cold_timeout, "warm": cfg.warm_timeout})
    try:
        contender.prepare()
        commands.setdefault(cls.key, contender.command())
        if isinstance(contender, PodmanLoop):
            DOCKERFILES.setdefault(cls.key, (contender.dir / "Dockerfile.bench").read_text())
        log(f"P7 {c.name} {cls.key}: cold build")
        row["cold"] = contender.build("cold")
        log(f"P7 {c.name} {cls.key}: cold {H.fs(row['cold'])}")
        for i in range(warm_runs):
            c.edit(contender.dir, i)
            seconds = contender.build("warm")
            row["warm"].append(seconds)
            log(f"P7 {c.name} {cls.key}: warm {i + 1}/{warm_runs} {H.fs(seconds)}")
        row["check"] = contender.check()
    except H.Failed as e:
        log(f"P7 {c.name} {cls.key} failed: {e}")
        row["error"] = str(e).splitlines()[0]
    finally:
        contender.close()
    row["warm_stats"] = H.stats(row["warm"])
    for k, v in contender.extra.items():
        row[k] = H.stats(v) if k != "layers_built" else sorted(set(v))
    return row


# --------------------------------------------------------------------------------------------
# P8: both platforms with ours, arm64 under emulation with podman


BINFMT = Path("/proc/sys/fs/binfmt_misc")
BINFMT_CONF = Path("/usr/lib/binfmt.d/qemu-aarch64.conf")
_REGISTERED = []


def ensure_binfmt():
    """qemu-aarch64 registered with binfmt_misc (the F flag: usable inside containers).
    Returns how; what this run registered is removed by drop_binfmt()."""
    if not (BINFMT / "register").exists():
        sh(["mount", "-t", "binfmt_misc", "binfmt_misc", BINFMT])
    entry = BINFMT / "qemu-aarch64"
    if entry.exists():
        flags = next((l.split(":", 1)[1].strip() for l in entry.read_text().splitlines() if l.startswith("flags")), "")
        if "F" not in flags:
            raise H.Failed(f"qemu-aarch64 is registered without the F flag ({flags}); containers cannot use it")
        return f"already registered ({flags})"
    if not BINFMT_CONF.exists():
        raise H.Failed(f"{BINFMT_CONF} is missing; apt-get install qemu-user-static")
    line = BINFMT_CONF.read_text().strip()
    if not line.endswith("F"):
        raise H.Failed(f"{BINFMT_CONF} lacks the F flag")
    (BINFMT / "register").write_text(line)
    _REGISTERED.append(entry)
    return f"registered by bench/run from {BINFMT_CONF}"


def drop_binfmt():
    while _REGISTERED:
        entry = _REGISTERED.pop()
        try:
            entry.write_text("-1")
        except OSError as e:
            log(f"could not unregister {entry}: {e}")


def host_rust_version():
    return sh(["rustc", "--version"]).split()[1]


def arm64_toolchain():
    """An arm64 Rust toolchain of the host's version, with the musl target, in a rustup home of
    the benchmark's own. Returns its directory."""
    version = host_rust_version()
    name = f"{version}-aarch64-unknown-linux-gnu"
    home = WORK / "p8" / "rustup"
    tc = home / "toolchains" / name
    if not (tc / "lib" / "rustlib" / "aarch64-unknown-linux-musl").is_dir():
        log(f"installing Rust {name} (minimal, + aarch64-unknown-linux-musl) into {H.q([home])}")
        env = dict(os.environ, RUSTUP_HOME=str(home), CARGO_HOME=str(WORK / "p8" / "cargo"))
        sh(["rustup", "toolchain", "install", name, "--profile", "minimal", "--force-non-host",
            "--target", "aarch64-unknown-linux-musl", "--no-self-update"], env=env, timeout=1800)
    return tc


def arm64_rootfs():
    """Debian 12 for arm64 with gcc, libc6-dev, musl-tools and make (mmdebstrap; its maintainer
    scripts run under qemu through binfmt_misc), as a tar for `podman import`."""
    tar = WORK / "p8" / "arm64-debian.tar"
    if not tar.exists():
        log("making an arm64 Debian 12 root file system with mmdebstrap (gcc, libc6-dev, musl-tools, make)")
        part = tar.with_suffix(".part.tar")
        sh(["mmdebstrap", "--arch=arm64", "--variant=apt", "--include=gcc,libc6-dev,musl-tools,make",
            "bookworm", part, "http://deb.debian.org/debian"], timeout=2400)
        part.rename(tar)
    return tar


def run_p8(inputs, cfg, results):
    results["p8_binfmt"] = ensure_binfmt()
    toolchain = arm64_toolchain()
    rootfs = arm64_rootfs()
    rows = {}
    commands = {}
    for name in cfg.p8_crates:
        c = crate(name)
        rows[name] = {"ours": p8_ours(c, inputs, cfg, commands),
                      "emulated": p8_emulated(c, cfg, toolchain, rootfs, commands)}
    results["p8"] = rows
    results["p8_commands"] = commands
    results["p8_caps"] = {k: v for k, v in cfg.p8_caps.items() if k in cfg.p8_crates}


def p8_ours(c, inputs, cfg, commands):
    root = H.fresh_dir(WORK / "p8" / "ours")
    row = {"time": None, "error": None, "check": {}}
    try:
        d = c.copy_to(root / c.name)
        layout = root / "image"
        H.rm(H.USER_CACHE)
        # cargo-zigbuild and zig (scripts/setup-cross-tools) for C code on arm64.
        venv = Path(os.environ.get("CONTAINERIZE_TOOLS_VENV", Path.home() / ".cache/cargo-containerize/venv"))
        env = dict(os.environ, PATH=f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}")
        warm_zig(venv, root)
        argv = [inputs.tool, "containerize", "--manifest-path", d / "Cargo.toml", "--platform",
                "linux/amd64,linux/arm64", "-q", "--message-format", "json", "-o", f"oci:{layout}:{TAG}"]
        commands.setdefault("ours", "PATH=$VENV/bin:$PATH " + H.q(argv))
        log(f"P8 {c.name} ours: linux/amd64,linux/arm64, cold")
        row["time"], _ = timed(argv, env=env, timeout=cfg.cold_timeout * 2)
        log(f"P8 {c.name} ours: {H.fs(row['time'])}")
        for platform in ("linux/amd64", "linux/arm64"):
            row["check"][platform] = check_layout(layout, platform, c, root)
    except H.Failed as e:
        log(f"P8 {c.name} ours failed: {e}")
        row["error"] = str(e).splitlines()[0]
    finally:
        H.rm(root)
    return row


def warm_zig(venv, scratch):
    """zig builds musl's C library for a target the first time it links for it, once per
    machine, and caches it: do that untimed, so that the measurement is the crate's build."""
    zig = venv / "bin" / "python-zig"
    if not zig.exists():
        return
    src = scratch / "warm.c"
    src.write_text("int main(void) { return 0; }\n")
    sh([zig, "cc", "-target", "aarch64-linux-musl", "-o", scratch / "warm", src], timeout=900)


ARM64_ENV = ["PATH=/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
             "CARGO_HOME=/usr/local/cargo"]


def p8_emulated(c, cfg, toolchain, rootfs, commands):
    root = H.fresh_dir(WORK / "p8" / "emulated")
    cap = cfg.p8_caps.get(c.name, cfg.cold_timeout)
    row = {"time": None, "error": None, "check": {}, "cap": cap, "stopped": False}
    box = PodmanBox("p8")
    try:
        d = c.copy_to(root / c.name)
        builder = "localhost/bench-builder-arm64:latest"
        import_image(box, rootfs, [builder], arch="arm64", env=ARM64_ENV)
        (d / "Dockerfile.bench").write_text(classic_dockerfile(c, "aarch64-unknown-linux-musl", builder))
        (d / ".dockerignore").write_text("target\n")
        image = f"localhost/{c.name}-emulated:arm64"
        lent = [(toolchain, "/usr/local/rust")]
        commands.setdefault("emulated", f"podman build --network host --platform linux/arm64 "
                            f"-v $ARM64_TOOLCHAIN:/usr/local/rust:ro -f Dockerfile.bench -t {image} .")
        log(f"P8 {c.name} emulated: podman build --platform linux/arm64 (stopped after {H.fs(cap)})")
        try:
            row["time"], _ = podman_build(box, d, dockerfile="Dockerfile.bench", tag=image,
                                          platform="linux/arm64", lent=lent, timeout=cap)
        except H.Failed as e:
            if "timed out" not in str(e):
                raise
            row["stopped"] = True
            row["time"] = cap
            log(f"P8 {c.name} emulated: stopped after {H.fs(cap)}")
        if not row["stopped"]:
            log(f"P8 {c.name} emulated: {H.fs(row['time'])}")
            row["check"]["linux/arm64"] = check_podman_image(box, image, "linux/arm64", c, root)
    except H.Failed as e:
        log(f"P8 {c.name} emulated failed: {e}")
        row["error"] = str(e).splitlines()[0]
    finally:
        box.remove()
        H.rm(root)
    return row


# --------------------------------------------------------------------------------------------
# P9: the binary's speed with each allocator


def no_jemalloc(crate_dir):
    """ripgrep sets jemalloc as its global allocator on musl (a code change of its own): take it
    out, so that its musl build uses musl's malloc, as most crates' do."""
    manifest = crate_dir / "Cargo.toml"
    text = manifest.read_text()
    text2 = re.sub(r"\n\[target\.'cfg\(all\(target_env = \"musl\", target_pointer_width = \"64\"\)\)'\.dependencies\.jemallocator\]\n[^\[]*",
                   "\n", text)
    main = crate_dir / "crates" / "core" / "main.rs"
    code = main.read_text()
    code2 = re.sub(r"#\[cfg\(all\(target_env = \"musl\", target_pointer_width = \"64\"\)\)\]\s*#\[global_allocator\]\s*static ALLOC: jemallocator::Jemalloc = jemallocator::Jemalloc;",
                   "", code)
    if text2 == text or code2 == code:
        raise H.Failed("could not take jemalloc out of ripgrep's Cargo.toml and main.rs")
    manifest.write_text(text2)
    main.write_text(code2)
    # Cargo.lock without jemallocator (the builds use --locked); every crate is in the host's
    # registry cache since `cargo vendor` fetched them.
    sh(["cargo", "metadata", "--format-version", "1", "--offline"], cwd=crate_dir, timeout=300)


def set_allocator(crate_dir, allocator):
    with open(crate_dir / "Cargo.toml", "a") as f:
        f.write(f'\n[package.metadata.containerize]\nallocator = "{allocator}"\n')


class Variant:
    """One binary of a workload: how it is built, and the path of the built file."""

    def __init__(self, key, label):
        self.key = key
        self.label = label
        self.path = None
        self.error = None
        self.note = None


def build_variants(c_name, src, bin, root, tool, cfg):
    """glibc (cargo build), musl (the tool), musl + mimalloc (the tool, `allocator` setting)."""
    variants = []
    target = root / "target"  # shared: build scripts and proc macros are compiled once

    def copy(name):
        d = root / name
        H.rm(d)
        sh(["cp", "-a", src, d])
        unvendor(d)
        if c_name == "ripgrep":
            no_jemalloc(d)
        return d

    v = Variant("glibc", "glibc (x86_64-unknown-linux-gnu, glibc's malloc)")
    try:
        d = copy("glibc")
        log(f"P9 {c_name}: building for x86_64-unknown-linux-gnu")
        sh(["cargo", "build", "--release", "--locked", "--target", "x86_64-unknown-linux-gnu", "--bin", bin,
            "--target-dir", target], cwd=d, timeout=cfg.cold_timeout)
        v.path = target / "x86_64-unknown-linux-gnu" / "release" / bin
    except H.Failed as e:
        v.error = str(e).splitlines()[0]
    variants.append(v)
    for key, label, allocator in (("musl", "musl (the tool's default: musl's malloc)", None),
                                  ("musl-mimalloc", 'musl + `allocator = "mimalloc"`', "mimalloc")):
        v = Variant(key, label)
        try:
            d = copy(key)
            if allocator:
                set_allocator(d, allocator)
            log(f"P9 {c_name}: building {key} with cargo containerize")
            tdir = target if not allocator else root / "target-mimalloc"
            try:
                sh([tool, "containerize", "--manifest-path", d / "Cargo.toml", "-q", "--target-dir", tdir,
                    "-o", f"oci:{root / ('image-' + key)}:{TAG}"], timeout=cfg.cold_timeout)
            except H.Failed as e:
                if allocator and "unknown key `allocator`" in str(e):
                    v.error = "not measured: the tool has no allocator option"
                    log(f"P9 {c_name}: {key}: {str(e).splitlines()[-1].strip()}")
                    variants.append(v)
                    continue
                raise
            v.path = tdir / H.MUSL / "release" / bin
            if allocator:
                # mimalloc prints its statistics at exit with MIMALLOC_SHOW_STATS=1; musl's
                # malloc knows nothing of it.
                proof = subprocess.run([v.path, *(["--version"] if c_name == "ripgrep" else ["1", "1", "1"])],
                                       env=dict(os.environ, MIMALLOC_SHOW_STATS="1"),
                                       capture_output=True, text=True, timeout=120)
                if not all(word in proof.stderr for word in ("peak rss", "elapsed")):
                    v.error = "built, but mimalloc is not the allocator in use (MIMALLOC_SHOW_STATS=1 printed nothing)"
                    v.path = None
                else:
                    v.note = "MIMALLOC_SHOW_STATS=1 prints mimalloc's statistics: it is the allocator in use"
        except H.Failed as e:
            v.error = str(e).splitlines()[0]
        variants.append(v)
    return variants


def corpus(mb):
    """mb MB of generated text in 1 MB files (deterministic): 16 distinct files, repeated."""
    root = WORK / "p9" / f"corpus-{mb}MB"
    stamp = root / ".done"
    if stamp.exists():
        return root
    H.fresh_dir(root)
    log(f"P9: generating a {mb} MB text corpus")
    rng = random.Random(14)
    letters = "etaoinshrdlucmfwypvbgkjqxz"
    words = ["".join(rng.choice(letters[: rng.randint(6, 26)]) for _ in range(rng.randint(2, 9)))
             for _ in range(5000)]
    blocks = []
    for _ in range(min(mb, 16)):
        lines, size = [], 0
        while size < H.MB:
            line = " ".join(rng.choices(words, k=rng.randint(4, 14)))
            lines.append(line)
            size += len(line) + 1
        blocks.append("\n".join(lines) + "\n")
    for i in range(mb):
        (root / f"{i:04d}.txt").write_text(blocks[i % len(blocks)])
    stamp.write_text("")
    return root


def time_workload(variants, argv_of, runs, timeout):
    """Runs each variant's command in turn, `runs` rounds; returns {key: [seconds]} and the
    output each printed (for checking they did the same work)."""
    times = {v.key: [] for v in variants if v.path}
    outputs = {}
    for _ in range(runs):
        for v in variants:
            if not v.path:
                continue
            seconds, out = timed(["sh", "-c", argv_of(v.path)], timeout=timeout)
            times[v.key].append(seconds)
            outputs.setdefault(v.key, out.strip())
    return times, outputs


def run_p9(inputs, cfg, results):
    workloads = {}
    commands = {}
    for name in cfg.p9_workloads:
        # Kept between runs: its target directories make a rerun's builds incremental (P9
        # measures the binaries, not their builds).
        root = WORK / "p9" / name
        root.mkdir(parents=True, exist_ok=True)
        if name == "ripgrep":
            src = fetch_ripgrep()
            bin = "rg"
            data = corpus(cfg.p9_corpus_mb)
            argv_of = lambda b: f"{b} --no-config -n e {data} | wc -c"  # noqa: E731
            desc = (f"`rg -n e` over {cfg.p9_corpus_mb} MB of generated text in 1 MB files (every line "
                    "matches; output piped to `wc -c`), ripgrep's own jemalloc taken out")
        else:
            src = fixture("alloc-churn")
            bin = "alloc-churn"
            a = cfg.p9_churn_args
            argv_of = lambda b: f"{b} {a}"  # noqa: E731
            mb, it, th = a.split()
            desc = (f"`alloc-churn {a}`: a {mb} MB JSON document parsed into serde_json::Value and "
                    f"serialised {it} times on each of {th} threads")
        variants = build_variants(name, src, bin, root, inputs.tool, cfg)
        log(f"P9 {name}: {cfg.p9_runs} runs of each binary")
        try:
            times, outputs = time_workload(variants, argv_of, cfg.p9_runs, cfg.warm_timeout)
            error = None
        except H.Failed as e:
            times, outputs, error = {}, {}, str(e).splitlines()[0]
        same = len(set(outputs.values())) <= 1
        workloads[name] = {
            "description": desc, "error": error, "same_output": same, "outputs": outputs,
            "variants": [{"key": v.key, "label": v.label, "error": v.error, "note": v.note,
                          "time": H.stats(times.get(v.key, []))} for v in variants],
        }
        commands[name] = argv_of("$BIN")
        for v in workloads[name]["variants"]:
            log(f"  {v['key']:14s} " + (H.fs(v["time"]["median"]) if v["time"] else v["error"] or "—"))
    results["p9"] = workloads
    results["p9_commands"] = commands


# --------------------------------------------------------------------------------------------
# Report


def ratio_text(x):
    return "—" if x is None else f"{x:.2f}×"


def p7_targets(p7):
    rows = []
    for name, r in p7.items():
        ours, pod = r.get("ours", {}), r.get("ours-dockerfile", {})
        ow = ours.get("warm_stats")
        pw = pod.get("warm_stats")
        if ow and pw:
            x = pw["median"] / ow["median"]
            ok = x >= P7_MIN_SPEEDUP
            why = "" if ok else (f"; not met: the loop is dominated by the inner `cargo build` "
                                 f"({H.fs(ours['cargo']['median'])} of {H.fs(ow['median'])}), which both pay"
                                 if ours.get("cargo") else "")
            rows.append((f"P7 loop ({name})", "warm loop ≥ 5× faster than `podman build` of our own Dockerfile",
                         f"{H.fs(ow['median'])} vs {H.fs(pw['median'])}: {x:.2f}×{why}", H.verdict(ok)))
        else:
            rows.append((f"P7 loop ({name})", "warm loop ≥ 5× faster than `podman build` of our own Dockerfile",
                         "not measured: " + (ours.get("error") or pod.get("error") or "?"), "**not measured**"))
        if ow and ours.get("overhead"):
            o = ours["overhead"]["median"]
            ok = o <= P7_MAX_OVERHEAD * ow["median"]
            rows.append((f"P7 overhead ({name})", "the tool's own time above its inner `cargo build` ≤ 3% of the warm loop (issue 25; issue 14 asked 5%)",
                         f"{H.fs(o)} of {H.fs(ow['median'])}: {100 * o / ow['median']:.1f}%", H.verdict(ok)))
    return rows


def p8_targets(p8):
    rows = []
    for name, r in p8.items():
        o, e = r["ours"], r["emulated"]
        target = "`--platform linux/amd64,linux/arm64` ≥ 10× faster than emulated `podman build --platform linux/arm64`, both images run"
        if o["time"] and e["time"] and not o["error"] and not e["error"]:
            x = e["time"] / o["time"]
            runs = len(o["check"]) == 2 and (e["stopped"] or "linux/arm64" in e["check"])
            if e["stopped"]:
                measured = f"{H.fs(o['time'])} vs > {H.fs(e['time'])} (emulated build stopped): ≥ {x:.1f}×"
                v = H.verdict(True) if x >= P8_MIN_SPEEDUP else "**not established** (emulated build stopped before 10× ours)"
            else:
                measured = f"{H.fs(o['time'])} vs {H.fs(e['time'])}: {x:.1f}×"
                v = H.verdict(x >= P8_MIN_SPEEDUP and runs)
            if e["stopped"]:
                measured += "; the emulated image was not finished, so it was not run"
            rows.append((f"P8 multi-platform ({name})", target, measured, v))
        else:
            rows.append((f"P8 multi-platform ({name})", target,
                         f"not measured: {o['error'] or e['error']}", "**not measured**"))
    return rows


def p9_targets(p9):
    rows = []
    for name, w in p9.items():
        by = {v["key"]: v for v in w["variants"]}
        g, m, r = by.get("glibc", {}), by.get("musl", {}), by.get("musl-mimalloc", {})
        target = "musl + replacement allocator within 1.1× of glibc"
        if not (g.get("time") and r.get("time")):
            rows.append((f"P9 allocator ({name})", target, r.get("error") or g.get("error") or w.get("error") or "?",
                         "**not measured**"))
            continue
        x = r["time"]["median"] / g["time"]["median"]
        musl = f"; musl's malloc {m['time']['median'] / g['time']['median']:.2f}×" if m.get("time") else ""
        ok = x <= P9_MAX_RATIO
        rows.append((f"P9 allocator ({name})", target, f"{x:.2f}× glibc{musl}", H.verdict(ok)))
    return rows


def targets(results):
    rows = []
    if results.get("p7"):
        rows += p7_targets(results["p7"])
    if results.get("p8"):
        rows += p8_targets(results["p8"])
    if results.get("p9"):
        rows += p9_targets(results["p9"])
    return rows


def write_sections(results, w):
    """P7, P8 and P9 of BENCHMARKS.md (w appends a line)."""
    p7 = results.get("p7")
    if p7:
        w("## P7 edit-to-image loop")
        w("")
        w("Per crate and contender: one cold build to an image (empty target directory, empty podman "
          "storage and cache mounts, the builder image imported), then the warm loop: append a comment "
          "to a source file, rebuild the image. Every contender works in its own copy of the crate, with "
          "the dependencies vendored (`cargo vendor`; no network for crates), on the same builder: "
          "the host's /usr and Rust toolchain, lent read-only to podman's RUN steps. The classic "
          "Dockerfile's warm run rebuilds everything, so it is run fewer times. Ours runs with CARGO "
          "pointing at a wrapper that times its inner `cargo build`; its own time is the rest. podman "
          f"uses the `{results.get('p7_storage_driver', '?')}` storage driver. The Dockerfiles are "
          "below, under the exact commands.")
        w("")
        for name, r in p7.items():
            w(f"### {name}")
            w("")
            w("| contender | cold | warm loop (after an edit) | warm vs ours | image runs |")
            w("|---|---|---|---|---|")
            base = r.get("ours", {}).get("warm_stats")
            for key, v in r.items():
                if v.get("error") and not v.get("warm"):
                    w(f"| {v['label']} | failed: {v['error']} | | | |")
                    continue
                ws = v["warm_stats"]
                warm = (f"{H.fs(ws['median'])} ({H.fs(ws['min'])}–{H.fs(ws['max'])}, "
                        f"{ws['n']} run{'s' if ws['n'] > 1 else ''})" if ws else "—")
                vs = ratio_text(ws["median"] / base["median"]) if ws and base else "—"
                w(f"| {v['label']} | {H.fs(v['cold'])} | {warm} | {vs} | {v['check'] or v.get('error') or '—'} |")
            ours = r.get("ours", {})
            if ours.get("cargo"):
                w("")
                w(f"Ours, warm: inner `cargo build` {H.fs(ours['cargo']['median'])}, the tool's own time "
                  f"{H.fs(ours['overhead']['median'])} ({H.fs(ours['overhead']['min'])}–{H.fs(ours['overhead']['max'])}); "
                  f"layers compressed per run: {', '.join(map(str, ours['layers_built']))} (when 0, the "
                  "edit, a comment, left the binary's bytes as they were and its layer came from the cache).")
            w("")
        if results.get("p7_chef_version"):
            w(f"cargo-chef: `{results['p7_chef_version']}`, installed with `cargo install cargo-chef --locked`.")
            w("")
    p8 = results.get("p8")
    if p8:
        w("## P8 multi-platform")
        w("")
        w("Ours builds both platforms at once, cold, on this amd64 machine (arm64 cross-compiled; C code "
          "through cargo-zigbuild). The contender builds only the arm64 image, the way most Dockerfiles "
          "get one on an amd64 machine: `podman build --platform linux/arm64` of the classic "
          "Dockerfile, every RUN step under qemu-user emulation (`qemu-aarch64-static` through "
          f"binfmt_misc, {results.get('p8_binfmt', '?')}), on an arm64 Debian 12 builder (mmdebstrap: "
          "gcc, libc6-dev, musl-tools, make) with an arm64 Rust toolchain of the host's version lent "
          "read-only. One run each. Both images are checked by running their binaries "
          "(arm64 under qemu-aarch64-static). zig's own cache (the musl C library it builds for "
          "a target once per machine) was warm; cargo's and the tool's were empty."
          + "".join(f" The emulated build of {k} is stopped after {H.fs(v)}: its time is then a lower bound."
                    for k, v in results.get("p8_caps", {}).items()))
        w("")
        w("| crate | ours: amd64 + arm64 | emulated podman build: arm64 | emulated / ours | images run |")
        w("|---|---|---|---|---|")
        for name, r in p8.items():
            o, e = r["ours"], r["emulated"]
            ot = H.fs(o["time"]) if o["time"] else f"failed: {o['error']}"
            if e["error"]:
                et = f"failed: {e['error']}"
            elif e["stopped"]:
                et = f"> {H.fs(e['time'])} (stopped)"
            else:
                et = H.fs(e["time"])
            x = e["time"] / o["time"] if o["time"] and e["time"] and not e["error"] else None
            checks = [f"ours {p}: {t}" for p, t in o["check"].items()] + [f"emulated {p}: {t}" for p, t in e["check"].items()]
            w(f"| {name} | {ot} | {et} | {('≥ ' if e['stopped'] else '') + ratio_text(x)} | {'; '.join(checks) or '—'} |")
        w("")
    p9 = results.get("p9")
    if p9:
        w("## P9 the binary's speed with each allocator")
        w("")
        w(f"Each binary runs the workload {results.get('p9_runs', '?')} times, the binaries in turn within "
          "each round; the glibc build with `cargo build --release`, the musl ones with `cargo "
          "containerize` (the binary it packs, from its target directory).")
        w("")
        for name, wl in p9.items():
            w(f"### {name}")
            w("")
            w(wl["description"] + ("" if wl["same_output"] else " — **the binaries' outputs differ**") + ".")
            w("")
            w("| binary | time | vs glibc |")
            w("|---|---|---|")
            g = next((v for v in wl["variants"] if v["key"] == "glibc" and v["time"]), None)
            for v in wl["variants"]:
                if not v["time"]:
                    w(f"| {v['label']} | {v['error'] or wl.get('error') or '—'} | |")
                    continue
                t = v["time"]
                w(f"| {v['label']} | {H.fs(t['median'])} ({H.fs(t['min'])}–{H.fs(t['max'])}) | "
                  f"{ratio_text(t['median'] / g['time']['median']) if g else '—'} |")
            notes = [f"{v['key']}: {v['note']}" for v in wl["variants"] if v.get("note")]
            if notes:
                w("")
                w("; ".join(notes) + ".")
            w("")


def write_commands(results, w):
    for sec in ("p7", "p8", "p9"):
        cmds = results.get(f"{sec}_commands")
        if cmds:
            w(f"# {sec.upper()}")
            for k, c in cmds.items():
                w(f"# {k}")
                w(c)


def write_dockerfiles(results, w):
    """The Dockerfiles P7 and P8 built, after the commands block."""
    for key, text in results.get("p7_dockerfiles", {}).items():
        w(f"<details><summary>P7 {key}: Dockerfile</summary>")
        w("")
        w("```dockerfile")
        w(text.rstrip())
        w("```")
        w("")
        w("</details>")
        w("")
