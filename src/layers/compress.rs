//! Layer compression that uses every core and still gives the same bytes on every machine.
//!
//! gzip is compressed the way pigz does it: the input is cut into fixed blocks, each block is
//! deflated on its own thread with the previous 32 KiB as its dictionary and ends with a sync
//! flush, and the pieces are concatenated into one gzip member. Block boundaries depend only on
//! the input, so the output is identical whatever the number of threads. Hand-written because
//! the maintained parallel-gzip crate (gzp) brings zlib-ng and libdeflate C builds and its own
//! flate2 backend; this is the same scheme on flate2's zlib-rs backend.

use flate2::{Compress, Compression as Level, Crc, FlushCompress, Status};
use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Input bytes per block. Fixed: it is part of the output format.
const BLOCK: usize = 512 * 1024;
const WINDOW: usize = 32 * 1024;

struct Job {
    input: Vec<u8>,
    dict: Vec<u8>,
    last: bool,
    reply: SyncSender<io::Result<Vec<u8>>>,
}

fn deflate_block(level: u32, job: &Job) -> io::Result<Vec<u8>> {
    let mut c = Compress::new(Level::new(level), false);
    if !job.dict.is_empty() {
        c.set_dictionary(&job.dict).map_err(io::Error::other)?;
    }
    let flush = if job.last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    let mut out = Vec::with_capacity(job.input.len() / 2 + 1024);
    loop {
        let consumed = c.total_in() as usize;
        if out.capacity() - out.len() < 1024 {
            out.reserve(out.capacity().max(64 * 1024));
        }
        let status = c
            .compress_vec(&job.input[consumed..], &mut out, flush)
            .map_err(io::Error::other)?;
        let done_input = c.total_in() as usize == job.input.len();
        match status {
            Status::StreamEnd => break,
            // A sync flush is complete once all input is in and the output buffer was not filled.
            Status::Ok | Status::BufError
                if !job.last && done_input && out.len() < out.capacity() =>
            {
                break;
            }
            _ => {}
        }
    }
    Ok(out)
}

/// A gzip writer that compresses blocks in parallel. Call [`ParGz::finish`] to end the stream.
pub struct ParGz<W: Write> {
    /// Taken by `finish`.
    out: Option<W>,
    block: Vec<u8>,
    dict: Vec<u8>,
    crc: Crc,
    in_flight: VecDeque<Receiver<io::Result<Vec<u8>>>>,
    jobs: Option<SyncSender<Job>>,
    workers: Vec<JoinHandle<()>>,
    max_in_flight: usize,
}

impl<W: Write> ParGz<W> {
    pub fn new(mut out: W, level: u32, threads: usize) -> io::Result<ParGz<W>> {
        // Fixed header: no name, mtime 0, XFL by level, OS 255 (unknown).
        let xfl = match level {
            9 => 2,
            0 | 1 => 4,
            _ => 0,
        };
        out.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 255])?;
        let threads = threads.max(1);
        let (tx, rx) = sync_channel::<Job>(threads * 2);
        let rx = Arc::new(Mutex::new(rx));
        let workers = (0..threads)
            .map(|_| {
                let rx = Arc::clone(&rx);
                std::thread::spawn(move || {
                    loop {
                        let job = match rx.lock() {
                            Ok(r) => r.recv(),
                            Err(_) => return,
                        };
                        let Ok(job) = job else { return };
                        let result = deflate_block(level, &job);
                        let _ = job.reply.send(result);
                    }
                })
            })
            .collect();
        Ok(ParGz {
            out: Some(out),
            block: Vec::with_capacity(BLOCK),
            dict: Vec::new(),
            crc: Crc::new(),
            in_flight: VecDeque::new(),
            jobs: Some(tx),
            workers,
            max_in_flight: threads * 2,
        })
    }

    fn submit(&mut self, last: bool) -> io::Result<()> {
        let input = std::mem::replace(&mut self.block, Vec::with_capacity(BLOCK));
        let next_dict = input[input.len().saturating_sub(WINDOW)..].to_vec();
        let dict = std::mem::replace(&mut self.dict, next_dict);
        let (reply, rx) = sync_channel(1);
        let job = Job {
            input,
            dict,
            last,
            reply,
        };
        self.jobs
            .as_ref()
            .ok_or_else(|| io::Error::other("gzip stream already finished"))?
            .send(job)
            .map_err(|_| io::Error::other("a compression thread stopped"))?;
        self.in_flight.push_back(rx);
        while self.in_flight.len() > self.max_in_flight {
            self.drain_one()?;
        }
        Ok(())
    }

    fn drain_one(&mut self) -> io::Result<()> {
        if let Some(rx) = self.in_flight.pop_front() {
            let bytes = rx
                .recv()
                .map_err(|_| io::Error::other("a compression thread stopped"))??;
            self.out_mut()?.write_all(&bytes)?;
        }
        Ok(())
    }

    fn out_mut(&mut self) -> io::Result<&mut W> {
        self.out
            .as_mut()
            .ok_or_else(|| io::Error::other("gzip stream already finished"))
    }

    /// Ends the stream (last block, CRC and length) and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.submit(true)?;
        while !self.in_flight.is_empty() {
            self.drain_one()?;
        }
        let (crc, len) = (self.crc.sum(), self.crc.amount());
        let out = self.out_mut()?;
        out.write_all(&crc.to_le_bytes())?;
        out.write_all(&len.to_le_bytes())?;
        out.flush()?;
        self.out
            .take()
            .ok_or_else(|| io::Error::other("gzip stream already finished"))
    }
}

impl<W: Write> Write for ParGz<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = BLOCK - self.block.len();
        let n = room.min(buf.len());
        self.block.extend_from_slice(&buf[..n]);
        self.crc.update(&buf[..n]);
        if self.block.len() == BLOCK {
            self.submit(false)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write> Drop for ParGz<W> {
    fn drop(&mut self) {
        self.jobs.take();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// A zstd encoder using `threads` workers. zstd's multithreaded mode cuts the input into jobs
/// of a fixed size ([`JOB`]), so its output is the same for any number of workers
/// (at least one); single-threaded mode would differ, so it is never used.
pub fn zstd_encoder<W: Write>(
    out: W,
    level: i32,
    threads: usize,
) -> io::Result<zstd::Encoder<'static, W>> {
    let mut enc = zstd::Encoder::new(out, level)?;
    enc.include_checksum(true)?;
    enc.multithread(threads.max(1) as u32)?;
    enc.set_parameter(zstd::stream::raw::CParameter::JobSize(JOB))?;
    Ok(enc)
}

/// An algorithm and its level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Codec {
    pub kind: crate::metadata::spec::Compression,
    pub level: i32,
}

impl Codec {
    pub fn of(spec: &crate::metadata::ImageSpec) -> Codec {
        Codec {
            kind: spec.compression,
            level: spec.compression_level,
        }
    }

    /// Compresses everything written to the returned writer into `out`; `finish` ends it.
    pub fn encoder<W: Write + Send + 'static>(self, out: W) -> io::Result<Encoder<W>> {
        use crate::metadata::spec::Compression;
        Ok(match self.kind {
            Compression::Gzip => {
                Encoder::Gzip(ParGz::new(out, self.level.clamp(0, 9) as u32, threads())?)
            }
            Compression::Zstd => Encoder::Zstd(zstd_encoder(out, self.level, threads())?),
        })
    }
}

/// The compressing writer of a [`Codec`].
pub enum Encoder<W: Write> {
    Gzip(ParGz<W>),
    Zstd(zstd::Encoder<'static, W>),
}

impl<W: Write> Encoder<W> {
    pub fn finish(self) -> io::Result<W> {
        match self {
            Encoder::Gzip(g) => g.finish(),
            Encoder::Zstd(z) => z.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Gzip(g) => g.write(buf),
            Encoder::Zstd(z) => z.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Gzip(g) => g.flush(),
            Encoder::Zstd(z) => z.flush(),
        }
    }
}

/// What a codec produces for a fixed sample: part of every layer's cache key, so a change of
/// the code or of a compression library that changes the output bytes never serves stale
/// blobs from the cache.
pub fn fingerprint(codec: Codec) -> io::Result<String> {
    use std::collections::HashMap;
    use std::sync::OnceLock;
    static SEEN: OnceLock<Mutex<HashMap<Codec, String>>> = OnceLock::new();
    let seen = SEEN.get_or_init(Default::default);
    if let Some(v) = seen.lock().ok().and_then(|m| m.get(&codec).cloned()) {
        return Ok(v);
    }
    // The answer changes only with the tool's own build: remember it per executable.
    let exe = std::env::current_exe().ok();
    let key = crate::memo::key(&[
        format!("{codec:?}").as_bytes(),
        exe.as_deref()
            .unwrap_or(std::path::Path::new(""))
            .as_os_str()
            .as_encoded_bytes(),
    ]);
    let v = match exe
        .as_ref()
        .and_then(|_| crate::memo::get::<String>("compressor", &key))
    {
        Some(v) => v,
        None => {
            let sample: Vec<u8> = (0..(BLOCK + 4096) as u32)
                .flat_map(|i| (i.wrapping_mul(2_654_435_761) >> 27).to_le_bytes())
                .take(BLOCK + 4096)
                .collect();
            let mut enc = codec.encoder(Vec::new())?;
            enc.write_all(&sample)?;
            let v = crate::blobs::digest_of(&enc.finish()?);
            if let Some(exe) = exe {
                crate::memo::put("compressor", &key, &v, &[exe]);
            }
            v
        }
    };
    if let Ok(mut m) = seen.lock() {
        m.insert(codec, v.clone());
    }
    Ok(v)
}

/// zstd job size: fixed (it shapes the output), and small enough that two workers stay well
/// under 64 MB of memory (the default, 4x the window, took ~75 MB at level 7).
const JOB: u32 = 4 << 20;

/// Threads for compression: the cores this process may use.
pub fn threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn sample(n: usize) -> Vec<u8> {
        // Compressible but not trivial: a text-like pattern with a counter.
        let mut v = Vec::with_capacity(n);
        let mut i = 0u64;
        while v.len() < n {
            v.extend_from_slice(
                format!("line {i} of the sample, {}\n", i * 2654435761 % 1000).as_bytes(),
            );
            i += 1;
        }
        v.truncate(n);
        v
    }

    fn compress(data: &[u8], threads: usize) -> Vec<u8> {
        let mut gz = ParGz::new(Vec::new(), 6, threads).unwrap();
        for chunk in data.chunks(10_000) {
            gz.write_all(chunk).unwrap();
        }
        gz.finish().unwrap()
    }

    #[test]
    fn round_trips_and_is_independent_of_threads() {
        for n in [0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 12345] {
            let data = sample(n);
            let one = compress(&data, 1);
            let four = compress(&data, 4);
            assert_eq!(one, four, "size {n}: output depends on the thread count");
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&one[..])
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, data, "size {n}: round trip");
        }
    }

    #[test]
    fn zstd_output_is_independent_of_threads() {
        // Several of zstd's jobs (JOB, 4 MiB each), so workers really share the input.
        let data = sample(24 << 20);
        let run = |threads| {
            let mut enc = zstd_encoder(Vec::new(), 7, threads).unwrap();
            enc.write_all(&data).unwrap();
            enc.finish().unwrap()
        };
        let one = run(1);
        assert_eq!(one, run(3));
        assert_eq!(zstd::decode_all(&one[..]).unwrap(), data);
    }

    #[test]
    fn ratio_close_to_single_stream_gzip() {
        let data = sample(4 * BLOCK);
        let par = compress(&data, 2).len();
        let mut single = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        single.write_all(&data).unwrap();
        let single = single.finish().unwrap().len();
        assert!(
            (par as f64) < single as f64 * 1.02,
            "parallel {par} vs single {single}"
        );
    }
}
