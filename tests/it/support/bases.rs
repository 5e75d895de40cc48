//! Base images for the base-image tests (issue 23), made on this machine, never pulled:
//!
//! - [`busybox`]: `/bin/busybox` from Debian's `busybox-static` for amd64 and arm64, `/bin/sh`
//!   a symlink to it, `Env` PATH and `Cmd ["sh"]` as the real busybox image has: a base with a
//!   shell, as the debug variant wants.
//! - [`distroless`]: what gcr.io/distroless/static holds, in miniature: `/etc/passwd` with
//!   root, nobody and `nonroot` (65532), `/etc/group`, `/etc/nsswitch.conf`, `/etc/os-release`,
//!   a dpkg status file `/var/lib/dpkg/status.d/base-files` (so syft lists a Debian package),
//!   the host's CA bundle and `/usr/share/zoneinfo/UTC`, `/home/nonroot` (0700, 65532) and
//!   `/tmp` (1777); `User` 65532, `WorkingDir` /home/nonroot.
//!
//! Each is an OCI image layout written with umoci (one image per platform, tagged `amd64` and
//! `arm64`) plus the two-platform image index tagged [`TAG`], written here with serde_json
//! (umoci 0.4 writes no index). Both platforms carry a label naming the base
//! ([`BASE_LABEL`]) and a variable naming it ([`BASE_ENV`]). Timestamps are fixed, so the same inputs give the same digests.
//!
//! Built once per test process and cached across runs under
//! `$CARGO_TARGET_TMPDIR/containerize-bases/<name>-<key>`, where the key is the sha256 of
//! everything that goes in (the .deb files, the host files copied, [`RECIPE`]); a cached
//! layout is used only after every blob in it matched its digest, else it is made again.
//!
//! The busybox-static .debs come from scripts/setup-test-env, which downloads them with
//! `apt-get download` into `$CONTAINERIZE_DEBS_DIR` (default `~/.cache/cargo-containerize/debs`),
//! so the tests never reach the network.
//!
//! To a registry: [`Base::push`] (skopeo copy --all, with the registry's TLS and credentials),
//! and [`served`] for what the registry then serves (index digest, each platform's digest).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::{Value, json};

use crate::common::{Bundle, Layout, capture, copy_tree, sha256_digest, tempdir};
use crate::support::registry::Registry;

/// Bumped whenever what this file writes changes, so that cached bases are made again.
const RECIPE: &str = "bases v2";
/// The tag of the two-platform index in every base layout.
pub const TAG: &str = "latest";
/// The platforms every base has, by architecture (each is also a tag in the layout).
pub const ARCHES: [&str; 2] = ["amd64", "arm64"];
/// The PATH both bases set in their config.
pub const BASE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The label each base's config carries (its value is the base's name).
pub const BASE_LABEL: &str = "org.example.test-base";
/// A variable in each base's `Env` (its value is the base's name), so that a test can see
/// the base's environment kept in an image built on it.
pub const BASE_ENV: &str = "TEST_BASE";
/// The distroless base's user, as its config and /etc/passwd say.
pub const NONROOT_UID: u32 = 65532;
/// The dpkg package the distroless base's status file describes, and its version.
pub const DPKG_PACKAGE: (&str, &str) = ("base-files", "12.4+deb12u11");
/// The distroless base's working directory.
pub const DISTROLESS_WORKDIR: &str = "/home/nonroot";
/// The distroless base's `/etc/passwd`.
pub const DISTROLESS_PASSWD: &str = "root:x:0:0:root:/root:/sbin/nologin\n\
    nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n\
    nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n";
const DISTROLESS_GROUP: &str =
    "root:x:0:\nnobody:x:65534:\ntty:x:5:\nstaff:x:50:\nnonroot:x:65532:\n";
const NSSWITCH: &str = "passwd: files\ngroup: files\nhosts: files dns\n";
const OS_RELEASE: &str = "PRETTY_NAME=\"Distroless\"\nNAME=\"Debian GNU/Linux\"\nID=\"debian\"\n\
    VERSION_ID=\"12\"\nVERSION=\"Debian GNU/Linux 12 (bookworm)\"\nHOME_URL=\"https://example.com/distroless\"\n";
/// Files copied from the host into the distroless base (image path, host path).
const HOST_FILES: [(&str, &str); 2] = [
    (
        "etc/ssl/certs/ca-certificates.crt",
        "/etc/ssl/certs/ca-certificates.crt",
    ),
    ("usr/share/zoneinfo/UTC", "/usr/share/zoneinfo/UTC"),
];
/// Every timestamp in a base (files, config, history): 2024-01-01T00:00:00Z.
const EPOCH: u64 = 1_704_067_200;
const CREATED: &str = "2024-01-01T00:00:00Z";

pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// A base image: an OCI layout holding the index ([`TAG`]) and one tag per architecture.
#[derive(Debug)]
pub struct Base {
    pub name: &'static str,
    /// The OCI layout directory.
    pub dir: PathBuf,
}

/// The busybox base, made once per process.
pub fn busybox() -> &'static Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(|| {
        let debs: Vec<(&str, PathBuf)> = ARCHES.iter().map(|a| (*a, busybox_deb(a))).collect();
        let mut inputs = Vec::new();
        for (arch, deb) in &debs {
            inputs.push((format!("deb {arch}"), read(deb)));
        }
        let config = vec![
            format!("--config.env=PATH={BASE_PATH}"),
            format!("--config.env={BASE_ENV}=busybox"),
            "--config.cmd=sh".to_string(),
            format!("--config.label={BASE_LABEL}=busybox"),
        ];
        make("busybox", &inputs, &config, |rootfs, arch| {
            let deb = &debs.iter().find(|(a, _)| *a == arch).expect("deb").1;
            busybox_rootfs(rootfs, deb);
        })
    })
}

/// The distroless-style base, made once per process.
pub fn distroless() -> &'static Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(|| {
        let inputs: Vec<(String, Vec<u8>)> = HOST_FILES
            .iter()
            .map(|(_, host)| (host.to_string(), read(Path::new(host))))
            .collect();
        let config = vec![
            format!("--config.env=PATH={BASE_PATH}"),
            "--config.env=SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt".to_string(),
            format!("--config.env={BASE_ENV}=distroless"),
            format!("--config.user={NONROOT_UID}"),
            format!("--config.workingdir={DISTROLESS_WORKDIR}"),
            format!("--config.label={BASE_LABEL}=distroless"),
        ];
        make("distroless", &inputs, &config, distroless_rootfs)
    })
}

impl Base {
    /// The two-platform index, as `oci:DIR:latest`.
    pub fn layout(&self) -> Layout {
        Layout::new(&self.dir, TAG)
    }

    /// `oci:DIR:latest`: the reference the tool takes as `from`.
    pub fn reference(&self) -> String {
        self.layout().reference()
    }

    /// One platform's image in the same layout (tag = the architecture).
    pub fn platform(&self, arch: &str) -> Layout {
        assert!(ARCHES.contains(&arch), "no {arch} in the bases");
        Layout::new(&self.dir, arch)
    }

    /// The layout's index.json entry tagged `tag`.
    fn entry(&self, tag: &str) -> Value {
        let index = read_json(&self.dir.join("index.json"));
        index["manifests"]
            .as_array()
            .expect("index.json manifests")
            .iter()
            .find(|d| d["annotations"][REF_NAME] == tag)
            .unwrap_or_else(|| panic!("no {tag} in {}", self.dir.display()))
            .clone()
    }

    /// Digest of the two-platform index.
    pub fn index_digest(&self) -> String {
        str_field(&self.entry(TAG), "digest")
    }

    /// Digest of the manifest of `arch`.
    pub fn manifest_digest(&self, arch: &str) -> String {
        str_field(&self.entry(arch), "digest")
    }

    /// The image manifest of `arch`.
    pub fn manifest(&self, arch: &str) -> Value {
        read_json(&self.layout().blob(&self.manifest_digest(arch)))
    }

    /// The image config of `arch`.
    pub fn config(&self, arch: &str) -> Value {
        let manifest = self.manifest(arch);
        read_json(
            &self
                .layout()
                .blob(&str_field(&manifest["config"], "digest")),
        )
    }

    /// Layer digests of `arch`, bottom first.
    pub fn layer_digests(&self, arch: &str) -> Vec<String> {
        self.manifest(arch)["layers"]
            .as_array()
            .expect("layers")
            .iter()
            .map(|l| str_field(l, "digest"))
            .collect()
    }

    /// Every path in the base's filesystem for `arch` (no leading `./` or `/`), from its layers.
    pub fn paths(&self, arch: &str) -> Vec<String> {
        let layout = self.layout();
        let mut paths: Vec<String> = self
            .layer_digests(arch)
            .iter()
            .flat_map(|d| layout.layer_entries(d))
            .map(|e| {
                e.path
                    .trim_start_matches("./")
                    .trim_matches('/')
                    .to_string()
            })
            .filter(|p| !p.is_empty())
            .collect();
        paths.sort();
        paths.dedup();
        paths
    }

    /// The base as an `oci-archive:` (a tar of the layout) at `file`; returns
    /// `oci-archive:FILE:latest`.
    pub fn archive(&self, file: &Path) -> String {
        capture(
            Command::new("tar")
                .arg("-cf")
                .arg(file)
                .arg("-C")
                .arg(&self.dir)
                .arg("."),
        )
        .assert_success();
        format!("oci-archive:{}:{TAG}", file.display())
    }

    /// A copy of the layout in `dir` with one more tag, `only-<arch>`: an index listing
    /// `arch` alone, as a base that lacks the other platform.
    pub fn with_only(&self, arch: &str, dir: &Path) -> Layout {
        assert!(ARCHES.contains(&arch), "no {arch} in the bases");
        copy_tree(&self.dir, dir);
        let tag = format!("only-{arch}");
        write_index(dir, &tag, &[arch]);
        Layout::new(dir, &tag)
    }

    /// `skopeo copy --all` of the index into `registry` as `name` (`REPO:TAG`), with the
    /// registry's TLS settings and credentials; the digests stay the layout's. Returns what the
    /// registry serves.
    pub fn push(&self, registry: &Registry, name: &str) -> Served {
        let run = capture(
            Command::new("skopeo")
                .args(["copy", "--quiet", "--all", "--preserve-digests"])
                .args(registry.skopeo_flags("dest-"))
                .arg(self.reference())
                .arg(format!("docker://{}", registry.reference(name))),
        );
        run.assert_success();
        let served = served(registry, name);
        assert_eq!(
            served.index_digest,
            self.index_digest(),
            "the registry changed the index of {}",
            self.name
        );
        served
    }
}

/// What a registry serves for a base pushed as `name`.
#[derive(Debug, Clone)]
pub struct Served {
    /// `HOST:PORT/REPO:TAG`.
    pub reference: String,
    pub index_digest: String,
    /// Architecture -> manifest digest, from the served index.
    pub manifests: BTreeMap<String, String>,
}

impl Served {
    /// `HOST:PORT/REPO@sha256:…` of the index: the reference pinned.
    pub fn pinned(&self) -> String {
        format!("{}@{}", repository(&self.reference), self.index_digest)
    }

    pub fn manifest_digest(&self, arch: &str) -> &str {
        self.manifests
            .get(arch)
            .unwrap_or_else(|| panic!("no {arch} in {self:?}"))
    }
}

/// `HOST:PORT/REPO` of `HOST:PORT/REPO[:TAG][@DIGEST]`.
pub fn repository(reference: &str) -> &str {
    let no_digest = reference.split('@').next().expect("split");
    let slash = no_digest.rfind('/').unwrap_or(0);
    match no_digest[slash..].rfind(':') {
        Some(colon) => &no_digest[..slash + colon],
        None => no_digest,
    }
}

/// The index `registry` serves as `name`, with each platform's manifest digest
/// (`skopeo inspect --raw`).
pub fn served(registry: &Registry, name: &str) -> Served {
    let bytes = registry.manifest_bytes(name);
    let index: Value = serde_json::from_slice(&bytes).expect("index JSON");
    assert_eq!(
        index["mediaType"], INDEX_MEDIA_TYPE,
        "not an index: {index}"
    );
    let manifests = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .map(|d| {
            (
                str_field(&d["platform"], "architecture"),
                str_field(d, "digest"),
            )
        })
        .collect();
    Served {
        reference: registry.reference(name),
        index_digest: sha256_digest(&bytes),
        manifests,
    }
}

/// Replaces `process.args` of an unpacked bundle (e.g. `["/bin/busybox", "echo", "hi"]`).
pub fn set_args(bundle: &Bundle, args: &[&str]) {
    let path = bundle.path.join("config.json");
    let mut config = read_json(&path);
    config["process"]["args"] = json!(args);
    fs::write(&path, serde_json::to_vec_pretty(&config).expect("json")).expect("config.json");
}

/// Runs an aarch64 program of an unpacked arm64 rootfs under qemu-aarch64-static, with `args`.
pub fn run_arm64(program: &Path, args: &[&str]) -> crate::common::Run {
    capture(
        Command::new("timeout")
            .args(["--kill-after=10", "120", "qemu-aarch64-static"])
            .arg(program)
            .args(args),
    )
}

// ---------------------------------------------------------------------------------------
// Making the layouts

/// The .debs of scripts/setup-test-env.
fn debs_dir() -> PathBuf {
    std::env::var_os("CONTAINERIZE_DEBS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::home_dir()
                .expect("a home directory")
                .join(".cache/cargo-containerize/debs")
        })
}

/// `busybox-static_*_<arch>.deb` in [`debs_dir`] (the newest name if there are several).
fn busybox_deb(arch: &str) -> PathBuf {
    let dir = debs_dir();
    let suffix = format!("_{arch}.deb");
    let mut found: Vec<PathBuf> = fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("busybox-static_") && n.ends_with(&suffix))
        })
        .collect();
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!(
            "no busybox-static .deb for {arch} in {}; run scripts/setup-test-env",
            dir.display()
        )
    })
}

fn read(path: &Path) -> Vec<u8> {
    fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&read(path))
        .unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()))
}

fn str_field(value: &Value, key: &str) -> String {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("no string {key} in {value}"))
        .to_string()
}

/// The cached layout of base `name` for these inputs, made (with `rootfs` filling each
/// platform's root filesystem and `config` as `umoci config` flags) when missing or damaged.
fn make(
    name: &'static str,
    inputs: &[(String, Vec<u8>)],
    config: &[String],
    rootfs: impl Fn(&Path, &str),
) -> Base {
    let mut key = format!("{RECIPE}\n{name}\n{config:?}\n").into_bytes();
    for (label, bytes) in inputs {
        key.extend_from_slice(label.as_bytes());
        key.extend_from_slice(sha256_digest(bytes).as_bytes());
    }
    let key = sha256_digest(&key);
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("containerize-bases");
    fs::create_dir_all(&root).expect("mkdir containerize-bases");
    let dir = root.join(format!("{name}-{}", &key[7..23]));
    let base = Base { name, dir };
    if base.dir.exists() {
        if intact(&base.dir) {
            return base;
        }
        fs::remove_dir_all(&base.dir).expect("remove a damaged cached base");
    }
    // Made beside, then renamed into place: a process that finds the directory finds it whole.
    let temp = root.join(format!(
        ".{name}-{}.tmp-{}",
        &key[7..23],
        std::process::id()
    ));
    let _ = fs::remove_dir_all(&temp);
    write_layout(&temp, config, &rootfs);
    if fs::rename(&temp, &base.dir).is_err() {
        // Another test process made it meanwhile.
        fs::remove_dir_all(&temp).expect("remove the spare base");
        assert!(intact(&base.dir), "{} is damaged", base.dir.display());
    }
    sweep_older(&root, name, &base.dir);
    base
}

/// Removes the layouts of `name` made from other inputs (an older recipe or .deb).
fn sweep_older(root: &Path, name: &str, keep: &Path) {
    let prefix = format!("{name}-");
    for entry in fs::read_dir(root).into_iter().flatten().flatten() {
        let older = entry.file_name().to_string_lossy().starts_with(&prefix);
        if older && entry.path() != keep {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// Whether a cached layout has its tags and every blob matches its digest.
fn intact(dir: &Path) -> bool {
    let Ok(index) = fs::read(dir.join("index.json")) else {
        return false;
    };
    let Ok(index) = serde_json::from_slice::<Value>(&index) else {
        return false;
    };
    let tags: Vec<&str> = index["manifests"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter_map(|d| d["annotations"][REF_NAME].as_str())
                .collect()
        })
        .unwrap_or_default();
    if !ARCHES.iter().chain([&TAG]).all(|t| tags.contains(t)) {
        return false;
    }
    let Ok(blobs) = fs::read_dir(dir.join("blobs/sha256")) else {
        return false;
    };
    blobs.flatten().all(|blob| {
        let name = blob.file_name().to_string_lossy().into_owned();
        fs::read(blob.path()).is_ok_and(|bytes| sha256_digest(&bytes) == format!("sha256:{name}"))
    })
}

fn run(cmd: &mut Command) {
    capture(cmd).assert_success();
}

fn umoci(args: &[&str]) {
    run(Command::new("umoci").args(args));
}

/// Writes the layout at `layout`: per platform `umoci new`, unpack, fill, repack, config;
/// then the index.
fn write_layout(layout: &Path, config: &[String], rootfs: &impl Fn(&Path, &str)) {
    let work = tempdir();
    let layout_str = layout.to_str().expect("utf-8 path");
    umoci(&["init", "--layout", layout_str]);
    for arch in ARCHES {
        let image = format!("{layout_str}:{arch}");
        let bundle = work.path().join(arch);
        let bundle_str = bundle.to_str().expect("utf-8 path");
        umoci(&["new", "--image", &image]);
        umoci(&["unpack", "--image", &image, bundle_str]);
        let fs_root = bundle.join("rootfs");
        rootfs(&fs_root, arch);
        // Fixed mtimes, so that the same inputs make the same layer.
        run(Command::new("find")
            .arg(&fs_root)
            .args(["-exec", "touch", "-h", "-d"])
            .arg(format!("@{EPOCH}"))
            .args(["{}", "+"]));
        umoci(&[
            "repack",
            "--image",
            &image,
            "--history.created",
            CREATED,
            "--history.created_by",
            "cargo-containerize tests/it/support/bases.rs",
            bundle_str,
        ]);
        let mut args = vec![
            "config".to_string(),
            "--no-history".to_string(),
            "--image".to_string(),
            image.clone(),
            "--os=linux".to_string(),
            format!("--architecture={arch}"),
            format!("--created={CREATED}"),
        ];
        args.extend(config.iter().cloned());
        run(Command::new("umoci").args(&args));
    }
    umoci(&["gc", "--layout", layout_str]);
    write_index(layout, TAG, &ARCHES);
}

/// Adds an index of `arches` tagged `tag` to `layout`, from its per-architecture tags.
fn write_index(layout: &Path, tag: &str, arches: &[&str]) {
    let path = layout.join("index.json");
    let mut top = read_json(&path);
    let manifests: Vec<Value> = arches
        .iter()
        .map(|arch| {
            let entry = top["manifests"]
                .as_array()
                .expect("manifests")
                .iter()
                .find(|d| d["annotations"][REF_NAME] == *arch)
                .expect("per-architecture tag")
                .clone();
            let mut platform = json!({ "architecture": arch, "os": "linux" });
            if *arch == "arm64" {
                // As the arm64 entries of Docker Hub's and distroless's indexes say.
                platform["variant"] = json!("v8");
            }
            json!({
                "mediaType": entry["mediaType"],
                "digest": entry["digest"],
                "size": entry["size"],
                "platform": platform,
            })
        })
        .collect();
    let index = json!({
        "schemaVersion": 2,
        "mediaType": INDEX_MEDIA_TYPE,
        "manifests": manifests,
    });
    let bytes = serde_json::to_vec(&index).expect("index json");
    let digest = sha256_digest(&bytes);
    fs::write(layout.join("blobs/sha256").join(&digest[7..]), &bytes).expect("write index blob");
    top["manifests"]
        .as_array_mut()
        .expect("manifests")
        .push(json!({
            "mediaType": INDEX_MEDIA_TYPE,
            "digest": digest,
            "size": bytes.len(),
            "annotations": { REF_NAME: tag },
        }));
    fs::write(&path, serde_json::to_vec(&top).expect("index.json")).expect("write index.json");
}

/// `/bin/busybox` out of the .deb, `/bin/sh` -> busybox.
fn busybox_rootfs(rootfs: &Path, deb: &Path) {
    let unpacked = tempdir();
    run(Command::new("dpkg-deb")
        .arg("-x")
        .arg(deb)
        .arg(unpacked.path()));
    let bin = rootfs.join("bin");
    fs::create_dir_all(&bin).expect("mkdir bin");
    fs::copy(unpacked.path().join("bin/busybox"), bin.join("busybox")).expect("copy busybox");
    chmod(&bin.join("busybox"), 0o755);
    std::os::unix::fs::symlink("busybox", bin.join("sh")).expect("symlink sh");
}

fn write(rootfs: &Path, rel: &str, contents: &[u8], mode: u32) {
    let path = rootfs.join(rel);
    fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    fs::write(&path, contents).unwrap_or_else(|e| panic!("write {rel}: {e}"));
    chmod(&path, mode);
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// The distroless-style filesystem for `arch`.
fn distroless_rootfs(rootfs: &Path, arch: &str) {
    write(rootfs, "etc/passwd", DISTROLESS_PASSWD.as_bytes(), 0o644);
    write(rootfs, "etc/group", DISTROLESS_GROUP.as_bytes(), 0o644);
    write(rootfs, "etc/nsswitch.conf", NSSWITCH.as_bytes(), 0o644);
    write(rootfs, "etc/os-release", OS_RELEASE.as_bytes(), 0o644);
    write(
        rootfs,
        &format!("var/lib/dpkg/status.d/{}", DPKG_PACKAGE.0),
        dpkg_status(arch).as_bytes(),
        0o644,
    );
    for (image_path, host_path) in HOST_FILES {
        write(rootfs, image_path, &read(Path::new(host_path)), 0o644);
    }
    let tmp = rootfs.join("tmp");
    fs::create_dir_all(&tmp).expect("mkdir tmp");
    chmod(&tmp, 0o1777);
    let home = rootfs.join("home/nonroot");
    fs::create_dir_all(&home).expect("mkdir home");
    chmod(&home, 0o700);
    std::os::unix::fs::chown(&home, Some(NONROOT_UID), Some(NONROOT_UID)).expect("chown home");
    fs::create_dir_all(rootfs.join("root")).expect("mkdir root");
    chmod(&rootfs.join("root"), 0o700);
}

/// A dpkg status stanza for [`DPKG_PACKAGE`], as distroless writes one per package.
fn dpkg_status(arch: &str) -> String {
    let (name, version) = DPKG_PACKAGE;
    format!(
        "Package: {name}\n\
         Essential: yes\n\
         Status: install ok installed\n\
         Priority: required\n\
         Section: admin\n\
         Installed-Size: 341\n\
         Maintainer: Santiago Vila <sanvila@debian.org>\n\
         Architecture: {arch}\n\
         Multi-Arch: foreign\n\
         Version: {version}\n\
         Replaces: base, dpkg (<= 1.15.0), miscutils\n\
         Provides: base\n\
         Description: Debian base system miscellaneous files\n \
         This package contains the basic filesystem hierarchy of a Debian system, and\n \
         several important miscellaneous files, such as /etc/debian_version,\n \
         /etc/host.conf, /etc/issue, /etc/motd, /etc/profile, and others,\n \
         and the text of several common licenses in use on Debian systems.\n"
    )
}
