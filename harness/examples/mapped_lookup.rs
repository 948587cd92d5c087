//! Time mapped-ram page lookups by guest address (bench/bench.py runs this).
//!
//!     cargo run --release -p qmig-harness --example mapped_lookup -- FILE [LOOKUPS]
//!
//! Maps FILE (a mapped-ram migration file; never populated), reads its block list, and
//! times LOOKUPS (default 1,000,000) lookups of pseudo-random addresses in the largest
//! block (the guest's RAM; on x86 its offsets are the guest-physical addresses below the
//! PCI hole):
//!   * `lookup_ns`: [`MappedBlock::page`] alone (one bitmap bit, then a slice of the map);
//!   * `read_ns`: the lookup plus a read of the 8 guest bytes at the address, after an
//!     untimed pass over the same addresses has faulted their pages in (so this is memory
//!     latency, not page faults or disk).
//!
//! Each is the best of three timed passes. Prints one JSON object. Neither time grows with
//! the file size.
//!
//! [`MappedBlock::page`]: qmig_codec::mapped_ram::MappedBlock::page
use std::hint::black_box;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use qmig_codec::mapped_ram::PageLookup;

/// Each timing is the best of this many passes over the addresses (other load on the
/// machine only ever adds time).
const REPS: usize = 3;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let Some(path) = args.get(1) else {
        eprintln!("usage: mapped_lookup FILE [LOOKUPS]");
        return ExitCode::from(2);
    };
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1_000_000).max(1);
    let map = match qmig_harness::replay::map_file(Path::new(path)) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("mapped_lookup: {e}");
            return ExitCode::from(2);
        }
    };
    let bytes: &[u8] = &map;
    let blocks = match qmig_harness::inspect::mapped_blocks(bytes, qmig_codec::Context::default()) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("mapped_lookup: {e}");
            return ExitCode::from(2);
        }
    };
    let Some(b) = blocks.iter().max_by_key(|b| b.used_length).filter(|b| b.used_length > 0) else {
        eprintln!("mapped_lookup: {path}: no mapped-ram block");
        return ExitCode::from(1);
    };
    // xorshift64*: addresses anywhere in the block, not page aligned.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let addrs: Vec<u64> = (0..n)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            x.wrapping_mul(0x2545_f491_4f6c_dd1d) % b.used_length
        })
        .collect();
    let ps = b.header.page_size.max(1);
    let read = |pass: &mut u64| {
        let t = Instant::now();
        for &a in &addrs {
            if let Ok(PageLookup::Present(p)) = b.page(bytes, a) {
                let at = (a % ps) as usize & !7;
                let w = p.get(at..at + 8).map(|w| u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]])).unwrap_or(0);
                *pass = pass.wrapping_add(w);
            }
        }
        t.elapsed().as_nanos() as f64 / n as f64
    };
    let mut sum = 0u64;
    read(&mut sum);
    let read_ns = (0..REPS).map(|_| read(&mut sum)).fold(f64::INFINITY, f64::min);
    let mut present = 0u64;
    let lookup_ns = (0..REPS)
        .map(|_| {
            let t = Instant::now();
            present = 0;
            for &a in &addrs {
                if let Ok(PageLookup::Present(p)) = black_box(b.page(bytes, black_box(a))) {
                    present += 1;
                    black_box(p);
                }
            }
            t.elapsed().as_nanos() as f64 / n as f64
        })
        .fold(f64::INFINITY, f64::min);
    black_box(sum);
    println!(
        "{}",
        serde_json::json!({
            "file": path,
            "file_bytes": bytes.len(),
            "block": String::from_utf8_lossy(&b.name),
            "used_length": b.used_length,
            "pages": b.used_length / ps,
            "lookups": n,
            "present": present,
            "lookup_ns": lookup_ns,
            "read_ns": read_ns,
        })
    );
    ExitCode::SUCCESS
}
