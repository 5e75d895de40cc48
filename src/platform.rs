//! Target platforms: the OCI name (`linux/amd64`), the Rust musl triple and the ELF machine.

use anyhow::{Result, bail};
use std::fmt;

/// A platform an image can be built for. Only Linux, only architectures with a musl target
/// that produces static binaries out of the box.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Platform {
    Amd64,
    Arm64,
}

impl Platform {
    pub const ALL: [Platform; 2] = [Platform::Amd64, Platform::Arm64];

    /// The platform of the machine running this tool, when it is one we can target.
    pub fn host() -> Option<Platform> {
        match std::env::consts::ARCH {
            "x86_64" => Some(Platform::Amd64),
            "aarch64" => Some(Platform::Arm64),
            _ => None,
        }
    }

    pub fn os(self) -> &'static str {
        "linux"
    }

    /// The OCI / GOARCH architecture name.
    pub fn arch(self) -> &'static str {
        match self {
            Platform::Amd64 => "amd64",
            Platform::Arm64 => "arm64",
        }
    }

    /// The OCI platform variant, where one is customary.
    pub fn variant(self) -> Option<&'static str> {
        match self {
            Platform::Amd64 => None,
            Platform::Arm64 => Some("v8"),
        }
    }

    /// The Rust target triple that yields a static binary for this platform.
    pub fn musl_triple(self) -> &'static str {
        match self {
            Platform::Amd64 => "x86_64-unknown-linux-musl",
            Platform::Arm64 => "aarch64-unknown-linux-musl",
        }
    }

    /// The ELF `e_machine` a binary for this platform must carry.
    pub fn elf_machine(self) -> u16 {
        match self {
            Platform::Amd64 => goblin::elf::header::EM_X86_64,
            Platform::Arm64 => goblin::elf::header::EM_AARCH64,
        }
    }

    /// The platform whose binaries carry this ELF machine, if any.
    pub fn from_elf_machine(machine: u16) -> Option<Platform> {
        Platform::ALL
            .into_iter()
            .find(|p| p.elf_machine() == machine)
    }

    pub fn supported_list() -> String {
        Platform::ALL
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn parse(s: &str) -> Result<Platform> {
        let s = s.trim();
        let found = Platform::ALL.into_iter().find(|p| {
            s == p.to_string()
                || s == p.arch()
                || s == p.musl_triple()
                || p.variant().is_some_and(|v| s == format!("{p}/{v}"))
        });
        match found {
            Some(p) => Ok(p),
            None => bail!(
                "unknown platform `{s}`; supported platforms: {}",
                Platform::supported_list()
            ),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os(), self.arch())
    }
}

impl serde::Serialize for Platform {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_triples() {
        assert_eq!(Platform::parse("linux/amd64").unwrap(), Platform::Amd64);
        assert_eq!(Platform::parse("arm64").unwrap(), Platform::Arm64);
        assert_eq!(Platform::parse("linux/arm64/v8").unwrap(), Platform::Arm64);
        assert_eq!(
            Platform::parse("aarch64-unknown-linux-musl").unwrap(),
            Platform::Arm64
        );
        let err = Platform::parse("linux/s390x").unwrap_err().to_string();
        assert!(err.contains("linux/amd64, linux/arm64"), "{err}");
    }

    #[test]
    fn elf_machines_round_trip() {
        for p in Platform::ALL {
            assert_eq!(Platform::from_elf_machine(p.elf_machine()), Some(p));
        }
    }
}
