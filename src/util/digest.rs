//! A content digest as it travels between stages: `sha256:` and 64 lower-case hex digits,
//! checked once where it is made or read, so no stage passes an arbitrary string along as one.
//! It reads as a `&str` (`Deref`) and serializes as the plain string, so JSON, the layer cache
//! and every document keep the exact bytes they had.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Digest(String);

impl Digest {
    /// The sha256 digest of `bytes`.
    pub fn sha256_of(bytes: &[u8]) -> Digest {
        use sha2::Digest as _;
        Digest(format!(
            "sha256:{}",
            hex::encode(sha2::Sha256::digest(bytes))
        ))
    }

    /// From `sha256:` and its hex digits (e.g. a hasher's output).
    pub fn from_hex(hex: &str) -> Result<Digest, String> {
        Digest::try_from(format!("sha256:{hex}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The hex digits after `sha256:`.
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }

    /// `sha256:` and the first 12 hex digits, as messages show a digest.
    pub fn short(&self) -> &str {
        &self.0[.."sha256:".len() + 12]
    }

    /// The sha256 digest of what `reader` yields, read in 1 MiB pieces (never the whole of it
    /// in memory).
    pub fn sha256_of_reader(mut reader: impl std::io::Read) -> std::io::Result<Digest> {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        let mut buf = vec![0; 1 << 20];
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        Ok(Digest::from_sha256(h))
    }

    /// The sha256 digest of a file's bytes.
    pub fn sha256_of_file(path: &std::path::Path) -> std::io::Result<Digest> {
        Digest::sha256_of_reader(std::fs::File::open(path)?)
    }

    /// The digest a finished hasher holds.
    pub fn from_sha256(hasher: sha2::Sha256) -> Digest {
        use sha2::Digest as _;
        Digest(format!("sha256:{}", hex::encode(hasher.finalize())))
    }

    /// The same digest as oci-spec's type, for its descriptors.
    pub fn to_oci(&self) -> oci_spec::image::Digest {
        // A Digest is `sha256:` and 64 lower-case hex digits (checked where it was made),
        // which oci-spec always accepts.
        self.0
            .parse()
            .expect("a checked sha256 digest is a valid OCI digest")
    }
}

impl TryFrom<&oci_spec::image::Digest> for Digest {
    type Error = String;
    fn try_from(d: &oci_spec::image::Digest) -> Result<Digest, String> {
        Digest::try_from(d.to_string())
    }
}

impl TryFrom<String> for Digest {
    type Error = String;
    fn try_from(s: String) -> Result<Digest, String> {
        let ok = s.strip_prefix("sha256:").is_some_and(|h| {
            h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        });
        if ok {
            Ok(Digest(s))
        } else {
            Err(format!(
                "`{}` is not a sha256 digest (sha256: and 64 hex digits)",
                s.escape_debug()
            ))
        }
    }
}

impl std::str::FromStr for Digest {
    type Err = String;
    fn from_str(s: &str) -> Result<Digest, String> {
        Digest::try_from(s.to_string())
    }
}

impl From<Digest> for String {
    fn from(d: Digest) -> String {
        d.0
    }
}

impl std::ops::Deref for Digest {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Digest {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<str> for Digest {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Digest {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl PartialEq<String> for Digest {
    fn eq(&self, other: &String) -> bool {
        self.0 == *other
    }
}

impl PartialEq<Digest> for String {
    fn eq(&self, other: &Digest) -> bool {
        *self == other.0
    }
}

impl PartialEq<Digest> for str {
    fn eq(&self, other: &Digest) -> bool {
        self == other.0
    }
}

impl PartialEq<Digest> for &str {
    fn eq(&self, other: &Digest) -> bool {
        *self == other.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sha256_with_64_hex_digits() {
        let d = Digest::sha256_of(b"");
        assert_eq!(
            d.as_str(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(d.hex().len(), 64);
        assert!("sha256:abc".parse::<Digest>().is_err());
        assert!(
            format!("sha512:{}", "a".repeat(64))
                .parse::<Digest>()
                .is_err()
        );
        assert!(
            format!("sha256:{}", "A".repeat(64))
                .parse::<Digest>()
                .is_err()
        );
        assert_eq!(d.short(), "sha256:e3b0c44298fc");
        assert_eq!(Digest::try_from(&d.to_oci()).unwrap(), d);
        assert_eq!(
            Digest::sha256_of_reader(&b"abc"[..]).unwrap(),
            Digest::sha256_of(b"abc")
        );
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
        assert!(serde_json::from_str::<Digest>("\"sha256:00\"").is_err());
    }
}
