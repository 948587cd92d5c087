//! Hostile input: every fuzz target body (shared with `fuzz/`) over the real vectors and the
//! committed reproducers in `tests/regressions/`, and a deterministic mutation campaign over
//! the real vectors with a per-input time bound and a per-input peak-allocation bound.
//!
//! `QMIG_MUTATIONS=<n>` sets the number of random mutations per vector (default 24).

#[path = "../../fuzz/src/bodies.rs"]
mod bodies;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use qmig_codec::codes::SectionType;
use qmig_codec::command::CommandBody;
use qmig_codec::ram::RamRecord;
use qmig_codec::{decode_all, Channel, Context, DecodeError, MainDecoder, Record};

// ---------------------------------------------------------------------------------------
// Per-thread allocation accounting (the decoders are single-threaded; other tests of this
// binary run on other threads and do not disturb the numbers).

struct Counting;

thread_local! {
    static CUR: Cell<i64> = const { Cell::new(0) };
    static PEAK: Cell<i64> = const { Cell::new(0) };
}

fn note(delta: i64) {
    let _ = CUR.try_with(|c| {
        let v = c.get() + delta;
        c.set(v);
        let _ = PEAK.try_with(|p| {
            if v > p.get() {
                p.set(v)
            }
        });
    });
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = System.alloc(l);
        if !p.is_null() {
            note(l.size() as i64);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(l);
        if !p.is_null() {
            note(l.size() as i64);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l);
        note(-(l.size() as i64));
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let q = System.realloc(p, l, new);
        if !q.is_null() {
            note(new as i64 - l.size() as i64);
        }
        q
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Run `f`, returning whether it panicked, how long it took and its peak extra allocation.
fn measured(f: impl FnOnce()) -> (Result<(), String>, Duration, u64) {
    let base = CUR.with(|c| c.get());
    PEAK.with(|p| p.set(base));
    let t = Instant::now();
    let r = catch_unwind(AssertUnwindSafe(f))
        .map_err(|e| e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default());
    let el = t.elapsed();
    let peak = PEAK.with(|p| p.get()) - base;
    (r, el, peak.max(0) as u64)
}

// ---------------------------------------------------------------------------------------
// Seeds: the real vectors.

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Direction 0 and direction 1 DATA bytes of a QMIGTRC1 trace (TRACE-FORMAT.md).
fn trace_dirs(path: &Path) -> [Vec<u8>; 2] {
    let b = std::fs::read(path).unwrap();
    assert_eq!(&b[..8], b"QMIGTRC1", "{}", path.display());
    let hl = u32::from_le_bytes(b[8..12].try_into().unwrap()) as usize;
    let mut p = 12 + hl;
    let mut out = [Vec::new(), Vec::new()];
    while p + 14 <= b.len() {
        let (kind, dir) = (b[p], b[p + 1]);
        let n = u32::from_le_bytes(b[p + 10..p + 14].try_into().unwrap()) as usize;
        let payload = &b[p + 14..(p + 14 + n).min(b.len())];
        if kind == 1 {
            out[(dir & 1) as usize].extend_from_slice(payload);
        }
        p += 14 + n;
    }
    out
}

struct Seeds {
    /// (name, bytes) of every main stream: file vectors and conn0 direction 0.
    main: Vec<(String, Vec<u8>)>,
    /// conn0 direction 1.
    rp: Vec<(String, Vec<u8>)>,
    /// conn1+ direction 0 that start with the multifd magic.
    multifd: Vec<(String, Vec<u8>)>,
}

fn seeds() -> Seeds {
    let mut s = Seeds { main: Vec::new(), rp: Vec::new(), multifd: Vec::new() };
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(repo().join("vectors"))
        .expect("vectors/")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.join("case.json").is_file())
        .collect();
    dirs.sort();
    for d in dirs {
        let name = d.file_name().unwrap().to_string_lossy().to_string();
        if d.join("stream.bin").is_file() {
            s.main.push((name.clone(), std::fs::read(d.join("stream.bin")).unwrap()));
        }
        let mut traces: Vec<PathBuf> = std::fs::read_dir(&d)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "qmtrace"))
            .collect();
        traces.sort();
        for t in traces {
            let conn = t.file_stem().unwrap().to_string_lossy().to_string();
            let [fwd, back] = trace_dirs(&t);
            let tag = format!("{name}-{conn}");
            if conn == "conn0" {
                if fwd.starts_with(b"QEVM") {
                    s.main.push((tag.clone(), fwd));
                }
                if !back.is_empty() {
                    s.rp.push((tag, back));
                }
            } else if fwd.starts_with(&[0x11, 0x22, 0x33, 0x44]) {
                s.multifd.push((tag, fwd));
            }
        }
    }
    assert!(s.main.len() >= 10, "main-stream seeds from vectors/: {}", s.main.len());
    assert!(!s.rp.is_empty() && !s.multifd.is_empty(), "return-path and multifd seeds from vectors/");
    s
}

fn run_body(target: &str, body: fn(&[u8]), name: &str, input: &[u8]) {
    let (r, el, peak) = measured(|| body(input));
    if let Err(msg) = r {
        panic!("{target} panicked on {name} ({} bytes): {msg}", input.len());
    }
    assert!(el < time_bound(input.len()), "{target} took {el:?} on {name}");
    assert!(peak <= 4 * input.len() as u64 + (16 << 20), "{target} allocated {peak} bytes on {name} ({} bytes)", input.len());
}

#[test]
fn seeds_main_stream_round_trip_mapped_ram() {
    let seeds = seeds().main;
    let mut full = 0;
    for (name, s) in &seeds {
        run_body("main_stream", bodies::main_stream, name, s);
        run_body("round_trip", bodies::round_trip, name, s);
        run_body("mapped_ram", bodies::mapped_ram, name, s);
        // Most real vectors decode fully (so round_trip really compared bytes); recordings
        // of a source that was killed end inside a record.
        let (_, r) = bodies::decode_main(s, Context::default());
        full += r.is_ok() as usize;
    }
    assert!(full * 4 >= seeds.len() * 3, "only {full} of {} main-stream seeds decode fully", seeds.len());
}

#[test]
fn seeds_return_path_and_multifd() {
    let s = seeds();
    for (name, b) in &s.rp {
        run_body("return_path", bodies::return_path, name, b);
        for n in (0..b.len()).step_by(3) {
            run_body("return_path", bodies::return_path, name, &b[..n]);
        }
    }
    for (name, b) in &s.multifd {
        run_body("multifd", bodies::multifd, name, b);
    }
}

#[test]
fn structured_over_generated_inputs() {
    let mut x = Xorshift(0x9e37_79b9_7f4a_7c15);
    for n in 0..400 {
        let len = (n * 37) % 3000;
        let v: Vec<u8> = (0..len).map(|_| x.next() as u8).collect();
        run_body("structured", bodies::structured, &format!("generated #{n}"), &v);
    }
}

// ---------------------------------------------------------------------------------------
// Committed reproducers: one named test per file of tests/regressions/.

fn regression(file: &str) -> Vec<u8> {
    std::fs::read(repo().join("codec/tests/regressions").join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// Run every body that can take the reproducer (a crash in any of them is a regression).
fn all_bodies(file: &str) {
    let b = regression(file);
    for (t, body) in [
        ("main_stream", bodies::main_stream as fn(&[u8])),
        ("round_trip", bodies::round_trip),
        ("mapped_ram", bodies::mapped_ram),
        ("return_path", bodies::return_path),
        ("multifd", bodies::multifd),
        ("structured", bodies::structured),
    ] {
        run_body(t, body, file, &b);
    }
}

macro_rules! regressions {
    ($($name:ident => $file:literal,)*) => {
        $( #[test] fn $name() { all_bodies($file) } )*

        #[test]
        fn every_reproducer_has_a_named_test() {
            let named: &[&str] = &[$($file),*];
            let dir = repo().join("codec/tests/regressions");
            for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let f = e.file_name().to_string_lossy().to_string();
                if f.ends_with(".bin") {
                    assert!(named.contains(&f.as_str()), "tests/regressions/{f} has no named test in hostile.rs");
                }
            }
        }
    };
}

/// PACKAGED nested 300 deep, decoded with a nesting bound above 255: the record depth
/// (a u8) overflowed on leaving the 256th frame.
#[test]
fn packaged_depth300_with_max_depth_2000() {
    let b = regression("packaged-depth300.bin");
    let (r, _, _) = measured(|| assert!(!check_main_mutant(&b, Context { max_depth: 2000, ..Context::default() })));
    r.unwrap();
}

regressions! {
    // Also through every body (default nesting bound 4: rejected).
    packaged_depth300 => "packaged-depth300.bin",
    // caps_count 0xffffffff followed by 40k one-byte names: the chunked decoder re-read all
    // names on every chunk (quadratic; 14 s on a 320 KiB mutated vector).
    config_caps_count_0xffffffff_quadratic => "config-caps-count-0xffffffff-quadratic.bin",
    // MEM_SIZE 2^60 followed by 20k empty block entries: the decoder cloned the whole
    // block list on every record (quadratic; 39 s on a mutated mapped-ram vector).
    ram_20k_empty_blocks_quadratic_snapshot => "ram-20k-empty-blocks-quadratic-snapshot.bin",
}

// ---------------------------------------------------------------------------------------
// Mutation campaign.

struct Xorshift(u64);

impl Xorshift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// One record of the unmutated decode: where it is and what it is.
struct Rec {
    off: usize,
    len: usize,
    kind: Kind,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Config,
    /// START/FULL (idstr length at +5).
    SectionFull,
    SectionPartEnd,
    Footer,
    /// A command; `packaged` if PACKAGED.
    Command {
        packaged: bool,
    },
    MemSize,
    Block,
    /// Named page/zero/xbzrle record (name length at +8).
    RamNamed,
    RamOther,
    VfioData,
    Other,
    VmDesc,
}

fn layout(input: &[u8]) -> Vec<Rec> {
    let mut v = Vec::new();
    let mut dec = MainDecoder::for_file(Context::default(), input);
    decode_all(&mut dec, input, |d| {
        let kind = match &d.record {
            Record::Configuration(_) => Kind::Config,
            Record::SectionHeader(h) if h.full.is_some() => Kind::SectionFull,
            Record::SectionHeader(_) => Kind::SectionPartEnd,
            Record::Footer(_) => Kind::Footer,
            Record::Command(c) => Kind::Command { packaged: matches!(c.body, CommandBody::Packaged { .. }) },
            Record::Ram(RamRecord::MemSize { .. }) => Kind::MemSize,
            Record::Ram(RamRecord::Block(_)) => Kind::Block,
            Record::Ram(RamRecord::Page { block: Some(_), .. } | RamRecord::Zero { block: Some(_), .. }) => Kind::RamNamed,
            Record::Ram(_) => Kind::RamOther,
            Record::Vfio(qmig_codec::vfio::VfioRecord::Data { .. }) => Kind::VfioData,
            Record::VmDesc(_) => Kind::VmDesc,
            _ => Kind::Other,
        };
        v.push(Rec { off: d.offset as usize, len: d.len as usize, kind });
    })
    .ok(); // a recording of a killed source ends early: mutate what decodes
    v
}

/// Section spans (START/FULL/PART/END header through its footer).
fn section_spans(recs: &[Rec]) -> Vec<(usize, usize)> {
    let mut v = Vec::new();
    let mut start = None;
    for r in recs {
        match r.kind {
            Kind::SectionFull | Kind::SectionPartEnd => start = Some(r.off),
            Kind::Footer => {
                if let Some(s) = start.take() {
                    v.push((s, r.off + r.len));
                }
            }
            _ => {}
        }
    }
    v
}

fn put(b: &mut [u8], at: usize, val: &[u8]) {
    if at + val.len() <= b.len() {
        b[at..at + val.len()].copy_from_slice(val);
    }
}

/// The deterministic mutants of one main-stream seed.
/// One mutation, applied lazily (a 3 MiB seed has hundreds of mutants).
enum Mutation {
    Truncate(usize),
    Put(usize, Vec<u8>),
    Dup(usize, usize),
    Swap((usize, usize), (usize, usize)),
    Flip(Vec<(usize, u8)>),
}

impl Mutation {
    fn apply(&self, seed: &[u8]) -> Vec<u8> {
        match self {
            Mutation::Truncate(c) => seed[..(*c).min(seed.len())].to_vec(),
            Mutation::Put(at, val) => {
                let mut b = seed.to_vec();
                put(&mut b, *at, val);
                b
            }
            Mutation::Dup(a, b) => {
                let mut d = seed[..*b].to_vec();
                d.extend_from_slice(&seed[*a..*b]);
                d.extend_from_slice(&seed[*b..]);
                d
            }
            Mutation::Swap((a1, b1), (a2, b2)) => {
                let mut d = seed[..*a1].to_vec();
                d.extend_from_slice(&seed[*a2..*b2]);
                d.extend_from_slice(&seed[*b1..*a2]);
                d.extend_from_slice(&seed[*a1..*b1]);
                d.extend_from_slice(&seed[*b2..]);
                d
            }
            Mutation::Flip(f) => {
                let mut b = seed.to_vec();
                for (p, bit) in f {
                    b[*p] ^= 1 << bit;
                }
                b
            }
        }
    }
}

fn main_mutants(seed: &[u8], n: usize, rng: &mut Xorshift) -> Vec<(String, Mutation)> {
    let recs = layout(seed);
    let mut out: Vec<(String, Mutation)> = Vec::new();
    // Truncations at record boundaries (every structural record; page records sampled).
    let mut cuts: Vec<usize> = Vec::new();
    for (i, r) in recs.iter().enumerate() {
        let structural = !matches!(r.kind, Kind::RamNamed | Kind::RamOther | Kind::Other);
        if structural || i % 97 == 0 {
            cuts.push(r.off);
            cuts.push(r.off + 1);
            cuts.push((r.off + r.len).saturating_sub(1));
        }
    }
    cuts.sort();
    cuts.dedup();
    let stride = cuts.len().div_ceil(n.max(1) * 2).max(1);
    for c in cuts.iter().step_by(stride) {
        out.push((format!("truncate@{c}"), Mutation::Truncate(*c)));
    }
    // Length fields: inflated and zeroed.
    for r in &recs {
        let o = r.off;
        let mut m = |what: &str, at: usize, val: &[u8]| out.push((format!("{what}@{at}={}", hexs(val)), Mutation::Put(at, val.to_vec())));
        match r.kind {
            Kind::Config => {
                m("machine-len", o + 1, &u32::MAX.to_be_bytes());
                m("machine-len", o + 1, &0u32.to_be_bytes());
                if let Some(p) = find(&seed[o..o + r.len], b"configuration/capabilities") {
                    let count = o + p + 26 + 4;
                    m("caps_count", count, &u32::MAX.to_be_bytes());
                    m("caps_count", count, &0u32.to_be_bytes());
                    m("caps_name_len", count + 4, &[0xff]);
                    m("caps_name_len", count + 4, &[0]);
                }
                if let Some(p) = find(&seed[o..o + r.len], b"configuration/target-page-bits") {
                    let bits = o + p + 30 + 4;
                    for v in [0u32, 8, 31, 64, u32::MAX] {
                        m("page-bits", bits, &v.to_be_bytes());
                    }
                }
            }
            Kind::SectionFull => {
                m("idstr-len", o + 5, &[0xff]);
                m("idstr-len", o + 5, &[0]);
                m("section-id", o + 1, &u32::MAX.to_be_bytes());
            }
            Kind::SectionPartEnd => m("section-id", o + 1, &0x7777u32.to_be_bytes()),
            Kind::Footer => m("footer-id", o + 1, &u32::MAX.to_be_bytes()),
            Kind::Command { packaged } => {
                m("cmd-len", o + 3, &[0xff, 0xff]);
                m("cmd-len", o + 3, &[0, 0]);
                m("cmd-code", o + 1, &[0, 0]);
                if packaged {
                    m("packaged-len", o + 5, &u32::MAX.to_be_bytes());
                    m("packaged-len", o + 5, &0u32.to_be_bytes());
                    let l = u32::from_be_bytes(seed[o + 5..o + 9].try_into().unwrap());
                    m("packaged-len", o + 5, &(l + 1).to_be_bytes());
                    m("packaged-len", o + 5, &l.saturating_sub(1).to_be_bytes());
                }
            }
            Kind::MemSize => {
                m("mem-size", o, &((1u64 << 60) | 4).to_be_bytes());
                m("mem-size", o, &4u64.to_be_bytes());
                m("mem-size", o, &(!0xfffu64 | 4).to_be_bytes());
            }
            Kind::Block => {
                m("block-idstr-len", o, &[0xff]);
                m("block-idstr-len", o, &[0]);
                let nl = seed[o] as usize;
                m("block-used-length", o + 1 + nl, &u64::MAX.to_be_bytes());
                m("block-used-length", o + 1 + nl, &0u64.to_be_bytes());
                // mapped-ram header fields after used_length (when present).
                if r.len >= 1 + nl + 8 + 28 {
                    let h = o + r.len - 28;
                    m("mapped-ram-version", h, &2u32.to_be_bytes());
                    m("mapped-ram-page-size", h + 4, &0u64.to_be_bytes());
                    m("mapped-ram-page-size", h + 4, &u64::MAX.to_be_bytes());
                    m("mapped-ram-bitmap-offset", h + 12, &u64::MAX.to_be_bytes());
                    m("mapped-ram-pages-offset", h + 20, &u64::MAX.to_be_bytes());
                    m("mapped-ram-pages-offset", h + 20, &0u64.to_be_bytes());
                }
            }
            Kind::RamNamed if rng.below(40) == 0 => {
                m("ram-name-len", o + 8, &[0xff]);
                m("ram-name-len", o + 8, &[0]);
                m("ram-flags", o + 6, &[0xff, 0xff]);
            }
            Kind::VfioData => {
                m("vfio-size", o + 8, &u64::MAX.to_be_bytes());
                m("vfio-size", o + 8, &0u64.to_be_bytes());
            }
            Kind::VmDesc => {
                m("vmdesc-len", o + 1, &u32::MAX.to_be_bytes());
                m("vmdesc-len", o + 1, &0u32.to_be_bytes());
                let l = u32::from_be_bytes(seed[o + 1..o + 5].try_into().unwrap());
                m("vmdesc-len", o + 1, &(l + 1).to_be_bytes());
            }
            _ => {}
        }
    }
    // Duplicated and reordered sections.
    let spans = section_spans(&recs);
    for _ in 0..(n / 4).max(2) {
        if spans.len() < 2 {
            break;
        }
        let i = rng.below(spans.len());
        let (a, b) = spans[i];
        out.push((format!("dup-section@{a}..{b}"), Mutation::Dup(a, b)));
        let j = rng.below(spans.len());
        let (i, j) = (i.min(j), i.max(j));
        if i != j {
            out.push((format!("swap-sections@{}<->{}", spans[i].0, spans[j].0), Mutation::Swap(spans[i], spans[j])));
        }
    }
    // Random bit flips (1..4 bits), biased to the structural records.
    for k in 0..n {
        let flips = 1 + rng.below(4);
        let mut at = Vec::new();
        for _ in 0..flips {
            let p = if k % 2 == 0 && !recs.is_empty() {
                let r = &recs[rng.below(recs.len())];
                r.off + rng.below(r.len.clamp(1, 64))
            } else {
                rng.below(seed.len())
            };
            if p < seed.len() {
                at.push((p, rng.below(8) as u8));
            }
        }
        out.push((format!("bitflip@{at:?}"), Mutation::Flip(at)));
    }
    out
}

fn hexs(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

/// Synthetic hostile streams: PACKAGED bombs, huge counts.
fn synthetic() -> Vec<(String, Vec<u8>, Context)> {
    let mut v = Vec::new();
    let hdr = |b: &mut Vec<u8>| b.extend_from_slice(b"QEVM\0\0\0\x03");
    // PACKAGED inside PACKAGED to depth 1000, consistent lengths, EOF innermost.
    for max_depth in [4usize, 2000] {
        let depth = 1000;
        let mut inner = vec![SectionType::EOF.0];
        for _ in 0..depth {
            let mut c = vec![8, 0, 7, 0, 4];
            c.extend_from_slice(&(inner.len() as u32).to_be_bytes());
            c.extend_from_slice(&inner);
            inner = c;
        }
        let mut b = Vec::new();
        hdr(&mut b);
        b.extend_from_slice(&inner);
        b.push(SectionType::EOF.0);
        v.push((format!("packaged-bomb-depth{depth}-max{max_depth}"), b.clone(), Context { max_depth, ..Context::default() }));
        // Every level claiming the maximum length.
        let mut b = Vec::new();
        hdr(&mut b);
        for _ in 0..depth {
            b.extend_from_slice(&[8, 0, 7, 0, 4, 0xff, 0xff, 0xff, 0xff]);
        }
        v.push((format!("packaged-bomb-maxlen-max{max_depth}"), b, Context { max_depth, ..Context::default() }));
    }
    // caps_count = 0xffffffff with few names.
    let mut b = Vec::new();
    hdr(&mut b);
    b.extend_from_slice(&[7, 0, 0, 0, 1, b'x', 5, 26]);
    b.extend_from_slice(b"configuration/capabilities");
    b.extend_from_slice(&1u32.to_be_bytes());
    b.extend_from_slice(&u32::MAX.to_be_bytes());
    b.extend(std::iter::repeat_n(0u8, 100_000));
    v.push(("caps-count-0xffffffff".into(), b, Context::default()));
    // MEM_SIZE total 2^60 and 50k block entries.
    for caps in [&[][..], &["mapped-ram"][..], &["x-ignore-shared"][..]] {
        let mut b = Vec::new();
        hdr(&mut b);
        b.extend_from_slice(&[1, 0, 0, 0, 2, 3, b'r', b'a', b'm', 0, 0, 0, 0, 0, 0, 0, 4]);
        b.extend_from_slice(&((1u64 << 60) | 4).to_be_bytes());
        for i in 0..50_000u32 {
            b.push(4);
            b.extend_from_slice(&i.to_be_bytes());
            b.extend_from_slice(&(if i % 2 == 0 { 0u64 } else { 1u64 << 40 }).to_be_bytes());
            if caps.contains(&"x-ignore-shared") {
                b.extend_from_slice(&0u64.to_be_bytes());
            }
            if caps.contains(&"mapped-ram") {
                b.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x10, 0]);
                b.extend_from_slice(&0u64.to_be_bytes());
                b.extend_from_slice(&0u64.to_be_bytes());
            }
        }
        let mut ctx = Context::default();
        for c in caps {
            ctx.set_cap(c);
        }
        v.push((format!("mem-size-2^60-50k-blocks{caps:?}"), b, ctx));
    }
    // Header, then a START (1) or FULL (4) section header: id, idstr, instance 0, version 1.
    let with_section = |ty: u8, id: u8, idstr: &[u8]| {
        let mut b = Vec::new();
        hdr(&mut b);
        b.extend_from_slice(&[ty, 0, 0, 0, id, idstr.len() as u8]);
        b.extend_from_slice(idstr);
        b.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1]);
        b
    };
    // VFIO section with an inflated DEV_DATA_STATE size and a config state without end.
    let mut b = with_section(4, 9, b"0000:00:02.0/vfio");
    b.extend_from_slice(&0xffff_ffff_ef10_0004u64.to_be_bytes());
    b.extend_from_slice(&(1u64 << 62).to_be_bytes());
    b.extend_from_slice(&[0; 64]);
    v.push(("vfio-data-size-2^62".into(), b.clone(), Context::default()));
    let cut = b.len() - 64 - 16;
    b.truncate(cut);
    b.extend_from_slice(&0xffff_ffff_ef10_0002u64.to_be_bytes());
    for _ in 0..5000 {
        b.extend_from_slice(&0xffff_ffff_ef10_0001u64.to_be_bytes());
        b.extend_from_slice(&[0x7e, 0, 0, 0, 9]);
    }
    v.push(("vfio-config-many-false-ends".into(), b, Context::default()));
    // virtio-iterative RFC: INIT_STATE whose END_DATA is followed by many false footers.
    let mut b = with_section(1, 9, b"0000:00:03.0/virtio-net-iterative");
    b.extend_from_slice(&0xffff_ffff_ef20_0000u64.to_be_bytes());
    for _ in 0..5000 {
        b.extend_from_slice(&0xffff_ffff_ef20_0001u64.to_be_bytes());
        b.extend_from_slice(&[0x7e, 0, 0, 0, 9]);
    }
    let ctx = Context { dialect: qmig_codec::Dialect::VirtioIterative, ..Context::default() };
    v.push(("virtio-iter-many-false-ends".into(), b, ctx));
    // A 1 MiB FULL body without vmdesc: its end is found by scanning for the footer, and fed
    // in 82-byte chunks (the chunked body) that scan resumes instead of restarting (restarts
    // were quadratic: about 1 s for this input, 14.5 s for a 64 MiB body through a pipe).
    let mut b = with_section(4, 0, b"bigdev");
    b.resize(b.len() + (1 << 20), 0x11);
    b.extend_from_slice(&[0x7e, 0, 0, 0, 0, 0]);
    v.push(("device-body-1mib-no-vmdesc".into(), b, Context::default()));
    v
}

#[derive(Default)]
struct Stats {
    count: usize,
    rejected: usize,
    worst_time: (Duration, String),
    worst_peak: (u64, String),
    worst_ratio: (f64, String),
}

impl Stats {
    fn merge(&mut self, o: Stats) {
        self.count += o.count;
        self.rejected += o.rejected;
        if o.worst_time.0 > self.worst_time.0 {
            self.worst_time = o.worst_time;
        }
        if o.worst_peak.0 > self.worst_peak.0 {
            self.worst_peak = o.worst_peak;
        }
        if o.worst_ratio.0 > self.worst_ratio.0 {
            self.worst_ratio = o.worst_ratio;
        }
    }

    fn add(&mut self, name: &str, len: usize, el: Duration, peak: u64) {
        self.count += 1;
        if el > self.worst_time.0 {
            self.worst_time = (el, name.to_string());
        }
        if peak > self.worst_peak.0 {
            self.worst_peak = (peak, name.to_string());
        }
        let ratio = peak as f64 / len.max(1) as f64;
        if len >= 4096 && ratio > self.worst_ratio.0 {
            self.worst_ratio = (ratio, name.to_string());
        }
    }
}

const TIME_BOUND: Duration = Duration::from_secs(2);

/// Per-input time bound: 2 s, plus 2 s per MiB (the full bodies decode twice, in debug).
fn time_bound(len: usize) -> Duration {
    TIME_BOUND + Duration::from_millis((len as u64 * 2000) >> 20)
}

fn mem_bound(len: usize) -> u64 {
    4 * len as u64 + (16 << 20)
}

/// Decode one main-stream mutant; check the error (if any) against the records decoded
/// before it. Returns whether it was rejected.
fn check_main_mutant(input: &[u8], ctx: Context) -> bool {
    let mut dec = MainDecoder::for_file(ctx, input);
    let mut pos = 0u64;
    let mut open: Option<u32> = None;
    let mut out = Vec::new();
    let r = decode_all(&mut dec, input, |d| {
        pos = d.offset + d.len;
        match &d.record {
            Record::SectionHeader(h) => open = Some(h.section_id),
            Record::Footer(_) | Record::PackageEnd => open = None,
            _ => {}
        }
        d.record.encode(&mut out);
    });
    match r {
        Ok(end) => {
            assert_eq!(end, input.len() as u64);
            assert!(out == input, "decoded fully but does not round-trip");
            false
        }
        Err(e) => {
            check_rejection(&e, input.len(), pos, open);
            true
        }
    }
}

fn check_rejection(e: &DecodeError, len: usize, pos: u64, open: Option<u32>) {
    assert!(e.offset <= len as u64, "offset {} beyond input length {len}: {e}", e.offset);
    assert!(e.offset >= pos, "offset {} before the end of the last good record {pos}: {e}", e.offset);
    assert_eq!(e.channel, Channel::Main, "{e}");
    if let Some(id) = open {
        let s = e.section.as_ref().unwrap_or_else(|| panic!("no section named while section {id} was open: {e}"));
        assert_eq!(s.id, id, "{e}");
    }
}

fn campaign_one(stats: &mut Stats, what: &str, input: &[u8], f: impl FnOnce(&[u8])) {
    let (r, el, peak) = measured(|| f(input));
    if let Err(msg) = r {
        panic!("{what} ({} bytes): panicked: {msg}", input.len());
    }
    assert!(el <= time_bound(input.len()), "{what} ({} bytes): took {el:?}", input.len());
    assert!(peak <= mem_bound(input.len()), "{what} ({} bytes): peak allocation {peak}", input.len());
    stats.add(what, input.len(), el, peak);
}

fn campaign_main(stats: &mut Stats, name: &str, seed: &[u8], n: usize, rng: &mut Xorshift) {
    for (i, (m, mutation)) in main_mutants(seed, n, rng).into_iter().enumerate() {
        let input = mutation.apply(seed);
        let what = format!("{name} {m}");
        let mut rejected = false;
        campaign_one(stats, &what, &input, |b| rejected = check_main_mutant(b, Context::default()));
        stats.rejected += rejected as usize;
        // Every few mutants also through the full bodies (chunked agreement, mapped-ram lookups).
        if i % 32 == 0 {
            campaign_one(stats, &format!("{what} [main_stream]"), &input, bodies::main_stream);
            campaign_one(stats, &format!("{what} [mapped_ram]"), &input, bodies::mapped_ram);
        }
    }
}

#[test]
fn mutation_campaign() {
    let n: usize = std::env::var("QMIG_MUTATIONS").ok().and_then(|s| s.parse().ok()).unwrap_or(24);
    let seeds = seeds();
    let t0 = Instant::now();
    // The main-stream seeds on two threads (allocation accounting is per thread).
    let halves: Vec<Stats> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..2)
            .map(|h| {
                let main = &seeds.main;
                sc.spawn(move || {
                    let mut stats = Stats::default();
                    let mut rng = Xorshift(0x2545_f491_4f6c_dd1d + h as u64);
                    for (name, seed) in main.iter().skip(h).step_by(2) {
                        campaign_main(&mut stats, name, seed, n, &mut rng);
                    }
                    stats
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
    });
    let mut stats = Stats::default();
    for h in halves {
        stats.merge(h);
    }
    let mut rng = Xorshift(0x2545_f491_4f6c_dd1d);
    for (name, input, ctx) in synthetic() {
        let mut rejected = false;
        campaign_one(&mut stats, &name, &input, |b| rejected = check_main_mutant(b, ctx.clone()));
        stats.rejected += rejected as usize;
        campaign_one(&mut stats, &format!("{name} [main_stream]"), &input, bodies::main_stream);
        campaign_one(&mut stats, &format!("{name} [mapped_ram]"), &input, bodies::mapped_ram);
    }
    for (list, body, len_at) in
        [(&seeds.rp, bodies::return_path as fn(&[u8]), 2usize), (&seeds.multifd, bodies::multifd as fn(&[u8]), 12usize)]
    {
        for (name, seed) in list {
            for k in 0..n {
                let mut b = seed.clone();
                match k % 4 {
                    0 => b.truncate(rng.below(seed.len() + 1)),
                    1 => {
                        let p = rng.below(b.len());
                        b[p] ^= 1 << rng.below(8);
                    }
                    2 => {
                        // Length-ish fields of a random message: inflate.
                        let p = (rng.below(b.len() / 4 + 1) * 4 + len_at).min(b.len());
                        put(&mut b, p, &[0xff, 0xff, 0xff, 0xff]);
                    }
                    _ => {
                        let p = rng.below(b.len());
                        put(&mut b, p, &[0, 0, 0, 0]);
                    }
                }
                campaign_one(&mut stats, &format!("{name} mutant {k}"), &b, body);
            }
        }
    }
    eprintln!(
        "mutation campaign ({n} mutations per seed, {:?} in all): {} inputs ({} main-stream rejections), worst time {:?} ({}), worst peak allocation {} bytes ({}), worst peak/len {:.2} ({})",
        t0.elapsed(),
        stats.count,
        stats.rejected,
        stats.worst_time.0,
        stats.worst_time.1,
        stats.worst_peak.0,
        stats.worst_peak.1,
        stats.worst_ratio.0,
        stats.worst_ratio.1
    );
    assert!(stats.count > 500, "campaign too small: {}", stats.count);
}
