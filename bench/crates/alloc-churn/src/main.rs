//! An allocation-heavy workload for the allocator benchmark (bench/run P9): a large JSON
//! document, generated deterministically, parsed into `serde_json::Value` and serialised back
//! again and again, on several threads at once (each value is a tree of small allocations:
//! strings, vectors, maps).
//!
//! `alloc-churn MEGABYTES ITERATIONS THREADS` prints a checksum of what it serialised, so that
//! every build can be checked to do the same work.

use std::thread;

use serde_json::{json, Map, Value};

/// A small linear congruential generator: the document is the same on every run and build.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn word(&mut self) -> String {
        const SYLLABLES: [&str; 12] = [
            "ka", "ri", "to", "me", "su", "la", "no", "vi", "de", "po", "xe", "gu",
        ];
        let n = 1 + self.next() % 4;
        (0..n)
            .map(|_| SYLLABLES[(self.next() % 12) as usize])
            .collect()
    }
}

fn record(rng: &mut Lcg, id: u64) -> Value {
    let tags: Vec<Value> = (0..rng.next() % 6)
        .map(|_| Value::String(rng.word()))
        .collect();
    let mut attributes = Map::new();
    for _ in 0..rng.next() % 5 {
        attributes.insert(rng.word(), json!(rng.next() % 1000));
    }
    json!({
        "id": id,
        "name": format!("{} {}", rng.word(), rng.word()),
        "score": (rng.next() % 10_000) as f64 / 100.0,
        "active": rng.next() % 2 == 0,
        "tags": tags,
        "attributes": attributes,
        "history": (0..rng.next() % 4).map(|i| json!({"step": i, "note": rng.word()})).collect::<Vec<_>>(),
    })
}

fn document(megabytes: usize) -> String {
    let mut rng = Lcg(0x5eed);
    let mut records = Vec::new();
    let mut size = 0;
    let mut id = 0;
    while size < megabytes * 1_000_000 {
        let r = record(&mut rng, id);
        size += serde_json::to_string(&r).expect("serialise").len() + 1;
        records.push(r);
        id += 1;
    }
    serde_json::to_string(&json!({ "records": records })).expect("serialise")
}

/// Parse, touch every record, serialise: returns a checksum of the output's bytes.
fn churn(text: &str, iterations: usize) -> u64 {
    let mut sum = 0u64;
    for i in 0..iterations {
        let mut value: Value = serde_json::from_str(text).expect("parse");
        if let Some(records) = value["records"].as_array_mut() {
            for r in records.iter_mut() {
                r["iteration"] = json!(i);
            }
        }
        let out = serde_json::to_string(&value).expect("serialise");
        sum = out
            .bytes()
            .fold(sum, |s, b| s.wrapping_mul(31).wrapping_add(b as u64));
    }
    sum
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| {
            a.parse().unwrap_or_else(|_| {
                eprintln!("usage: alloc-churn MEGABYTES ITERATIONS THREADS");
                std::process::exit(2)
            })
        })
        .collect();
    let [megabytes, iterations, threads] = args[..] else {
        eprintln!("usage: alloc-churn MEGABYTES ITERATIONS THREADS");
        std::process::exit(2)
    };
    let text = document(megabytes);
    let sums: Vec<u64> = thread::scope(|s| {
        let workers: Vec<_> = (0..threads.max(1))
            .map(|_| s.spawn(|| churn(&text, iterations)))
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("worker"))
            .collect()
    });
    println!(
        "bytes={} checksum={:016x}",
        text.len(),
        sums.iter().fold(0u64, |a, s| a.wrapping_add(*s))
    );
}
