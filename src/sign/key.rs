//! Signing keys: cosign's key files read and written, and the public key that checks a
//! signature.
//!
//! A private key is ECDSA P-256 (what `cosign generate-key-pair` makes), in one of two files:
//! cosign's encrypted one — PEM `ENCRYPTED SIGSTORE PRIVATE KEY` (or the older `ENCRYPTED
//! COSIGN PRIVATE KEY`) around the JSON `{kdf, cipher, ciphertext}` of go-tuf's `encrypted`
//! package: the PKCS#8 DER sealed with NaCl secretbox (XSalsa20-Poly1305) under a key scrypt
//! derives from the password — or an unencrypted PKCS#8 `PRIVATE KEY` PEM. The public key is a
//! SubjectPublicKeyInfo `PUBLIC KEY` PEM (cosign.pub).
//!
//! The cryptography is RustCrypto's (p256, scrypt, crypto_secretbox); only the envelope — a
//! small JSON with base64 fields, which no maintained crate reads outside sigstore-rs, whose
//! signing stack would pull a second TLS and crypto library into the tool — is written here.
//! The private key never leaves this module but as a signature or an encrypted file: its type
//! has no `Display`, its `Debug` prints only the public key's fingerprint, and the decrypted
//! bytes are zeroed when dropped.

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::Path;
use zeroize::Zeroizing;

/// The PEM label cosign writes today (and sigstore-rs).
pub const SIGSTORE_LABEL: &str = "ENCRYPTED SIGSTORE PRIVATE KEY";
/// The PEM label of cosign's older key files.
pub const COSIGN_LABEL: &str = "ENCRYPTED COSIGN PRIVATE KEY";
/// An unencrypted PKCS#8 key.
const PKCS8_LABEL: &str = "PRIVATE KEY";
/// The environment variable cosign reads the key's password from.
pub const PASSWORD_ENV: &str = "COSIGN_PASSWORD";

/// go-tuf's scrypt parameters: N = 2^15 (what it writes; 2^16 is accepted, older cosign wrote
/// it), r = 8, p = 1. Any others are refused, so a crafted file cannot make the KDF take
/// minutes or gigabytes.
const SCRYPT_LOG_N: u8 = 15;
const SCRYPT_LOG_N_ACCEPTED: [u8; 2] = [15, 16];
const SCRYPT_R: u32 = 8;
const SCRYPT_P: u32 = 1;
const SALT_LEN: usize = 32;
const NONCE_LEN: usize = 24;
/// A key file is a few hundred bytes; anything much larger is not one.
const KEY_FILE_LIMIT: u64 = 64 * 1024;

/// The JSON inside cosign's encrypted key PEM (go-tuf `encrypted.data`).
#[derive(Serialize, Deserialize)]
struct Sealed {
    kdf: Kdf,
    cipher: Cipher,
    ciphertext: String,
}

#[derive(Serialize, Deserialize)]
struct Kdf {
    name: String,
    params: ScryptParams,
    salt: String,
}

#[derive(Serialize, Deserialize)]
struct ScryptParams {
    #[serde(rename = "N")]
    n: u64,
    r: u32,
    p: u32,
}

#[derive(Serialize, Deserialize)]
struct Cipher {
    name: String,
    nonce: String,
}

/// An ECDSA P-256 private key.
pub struct SigningKey {
    key: p256::ecdsa::SigningKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SigningKey(<redacted>, public {})",
            self.public().fingerprint()
        )
    }
}

/// Where an encrypted key's password comes from.
pub trait Password {
    /// The password for the key file `path`.
    fn password(&self, path: &Path) -> Result<Zeroizing<String>>;
}

/// cosign's rule: `COSIGN_PASSWORD` when set (empty is a password too), else a prompt on the
/// terminal; with no terminal on standard input, an error.
pub struct EnvOrPrompt;

impl Password for EnvOrPrompt {
    fn password(&self, path: &Path) -> Result<Zeroizing<String>> {
        if let Some(p) = std::env::var_os(PASSWORD_ENV) {
            return p.into_string().map(Zeroizing::new).map_err(|_| {
                anyhow!(
                    "{PASSWORD_ENV} is not valid UTF-8; set it to the password of {}",
                    path.display()
                )
            });
        }
        use std::io::IsTerminal;
        if !std::io::stdin().is_terminal() {
            bail!(
                "the signing key {} is encrypted and {PASSWORD_ENV} is not set (standard input is no terminal to ask on); set {PASSWORD_ENV} to its password",
                path.display()
            );
        }
        rpassword::prompt_password(format!("Password for {}: ", path.display()))
            .map(Zeroizing::new)
            .with_context(|| {
                format!(
                    "reading the password of {} from the terminal",
                    path.display()
                )
            })
    }
}

/// The password for a new key file: `COSIGN_PASSWORD` when set, else asked twice on the
/// terminal; with no terminal on standard input, an error.
pub fn new_password(path: &Path) -> Result<Zeroizing<String>> {
    use std::io::IsTerminal;
    if std::env::var_os(PASSWORD_ENV).is_none() && !std::io::stdin().is_terminal() {
        bail!(
            "{} is to be encrypted with a password, and {PASSWORD_ENV} is not set (standard input is no terminal to ask on); set {PASSWORD_ENV}",
            path.display()
        );
    }
    if std::env::var_os(PASSWORD_ENV).is_some() {
        return EnvOrPrompt.password(path);
    }
    let first = EnvOrPrompt.password(path)?;
    let again = rpassword::prompt_password("Enter it again: ")
        .map(Zeroizing::new)
        .context("reading the password again from the terminal")?;
    if *first != *again {
        bail!("the two passwords differ; run it again");
    }
    Ok(first)
}

impl SigningKey {
    /// A new random key.
    pub fn generate() -> Result<SigningKey> {
        // from_slice refuses the rare 32 bytes that are no valid scalar: draw again.
        for _ in 0..64 {
            let bytes = Zeroizing::new(random::<32>()?);
            if let Ok(key) = p256::ecdsa::SigningKey::from_slice(&bytes[..]) {
                return Ok(SigningKey { key });
            }
        }
        bail!("the system's random source gave no valid P-256 key in 64 draws")
    }

    /// Reads the key file at `path`: cosign's encrypted format (the password from `password`)
    /// or an unencrypted PKCS#8 P-256 key.
    pub fn load(path: &Path, password: &dyn Password) -> Result<SigningKey> {
        let text = read_key_file(path)?;
        Self::parse(&text, path, password)
    }

    /// [`SigningKey::load`] of the file's contents; `path` names it in messages.
    pub fn parse(text: &[u8], path: &Path, password: &dyn Password) -> Result<SigningKey> {
        let shown = path.display();
        let (label, der) = pem_rfc7468::decode_vec(text)
            .map(|(l, d)| (l.to_string(), Zeroizing::new(d)))
            .map_err(|e| anyhow!("the signing key {shown} is not a PEM file ({e}); give cosign.key (cosign generate-key-pair or cargo containerize generate-key-pair) or a PKCS#8 P-256 PEM"))?;
        let pkcs8 = match label.as_str() {
            SIGSTORE_LABEL | COSIGN_LABEL => {
                let password = password.password(path)?;
                open(&der, password.as_bytes())
                    .with_context(|| format!("the signing key {shown}"))?
            }
            PKCS8_LABEL => der,
            "EC PRIVATE KEY" => bail!(
                "the signing key {shown} is a SEC1 EC key; convert it to PKCS#8 (openssl pkcs8 -topk8 -nocrypt -in {shown}) or use cosign.key"
            ),
            other => bail!(
                "the signing key {shown} is a PEM `{}`, not a private key; give cosign.key or a PKCS#8 `PRIVATE KEY` (P-256)",
                crate::escape_controls(other)
            ),
        };
        let key = p256::ecdsa::SigningKey::from_pkcs8_der(&pkcs8).map_err(|_| {
            anyhow!("the signing key {shown} is no ECDSA P-256 key (only P-256, as cosign makes, is supported)")
        })?;
        Ok(SigningKey { key })
    }

    /// cosign's encrypted key file for this key, under `password`.
    pub fn to_encrypted_pem(&self, password: &[u8]) -> Result<Zeroizing<String>> {
        let der = self
            .key
            .to_pkcs8_der()
            .map_err(|e| anyhow!("encoding the private key: {e}"))?;
        let sealed = seal(der.as_bytes(), password)?;
        let pem = pem_rfc7468::encode_string(SIGSTORE_LABEL, pem_rfc7468::LineEnding::LF, &sealed)
            .map_err(|e| anyhow!("encoding the key file: {e}"))?;
        Ok(Zeroizing::new(pem))
    }

    /// The ASN.1 DER ECDSA signature of SHA-256(`message`), as cosign writes it.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        let signature: p256::ecdsa::Signature = self.key.sign(message);
        signature.to_der().as_bytes().to_vec()
    }

    pub fn public(&self) -> PublicKey {
        PublicKey {
            key: *self.key.verifying_key(),
        }
    }
}

/// An ECDSA P-256 public key (cosign.pub).
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: p256::ecdsa::VerifyingKey,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.fingerprint())
    }
}

impl PublicKey {
    /// Reads a `PUBLIC KEY` PEM (cosign.pub).
    pub fn load(path: &Path) -> Result<PublicKey> {
        let text = read_key_file(path)?;
        let text = std::str::from_utf8(&text)
            .map_err(|_| anyhow!("the public key {} is not a PEM file", path.display()))?;
        PublicKey::from_pem(text).with_context(|| format!("the public key {}", path.display()))
    }

    pub fn from_pem(text: &str) -> Result<PublicKey> {
        let key = p256::ecdsa::VerifyingKey::from_public_key_pem(text.trim())
            .map_err(|e| anyhow!("no ECDSA P-256 `PUBLIC KEY` PEM ({e}); give cosign.pub"))?;
        Ok(PublicKey { key })
    }

    pub fn to_pem(&self) -> Result<String> {
        self.key
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| anyhow!("encoding the public key: {e}"))
    }

    /// Whether `signature` (ASN.1 DER, as cosign writes it) signs `message` under this key.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        p256::ecdsa::Signature::from_der(signature)
            .is_ok_and(|s| self.key.verify(message, &s).is_ok())
    }

    /// The sha256 of the key's DER SubjectPublicKeyInfo, for messages.
    pub fn fingerprint(&self) -> String {
        match self.key.to_public_key_der() {
            Ok(der) => format!(
                "sha256:{}",
                hex::encode(<sha2::Sha256 as sha2::Digest>::digest(der.as_bytes()))
            ),
            Err(_) => "<unencodable>".to_string(),
        }
    }
}

/// Reads a key file: a regular file of at most 64 KiB.
fn read_key_file(path: &Path) -> Result<Vec<u8>> {
    let file = crate::util::fs::open_regular(path)
        .with_context(|| format!("cannot open the key file {}", path.display()))?;
    let mut bytes = Vec::new();
    use std::io::Read;
    file.take(KEY_FILE_LIMIT + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read the key file {}", path.display()))?;
    if bytes.len() as u64 > KEY_FILE_LIMIT {
        bail!(
            "{} is larger than 64 KiB, so it is no key file",
            path.display()
        );
    }
    Ok(bytes)
}

fn random<const N: usize>() -> Result<[u8; N]> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|e| anyhow!("the system's random source failed: {e}"))?;
    Ok(buf)
}

/// The secretbox key scrypt derives from `password`.
fn derive(password: &[u8], salt: &[u8], log_n: u8) -> Result<Zeroizing<[u8; 32]>> {
    let params = scrypt::Params::new(log_n, SCRYPT_R, SCRYPT_P)
        .map_err(|e| anyhow!("scrypt parameters: {e}"))?;
    let mut key = Zeroizing::new([0u8; 32]);
    scrypt::scrypt(password, salt, &params, &mut key[..]).map_err(|e| anyhow!("scrypt: {e}"))?;
    Ok(key)
}

/// Seals `plain` as go-tuf's `encrypted.Encrypt` does: the JSON cosign's key file holds.
fn seal(plain: &[u8], password: &[u8]) -> Result<Vec<u8>> {
    use crypto_secretbox::aead::{Aead, KeyInit};
    let salt = random::<SALT_LEN>()?;
    let nonce = random::<NONCE_LEN>()?;
    let key = derive(password, &salt, SCRYPT_LOG_N)?;
    let cipher = crypto_secretbox::XSalsa20Poly1305::new(&(*key).into());
    let ciphertext = cipher
        .encrypt(&nonce.into(), plain)
        .map_err(|_| anyhow!("sealing the private key failed"))?;
    let sealed = Sealed {
        kdf: Kdf {
            name: "scrypt".into(),
            params: ScryptParams {
                n: 1 << SCRYPT_LOG_N,
                r: SCRYPT_R,
                p: SCRYPT_P,
            },
            salt: B64.encode(salt),
        },
        cipher: Cipher {
            name: "nacl/secretbox".into(),
            nonce: B64.encode(nonce),
        },
        ciphertext: B64.encode(ciphertext),
    };
    Ok(serde_json::to_vec(&sealed)?)
}

/// Opens cosign's sealed JSON with `password`: the PKCS#8 DER.
fn open(sealed: &[u8], password: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    use crypto_secretbox::aead::{Aead, KeyInit};
    let s: Sealed = serde_json::from_slice(sealed)
        .map_err(|_| anyhow!("is no cosign key file (its contents are not cosign's JSON)"))?;
    if s.kdf.name != "scrypt" || s.cipher.name != "nacl/secretbox" {
        bail!(
            "uses {} with {}; only cosign's scrypt with nacl/secretbox is read",
            crate::escape_controls(&s.kdf.name),
            crate::escape_controls(&s.cipher.name)
        );
    }
    let log_n = SCRYPT_LOG_N_ACCEPTED
        .into_iter()
        .find(|l| s.kdf.params.n == 1u64 << l)
        .filter(|_| s.kdf.params.r == SCRYPT_R && s.kdf.params.p == SCRYPT_P)
        .ok_or_else(|| {
            anyhow!(
                "has scrypt parameters N={} r={} p={}; cosign writes N=32768 (or 65536) r=8 p=1, others are refused",
                s.kdf.params.n, s.kdf.params.r, s.kdf.params.p
            )
        })?;
    let field = |name: &str, text: &str| {
        B64.decode(text)
            .map_err(|_| anyhow!("has a `{name}` that is not base64"))
    };
    let salt = field("salt", &s.kdf.salt)?;
    let nonce: [u8; NONCE_LEN] = field("nonce", &s.cipher.nonce)?
        .try_into()
        .map_err(|_| anyhow!("has a nonce that is not {NONCE_LEN} bytes"))?;
    let ciphertext = field("ciphertext", &s.ciphertext)?;
    let key = derive(password, &salt, log_n)?;
    let cipher = crypto_secretbox::XSalsa20Poly1305::new(&(*key).into());
    cipher
        .decrypt(&nonce.into(), ciphertext.as_slice())
        .map(Zeroizing::new)
        .map_err(|_| anyhow!("cannot be decrypted with that password (check {PASSWORD_ENV})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A password given outright.
    struct Given(&'static str);

    impl Password for Given {
        fn password(&self, _: &Path) -> Result<Zeroizing<String>> {
            Ok(Zeroizing::new(self.0.to_string()))
        }
    }

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/keys")
            .join(name)
    }

    fn signs_and_verifies(key: &SigningKey) {
        let sig = key.sign(b"payload");
        assert!(key.public().verifies(b"payload", &sig));
        assert!(!key.public().verifies(b"payloaD", &sig));
    }

    #[test]
    fn cosigns_key_files_are_read() {
        let key =
            SigningKey::load(&fixture("cosign-generated-empty-password.key"), &Given("")).unwrap();
        signs_and_verifies(&key);
        let key =
            SigningKey::load(&fixture("cosign-label-password-123.key"), &Given("123")).unwrap();
        signs_and_verifies(&key);
        let err =
            SigningKey::load(&fixture("cosign-label-password-123.key"), &Given("124")).unwrap_err();
        assert!(
            format!("{err:#}").contains("cannot be decrypted with that password"),
            "{err:#}"
        );
        let key = SigningKey::load(&fixture("pkcs8-p256.key"), &Given("unused")).unwrap();
        signs_and_verifies(&key);
        let err = SigningKey::load(&fixture("pkcs8-ed25519.key"), &Given("")).unwrap_err();
        assert!(err.to_string().contains("no ECDSA P-256 key"), "{err:#}");
    }

    #[test]
    fn a_written_key_reads_back_with_its_password_only() {
        let key = SigningKey::generate().unwrap();
        let pem = key.to_encrypted_pem(b"s3cret").unwrap();
        assert!(
            pem.starts_with(&format!("-----BEGIN {SIGSTORE_LABEL}-----\n")),
            "{}",
            &*pem
        );
        let path = Path::new("cosign.key");
        let back = SigningKey::parse(pem.as_bytes(), path, &Given("s3cret")).unwrap();
        assert_eq!(back.public(), key.public());
        assert!(SigningKey::parse(pem.as_bytes(), path, &Given("")).is_err());
        // The public key round-trips through its PEM.
        let public = PublicKey::from_pem(&key.public().to_pem().unwrap()).unwrap();
        assert_eq!(public, key.public());
    }

    #[test]
    fn costly_or_unknown_kdf_parameters_are_refused() {
        let key = SigningKey::generate().unwrap();
        let der = key.to_encrypted_pem(b"").unwrap();
        let (_, sealed) = pem_rfc7468::decode_vec(der.as_bytes()).unwrap();
        let mut json: serde_json::Value = serde_json::from_slice(&sealed).unwrap();
        json["kdf"]["params"]["N"] = (1u64 << 24).into();
        let pem = pem_rfc7468::encode_string(
            COSIGN_LABEL,
            pem_rfc7468::LineEnding::LF,
            &serde_json::to_vec(&json).unwrap(),
        )
        .unwrap();
        let err = SigningKey::parse(pem.as_bytes(), Path::new("k"), &Given("")).unwrap_err();
        assert!(format!("{err:#}").contains("N=16777216"), "{err:#}");
    }

    #[test]
    fn the_private_key_is_never_printed() {
        let key = SigningKey::load(&fixture("pkcs8-p256.key"), &Given("")).unwrap();
        let shown = format!("{key:?}");
        assert!(
            shown.starts_with("SigningKey(<redacted>, public sha256:"),
            "{shown}"
        );
        let der = key.key.to_pkcs8_der().unwrap();
        let secret = hex::encode(key.key.to_bytes());
        assert!(!shown.contains(&secret));
        assert!(!shown.contains(&B64.encode(der.as_bytes())[..20]));
    }

    #[test]
    fn no_terminal_and_no_password_is_one_line() {
        // The test harness's stdin is no terminal; COSIGN_PASSWORD is not set in unit tests.
        if std::env::var_os(PASSWORD_ENV).is_some() {
            return;
        }
        let err = EnvOrPrompt.password(Path::new("cosign.key")).unwrap_err();
        let line = crate::error_line(&err);
        assert!(line.contains("COSIGN_PASSWORD is not set"), "{line}");
    }
}
