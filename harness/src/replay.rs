//! `qmig replay` / `qmig check`: load a case (or a bare stream), decode every channel,
//! merge the events, drive the models, conclude the outcome, compare with the recording.

use std::path::{Path, PathBuf};

use qmig_codec::multifd::MULTIFD_MAGIC;
use qmig_codec::{Channel, MainDecoder};
use serde_json::Value;

use crate::events::{self, ChannelBytes, Event};
use crate::model::Checker;
use crate::outcome::{conclude, Status, Transport};
use crate::profile::SideProfile;
use crate::report::{Recorded, Report};

/// A loaded input: its channels and, for a case, its metadata.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// Name for reports.
    pub name: String,
    /// case.json, if any.
    pub meta: Option<Value>,
    /// File or socket.
    pub transport: Transport,
    /// Channels; the first is the main channel.
    pub channels: Vec<ChannelBytes>,
}

/// Errors of loading an input.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// I/O.
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    /// Bad case.json or trace.
    #[error("{0}: {1}")]
    Format(PathBuf, String),
}

fn io(p: &Path) -> impl FnOnce(std::io::Error) -> LoadError + '_ {
    move |e| LoadError::Io(p.to_path_buf(), e)
}

/// Load a stream file, `-` (stdin) or a case directory.
pub fn load(path: &Path) -> Result<Loaded, LoadError> {
    if path.as_os_str() == "-" {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut b).map_err(io(path))?;
        return Ok(Loaded { name: "<stdin>".into(), meta: None, transport: Transport::File, channels: vec![main_file(b)] });
    }
    if path.is_dir() {
        return load_case(path);
    }
    let b = std::fs::read(path).map_err(io(path))?;
    Ok(Loaded { name: path.display().to_string(), meta: None, transport: Transport::File, channels: vec![main_file(b)] })
}

fn main_file(bytes: Vec<u8>) -> ChannelBytes {
    ChannelBytes { channel: Some(Channel::Main), bytes, chunks: Vec::new(), closed: true, conn: None }
}

/// One QMIGTRC1 file split into its two directions.
pub fn read_trace(bytes: &[u8]) -> Result<(ChannelBytes, ChannelBytes), String> {
    read_trace_header(bytes).map(|(a, b, _)| (a, b))
}

/// One QMIGTRC1 file: its two directions and its header JSON.
pub fn read_trace_header(bytes: &[u8]) -> Result<(ChannelBytes, ChannelBytes, Value), String> {
    let t = crate::case::parse_trace(bytes).map_err(|e| e.to_string())?;
    let mut d = [ChannelBytes::default(), ChannelBytes::default()];
    for r in &t.records {
        let side = &mut d[r.dir.index()];
        match r.kind {
            crate::case::RecordKind::Data => {
                side.chunks.push((side.bytes.len() as u64, r.t_ns));
                side.bytes.extend_from_slice(r.payload);
            }
            _ => side.closed = true,
        }
    }
    let [a, b] = d;
    Ok((a, b, Value::Object(t.header.clone())))
}

/// Rebuild a derived stream (corruption experiments): the base case's stream with the
/// recorded byte edits applied in order (`set`, `truncate`, `delete`, `insert`).
pub fn derive(dir: &Path, d: &Value) -> Result<Vec<u8>, String> {
    let from = d.get("from").and_then(Value::as_str).ok_or("derive without \"from\"")?;
    if from.contains('/') || from.contains("..") {
        return Err(format!("derive.from '{from}' must name a sibling case"));
    }
    let base = dir.parent().unwrap_or(dir).join(from).join("stream.bin");
    let mut b = std::fs::read(&base).map_err(|e| format!("{}: {e}", base.display()))?;
    let num = |o: &Value, k: &str| o.get(k).and_then(Value::as_u64).map(|v| v as usize).ok_or(format!("edit without {k}"));
    for o in d.get("edits").and_then(Value::as_array).ok_or("derive without edits")? {
        let bytes = || hex::decode(o.get("hex").and_then(Value::as_str).unwrap_or("")).map_err(|e| e.to_string());
        match o.get("op").and_then(Value::as_str) {
            Some("set") => {
                let (off, v) = (num(o, "offset")?, bytes()?);
                let end = off.checked_add(v.len()).filter(|e| *e <= b.len()).ok_or("set past the end")?;
                b[off..end].copy_from_slice(&v);
            }
            Some("truncate") => b.truncate(num(o, "len")?),
            Some("delete") => {
                let (off, len) = (num(o, "offset")?, num(o, "len")?);
                let end = off.checked_add(len).filter(|e| *e <= b.len()).ok_or("delete past the end")?;
                b.drain(off..end);
            }
            Some("insert") => {
                let off = num(o, "offset")?.min(b.len());
                let v = bytes()?;
                b.splice(off..off, v);
            }
            other => return Err(format!("unknown edit {other:?}")),
        }
    }
    Ok(b)
}

fn load_case(dir: &Path) -> Result<Loaded, LoadError> {
    let cj = dir.join("case.json");
    let meta: Value =
        serde_json::from_slice(&std::fs::read(&cj).map_err(io(&cj))?).map_err(|e| LoadError::Format(cj.clone(), e.to_string()))?;
    let name = meta.get("name").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| dir.display().to_string());
    let kind = meta.get("kind").and_then(Value::as_str).unwrap_or("file");
    if kind == "file" {
        let s = dir.join(meta.get("stream").and_then(Value::as_str).unwrap_or("stream.bin"));
        let b = match meta.get("derive") {
            Some(d) if !s.exists() => derive(dir, d).map_err(|e| LoadError::Format(cj.clone(), e))?,
            _ => std::fs::read(&s).map_err(io(&s))?,
        };
        return Ok(Loaded { name, meta: Some(meta), transport: Transport::File, channels: vec![main_file(b)] });
    }
    let mut files: Vec<PathBuf> = match meta.get("connections").and_then(Value::as_array) {
        Some(c) => c.iter().filter_map(|c| c.get("file").and_then(Value::as_str)).map(|f| dir.join(f)).collect(),
        None => Vec::new(),
    };
    if files.is_empty() {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io(dir))?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "qmtrace"))
            .collect();
        v.sort_by_key(|p| {
            p.file_stem().and_then(|s| s.to_str()).and_then(|s| s.trim_start_matches("conn").parse::<u32>().ok()).unwrap_or(u32::MAX)
        });
        files = v;
    }
    let mut channels = Vec::new();
    let mut multifd = 0;
    let mut main_seen = false;
    // Accept order: by the recorded accept time when the headers carry it, else file order.
    let mut traces = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let b = std::fs::read(f).map_err(io(f))?;
        let (fwd, back, header) = read_trace_header(&b).map_err(|e| LoadError::Format(f.clone(), e))?;
        let t = header.get("t_accept_ns").and_then(Value::as_u64).unwrap_or(i as u64);
        traces.push((t, i, fwd, back));
    }
    let mut order: Vec<(u64, usize)> = traces.iter().map(|(t, i, _, _)| (*t, *i)).collect();
    order.sort();
    for (t, i, mut fwd, mut back) in traces {
        let rank = order.iter().position(|o| *o == (t, i)).unwrap_or(i) as u32;
        fwd.conn = Some(rank);
        back.conn = Some(rank);
        let magic = fwd.bytes.get(..4).map(|m| u32::from_be_bytes([m[0], m[1], m[2], m[3]]));
        if magic == Some(MULTIFD_MAGIC) {
            fwd.channel = Some(Channel::Multifd(multifd));
            multifd += 1;
            channels.push(fwd);
        } else if !main_seen {
            main_seen = true;
            fwd.channel = Some(Channel::Main);
            back.channel = Some(Channel::ReturnPath);
            // The main channel leads, whatever its accept order.
            channels.insert(0, back);
            channels.insert(0, fwd);
        } else {
            fwd.channel = Some(Channel::Preempt);
            channels.push(fwd);
        }
    }
    if channels.is_empty() {
        return Err(LoadError::Format(dir.to_path_buf(), "socket case without connection traces".into()));
    }
    Ok(Loaded { name, meta: Some(meta), transport: Transport::Socket, channels })
}

/// A side's settings from case.json (inputs only: never the outcome fields).
pub fn side_from_meta(v: Option<&Value>) -> Option<SideProfile> {
    let v = v?;
    let qemu = v.get("qemu").and_then(Value::as_str).unwrap_or("10.0");
    let (version, dialect, label) = SideProfile::from_case_qemu(qemu);
    Some(SideProfile {
        version,
        dialect,
        label,
        machine: v.get("machine").and_then(Value::as_str).map(str::to_string),
        caps: v
            .get("caps")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default(),
        params: {
            let mut p = v.get("params").and_then(Value::as_object).cloned().unwrap_or_default();
            // `-global migration.<property>=<value>` settings act like parameters for the models.
            for (k, val) in v.get("globals").and_then(Value::as_object).into_iter().flatten() {
                if let Some(prop) = k.strip_prefix("migration.") {
                    p.insert(prop.to_string(), val.clone());
                }
            }
            p
        },
        uuid: v.get("uuid").and_then(Value::as_str).map(str::to_string),
        vm_running: v.get("vm_state").and_then(Value::as_str).is_none_or(|s| s == "running"),
    })
}

/// Decode every channel and merge the events by recorded time.
pub fn decode_channels(l: &Loaded, src: &SideProfile) -> (Vec<Event>, Option<MainDecoder>) {
    let mut evs = Vec::new();
    let mut main_dec = None;
    let ctx = src.codec_context();
    for ch in &l.channels {
        match ch.channel.clone().unwrap_or(Channel::Main) {
            Channel::Main => main_dec = Some(events::decode_main(ch, ctx.clone(), &mut evs)),
            Channel::ReturnPath => events::decode_rp(ch, &mut evs),
            Channel::Multifd(i) => events::decode_multifd(ch, main_dec.as_ref().map(|d| d.ctx.clone()).unwrap_or(ctx.clone()), i, &mut evs),
            Channel::Preempt => {
                let (c, ram) = main_dec.as_ref().map(|d| (d.ctx.clone(), d.ram.clone())).unwrap_or((ctx.clone(), Default::default()));
                events::decode_preempt(ch, c, ram, &mut evs)
            }
            Channel::Other(_) => {}
        }
    }
    (events::merge(evs), main_dec)
}

fn status_of(side: Option<&Value>) -> Option<Status> {
    let side = side?;
    let st = side.get("final_status").and_then(Value::as_str);
    let killed = side.get("killed_by_harness").and_then(Value::as_bool).unwrap_or(false);
    let exit = side.get("exit_status").and_then(Value::as_i64);
    Some(match st {
        Some("completed") => Status::Completed,
        Some("failed") | Some("cancelled") => Status::Failed,
        Some("not-run") => Status::NotRun,
        Some(s) if (s.contains("active") || s == "device" || s == "setup") && killed => Status::Waiting,
        // A peer whose QMP stopped answering and that the harness had to kill was hung.
        None if killed => Status::Waiting,
        Some("postcopy-active") => Status::Completed,
        _ if exit.is_some_and(|e| e != 0) => Status::Failed,
        _ => return None,
    })
}

/// Replay a loaded input against explicit settings.
pub fn run(l: &Loaded, src: SideProfile, dst: Option<SideProfile>) -> Report {
    let dst_loaded = dst.is_some();
    let dst = dst.unwrap_or_else(|| src.clone());
    let (evs, main_dec) = decode_channels(l, &src);
    let mut c = Checker::new(src, dst);
    c.set_vmdesc(main_dec.as_ref().and_then(|d| d.vmdesc()));
    for ch in &l.channels {
        if let Some(name) = &ch.channel {
            c = c.with_bytes(name, &ch.bytes);
        }
    }
    if !c.dst.has("multifd") {
        if let Some(ch) = l.channels.iter().find(|ch| matches!(ch.channel, Some(Channel::Multifd(_))) && ch.conn == Some(0)) {
            let ev = Event {
                channel: ch.channel.clone().unwrap_or(Channel::Main),
                offset: 0,
                len: 0,
                t_ns: ch.time_at(0),
                depth: 0,
                section: None,
                kind: events::EventKind::ChannelEnd { bytes: 0 },
            };
            c.report(
                crate::rules::CAPS_MULTIFD_ONE_SIDED,
                &ev,
                true,
                "Not a migration stream: the destination (multifd off) took a multifd channel for its main channel".into(),
            );
        }
    }
    for e in &evs {
        c.event(e);
    }
    c.finish();
    let outcome = conclude(&c, l.transport, dst_loaded);
    // A cause concluded from the whole exchange (a source left waiting) is a finding too,
    // where the main stream stops.
    if let Some(cause) = outcome.cause.filter(|r| !c.findings.iter().any(|f| f.rule == *r)) {
        let end = evs.iter().filter(|e| e.channel == Channel::Main).map(|e| e.offset + e.len).max().unwrap_or(0);
        let ev = Event { channel: Channel::Main, offset: end, len: 0, t_ns: None, depth: 0, section: None, kind: events::EventKind::Eof };
        let what = crate::rules::rule(cause).map(|r| r.requirement).unwrap_or_default();
        c.report(cause, &ev, false, format!("the main stream stops here ({:?} / {:?}): {what}", outcome.src, outcome.dst));
    }
    // A stream cut after the destination had failed, or while the source waited, is a
    // consequence of that outcome, not a violation of its own.
    if let Some(cause) = outcome.cause.filter(|c| *c != crate::rules::TRUNCATED) {
        for f in c.findings.iter_mut().filter(|f| f.rule == crate::rules::TRUNCATED) {
            f.severity = crate::rules::Severity::Info;
            f.message = format!("(consequence of {cause}) {}", f.message);
        }
    }
    let has_rp = l.channels.iter().any(|c| c.channel == Some(Channel::ReturnPath) && !c.bytes.is_empty());
    let mut r = Report::new(l.name.clone(), c.findings.clone(), outcome, has_rp);
    compare_with_recording(&mut r, l.meta.as_ref());
    r
}

/// Read the recording's outcome fields (only now, after the outcome is concluded).
pub fn compare_with_recording(r: &mut Report, meta: Option<&Value>) {
    let Some(meta) = meta else { return };
    let (s, d) = (status_of(meta.get("src")), status_of(meta.get("dst")));
    if s.is_none() && d.is_none() {
        return;
    }
    let dst_stderr: Vec<String> = meta
        .get("dst")
        .and_then(|d| d.get("stderr"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default();
    let mut mism = Vec::new();
    let check = |what: &str, pred: Status, rec: Option<Status>, mism: &mut Vec<String>| {
        if let Some(rec) = rec {
            if pred != Status::Unknown && pred != rec {
                mism.push(format!("{what}: predicted {pred:?}, recorded {rec:?}"));
            }
        }
    };
    check("source", r.outcome.src, s, &mut mism);
    // The harness stops a waiting source; the destination then fails on the cut stream.
    let d = match (r.outcome.cause, r.outcome.dst, d) {
        (Some(crate::rules::SRC_ACK_WAITING), Status::Waiting, Some(Status::Failed)) => Some(Status::Waiting),
        (_, _, d) => d,
    };
    check("destination", r.outcome.dst, d, &mut mism);
    if r.outcome.dst == Status::Failed && d == Some(Status::Failed) {
        if let Some(msg) = r.outcome.cause.and_then(crate::rules::rule).and_then(|ru| ru.qemu_message) {
            if !dst_stderr.is_empty() && !dst_stderr.iter().any(|l| msg.split('|').any(|m| l.contains(m))) {
                mism.push(format!("cause {}: expected the destination to print '{msg}'", r.outcome.cause.unwrap_or_default()));
            }
        }
    }
    r.recorded = Some(Recorded { src: s.unwrap_or(Status::Unknown), dst: d.unwrap_or(Status::Unknown), dst_stderr });
    r.matches_recording = Some(mism.is_empty());
    r.mismatch = mism;
}

/// Replay a case directory with the settings its case.json gives.
pub fn replay_case(l: &Loaded) -> Report {
    let (src, dst) = sides(l.meta.as_ref());
    run(l, src, dst)
}

/// Both sides' settings from case.json (the destination is `None` when nobody loaded it).
pub fn sides(meta: Option<&Value>) -> (SideProfile, Option<SideProfile>) {
    let mut src = side_from_meta(meta.and_then(|m| m.get("src"))).unwrap_or_default();
    if let Some(st) = meta.and_then(|m| m.pointer("/capture/vm_state_at_migrate")).and_then(Value::as_str) {
        src.vm_running = st == "running";
    }
    (src, side_from_meta(meta.and_then(|m| m.get("dst"))))
}

/// Does the stream's configuration section announce mapped-ram (or the fixed-ram RFC)?
fn mapped_ram_file(f: &std::fs::File) -> bool {
    let mut head = vec![0u8; 4096];
    let n = std::os::unix::fs::FileExt::read_at(f, &mut head, 0).unwrap_or(0);
    let mut dec = MainDecoder::new(qmig_codec::Context::default());
    let mut pos = 0u64;
    for _ in 0..2 {
        match qmig_codec::ChannelDecoder::decode(&mut dec, &head[pos as usize..n], pos, false) {
            Ok(Some(d)) => {
                if let qmig_codec::Record::Configuration(c) = &d.record {
                    return c.capabilities().any(|x| x == b"mapped-ram" || x == b"fixed-ram");
                }
                pos += d.len;
            }
            _ => return false,
        }
    }
    false
}

/// Map a file read-only, populated at map time unless it is a (sparse) mapped-ram file.
pub fn map_file(path: &Path) -> Result<memmap2::Mmap, LoadError> {
    map_file_lazy(path, true).map(|(m, _)| m)
}

/// Map a file read-only (with [`crate::prefault`], the only `unsafe` in qmig). Returns the
/// map and whether the file is dense (every page of it will be read): a mapped-ram file
/// is sparse, and populating or prefaulting it would read its holes. `populate` asks for
/// `MAP_POPULATE` on a dense file.
#[allow(unsafe_code)]
pub fn map_file_lazy(path: &Path, populate: bool) -> Result<(memmap2::Mmap, bool), LoadError> {
    let f = std::fs::File::open(path).map_err(io(path))?;
    let dense = !mapped_ram_file(&f);
    let mut opts = memmap2::MmapOptions::new();
    if dense && populate {
        opts.populate();
    }
    // SAFETY: the map is read-only and private to this process; qmig never writes the
    // file. If another process truncates it meanwhile, reads fault (SIGBUS) — the same
    // exposure as every mmap-based reader; inputs are migration files at rest.
    let m = unsafe { opts.map(&f) }.map_err(io(path))?;
    let _ = m.advise(memmap2::Advice::Sequential);
    Ok((m, dense))
}

/// `qmig check` on a bare main stream without holding it in memory: a file is mapped
/// (page bodies are never read), standard input is decoded chunk by chunk.
pub fn check_streaming(path: &Path, src: SideProfile, dst: SideProfile, progress: bool) -> Result<Report, LoadError> {
    let mut c = Checker::new(src.clone(), dst);
    let ctx = src.codec_context();
    let name;
    let feed = |d: &qmig_codec::Decoded<qmig_codec::Record<'_>>, c: &mut Checker<'_>| {
        let ev = Event {
            channel: Channel::Main,
            offset: d.offset,
            len: d.len,
            t_ns: None,
            depth: d.depth,
            section: d.section,
            kind: events::main_event(&d.record),
        };
        c.event(&ev);
    };
    let err_event = |e: qmig_codec::DecodeError| Event {
        channel: Channel::Main,
        offset: e.offset,
        len: 0,
        t_ns: None,
        depth: 0,
        section: None,
        kind: events::EventKind::Error(e),
    };
    let end_event = |n: u64| Event {
        channel: Channel::Main,
        offset: n,
        len: 0,
        t_ns: None,
        depth: 0,
        section: None,
        kind: events::EventKind::ChannelEnd { bytes: n },
    };
    if path.as_os_str() == "-" {
        name = "<stdin>".to_string();
        let mut ch = qmig_codec::Chunked::new(MainDecoder::new(ctx));
        let mut stdin = std::io::stdin().lock();
        let mut total = 0u64;
        'outer: loop {
            let n = ch.read_from(&mut stdin, 1 << 17).map_err(io(path))?;
            total += n as u64;
            loop {
                match ch.next_record() {
                    Ok(Some(d)) => feed(&d, &mut c),
                    Ok(None) => break,
                    Err(e) => {
                        c.event(&err_event(e));
                        break 'outer;
                    }
                }
            }
            if n == 0 {
                c.event(&end_event(total));
                break;
            }
        }
    } else {
        name = path.display().to_string();
        // A large dense file is faulted in by a helper thread ahead of the decoder
        // (`prefault`); a small one, or any on a single CPU, is populated at map time.
        let len = std::fs::metadata(path).map_err(io(path))?.len();
        let (map, dense) = map_file_lazy(path, !crate::prefault::helps(len))?;
        let bytes: &[u8] = &map;
        let mut dec = MainDecoder::for_file(ctx, bytes);
        c.set_vmdesc(dec.vmdesc());
        let step = (bytes.len() as u64 / 100).max(64 << 20);
        crate::prefault::read_with(&map, dense, |cur| {
            let mut pos = 0u64;
            let mut next = step;
            loop {
                if progress && pos >= next {
                    eprint!("\r{:>3}%", pos * 100 / bytes.len().max(1) as u64);
                    next += step;
                }
                cur.at(pos);
                let rest = bytes.get(pos as usize..).unwrap_or_default();
                match qmig_codec::ChannelDecoder::decode(&mut dec, rest, pos, true) {
                    Ok(Some(d)) => {
                        pos += d.len;
                        feed(&d, &mut c);
                    }
                    Ok(None) => {
                        c.event(&end_event(pos));
                        break;
                    }
                    Err(e) => {
                        c.event(&err_event(e));
                        break;
                    }
                }
            }
        });
        if progress {
            eprintln!("\r100%");
        }
    }
    let outcome = conclude(&c, Transport::File, true);
    Ok(Report::new(name, c.findings.clone(), outcome, false))
}
