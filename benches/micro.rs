//! Microbenchmarks of the hot paths, in-process through the library crate, with divan:
//! `cargo bench --bench micro` (all), `cargo bench --bench micro -- gzip` (names matching a
//! filter), `cargo bench --bench micro -- --sample-count 5` (fewer samples).
//!
//! Inputs are made here, once per process: pseudo-random bytes (compress like machine code at
//! its worst) and zeros (compress best), 1 MB and 64 MB each. The ELF parser reads real
//! executables: this bench's own (dynamic, glibc) and, when the musl target is installed, a
//! tiny static binary built by `rustc` on first use.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use cargo_containerize::blobs::BlobStore;
use cargo_containerize::files::LayerKind;
use cargo_containerize::layers::compress::Codec;
use cargo_containerize::layers::tar::{Entry, LayerContent, Source, write_layer};
use cargo_containerize::metadata::values::Compression;
use cargo_containerize::platform::Platform;
use cargo_containerize::util::digest::Digest;
use cargo_containerize::util::shell::Shell;
use cargo_containerize::verify;
use divan::Bencher;
use divan::counter::BytesCount;

fn main() {
    divan::main();
}

const MB: usize = 1_000_000;

/// The inputs, by name: what the benchmarks' `args` list.
const INPUTS: &[&str] = &["zeros 1 MB", "random 1 MB", "zeros 64 MB", "random 64 MB"];

fn input(name: &str) -> &'static [u8] {
    static CELLS: [OnceLock<Vec<u8>>; 4] = [const { OnceLock::new() }; 4];
    let i = INPUTS
        .iter()
        .position(|n| *n == name)
        .expect("a listed input");
    CELLS[i].get_or_init(|| {
        let len = if name.contains("64 MB") { 64 * MB } else { MB };
        if name.starts_with("zeros") {
            vec![0; len]
        } else {
            pseudo_random(len)
        }
    })
}

/// Bytes from xorshift64 with a fixed seed: the same input on every run, and no random-number
/// crate for one loop (hand-written for that reason).
fn pseudo_random(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A fresh store in a temporary directory (removed when the pair is dropped).
fn fresh_store() -> (tempfile::TempDir, BlobStore) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = BlobStore::open(&dir.path().join("cache"), &Shell::discard()).expect("a store");
    (dir, store)
}

fn codec(kind: Compression) -> Codec {
    Codec {
        kind,
        level: kind.default_level(),
    }
}

/// Compresses `bytes` with the codec's encoder (the layers' own, threads as in a real run)
/// into a sink; returns nothing, so only the compression is timed.
fn compress(kind: Compression, bytes: &[u8]) {
    let mut enc = codec(kind).encoder(std::io::sink()).expect("an encoder");
    std::io::Write::write_all(&mut enc, bytes).expect("compressed");
    enc.finish().expect("finished");
}

/// gzip at the default level (5), through `layers::compress::Codec::encoder` (ParGz).
#[divan::bench(args = INPUTS)]
fn gzip(bencher: Bencher, name: &str) {
    let bytes = input(name);
    bencher
        .counter(BytesCount::new(bytes.len()))
        .bench(|| compress(Compression::Gzip, divan::black_box(bytes)));
}

/// zstd at the default level (7), through `layers::compress::Codec::encoder`.
#[divan::bench(args = INPUTS)]
fn zstd(bencher: Bencher, name: &str) {
    let bytes = input(name);
    bencher
        .counter(BytesCount::new(bytes.len()))
        .bench(|| compress(Compression::Zstd, divan::black_box(bytes)));
}

/// A whole layer: one file of the input into a fresh store, tar + gzip + digest + commit
/// (`layers::tar::write_layer`; the tar writer alone is private). Each iteration gets a new
/// store, made untimed, so the layer cache never answers.
#[divan::bench(args = INPUTS)]
fn tar_layer_gzip(bencher: Bencher, name: &str) {
    let bytes = input(name);
    bencher
        .counter(BytesCount::new(bytes.len()))
        .with_inputs(|| {
            let content = LayerContent {
                what: LayerKind::Binary,
                entries: vec![Entry::file(
                    "/usr/local/bin/app",
                    Source::Owned(bytes.to_vec()),
                    0o755,
                )],
                mtime: 0,
            };
            (fresh_store(), content)
        })
        .bench_local_values(|((dir, store), content)| {
            write_layer(&content, &store, codec(Compression::Gzip)).expect("a layer");
            (dir, store) // dropped (the directory removed) outside the timed region
        });
}

/// `Digest::sha256_of` over a buffer.
#[divan::bench(args = INPUTS)]
fn sha256_of(bencher: Bencher, name: &str) {
    let bytes = input(name);
    bencher
        .counter(BytesCount::new(bytes.len()))
        .bench(|| Digest::sha256_of(divan::black_box(bytes)));
}

/// `Digest::sha256_of_reader` over the same buffer, read through `&[u8]`.
#[divan::bench(args = INPUTS)]
fn sha256_of_reader(bencher: Bencher, name: &str) {
    let bytes = input(name);
    bencher
        .counter(BytesCount::new(bytes.len()))
        .bench(|| Digest::sha256_of_reader(divan::black_box(bytes)).expect("read"));
}

/// A first proof of a 64 MB file: `BlobStore::file_proven` of a file the store has no proof
/// of, so its bytes are read and hashed (page cache warm: written just before, untimed).
/// `BlobStore::proven` cannot be made to hash here: `put` proves what it writes, and the
/// process's memo of proven paths (private) answers every later call in this process.
#[divan::bench]
fn blob_first_proof(bencher: Bencher) {
    let bytes = input("random 64 MB");
    let digest = Digest::sha256_of(bytes);
    bencher
        .counter(BytesCount::new(bytes.len()))
        .with_inputs(|| {
            let (dir, store) = fresh_store();
            let path = dir.path().join("blob");
            std::fs::write(&path, bytes).expect("written");
            (dir, store, path)
        })
        .bench_local_values(|(dir, store, path)| {
            assert!(store.file_proven(&path, &digest, bytes.len() as u64));
            (dir, store)
        });
}

/// `BlobStore::proven` of a blob this process proved before: the process's memo answers.
#[divan::bench]
fn blob_remembered_proof(bencher: Bencher) {
    let (dir, store) = fresh_store();
    let (digest, size) = store.put(input("random 1 MB")).expect("stored");
    assert!(store.proven(&digest, size));
    bencher.bench(|| store.proven(&digest, size));
    drop(dir);
}

/// `BlobStore::open_proven` of a proven blob: the proof check and the open.
#[divan::bench]
fn blob_open_proven(bencher: Bencher) {
    let (dir, store) = fresh_store();
    let (digest, size) = store.put(input("random 1 MB")).expect("stored");
    bencher.bench(|| store.open_proven(&digest, size).expect("opened"));
    drop(dir);
}

/// The executables the ELF benchmarks read, by name.
const ELVES: &[&str] = &["this bench (dynamic)", "tiny static (musl)"];

fn elf(name: &str) -> Option<PathBuf> {
    if name == ELVES[0] {
        std::env::current_exe().ok()
    } else {
        static_elf().map(Path::to_path_buf)
    }
}

/// A tiny static binary: `rustc --target <arch>-unknown-linux-musl` of an empty main, into
/// target/bench-elf/ (built once; None when the musl target or rustc is missing).
fn static_elf() -> Option<&'static Path> {
    static ELF: OnceLock<Option<PathBuf>> = OnceLock::new();
    ELF.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-elf");
        let out = dir.join("tiny");
        if out.is_file() {
            return Some(out);
        }
        std::fs::create_dir_all(&dir).ok()?;
        let src = dir.join("tiny.rs");
        std::fs::write(&src, "fn main() { println!(\"hello\"); }\n").ok()?;
        let target = format!("{}-unknown-linux-musl", std::env::consts::ARCH);
        let ok = std::process::Command::new(std::env::var("RUSTC").unwrap_or("rustc".into()))
            .args(["--edition", "2021", "-O", "--target", &target, "-o"])
            .arg(&out)
            .arg(&src)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!(
                "micro: no static ELF (rustc --target {target} failed); verify_static skipped"
            );
        }
        ok.then_some(out)
    })
    .as_deref()
}

/// `verify::inspect_bytes`: goblin's parse and the checks on a mapped ELF (the file read
/// untimed, once).
#[divan::bench(args = ELVES)]
fn verify_inspect(bencher: Bencher, name: &str) {
    let Some(path) = elf(name) else {
        return; // no static binary: static_elf said so
    };
    let bytes = std::fs::read(&path).expect("the ELF");
    bencher
        .counter(BytesCount::new(bytes.len()))
        .bench(|| verify::inspect_bytes(&path, divan::black_box(&bytes)).expect("parsed"));
}

/// `verify::verify` of the static binary: open, map, inspect, accept for the host platform.
#[divan::bench]
fn verify_static(bencher: Bencher) {
    let (Some(path), Some(platform)) = (static_elf(), Platform::host()) else {
        return;
    };
    bencher.bench(|| verify::verify(path, platform).expect("accepted"));
}
