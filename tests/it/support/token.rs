//! A Docker token server (the Bearer flow of ghcr.io and Docker Hub) on 127.0.0.1:<free
//! port>: `GET /token?service=…&scope=repository:NAME:pull,push` with Basic auth answers
//! `{"token": JWT}`; the JWT is RS256, signed with the openssl CLI by a key whose
//! self-signed certificate travels in the `x5c` header and is the registry's
//! `rootcertbundle`. Wrong or missing credentials get 401. Stopped on drop.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tempfile::TempDir;

use super::registry::{Credentials, TokenAuth, base64};

pub const SERVICE: &str = "cct-registry";
pub const ISSUER: &str = "cct-token-issuer";

/// One request the token server answered.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    /// `scope` parameters, decoded.
    pub scopes: Vec<String>,
    pub service: Option<String>,
    /// The user of a Basic `Authorization`, if any.
    pub user: Option<String>,
    /// Whether user and password were right.
    pub authenticated: bool,
    pub status: u16,
}

struct Shared {
    credentials: Credentials,
    key: PathBuf,
    cert_der_base64: String,
    log: Mutex<Vec<TokenRequest>>,
    tokens: Mutex<Vec<String>>,
    serial: AtomicU64,
    shutdown: AtomicBool,
}

pub struct TokenServer {
    dir: TempDir,
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl TokenServer {
    /// A token server that grants whatever is asked to `credentials`.
    pub fn start(credentials: Credentials) -> TokenServer {
        let dir = tempfile::Builder::new()
            .prefix("cct-token-")
            .tempdir()
            .expect("token tempdir");
        let key = dir.path().join("token.key");
        let cert = dir.path().join("token.crt");
        openssl(
            dir.path(),
            &[
                "req", "-x509", "-nodes", "-days", "3", "-newkey", "rsa:2048", "-subj",
            ],
            &[
                "/CN=cct-token-issuer",
                "-keyout",
                key.to_str().expect("utf-8"),
                "-out",
                cert.to_str().expect("utf-8"),
            ],
            None,
        );
        let der = openssl(
            dir.path(),
            &["x509", "-outform", "DER", "-in"],
            &[cert.to_str().expect("utf-8")],
            None,
        );
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind token server");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let shared = Arc::new(Shared {
            credentials,
            key,
            cert_der_base64: base64(&der),
            log: Mutex::new(Vec::new()),
            tokens: Mutex::new(Vec::new()),
            serial: AtomicU64::new(0),
            shutdown: AtomicBool::new(false),
        });
        let for_thread = Arc::clone(&shared);
        let acceptor = std::thread::spawn(move || {
            while !for_thread.shutdown.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        let shared = Arc::clone(&for_thread);
                        std::thread::spawn(move || {
                            let _ = serve(stream, &shared);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        TokenServer {
            dir,
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// What the registry needs to trust this server's tokens.
    pub fn registry_auth(&self) -> TokenAuth {
        TokenAuth {
            realm: format!("http://{}/token", self.addr),
            service: SERVICE.to_string(),
            issuer: ISSUER.to_string(),
            root_cert_bundle: self.dir.path().join("token.crt"),
        }
    }

    pub fn requests(&self) -> Vec<TokenRequest> {
        self.shared.log.lock().expect("log").clone()
    }

    /// Every token handed out so far.
    pub fn tokens(&self) -> Vec<String> {
        self.shared.tokens.lock().expect("tokens").clone()
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn serve(stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut authorization = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.trim().eq_ignore_ascii_case("authorization") {
                authorization = Some(v.trim().to_string());
            }
        }
    }
    let target = request_line.split_whitespace().nth(1).unwrap_or("");
    let query = target.split_once('?').map_or("", |(_, q)| q);
    let params: Vec<(String, String)> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (percent_decode(k), percent_decode(v)))
        .collect();
    let scopes: Vec<String> = params
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' ').map(str::to_string).collect::<Vec<_>>())
        .collect();
    let service = params
        .iter()
        .find(|(k, _)| k == "service")
        .map(|(_, v)| v.clone());
    let basic = authorization
        .as_deref()
        .and_then(|a| a.strip_prefix("Basic "))
        .and_then(|b| decode_base64(b.trim()))
        .map(|raw| String::from_utf8_lossy(&raw).into_owned());
    let (user, password) = match basic.as_deref().and_then(|b| b.split_once(':')) {
        Some((u, p)) => (Some(u.to_string()), Some(p.to_string())),
        None => (None, None),
    };
    let authenticated = user.as_deref() == Some(shared.credentials.username.as_str())
        && password.as_deref() == Some(shared.credentials.password.as_str());
    let (status, body) = if authenticated && target.starts_with("/token") {
        let token = sign(shared, &scopes);
        shared.tokens.lock().expect("tokens").push(token.clone());
        (
            200,
            json!({ "token": token, "access_token": token, "expires_in": 300 }).to_string(),
        )
    } else {
        (
            401,
            json!({ "details": "incorrect username or password" }).to_string(),
        )
    };
    shared.log.lock().expect("log").push(TokenRequest {
        scopes,
        service,
        user,
        authenticated,
        status,
    });
    let mut out = stream;
    write!(
        out,
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        if status == 200 { "OK" } else { "Unauthorized" },
        body.len()
    )?;
    out.flush()
}

/// A JWT granting every requested `repository:NAME:ACTIONS` scope.
fn sign(shared: &Shared, scopes: &[String]) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let access: Vec<Value> = scopes
        .iter()
        .filter_map(|s| {
            let mut parts = s.splitn(3, ':');
            let kind = parts.next()?;
            let name = parts.next()?;
            let actions: Vec<&str> = parts.next()?.split(',').collect();
            Some(json!({ "type": kind, "name": name, "actions": actions }))
        })
        .collect();
    let header = json!({
        "typ": "JWT",
        "alg": "RS256",
        "x5c": [shared.cert_der_base64],
    });
    let claims = json!({
        "iss": ISSUER,
        "sub": shared.credentials.username,
        "aud": SERVICE,
        "exp": now + 600,
        "nbf": now - 60,
        "iat": now,
        "jti": format!("cct-{}", shared.serial.fetch_add(1, Ordering::SeqCst)),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        base64url(header.to_string().as_bytes()),
        base64url(claims.to_string().as_bytes())
    );
    let signature = openssl(
        Path::new("/"),
        &["dgst", "-sha256", "-sign"],
        &[shared.key.to_str().expect("utf-8")],
        Some(signing_input.as_bytes()),
    );
    format!("{signing_input}.{}", base64url(&signature))
}

fn base64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Standard or URL-safe base64, padded or not (what Basic credentials and tokens use).
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const ANY_PADDING: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    ANY_PADDING
        .decode(text.replace('-', "+").replace('_', "/"))
        .ok()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Runs openssl with `args` then `more`, optionally feeding `input`; returns stdout.
fn openssl(dir: &Path, args: &[&str], more: &[&str], input: Option<&[u8]>) -> Vec<u8> {
    let mut child = Command::new("openssl")
        .args(args)
        .args(more)
        .current_dir(dir)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run openssl");
    if let Some(input) = input {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input)
            .expect("write openssl stdin");
    }
    let out = child.wait_with_output().expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?} {more:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}
