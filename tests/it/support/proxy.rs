//! A fault-injecting HTTP/1.1 proxy (std::net, one thread per connection) to put in front
//! of a plain-HTTP registry. The client talks to the proxy as if it were the registry; the
//! registry builds its upload `Location`s from the `Host` header, so they point back at the
//! proxy and every request of a push goes through it.
//!
//! Requests are parsed just enough to frame them (Content-Length or chunked bodies, the same
//! for responses). Each [`Rule`] matches requests by method and path and holds a queue of
//! [`Fault`]s: a matching request takes the next fault of the first rule that still has one;
//! everything else is relayed untouched. Optionally, a request body that grows past a size
//! stalls the connection (see [`Proxy::wait_stalled`]), to hold a push mid-upload.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the proxy does to one request instead of relaying it.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Read the request (body included) and answer this status with a registry-style JSON
    /// error body, `Connection: close` and the extra headers; the registry never sees it.
    Respond {
        status: u16,
        headers: Vec<(String, String)>,
    },
    /// Relay the request head and half of its body to the registry, then close both
    /// connections: an upload dropped mid-way.
    DropMidBody,
    /// Relay the request with its query string removed: e.g. a cross-repository mount
    /// (`POST …/blobs/uploads/?mount=…&from=…`) becomes a plain upload start, which the
    /// registry answers 202 like one that cannot mount.
    StripQuery,
    /// Relay the request with its Host header replaced: the registry builds the upload
    /// `Location` from it, so the client is sent to that other origin.
    SetHost(String),
    /// Relay the request, and hold the registry's answer this long before passing it on: the
    /// registry has answered (a read saw the state of that moment), the client learns of it
    /// late — a slow registry, where two clients' read-modify-write cycles overlap.
    DelayAnswer(Duration),
    /// Like `Respond`, with this body (as is) instead of the canned JSON error.
    RespondBody {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Answer `status` with a body of `bytes` bytes (a Content-Length that size), streamed
    /// from a small buffer, never held in memory; stops when the client closes. The exchange's
    /// `response_bytes` tells how much of it got out.
    HugeBody {
        status: u16,
        headers: Vec<(String, String)>,
        bytes: u64,
    },
}

impl Fault {
    pub fn status(status: u16) -> Fault {
        Fault::Respond {
            status,
            headers: Vec::new(),
        }
    }

    /// 429 Too Many Requests with `Retry-After: <seconds>`.
    pub fn too_many_requests(retry_after_secs: u32) -> Fault {
        Fault::Respond {
            status: 429,
            headers: vec![("Retry-After".into(), retry_after_secs.to_string())],
        }
    }

    fn describe(&self) -> String {
        match self {
            Fault::Respond { status, .. } => format!("respond {status}"),
            Fault::DropMidBody => "drop mid-body".into(),
            Fault::StripQuery => "strip query".into(),
            Fault::SetHost(h) => format!("set host {h}"),
            Fault::DelayAnswer(d) => format!("delay the answer {d:?}"),
            Fault::RespondBody { status, .. } => format!("respond {status} with a body"),
            Fault::HugeBody { status, bytes, .. } => format!("respond {status} with {bytes} bytes"),
        }
    }
}

/// Requests a queue of faults applies to.
#[derive(Debug, Clone)]
pub struct Rule {
    methods: Vec<String>,
    path_contains: String,
    with_body: bool,
    faults: VecDeque<Fault>,
}

impl Rule {
    /// Requests whose method is one of `methods` ("PUT|PATCH") and whose request target
    /// contains `path_contains`.
    pub fn new(methods: &str, path_contains: &str) -> Rule {
        Rule {
            methods: methods.split('|').map(str::to_string).collect(),
            path_contains: path_contains.to_string(),
            with_body: false,
            faults: VecDeque::new(),
        }
    }

    /// Only requests that carry a non-empty body.
    pub fn with_body(mut self) -> Rule {
        self.with_body = true;
        self
    }

    /// Appends a fault: the n-th matching request gets the n-th fault.
    pub fn then(mut self, fault: Fault) -> Rule {
        self.faults.push_back(fault);
        self
    }

    fn matches(&self, method: &str, target: &str, has_body: bool) -> bool {
        self.methods.iter().any(|m| m == method)
            && target.contains(&self.path_contains)
            && (has_body || !self.with_body)
    }
}

/// One request as the proxy handled it.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub method: String,
    pub target: String,
    /// The fault applied, if any.
    pub fault: Option<String>,
    /// The status the client got (None: the connection was dropped).
    pub status: Option<u16>,
    /// Request body bytes received from the client.
    pub body_bytes: u64,
    /// Body bytes of a `HugeBody` answer written before the client went away.
    pub response_bytes: u64,
    /// Whether the request carried an Authorization header.
    pub authorized: bool,
    pub started: Instant,
    pub finished: Instant,
}

struct Shared {
    upstream: SocketAddr,
    rules: Mutex<Vec<Rule>>,
    log: Mutex<Vec<Exchange>>,
    /// Requests being handled right now (read, not yet logged or given up).
    busy: Mutex<usize>,
    idle: Condvar,
    stall_after: Option<u64>,
    stalled: Mutex<bool>,
    stalled_cv: Condvar,
    released: AtomicBool,
    shutdown: AtomicBool,
}

impl Shared {
    fn take_fault(&self, method: &str, target: &str, has_body: bool) -> Option<Fault> {
        let mut rules = self.rules.lock().expect("rules");
        rules
            .iter_mut()
            .find(|r| !r.faults.is_empty() && r.matches(method, target, has_body))
            .and_then(|r| r.faults.pop_front())
    }

    fn record(&self, exchange: Exchange) {
        self.log.lock().expect("log").push(exchange);
    }

    /// Counts a request as in hand until the guard drops (logged, or the connection failed).
    fn busy(&self) -> Busy<'_> {
        *self.busy.lock().expect("busy") += 1;
        Busy(self)
    }
}

struct Busy<'a>(&'a Shared);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        *self.0.busy.lock().expect("busy") -= 1;
        self.0.idle.notify_all();
    }
}

/// A running proxy on 127.0.0.1:<free port>; stops accepting on drop.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl Proxy {
    /// A proxy to `upstream` applying `rules`.
    pub fn start(upstream: SocketAddr, rules: Vec<Rule>) -> Proxy {
        Proxy::start_with(upstream, rules, None)
    }

    /// A proxy to `upstream` that holds any request body once more than `bytes` of it went
    /// through, until [`Proxy::release`]; then it closes that connection.
    pub fn stalling(upstream: SocketAddr, bytes: u64) -> Proxy {
        Proxy::start_with(upstream, Vec::new(), Some(bytes))
    }

    fn start_with(upstream: SocketAddr, rules: Vec<Rule>, stall_after: Option<u64>) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("proxy addr");
        let shared = Arc::new(Shared {
            upstream,
            rules: Mutex::new(rules),
            log: Mutex::new(Vec::new()),
            busy: Mutex::new(0),
            idle: Condvar::new(),
            stall_after,
            stalled: Mutex::new(false),
            stalled_cv: Condvar::new(),
            released: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
        });
        let for_thread = Arc::clone(&shared);
        let acceptor = std::thread::spawn(move || accept_loop(listener, for_thread));
        Proxy {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// `127.0.0.1:PORT` of the proxy: use it as the registry in references.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Adds a rule after the start: for rules that name the proxy's own address.
    pub fn add_rule(&self, rule: Rule) {
        self.shared.rules.lock().expect("rules").push(rule);
    }

    /// Every request handled so far, in the order they finished. A request still in hand
    /// (the client may have gone while the proxy writes a huge body) is waited for, at most
    /// 10 s, so that a test looking right after the tool exits sees it.
    pub fn exchanges(&self) -> Vec<Exchange> {
        let busy = self.shared.busy.lock().expect("busy");
        let _ = self
            .shared
            .idle
            .wait_timeout_while(busy, Duration::from_secs(10), |n| *n > 0)
            .expect("busy");
        self.shared.log.lock().expect("log").clone()
    }

    /// Faults still queued (each rule's, described): empty once all of them fired.
    pub fn unfired(&self) -> Vec<String> {
        let rules = self.shared.rules.lock().expect("rules");
        rules
            .iter()
            .flat_map(|r| {
                r.faults
                    .iter()
                    .map(move |f| format!("{} {:?} *{}*", f.describe(), r.methods, r.path_contains))
            })
            .collect()
    }

    /// Blocks until a request body stalls (true) or `timeout` passes (false).
    pub fn wait_stalled(&self, timeout: Duration) -> bool {
        let guard = self.shared.stalled.lock().expect("stalled");
        let (guard, _) = self
            .shared
            .stalled_cv
            .wait_timeout_while(guard, timeout, |stalled| !*stalled)
            .expect("wait stalled");
        *guard
    }

    /// Lets stalled connections go: they are closed.
    pub fn release(&self) {
        self.shared.released.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.released.store(true, Ordering::SeqCst);
        self.shared.shutdown.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    while !shared.shutdown.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let shared = Arc::clone(&shared);
                let _ = stream.set_nonblocking(false);
                std::thread::spawn(move || {
                    let _ = serve(stream, &shared);
                });
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

struct Head {
    raw: Vec<u8>,
    first_line: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn body_framing(&self, otherwise: Framing) -> Framing {
        if self
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
        {
            Framing::Chunked
        } else if let Some(n) = self
            .header("content-length")
            .and_then(|v| v.trim().parse().ok())
        {
            Framing::Length(n)
        } else {
            otherwise
        }
    }

    fn wants_close(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// Reads a request or response head; None at a clean end of stream.
fn read_head(from: &mut BufReader<TcpStream>) -> io::Result<Option<Head>> {
    let mut raw = Vec::new();
    let mut lines = Vec::new();
    loop {
        let mut line = Vec::new();
        let n = from.read_until(b'\n', &mut line)?;
        if n == 0 {
            if raw.is_empty() {
                return Ok(None);
            }
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        raw.extend_from_slice(&line);
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        if text.is_empty() {
            if lines.is_empty() {
                continue; // stray CRLF between messages
            }
            break;
        }
        lines.push(text);
        if raw.len() > 256 * 1024 {
            return Err(io::Error::other("head too long"));
        }
    }
    let first_line = lines.remove(0);
    let headers = lines
        .iter()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Ok(Some(Head {
        raw,
        first_line,
        headers,
    }))
}

/// Copies a body framed by `framing` from `from` to `to`. Stops after `limit` body bytes
/// when given (returning early, the rest unread). `on_progress` sees the running count and
/// may fail the copy. Returns the body bytes copied.
fn relay_body(
    from: &mut BufReader<TcpStream>,
    to: &mut dyn Write,
    framing: Framing,
    limit: Option<u64>,
    on_progress: &mut dyn FnMut(u64) -> io::Result<()>,
) -> io::Result<u64> {
    let mut copy = Copier {
        buf: vec![0u8; 64 * 1024],
        copied: 0,
        limit,
    };
    match framing {
        Framing::None => {}
        Framing::Length(n) => {
            copy.exactly(from, to, n, on_progress)?;
        }
        Framing::UntilClose => loop {
            let got = from.read(&mut copy.buf)?;
            if got == 0 {
                break;
            }
            to.write_all(&copy.buf[..got])?;
            copy.copied += got as u64;
        },
        Framing::Chunked => loop {
            let mut size_line = Vec::new();
            if from.read_until(b'\n', &mut size_line)? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            to.write_all(&size_line)?;
            let text = String::from_utf8_lossy(&size_line);
            let hex = text.trim().split(';').next().unwrap_or("").trim();
            let size = u64::from_str_radix(hex, 16)
                .map_err(|_| io::Error::other(format!("bad chunk size {hex:?}")))?;
            if size == 0 {
                // Trailers, then the empty line.
                loop {
                    let mut line = Vec::new();
                    if from.read_until(b'\n', &mut line)? == 0 {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                    to.write_all(&line)?;
                    if line == b"\r\n" || line == b"\n" {
                        break;
                    }
                }
                break;
            }
            if !copy.exactly(from, to, size, on_progress)? {
                return Ok(copy.copied);
            }
            let mut crlf = Vec::new();
            from.read_until(b'\n', &mut crlf)?;
            to.write_all(&crlf)?;
        },
    }
    to.flush()?;
    Ok(copy.copied)
}

struct Copier {
    buf: Vec<u8>,
    copied: u64,
    limit: Option<u64>,
}

impl Copier {
    /// Copies `n` bytes; false when the limit cut the copy short.
    fn exactly(
        &mut self,
        from: &mut BufReader<TcpStream>,
        to: &mut dyn Write,
        n: u64,
        on_progress: &mut dyn FnMut(u64) -> io::Result<()>,
    ) -> io::Result<bool> {
        let mut left = n;
        while left > 0 {
            let mut want = left.min(self.buf.len() as u64);
            if let Some(limit) = self.limit {
                if self.copied >= limit {
                    to.flush()?;
                    return Ok(false);
                }
                want = want.min(limit - self.copied);
            }
            let got = from.read(&mut self.buf[..want as usize])?;
            if got == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            to.write_all(&self.buf[..got])?;
            left -= got as u64;
            self.copied += got as u64;
            on_progress(self.copied)?;
        }
        Ok(self.limit.is_none_or(|l| self.copied < l))
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        408 => "Request Timeout",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Injected",
    }
}

fn canned_response(status: u16, extra: &[(String, String)], head_request: bool) -> Vec<u8> {
    let code = if status == 429 {
        "TOOMANYREQUESTS"
    } else {
        "UNKNOWN"
    };
    let body = format!(
        r#"{{"errors":[{{"code":"{code}","message":"fault injected by the test proxy"}}]}}"#
    );
    let mut text = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\n\
         Docker-Distribution-Api-Version: registry/2.0\r\n\
         Content-Length: {}\r\nConnection: close\r\n",
        reason(status),
        body.len()
    );
    for (k, v) in extra {
        text.push_str(&format!("{k}: {v}\r\n"));
    }
    text.push_str("\r\n");
    if !head_request {
        text.push_str(&body);
    }
    text.into_bytes()
}

fn serve(client: TcpStream, shared: &Shared) -> io::Result<()> {
    let mut client_in = BufReader::new(client.try_clone()?);
    let mut client_out = client;
    // A TLS ClientHello (a client probing for https) gets what a plain-HTTP Go server
    // answers, at once: a 400 and a closed connection.
    if client_in.fill_buf()?.first() == Some(&0x16) {
        client_out.write_all(
            b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n",
        )?;
        let _ = client_out.shutdown(Shutdown::Both);
        return Ok(());
    }
    let mut upstream: Option<(BufReader<TcpStream>, TcpStream)> = None;
    loop {
        let Some(mut request) = read_head(&mut client_in)? else {
            return Ok(());
        };
        let _busy = shared.busy();
        let started = Instant::now();
        let mut parts = request.first_line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("").to_string();
        let framing = request.body_framing(Framing::None);
        let has_body =
            matches!(framing, Framing::Chunked) || matches!(framing, Framing::Length(n) if n > 0);
        let fault = shared.take_fault(&method, &target, has_body);
        let delay = match &fault {
            Some(Fault::DelayAnswer(d)) => Some(*d),
            _ => None,
        };
        let authorized = String::from_utf8_lossy(&request.raw)
            .to_ascii_lowercase()
            .contains("\nauthorization:");
        let mut exchange = Exchange {
            method: method.clone(),
            target,
            fault: fault.as_ref().map(Fault::describe),
            status: None,
            body_bytes: 0,
            response_bytes: 0,
            authorized,
            started,
            finished: started,
        };
        match fault {
            Some(Fault::Respond { status, headers }) => {
                exchange.body_bytes =
                    relay_body(&mut client_in, &mut io::sink(), framing, None, &mut |_| {
                        Ok(())
                    })?;
                client_out.write_all(&canned_response(status, &headers, method == "HEAD"))?;
                client_out.flush()?;
                exchange.status = Some(status);
                exchange.finished = Instant::now();
                shared.record(exchange);
                let _ = client_out.shutdown(Shutdown::Both);
                return Ok(());
            }
            Some(Fault::RespondBody {
                status,
                headers,
                body,
            }) => {
                exchange.body_bytes =
                    relay_body(&mut client_in, &mut io::sink(), framing, None, &mut |_| {
                        Ok(())
                    })?;
                let mut text = format!(
                    "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\nConnection: close\r\n",
                    reason(status),
                    body.len()
                );
                for (k, v) in &headers {
                    text.push_str(&format!("{k}: {v}\r\n"));
                }
                text.push_str("\r\n");
                client_out.write_all(text.as_bytes())?;
                if method != "HEAD" {
                    client_out.write_all(&body)?;
                }
                client_out.flush()?;
                exchange.status = Some(status);
                exchange.finished = Instant::now();
                shared.record(exchange);
                let _ = client_out.shutdown(Shutdown::Both);
                return Ok(());
            }
            Some(Fault::HugeBody {
                status,
                headers,
                bytes,
            }) => {
                exchange.body_bytes =
                    relay_body(&mut client_in, &mut io::sink(), framing, None, &mut |_| {
                        Ok(())
                    })?;
                let mut text = format!(
                    "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\n\
                     Content-Length: {bytes}\r\nConnection: close\r\n",
                    reason(status)
                );
                for (k, v) in &headers {
                    text.push_str(&format!("{k}: {v}\r\n"));
                }
                text.push_str("\r\n");
                exchange.status = Some(status);
                let chunk = vec![b'a'; 64 * 1024];
                let mut sent = 0u64;
                let mut out = client_out.write_all(text.as_bytes());
                while out.is_ok() && sent < bytes && method != "HEAD" {
                    let n = (bytes - sent).min(chunk.len() as u64) as usize;
                    out = client_out.write_all(&chunk[..n]);
                    if out.is_ok() {
                        sent += n as u64;
                    }
                }
                exchange.response_bytes = sent;
                exchange.finished = Instant::now();
                shared.record(exchange);
                let _ = client_out.shutdown(Shutdown::Both);
                return Ok(());
            }
            Some(Fault::DropMidBody) => {
                let mut up = TcpStream::connect(shared.upstream)?;
                up.write_all(&request.raw)?;
                let half = match framing {
                    Framing::Length(n) => (n / 2).max(1),
                    _ => 1024,
                };
                let copied =
                    relay_body(
                        &mut client_in,
                        &mut up,
                        framing,
                        Some(half),
                        &mut |_| Ok(()),
                    );
                exchange.body_bytes = copied.unwrap_or(0);
                exchange.finished = Instant::now();
                shared.record(exchange);
                let _ = up.shutdown(Shutdown::Both);
                let _ = client_out.shutdown(Shutdown::Both);
                return Ok(());
            }
            Some(Fault::StripQuery) => {
                let path = exchange.target.split('?').next().unwrap_or("").to_string();
                let rest = &request.raw[request
                    .raw
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(0, |i| i + 1)..];
                let mut raw = format!("{method} {path} HTTP/1.1\r\n").into_bytes();
                raw.extend_from_slice(rest);
                request.raw = raw;
            }
            Some(Fault::SetHost(host)) => {
                let text = String::from_utf8_lossy(&request.raw).to_string();
                let replaced: Vec<String> = text
                    .split("\r\n")
                    .map(|line| {
                        if line.to_ascii_lowercase().starts_with("host:") {
                            format!("Host: {host}")
                        } else {
                            line.to_string()
                        }
                    })
                    .collect();
                request.raw = replaced.join("\r\n").into_bytes();
            }
            Some(Fault::DelayAnswer(_)) | None => {}
        }
        if upstream.is_none() {
            let up = TcpStream::connect(shared.upstream)?;
            upstream = Some((BufReader::new(up.try_clone()?), up));
        }
        let (up_in, up_out) = upstream.as_mut().expect("upstream");
        up_out.write_all(&request.raw)?;
        let mut stall = |copied: u64| -> io::Result<()> {
            match shared.stall_after {
                Some(after) if copied > after => {
                    *shared.stalled.lock().expect("stalled") = true;
                    shared.stalled_cv.notify_all();
                    let deadline = Instant::now() + Duration::from_secs(300);
                    while !shared.released.load(Ordering::SeqCst) && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(io::Error::other("stalled body released"))
                }
                _ => Ok(()),
            }
        };
        let sent = relay_body(&mut client_in, up_out, framing, None, &mut stall);
        let Ok(sent) = sent else {
            exchange.fault = Some("stalled".into());
            exchange.finished = Instant::now();
            shared.record(exchange);
            let _ = up_out.shutdown(Shutdown::Both);
            let _ = client_out.shutdown(Shutdown::Both);
            return Ok(());
        };
        exchange.body_bytes = sent;
        // The response, after any interim 1xx.
        let response = loop {
            let Some(response) = read_head(up_in)? else {
                let _ = client_out.shutdown(Shutdown::Both);
                return Ok(());
            };
            if let Some(d) = delay {
                std::thread::sleep(d);
            }
            client_out.write_all(&response.raw)?;
            let status: u16 = response
                .first_line
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            if (100..200).contains(&status) && status != 101 {
                continue;
            }
            exchange.status = Some(status);
            break response;
        };
        let status = exchange.status.unwrap_or(0);
        let framing = if method == "HEAD" || status == 204 || status == 304 {
            Framing::None
        } else {
            response.body_framing(Framing::UntilClose)
        };
        relay_body(up_in, &mut client_out, framing, None, &mut |_| Ok(()))?;
        exchange.finished = Instant::now();
        shared.record(exchange);
        if framing == Framing::UntilClose || response.wants_close() || request.wants_close() {
            let _ = client_out.shutdown(Shutdown::Both);
            return Ok(());
        }
    }
}

/// A listener on 127.0.0.1:<free port> that accepts every connection, reads whatever comes
/// and never answers a byte: a registry that hangs. Stops on drop.
pub struct Silent {
    addr: SocketAddr,
    accepted: Arc<Mutex<u32>>,
    shutdown: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl Silent {
    pub fn start() -> Silent {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind silent listener");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("silent addr");
        let accepted = Arc::new(Mutex::new(0));
        let shutdown = Arc::new(AtomicBool::new(false));
        let (count, stop) = (Arc::clone(&accepted), Arc::clone(&shutdown));
        let acceptor = std::thread::spawn(move || {
            let mut held = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        *count.lock().expect("count") += 1;
                        let _ = stream.set_nonblocking(false);
                        let reader = stream.try_clone().expect("clone stream");
                        std::thread::spawn(move || {
                            let _ = io::copy(&mut BufReader::new(reader), &mut io::sink());
                        });
                        held.push(stream);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            for s in held {
                let _ = s.shutdown(Shutdown::Both);
            }
        });
        Silent {
            addr,
            accepted,
            shutdown,
            acceptor: Some(acceptor),
        }
    }

    /// `127.0.0.1:PORT`: the registry part of a reference.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u32 {
        *self.accepted.lock().expect("count")
    }
}

impl Drop for Silent {
    fn drop(&mut self) {
        self.shutdown.store(true, Ordering::SeqCst);
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
    }
}
