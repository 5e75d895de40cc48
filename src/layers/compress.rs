//! Layer compression that uses every core and still gives the same bytes on every machine.
//!
//! gzip: the input is cut into fixed blocks and each block becomes a complete gzip member,
//! compressed with libdeflate on a worker thread; the members are written in order. RFC 1952
//! defines a gzip file as a series of members, and every layer consumer reads them as one
//! stream (eStargz layers are built the same way). Block boundaries depend only on the input,
//! so the output is identical whatever the number of threads.
//!
//! Why libdeflate, and why members rather than pigz's single member: libdeflate compresses a
//! whole buffer about twice as fast as zlib at the same ratio (level 3 here is smaller than
//! zlib's level 5; see BENCHMARKS.md), but it has neither preset dictionaries nor sync flushes,
//! so blocks cannot be chained into one deflate stream. At 1 MiB per block the lost 32 KiB of
//! context costs under 0.1% of size.
//!
//! Hand-written (about 100 lines) rather than gzp: gzp's member format (Mgzip) adds an extra
//! header field to every member and brings its own channel and thread-pool crates, while this
//! pool's output is identical for any number of threads by construction (tested below).

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Input bytes per gzip member. Fixed: it is part of the output format.
const BLOCK: usize = 1024 * 1024;

/// The gzip levels libdeflate offers (10–12 are its slow, near-optimal parsers), as the
/// `compression-level` setting accepts them.
pub const GZIP_LEVELS: std::ops::RangeInclusive<i32> =
    crate::metadata::values::Compression::Gzip.levels();

struct Job {
    input: Vec<u8>,
    reply: SyncSender<io::Result<Vec<u8>>>,
}

fn gzip_member(compressor: &mut libdeflater::Compressor, input: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = vec![0; compressor.gzip_compress_bound(input.len())];
    let n = compressor
        .gzip_compress(input, &mut out)
        .map_err(|e| io::Error::other(format!("gzip compression failed: {e:?}")))?;
    out.truncate(n);
    Ok(out)
}

/// A gzip writer that compresses blocks in parallel. Call [`ParGz::finish`] to end the stream.
pub struct ParGz<W: Write> {
    /// Taken by `finish`.
    out: Option<W>,
    block: Vec<u8>,
    /// Whether any member was submitted: an empty input still makes one (empty) member.
    submitted: bool,
    in_flight: VecDeque<Receiver<io::Result<Vec<u8>>>>,
    jobs: Option<SyncSender<Job>>,
    workers: Vec<JoinHandle<()>>,
    max_in_flight: usize,
}

impl<W: Write> ParGz<W> {
    pub fn new(out: W, level: u32, threads: usize) -> io::Result<ParGz<W>> {
        let level = libdeflater::CompressionLvl::new(level as i32).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("gzip level {level} is out of range"),
            )
        })?;
        let threads = threads.max(1);
        let (tx, rx) = sync_channel::<Job>(threads * 2);
        let rx = Arc::new(Mutex::new(rx));
        let workers = (0..threads)
            .map(|_| {
                let rx = Arc::clone(&rx);
                std::thread::spawn(move || {
                    let mut compressor = libdeflater::Compressor::new(level);
                    loop {
                        let job = match rx.lock() {
                            Ok(r) => r.recv(),
                            Err(_) => return,
                        };
                        let Ok(job) = job else { return };
                        let result = gzip_member(&mut compressor, &job.input);
                        let _ = job.reply.send(result);
                    }
                })
            })
            .collect();
        Ok(ParGz {
            out: Some(out),
            block: Vec::with_capacity(BLOCK),
            submitted: false,
            in_flight: VecDeque::new(),
            jobs: Some(tx),
            workers,
            max_in_flight: threads * 2,
        })
    }

    fn submit(&mut self) -> io::Result<()> {
        let input = std::mem::replace(&mut self.block, Vec::with_capacity(BLOCK));
        let (reply, rx) = sync_channel(1);
        self.jobs
            .as_ref()
            .ok_or_else(|| io::Error::other("gzip stream already finished"))?
            .send(Job { input, reply })
            .map_err(|_| io::Error::other("a compression thread stopped"))?;
        self.submitted = true;
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

    /// Ends the stream (the last, possibly short, member) and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        if !self.block.is_empty() || !self.submitted {
            self.submit()?;
        }
        while !self.in_flight.is_empty() {
            self.drain_one()?;
        }
        self.out_mut()?.flush()?;
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
        if self.block.len() == BLOCK {
            self.submit()?;
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
    pub kind: crate::metadata::values::Compression,
    pub level: i32,
}

impl Codec {
    pub fn of(spec: &crate::metadata::ImageSpec) -> Codec {
        Codec {
            kind: spec.layers.compression,
            level: spec.layers.compression_level,
        }
    }

    /// Compresses everything written to the returned writer into `out`; `finish` ends it.
    pub fn encoder<W: Write + Send + 'static>(self, out: W) -> io::Result<Encoder<W>> {
        use crate::metadata::values::Compression;
        Ok(match self.kind {
            Compression::Gzip => {
                let level = self.level.clamp(*GZIP_LEVELS.start(), *GZIP_LEVELS.end());
                Encoder::Gzip(ParGz::new(out, level as u32, threads())?)
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
/// a compression library that changes the output bytes never serves stale blobs from the
/// cache. The sample is small (a cold run computes it before its first layer); the block and
/// job sizes that shape longer streams are named in the answer, and any other change to how
/// streams are cut must bump the layer format (`tar::LAYER_FORMAT`).
pub fn fingerprint(codec: Codec, shell: &crate::util::shell::Shell) -> io::Result<String> {
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
        .and_then(|_| crate::memo::get::<String>("compressor", &key, shell))
    {
        Some(v) => v,
        None => {
            const SAMPLE: usize = 64 * 1024;
            let sample: Vec<u8> = (0..SAMPLE as u32)
                .flat_map(|i| (i.wrapping_mul(2_654_435_761) >> 27).to_le_bytes())
                .take(SAMPLE)
                .collect();
            let mut enc = codec.encoder(Vec::new())?;
            enc.write_all(&sample)?;
            let v = format!(
                "{} gzip-block {BLOCK} zstd-job {JOB}",
                crate::util::digest::Digest::sha256_of(&enc.finish()?)
            );
            if let Some(exe) = exe {
                crate::memo::put("compressor", &key, &v, &[exe], shell);
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
            flate2::read::MultiGzDecoder::new(&one[..])
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, data, "size {n}: round trip");
            // One member per block: the first holds exactly the first block.
            let mut first = Vec::new();
            flate2::read::GzDecoder::new(&one[..])
                .read_to_end(&mut first)
                .unwrap();
            assert_eq!(first.len(), n.min(BLOCK), "size {n}: first member");
        }
    }

    #[test]
    fn every_gzip_level_is_its_own() {
        // Levels 10-12 are libdeflate's own; none may quietly fall back to another.
        let data = sample(300_000);
        let outputs: Vec<Vec<u8>> = GZIP_LEVELS
            .map(|level| {
                let mut gz = ParGz::new(Vec::new(), level as u32, 2).unwrap();
                gz.write_all(&data).unwrap();
                gz.finish().unwrap()
            })
            .collect();
        for (i, a) in outputs.iter().enumerate() {
            for b in &outputs[i + 1..] {
                assert_ne!(a, b, "two levels gave the same bytes");
            }
        }
        let codec = |level| Codec {
            kind: crate::metadata::values::Compression::Gzip,
            level,
        };
        let via_codec = |level| {
            let mut enc = codec(level).encoder(Vec::new()).unwrap();
            enc.write_all(&data).unwrap();
            enc.finish().unwrap()
        };
        assert_eq!(via_codec(12), outputs[11]);
        assert_ne!(via_codec(12), via_codec(9));
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
