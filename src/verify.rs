//! Stage 3 — verify: the binary must run on an empty image.
//!
//! A scratch image has no dynamic loader and no shared libraries, so the ELF must have no
//! PT_INTERP and no DT_NEEDED, and its machine must match the image's platform.

use crate::platform::Platform;
use crate::util::fs::open_regular;
use anyhow::{Context, Result, bail};
use goblin::elf::Elf;
use goblin::elf::header::{ET_DYN, ET_EXEC};
use std::fmt;
use std::path::{Path, PathBuf};

/// What a binary needs from its environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub path: PathBuf,
    pub machine: u16,
    pub platform: Option<Platform>,
    pub interpreter: Option<String>,
    pub needed: Vec<String>,
    pub executable: bool,
    pub size: u64,
    /// The malloc it carries, as far as its bytes tell ([`malloc_of`]).
    pub malloc: Malloc,
    /// The dependency list embedded for scanners (cargo-auditable's `.dep-v0` section).
    pub dependencies: DependencyList,
}

/// Which malloc a binary carries, as far as its bytes tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malloc {
    /// musl's own: mallocng (musl 1.2.1 and later) or the one before it.
    Musl,
    /// A replacement, by name: "mimalloc" or "jemalloc".
    Replaced(&'static str),
    /// Not a musl binary, or nothing tells.
    Unknown,
}

/// Strings a malloc replacement keeps in .rodata, where stripping leaves them: the prefix of
/// mimalloc's warnings and errors (`mimalloc: warning: …`), and jemalloc's (`<jemalloc>: …`).
/// They are there whether the replacement is linked as malloc (`allocator = "mimalloc"`) or
/// the program set it as its `#[global_allocator]`.
const REPLACEMENTS: &[(&str, &[u8])] =
    &[("mimalloc", b"mimalloc: "), ("jemalloc", b"<jemalloc>: ")];

/// Symbols only musl's own malloc defines: mallocng's, and the older malloc's.
const MUSL_MALLOC_SYMBOLS: &[&str] = &[
    "__malloc_alloc_meta",
    "__libc_malloc_impl",
    "__malloc_context",
    "__bin_chunk",
    "__malloc_donate",
];

/// musl's text for an errno it has no message for (glibc says "Unknown error"): a Rust
/// program always links strerror (io::Error's Display), so a stripped musl binary has it.
const MUSL_STRERROR: &[u8] = b"No error information";

/// The heuristic behind [`Report::malloc`]: a replacement is recognised by its messages
/// ([`REPLACEMENTS`]); failing that, a binary whose symbol table names musl's malloc internals,
/// or (stripped) one holding musl's strerror text, uses musl's malloc, since musl's malloc is
/// the one a static musl link takes unless the program's own objects define malloc. A
/// dynamically linked binary takes its malloc from the loader's libc: unknown.
fn malloc_of(elf: &Elf, map: &[u8]) -> Malloc {
    if elf.interpreter.is_some() || !elf.libraries.is_empty() {
        return Malloc::Unknown;
    }
    let rodata = read_only_data(elf, map);
    let holds = |mark: &[u8]| {
        rodata
            .iter()
            .any(|d| memchr::memmem::find(d, mark).is_some())
    };
    if let Some((name, _)) = REPLACEMENTS.iter().find(|(_, mark)| holds(mark)) {
        return Malloc::Replaced(name);
    }
    let symbols = elf
        .syms
        .iter()
        .filter_map(|s| elf.strtab.get_at(s.st_name))
        .any(|n| MUSL_MALLOC_SYMBOLS.contains(&n));
    if symbols || holds(MUSL_STRERROR) {
        Malloc::Musl
    } else {
        Malloc::Unknown
    }
}

/// The contents of the `.rodata` sections, where the messages [`malloc_of`] looks for live
/// (stripping keeps them). Searching these rather than the whole file keeps the cost, and the
/// pages of a memory-mapped binary read, to a small part of a large binary.
fn read_only_data<'a>(elf: &Elf, map: &'a [u8]) -> Vec<&'a [u8]> {
    elf.section_headers
        .iter()
        .filter(|sh| sh.sh_type != goblin::elf::section_header::SHT_NOBITS)
        .filter(|sh| {
            elf.shdr_strtab
                .get_at(sh.sh_name)
                .is_some_and(|n| n == ".rodata" || n.starts_with(".rodata."))
        })
        .filter_map(|sh| {
            let at = usize::try_from(sh.sh_offset).ok()?;
            let len = usize::try_from(sh.sh_size).ok()?;
            map.get(at..at.checked_add(len)?)
        })
        .collect()
}

/// What a binary's `.dep-v0` section says ([`crate::build::auditable`] writes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DependencyList {
    Absent,
    /// There, but not zlib-compressed JSON in cargo-auditable's format (or over 8 MiB).
    Unreadable,
    /// The crates linked into the binary (itself among them) and those only used to build it.
    Crates {
        linked: usize,
        build: usize,
    },
}

impl fmt::Display for DependencyList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DependencyList::Absent => write!(f, "no dependency list"),
            DependencyList::Unreadable => write!(f, "unreadable dependency list"),
            DependencyList::Crates { linked, build } => write!(
                f,
                "dependency list of {linked} crate{} ({build} more used at build time)",
                if *linked == 1 { "" } else { "s" }
            ),
        }
    }
}

/// Reads the `.dep-v0` section of `elf` (`map` is its file), decompressing at most 8 MiB (the
/// limit auditable-info uses) so a hostile file cannot exhaust memory.
fn dependency_list(elf: &Elf, map: &[u8]) -> DependencyList {
    use std::io::Read;
    const LIMIT: u64 = 8 << 20;
    let Some(sh) = elf
        .section_headers
        .iter()
        .find(|sh| elf.shdr_strtab.get_at(sh.sh_name) == Some(crate::build::auditable::SECTION))
    else {
        return DependencyList::Absent;
    };
    let bytes = usize::try_from(sh.sh_offset)
        .ok()
        .zip(usize::try_from(sh.sh_size).ok())
        .and_then(|(at, len)| map.get(at..at.checked_add(len)?));
    let mut json = Vec::new();
    let read = bytes.is_some_and(|b| {
        flate2::read::ZlibDecoder::new(b)
            .take(LIMIT + 1)
            .read_to_end(&mut json)
            .is_ok()
    });
    match serde_json::from_slice::<auditable_serde::VersionInfo>(&json) {
        Ok(info) if read && json.len() as u64 <= LIMIT => {
            let build = info
                .packages
                .iter()
                .filter(|p| p.kind == auditable_serde::DependencyKind::Build)
                .count();
            DependencyList::Crates {
                linked: info.packages.len() - build,
                build,
            }
        }
        _ => DependencyList::Unreadable,
    }
}

/// A binary that passed verification, for the layer stage.
#[derive(Debug, Clone)]
pub struct VerifiedBinary {
    pub path: PathBuf,
    pub platform: Platform,
    pub size: u64,
}

impl Report {
    pub fn is_static(&self) -> bool {
        self.executable && self.interpreter.is_none() && self.needed.is_empty()
    }

    /// For a static binary with musl's own malloc: the setting that links a faster one.
    pub fn allocator_note(&self) -> Option<String> {
        (self.is_static() && self.malloc == Malloc::Musl).then(|| {
            format!(
                "{} uses musl's own malloc, which is slow for allocation-heavy programs; set allocator = \"mimalloc\" in [package.metadata.containerize] (or pass --allocator mimalloc) to link mimalloc in its place, with no code change",
                self.path.display()
            )
        })
    }

    fn machine_name(&self) -> String {
        match self.platform {
            Some(p) => p.musl_triple().split('-').next().unwrap_or("?").to_string(),
            None => goblin::elf::header::machine_to_str(self.machine).to_string(),
        }
    }

    /// Why the binary cannot go on a scratch image, as one sentence with the fix.
    pub fn dynamic_problem(&self) -> Option<String> {
        if self.is_static() {
            return None;
        }
        if !self.executable {
            return Some(format!(
                "{} is an ELF file but not an executable; give a program built for a musl target",
                self.path.display()
            ));
        }
        let mut what = Vec::new();
        if let Some(i) = &self.interpreter {
            what.push(format!("interpreter {i}"));
        }
        if !self.needed.is_empty() {
            what.push(format!("needs {}", self.needed.join(", ")));
        }
        let target = self
            .platform
            .map(|p| p.musl_triple())
            .unwrap_or("<arch>-unknown-linux-musl");
        let openssl = self
            .needed
            .iter()
            .any(|n| n.starts_with("libssl") || n.starts_with("libcrypto"));
        Some(format!(
            "{} is dynamically linked ({}); build it for {target} with +crt-static (cargo containerize does), {}",
            self.path.display(),
            what.join("; "),
            if openssl {
                "and replace system OpenSSL with rustls or openssl's `vendored` feature"
            } else {
                "and use rustls or openssl's `vendored` feature instead of system libraries"
            }
        ))
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let arch = match self.platform {
            Some(p) => format!("{} ({p})", self.machine_name()),
            None => self.machine_name(),
        };
        if self.is_static() {
            write!(
                f,
                "{}: static, {arch}, {} bytes, {}",
                self.path.display(),
                self.size,
                self.dependencies
            )
        } else {
            write!(f, "{}: NOT static, {arch}", self.path.display())?;
            if let Some(i) = &self.interpreter {
                write!(f, "; interpreter {i}")?;
            }
            if !self.needed.is_empty() {
                write!(f, "; needs {}", self.needed.join(", "))?;
            }
            if !self.executable {
                write!(f, "; not an executable")?;
            }
            Ok(())
        }
    }
}

/// Reads the ELF headers of `path`. Errors when it is not an ELF file.
pub fn inspect(path: &Path) -> Result<Report> {
    let file = open_regular(path)?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    // A memory map lets goblin read the headers of a very large binary without loading it.
    // SAFETY: the map is read-only and lives only for this function; a concurrent truncation
    // of the file could fault, which is the documented caveat of every mmap.
    let map = unsafe { memmap2::Mmap::map(&file) }
        .with_context(|| format!("cannot map {}", path.display()))?;
    let mut report = inspect_bytes(path, &map)?;
    report.size = size;
    Ok(report)
}

/// The checks of [`inspect`] on a file's contents; `path` only names the file in messages.
/// Public so that the fuzz targets (fuzz/) reach the same code as the tool.
pub fn inspect_bytes(path: &Path, map: &[u8]) -> Result<Report> {
    if map.len() < 4 || &map[..4] != b"\x7fELF" {
        let kind = if map.starts_with(b"#!") {
            "a script"
        } else if map.starts_with(b"MZ") {
            "a Windows executable"
        } else if map.starts_with(&[0xcf, 0xfa, 0xed, 0xfe]) {
            "a macOS executable"
        } else {
            "not an executable"
        };
        bail!(
            "{} is not an ELF binary ({kind}); give a Linux program built for a musl target",
            path.display()
        );
    }
    let elf = Elf::parse(map)
        .with_context(|| format!("{} is a damaged ELF file; rebuild it", path.display()))?;
    Ok(Report {
        path: path.to_path_buf(),
        machine: elf.header.e_machine,
        platform: Platform::from_elf_machine(elf.header.e_machine),
        // The file's own strings, escaped here once: they are shown in messages and reports.
        interpreter: elf.interpreter.map(crate::escape_controls),
        needed: elf
            .libraries
            .iter()
            .map(|s| crate::escape_controls(s))
            .collect(),
        executable: matches!(elf.header.e_type, ET_EXEC | ET_DYN) && elf.entry != 0,
        size: map.len() as u64,
        malloc: malloc_of(&elf, map),
        dependencies: dependency_list(&elf, map),
    })
}

/// Verifies that `path` is a static executable for `platform`.
pub fn verify(path: &Path, platform: Platform) -> Result<VerifiedBinary> {
    accept(inspect(path)?, platform)
}

/// The verdict of [`verify`] on an inspected binary.
pub fn accept(report: Report, platform: Platform) -> Result<VerifiedBinary> {
    let path = report.path.as_path();
    if report.platform != Some(platform) {
        bail!(
            "{} is built for {} but the image is {platform}; build it for {} or choose the matching --platform",
            path.display(),
            report.machine_name(),
            platform.musl_triple()
        );
    }
    if let Some(problem) = report.dynamic_problem() {
        bail!("{problem}");
    }
    Ok(VerifiedBinary {
        path: report.path.clone(),
        platform,
        size: report.size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_dynamic_binary_is_refused_with_its_libraries() {
        // Every Linux machine that runs these tests has a dynamically linked /bin/ls.
        let Ok(report) = inspect(Path::new("/bin/ls")) else {
            return;
        };
        if report.interpreter.is_none() {
            return;
        }
        assert!(!report.is_static());
        let msg = report.dynamic_problem().unwrap();
        assert!(msg.contains("interpreter"), "{msg}");
        assert!(msg.contains("musl"), "{msg}");
    }

    #[test]
    fn non_elf_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("script");
        std::fs::write(&p, "#!/bin/sh\necho hi\n").unwrap();
        let err = inspect(&p).unwrap_err().to_string();
        assert!(err.contains("not an ELF binary (a script)"), "{err}");
    }

    /// A minimal x86_64 executable whose PT_INTERP holds `interp`.
    fn elf_with_interpreter(interp: &[u8]) -> Vec<u8> {
        let mut f = b"\x7fELF\x02\x01\x01".to_vec();
        f.resize(16, 0);
        f.extend(2u16.to_le_bytes()); // ET_EXEC
        f.extend(62u16.to_le_bytes()); // EM_X86_64
        f.extend(1u32.to_le_bytes());
        f.extend(0x40_1000u64.to_le_bytes()); // entry
        f.extend(64u64.to_le_bytes()); // program headers right after this header
        f.extend(0u64.to_le_bytes()); // no section headers
        f.extend(0u32.to_le_bytes());
        for half in [64u16, 56, 1, 64, 0, 0] {
            f.extend(half.to_le_bytes());
        }
        f.extend(3u32.to_le_bytes()); // PT_INTERP
        f.extend(4u32.to_le_bytes());
        f.extend(120u64.to_le_bytes()); // its offset: after this one program header
        f.extend([0u64, 0].iter().flat_map(|v| v.to_le_bytes()));
        let len = interp.len() as u64 + 1;
        f.extend([len, len, 1].iter().flat_map(|v| v.to_le_bytes()));
        f.extend(interp);
        f.push(0);
        f
    }

    /// Found by fuzz/fuzz_targets/verify_elf.rs: the ELF's own strings (interpreter, needed
    /// libraries) reached `cargo containerize verify`'s output with their control characters.
    #[test]
    fn elf_strings_are_printed_escaped() {
        let elf = elf_with_interpreter(b"/lib/ld\x1b[2J\rx.so");
        let report = inspect_bytes(Path::new("bin"), &elf).unwrap();
        assert!(!report.is_static());
        for shown in [report.to_string(), report.dynamic_problem().unwrap()] {
            assert!(!shown.chars().any(char::is_control), "{shown:?}");
            assert!(shown.contains(r"/lib/ld\u{1b}[2J\rx.so"), "{shown}");
        }
    }
}
