//! `docker-registry serve` on 127.0.0.1:<free port> with its storage in a temporary
//! directory, plain HTTP or TLS (a CA and server certificate made with the openssl CLI),
//! with or without htpasswd (bcrypt, via `htpasswd -Bbn`) Basic auth. Stopped on drop.

use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

/// A user of an htpasswd-protected registry.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl Credentials {
    pub fn new(username: &str, password: &str) -> Credentials {
        Credentials {
            username: username.to_string(),
            password: password.to_string(),
        }
    }

    /// `base64(user:password)`, the `auth` field of docker's and podman's auth files.
    pub fn basic_auth(&self) -> String {
        base64(format!("{}:{}", self.username, self.password).as_bytes())
    }
}

/// How to start a registry.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Serve HTTPS with a certificate for 127.0.0.1 signed by a fresh CA.
    pub tls: bool,
    /// Require Basic auth with this user (htpasswd).
    pub auth: Option<Credentials>,
    /// Require Bearer tokens from this token server instead (`auth.token`); `auth` then
    /// only tells skopeo what to log in with.
    pub token: Option<TokenAuth>,
}

/// The registry side of the Bearer token flow.
#[derive(Debug, Clone)]
pub struct TokenAuth {
    /// Where clients get tokens, e.g. `http://127.0.0.1:PORT/token`.
    pub realm: String,
    pub service: String,
    pub issuer: String,
    /// PEM certificate(s) whose keys sign the tokens.
    pub root_cert_bundle: PathBuf,
}

/// A running registry; killed and its storage deleted on drop.
pub struct Registry {
    child: Child,
    dir: TempDir,
    addr: SocketAddr,
    tls: bool,
    auth: Option<Credentials>,
}

impl Registry {
    /// Plain HTTP, anonymous.
    pub fn plain() -> Registry {
        Registry::start(Options::default())
    }

    /// TLS with a private CA and htpasswd auth for `credentials`.
    pub fn secure(credentials: Credentials) -> Registry {
        Registry::start(Options {
            tls: true,
            auth: Some(credentials),
            token: None,
        })
    }

    /// Plain HTTP with Bearer tokens from `token`; `credentials` are the token server's
    /// user (for skopeo).
    pub fn with_token(token: TokenAuth, credentials: Credentials) -> Registry {
        Registry::start(Options {
            tls: false,
            auth: Some(credentials),
            token: Some(token),
        })
    }

    pub fn start(options: Options) -> Registry {
        let dir = tempfile::Builder::new()
            .prefix("cct-registry-")
            .tempdir()
            .expect("registry tempdir");
        if options.tls {
            make_certificates(dir.path());
        }
        if let (Some(auth), None) = (&options.auth, &options.token) {
            let out = Command::new("htpasswd")
                .args(["-Bbn", &auth.username, &auth.password])
                .stdin(Stdio::null())
                .output()
                .expect("run htpasswd (apache2-utils)");
            assert!(out.status.success(), "htpasswd failed");
            fs::write(dir.path().join("htpasswd"), out.stdout).expect("write htpasswd");
        }
        // The port is free when we look; another process may take it before the registry
        // binds it, so a registry that exits at once is started again on another port.
        for _ in 0..10 {
            let port = free_port();
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            let config = dir.path().join("config.yml");
            fs::write(&config, config_yaml(dir.path(), addr, &options)).expect("write config");
            let log = fs::File::create(dir.path().join("registry.log")).expect("registry log");
            let mut child = Command::new("docker-registry")
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone log"))
                .stderr(log)
                .spawn()
                .expect("start docker-registry (Debian package docker-registry)");
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if child.try_wait().expect("try_wait").is_some() {
                    break;
                }
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    return Registry {
                        child,
                        dir,
                        addr,
                        tls: options.tls,
                        auth: options.auth,
                    };
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "docker-registry did not listen on {addr} within 30 s:\n{}",
                        fs::read_to_string(dir.path().join("registry.log")).unwrap_or_default()
                    );
                }
                std::thread::sleep(Duration::from_millis(25));
            }
        }
        panic!(
            "docker-registry kept exiting at start:\n{}",
            fs::read_to_string(dir.path().join("registry.log")).unwrap_or_default()
        );
    }

    /// `127.0.0.1:PORT`: the registry part of a reference.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `127.0.0.1:PORT/<name>`, e.g. `reference("hello:1.0")`.
    pub fn reference(&self, name: &str) -> String {
        format!("{}/{name}", self.host())
    }

    /// The CA certificate (PEM) that signed the server certificate, for a TLS registry.
    pub fn ca_file(&self) -> PathBuf {
        assert!(self.tls, "not a TLS registry");
        self.certs_dir().join("ca.crt")
    }

    /// A directory holding only `ca.crt`, the way skopeo's `--cert-dir` wants it.
    pub fn certs_dir(&self) -> PathBuf {
        self.dir.path().join("certs")
    }

    pub fn credentials(&self) -> Option<&Credentials> {
        self.auth.as_ref()
    }

    /// The registry's storage: every blob and manifest pushed to it, as files.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The registry's own log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Every request the registry answered, in order, from its log.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.log()
            .lines()
            .filter_map(LoggedRequest::parse)
            .collect()
    }

    /// skopeo's flags to read from this registry: `--tls-verify=false` for plain HTTP, the
    /// CA directory for TLS, and the registry's credentials. `prefix` is "" for inspect and
    /// "src-" for the source of copy.
    pub fn skopeo_flags(&self, prefix: &str) -> Vec<String> {
        let mut flags = Vec::new();
        if self.tls {
            flags.push(format!("--{prefix}cert-dir={}", self.certs_dir().display()));
        } else {
            flags.push(format!("--{prefix}tls-verify=false"));
        }
        if let Some(auth) = &self.auth {
            flags.push(format!(
                "--{prefix}creds={}:{}",
                auth.username, auth.password
            ));
        }
        flags
    }

    /// `skopeo inspect [--raw] docker://<host>/<name>`: stdout, or stderr on failure.
    pub fn skopeo_inspect(&self, name: &str, raw: bool) -> Result<Vec<u8>, String> {
        let mut cmd = Command::new("skopeo");
        cmd.arg("inspect").args(self.skopeo_flags(""));
        if raw {
            cmd.arg("--raw");
        }
        cmd.arg(format!("docker://{}", self.reference(name)));
        let out = cmd.stdin(Stdio::null()).output().expect("run skopeo");
        if out.status.success() {
            Ok(out.stdout)
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// skopeo's summary of `<name>` (Digest, Labels, Layers, ...); panics on failure.
    pub fn inspect(&self, name: &str) -> Value {
        let bytes = self
            .skopeo_inspect(name, false)
            .unwrap_or_else(|e| panic!("skopeo inspect {}: {e}", self.reference(name)));
        serde_json::from_slice(&bytes).expect("skopeo inspect json")
    }

    /// The manifest bytes as the registry serves them.
    pub fn manifest_bytes(&self, name: &str) -> Vec<u8> {
        self.skopeo_inspect(name, true)
            .unwrap_or_else(|e| panic!("skopeo inspect --raw {}: {e}", self.reference(name)))
    }

    pub fn manifest(&self, name: &str) -> Value {
        serde_json::from_slice(&self.manifest_bytes(name)).expect("manifest json")
    }

    /// `skopeo copy docker://<host>/<name> oci:<dir>:<tag>`: fetches every blob (and
    /// checks each against its digest). Stdout, or stderr on failure.
    pub fn copy_to_layout(&self, name: &str, dir: &Path, tag: &str) -> Result<(), String> {
        let out = Command::new("skopeo")
            .arg("copy")
            .args(self.skopeo_flags("src-"))
            .arg(format!("docker://{}", self.reference(name)))
            .arg(format!("oci:{}:{tag}", dir.display()))
            .stdin(Stdio::null())
            .output()
            .expect("run skopeo copy");
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Puts `oci:<layout>:<tag>` into the registry as `<name>` with skopeo (no tool involved).
    pub fn skopeo_push(&self, layout_ref: &str, name: &str) {
        let mut cmd = Command::new("skopeo");
        cmd.arg("copy");
        if self.tls {
            cmd.arg(format!("--dest-cert-dir={}", self.certs_dir().display()));
        } else {
            cmd.arg("--dest-tls-verify=false");
        }
        if let Some(auth) = &self.auth {
            cmd.arg(format!("--dest-creds={}:{}", auth.username, auth.password));
        }
        let out = cmd
            .arg(layout_ref)
            .arg(format!("docker://{}", self.reference(name)))
            .stdin(Stdio::null())
            .output()
            .expect("run skopeo copy");
        assert!(
            out.status.success(),
            "skopeo copy {layout_ref} to {}: {}",
            self.reference(name),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request as the registry's log tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRequest {
    pub method: String,
    pub uri: String,
    pub status: u16,
}

impl LoggedRequest {
    /// Answered requests log "response completed"; refused ones only "error authorizing
    /// context" (a 401 challenge), once per request.
    fn parse(line: &str) -> Option<LoggedRequest> {
        let status = if line.contains("response completed") {
            log_field(line, "http.response.status")?.parse().ok()?
        } else if line.contains("error authorizing context") {
            401
        } else {
            return None;
        };
        Some(LoggedRequest {
            method: log_field(line, "http.request.method")?,
            uri: log_field(line, "http.request.uri")?,
            status,
        })
    }
}

/// `key=value` or `key="quoted value"` from a logrus text line.
fn log_field(line: &str, key: &str) -> Option<String> {
    let start = line.find(&format!(" {key}="))? + key.len() + 2;
    let rest = &line[start..];
    if let Some(quoted) = rest.strip_prefix('"') {
        let end = quoted.find('"')?;
        Some(quoted[..end].to_string())
    } else {
        Some(rest.split_whitespace().next()?.to_string())
    }
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

fn config_yaml(dir: &Path, addr: SocketAddr, options: &Options) -> String {
    let mut yaml = format!(
        "version: 0.1
log:
  level: info
  formatter: text
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {data}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: {addr}
  secret: cargo-containerize-tests
",
        data = dir.join("data").display(),
    );
    if options.tls {
        yaml.push_str(&format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            dir.join("server.crt").display(),
            dir.join("server.key").display()
        ));
    }
    if let Some(token) = &options.token {
        yaml.push_str(&format!(
            "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
            token.realm,
            token.service,
            token.issuer,
            token.root_cert_bundle.display()
        ));
    } else if options.auth.is_some() {
        yaml.push_str(&format!(
            "auth:\n  htpasswd:\n    realm: cargo-containerize-tests\n    path: {}\n",
            dir.join("htpasswd").display()
        ));
    }
    yaml
}

/// A CA (`certs/ca.crt`) and a server certificate for IP 127.0.0.1 and localhost
/// (`server.crt`, `server.key`), with the openssl CLI.
fn make_certificates(dir: &Path) {
    let certs = dir.join("certs");
    fs::create_dir_all(&certs).expect("mkdir certs");
    let ext = dir.join("server-ext.cnf");
    fs::write(
        &ext,
        "basicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature,keyEncipherment\n\
         extendedKeyUsage=serverAuth\n\
         subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .expect("write ext");
    let ca_key = dir.join("ca.key");
    let ca_crt = certs.join("ca.crt");
    let key = dir.join("server.key");
    let csr = dir.join("server.csr");
    let crt = dir.join("server.crt");
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
    openssl(
        dir,
        &[
            &["req", "-x509", "-nodes", "-days", "3"],
            &ec[..],
            &["-subj", "/CN=cargo-containerize test CA"],
            &["-addext", "basicConstraints=critical,CA:TRUE"],
            &["-addext", "keyUsage=critical,keyCertSign,cRLSign"],
            &["-keyout", path(&ca_key), "-out", path(&ca_crt)],
        ],
    );
    openssl(
        dir,
        &[
            &["req", "-nodes"],
            &ec[..],
            &["-subj", "/CN=127.0.0.1"],
            &["-keyout", path(&key), "-out", path(&csr)],
        ],
    );
    openssl(
        dir,
        &[
            &["x509", "-req", "-days", "3", "-set_serial", "2"],
            &[
                "-in",
                path(&csr),
                "-CA",
                path(&ca_crt),
                "-CAkey",
                path(&ca_key),
            ],
            &["-extfile", path(&ext), "-out", path(&crt)],
        ],
    );
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn openssl(dir: &Path, args: &[&[&str]]) {
    let out = Command::new("openssl")
        .args(args.iter().flat_map(|a| a.iter()))
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {:?}: {}",
        args,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Standard base64 with padding.
pub fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
