//! `qmig inspect`: a readable tree of every record with offsets, a stable JSON dump,
//! and analyze-migration.py's user model (`--dump desc|state`, `--memory`, `--extract`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use qmig_codec::codes::{RpMessageType, SectionType, VfioTag};
use qmig_codec::ram::RamRecord;
use qmig_codec::stream::{Boundary, Decoded};
use qmig_codec::{lossy, ChannelDecoder, Context, DecodeError, MainDecoder, Record};
use serde_json::{json, Value};

use crate::events::{Event, EventKind, PageKind};

/// Schema name of the JSON dump.
pub const DUMP_SCHEMA: &str = "qmig-inspect/1";

/// A run of page records in one section and block, collapsed for display.
#[derive(Debug, Default, Clone)]
struct PageRun {
    offset: u64,
    end: u64,
    block: Option<u32>,
    normal: u64,
    zero: u64,
    other: u64,
    first: u64,
    last: u64,
    digest: u64,
}

/// The decoded main stream of one input, kept as JSON-ready records.
pub struct MainDump {
    /// Records (page runs collapsed).
    pub records: Vec<Value>,
    /// Human lines.
    pub lines: Vec<String>,
    /// The error that stopped decoding.
    pub error: Option<DecodeError>,
    /// Bytes accounted for.
    pub consumed: u64,
    /// Total bytes.
    pub total: u64,
    /// Per-block page counts: name → (normal, zero).
    pub blocks: BTreeMap<String, (u64, u64, u64)>,
}

/// Walk a main stream record by record from its start: `f` gets the decoder (for its block
/// list) and each record and says whether to go on. Returns the bytes walked and the decode
/// error that ended the walk, if one did; an error of `f` ends it at once.
fn walk<'a, E>(
    dec: &mut MainDecoder,
    bytes: &'a [u8],
    mut f: impl FnMut(&MainDecoder, &Decoded<Record<'a>>) -> Result<bool, E>,
) -> Result<(u64, Option<DecodeError>), E> {
    let mut pos = 0u64;
    loop {
        let rest = bytes.get(pos as usize..).unwrap_or_default();
        match dec.decode(rest, pos, true) {
            Ok(Some(d)) => {
                pos += d.len;
                if !f(dec, &d)? {
                    return Ok((pos, None));
                }
            }
            Ok(None) => return Ok((pos, None)),
            Err(e) => return Ok((pos, Some(e))),
        }
    }
}

fn hexdump(bytes: &[u8], at: u64) -> String {
    let start = at.saturating_sub(32) & !15;
    let end = (at + 48).min(bytes.len() as u64);
    let mut s = String::new();
    let mut o = start;
    while o < end {
        let row = &bytes[o as usize..(o as usize + 16).min(end as usize)];
        let hexs: Vec<String> = row.iter().map(|b| format!("{b:02x}")).collect();
        let asc: String = row.iter().map(|&b| if (0x20..0x7f).contains(&b) { b as char } else { '.' }).collect();
        let mark = if (o..o + 16).contains(&at) { ">" } else { " " };
        let _ = writeln!(s, "  {mark}{o:08x}  {:<48} |{asc}|", hexs.join(" "));
        o += 16;
    }
    s
}

/// Decode a main stream and build the dump. `pages`: list every page record instead of runs.
pub fn dump_main(bytes: &[u8], ctx: Context, pages: bool, mut on_progress: impl FnMut(u64)) -> MainDump {
    let mut dec = MainDecoder::for_file(ctx, bytes);
    let mut out =
        MainDump { records: Vec::new(), lines: Vec::new(), error: None, consumed: 0, total: bytes.len() as u64, blocks: BTreeMap::new() };
    let mut run: Option<PageRun> = None;
    let mut block_names: Vec<String> = Vec::new();
    let mut next_progress = 0u64;
    on_progress(0);
    let walked = walk(&mut dec, bytes, |dec, d| -> Result<bool, std::convert::Infallible> {
        let pos = d.offset + d.len;
        if pos >= next_progress {
            on_progress(pos);
            next_progress = pos + (64 << 20);
        }
        out.consumed = pos;
        if let Record::Ram(RamRecord::Block(b)) = &d.record {
            block_names.push(lossy(b.idstr));
        }
        if let Record::Ram(RamRecord::MemSize { .. }) = &d.record {
            block_names.clear();
        }
        let page = match &d.record {
            Record::Ram(RamRecord::Page { block_index, data, offset, .. }) => Some((*block_index, 0u8, *offset, Some(*data))),
            Record::Ram(RamRecord::Zero { block_index, offset, .. }) => Some((*block_index, 1, *offset, None)),
            Record::Ram(RamRecord::Xbzrle { block_index, offset, data, .. })
            | Record::Ram(RamRecord::CompressPage { block_index, offset, data, .. }) => Some((*block_index, 2, *offset, Some(*data))),
            _ => None,
        };
        if let (Some((bi, kind, off, data)), false) = (page, pages) {
            let name = bi.and_then(|i| block_names.get(i as usize).cloned()).unwrap_or_else(|| "?".into());
            let e = out.blocks.entry(name).or_default();
            match kind {
                0 => e.0 += 1,
                1 => e.1 += 1,
                _ => e.2 += 1,
            }
            let same = run.as_ref().is_some_and(|r| r.block == bi && r.end == d.offset);
            if !same {
                flush_run(&mut out, &mut run, &block_names);
                run = Some(PageRun {
                    offset: d.offset,
                    end: d.offset,
                    block: bi,
                    first: off,
                    digest: 0xcbf2_9ce4_8422_2325,
                    ..PageRun::default()
                });
            }
            let r = run.as_mut().expect("run");
            r.end = d.offset + d.len;
            r.last = off;
            match kind {
                0 => r.normal += 1,
                1 => r.zero += 1,
                _ => r.other += 1,
            }
            if let Some(data) = data {
                r.digest = (r.digest ^ qmig_codec::fnv64(data)).wrapping_mul(0x0100_0000_01b3);
            }
            return Ok(true);
        }
        flush_run(&mut out, &mut run, &block_names);
        out.lines.push(line(d, dec));
        let mut v = serde_json::to_value(d).unwrap_or(Value::Null);
        if let Record::MappedRamRegion(m) = &d.record {
            v["record"]["value"]["block"] = json!(block_names.get(m.block_index as usize));
        }
        out.records.push(v);
        Ok(true)
    });
    let Ok((pos, err)) = walked;
    flush_run(&mut out, &mut run, &block_names);
    if let Some(e) = err {
        out.lines.push(format!("ERROR {e}"));
        out.lines.push(hexdump(bytes, e.offset));
        out.error = Some(e);
    }
    on_progress(pos);
    if out.error.is_none() && !dec.is_finished() {
        out.lines.push("ERROR stream ended before its EOF".into());
    }
    out
}

fn flush_run(out: &mut MainDump, run: &mut Option<PageRun>, names: &[String]) {
    if let Some(r) = run.take() {
        let name = r.block.and_then(|i| names.get(i as usize).cloned()).unwrap_or_else(|| "?".into());
        out.lines.push(format!(
            "{:#010x}      pages  {name}: {} normal, {} zero{} (offsets 0x{:x}..0x{:x})",
            r.offset,
            r.normal,
            r.zero,
            if r.other > 0 { format!(", {} other", r.other) } else { String::new() },
            r.first,
            r.last
        ));
        out.records.push(json!({
            "offset": r.offset, "len": r.end - r.offset,
            "record": {"type": "ram-pages", "value": {"block": name, "normal": r.normal, "zero": r.zero, "other": r.other,
                        "first_offset": r.first, "last_offset": r.last, "digest": format!("{:016x}", r.digest)}}
        }));
    }
}

fn line(d: &Decoded<Record<'_>>, dec: &MainDecoder) -> String {
    let in_body = d.section.is_some() && !matches!(d.record, Record::SectionHeader(_));
    let ind = "  ".repeat(d.depth as usize + in_body as usize);
    let what = match &d.record {
        Record::FileHeader(h) => format!("header magic QEVM version {}", h.version),
        Record::Configuration(c) => {
            let caps: Vec<String> = c.capabilities().map(lossy).collect();
            format!(
                "configuration machine={}{}{}{}",
                lossy(c.machine),
                if caps.is_empty() { String::new() } else { format!(" caps=[{}]", caps.join(",")) },
                c.target_page_bits().map(|b| format!(" page-bits={b}")).unwrap_or_default(),
                c.uuid().map(|u| format!(" uuid={}", hex::encode(u))).unwrap_or_default()
            )
        }
        Record::SectionHeader(h) => {
            let ty = match h.ty {
                SectionType::START => "START",
                SectionType::PART => "PART",
                SectionType::END => "END",
                SectionType::FULL => "FULL",
                _ => "?",
            };
            match h.full {
                Some(f) => format!("{ty} id={} \"{}\" instance={} version={}", h.section_id, lossy(f.idstr), f.instance_id, f.version_id),
                None => {
                    format!("{ty} id={} \"{}\"", h.section_id, dec.section_name(h.section_id).map(|(n, _)| lossy(n)).unwrap_or_default())
                }
            }
        }
        Record::Ram(r) => match r {
            RamRecord::MemSize { total, .. } => format!("ram MEM_SIZE total=0x{total:x}"),
            RamRecord::Block(b) => format!(
                "ram block \"{}\" used_length=0x{:x}{}{}{}",
                lossy(b.idstr),
                b.used_length,
                b.page_size.map(|p| format!(" page_size=0x{p:x}")).unwrap_or_default(),
                b.gpa.map(|p| format!(" gpa=0x{p:x}")).unwrap_or_default(),
                b.mapped_ram
                    .map(|h| format!(
                        " mapped-ram(v{} page=0x{:x} bitmap@0x{:x} pages@0x{:x})",
                        h.version, h.page_size, h.bitmap_offset, h.pages_offset
                    ))
                    .unwrap_or_default()
            ),
            RamRecord::Eos { .. } => "ram EOS".into(),
            RamRecord::MultifdFlush { .. } => "ram MULTIFD_FLUSH".into(),
            RamRecord::Hook { .. } => "ram HOOK".into(),
            other => format!("ram {other:?}"),
        },
        Record::MappedRamRegion(m) => format!("mapped-ram region of block #{} ({} bytes: bitmap + pages)", m.block_index, d.len),
        Record::Vfio(v) => match v {
            qmig_codec::vfio::VfioRecord::Marker { tag } => format!("vfio {tag}"),
            qmig_codec::vfio::VfioRecord::Data { size, .. } => {
                format!("vfio {} size={size}", VfioTag::DEV_DATA_STATE)
            }
            qmig_codec::vfio::VfioRecord::Config { data } => format!("vfio {} config {} bytes", VfioTag::DEV_CONFIG_STATE, data.len()),
        },
        Record::VirtioIter(v) => match v {
            qmig_codec::virtio_iterative::VirtioIterRecord::InitState { state } => {
                format!("virtio-net iterative INIT_STATE ({} bytes of state)", state.len())
            }
            qmig_codec::virtio_iterative::VirtioIterRecord::EndData => "virtio-net iterative END_DATA".into(),
            qmig_codec::virtio_iterative::VirtioIterRecord::NoData => "virtio-net iterative NO_DATA".into(),
        },
        Record::DeviceState(s) => format!(
            "body {} bytes ({})",
            s.data.len(),
            if s.boundary == Boundary::Vmdesc { "vmdesc" } else { "boundary inferred from footer" }
        ),
        Record::Footer(f) => format!("footer id={}", f.section_id),
        Record::Command(c) => format!("COMMAND {} len={} {}", c.code, c.len, serde_json::to_string(&c.body).unwrap_or_default()),
        Record::PackageEnd => "end of PACKAGED stream".into(),
        Record::Eof => "EOF".into(),
        Record::VmDesc(v) => format!("VMDESCRIPTION {} bytes of JSON", v.len),
        Record::Unknown(u) => format!("UNKNOWN item type {} ({} bytes kept)", u.ty, u.rest.len()),
    };
    format!("{:#010x}  {ind}{what}", d.offset)
}

/// One event of a secondary channel as a line.
pub fn event_line(e: &Event) -> String {
    let what = match &e.kind {
        EventKind::Rp { ty, a, b, block } => {
            let t = RpMessageType(*ty);
            match t {
                RpMessageType::REQ_PAGES_ID | RpMessageType::REQ_PAGES => {
                    format!("{t} start=0x{a:x} len=0x{b:x}{}", block.as_ref().map(|b| format!(" \"{b}\"")).unwrap_or_default())
                }
                RpMessageType::SWITCHOVER_ACK => t.to_string(),
                _ => format!("{t} {a}"),
            }
        }
        EventKind::RpBitmap { size } => format!("recv bitmap blob {size} bytes"),
        EventKind::MultifdInit { id, uuid } => format!("multifd init channel id={id} uuid={uuid}"),
        EventKind::MultifdPacket { flags, normal, zero, block, .. } => {
            format!(
                "multifd packet flags=0x{flags:x}{} normal={normal} zero={zero} block=\"{block}\"",
                if flags & 1 != 0 { " SYNC" } else { "" }
            )
        }
        EventKind::MultifdDeviceState { idstr, instance, size } => {
            format!("multifd device state \"{idstr}\" instance={instance} {size} bytes")
        }
        EventKind::Page { kind, offset, .. } => format!(
            "page {} offset=0x{offset:x}",
            match kind {
                PageKind::Normal => "normal",
                PageKind::Zero(_) => "zero",
                _ => "other",
            }
        ),
        EventKind::RamEos => "ram EOS".into(),
        EventKind::ChannelEnd { bytes } => format!("channel closed after {bytes} bytes"),
        EventKind::Error(err) => format!("ERROR {err}"),
        other => format!("{other:?}"),
    };
    let t = e.t_ns.map(|t| format!("{:>9.3}ms ", t as f64 / 1e6)).unwrap_or_default();
    format!("{t}[{}] {:#010x}  {what}", e.channel, e.offset)
}

/// The JSON dump of a whole input.
pub fn json_dump(input_name: &str, main: &MainDump, others: &[(String, Vec<Event>)]) -> Value {
    json!({
        "schema": DUMP_SCHEMA,
        "input": input_name,
        "channels": std::iter::once(json!({
            "channel": "main",
            "bytes": main.total,
            "consumed": main.consumed,
            "records": main.records,
            "error": main.error.as_ref().map(|e| json!({"offset": e.offset, "channel": e.channel.to_string(), "section": e.section, "message": e.kind.to_string()})),
        })).chain(others.iter().map(|(name, evs)| json!({"channel": name, "events": evs}))).collect::<Vec<_>>(),
        "ram": main.blocks.iter().map(|(k, (n, z, o))| (k.clone(), json!({"normal": n, "zero": z, "other": o}))).collect::<serde_json::Map<_, _>>(),
    })
}

/// `--dump state`: every device section decoded field by field through the vmdesc.
pub fn dump_state(bytes: &[u8], ctx: Context) -> Result<Value, String> {
    let mut dec = MainDecoder::for_file(ctx, bytes);
    let Some(vmdesc) = dec.vmdesc().cloned() else {
        return Err("no vmdesc trailer in this stream: device state cannot be decoded field by field".into());
    };
    let mut state = serde_json::Map::new();
    let mut cur: Option<(String, u32)> = None;
    let (_, err) = walk(&mut dec, bytes, |_, d| {
        match &d.record {
            Record::SectionHeader(h) if h.ty == SectionType::FULL => cur = h.full.map(|f| (lossy(f.idstr), f.instance_id)),
            Record::SectionHeader(_) => cur = None,
            Record::DeviceState(s) => {
                if let Some((name, inst)) = &cur {
                    if let Some(desc) = vmdesc.device(name.as_bytes(), *inst) {
                        let (m, _) = qmig_codec::vmdesc::decode_device(desc, s.data).map_err(|e| format!("{name}: {e}"))?;
                        state.insert(format!("{name} ({inst})"), Value::Object(m));
                    }
                }
            }
            _ => {}
        }
        Ok::<_, String>(true)
    })?;
    match err {
        Some(e) => Err(e.to_string()),
        None => Ok(Value::Object(state)),
    }
}

/// The blocks of a mapped-ram file, from its MEM_SIZE list (decoding stops at the end of
/// the list): each gives any page of its block by offset in O(1) ([`MappedBlock::page`]:
/// one bitmap bit, one slice of `bytes`).
///
/// [`MappedBlock::page`]: qmig_codec::mapped_ram::MappedBlock::page
pub fn mapped_blocks(bytes: &[u8], ctx: Context) -> Result<Vec<qmig_codec::mapped_ram::MappedBlock>, String> {
    let mut dec = MainDecoder::for_file(ctx, bytes);
    let mut out = Vec::new();
    let (_, err) = walk(&mut dec, bytes, |dec, d| {
        if let Record::Ram(RamRecord::Block(b)) = &d.record {
            if let Some(h) = b.mapped_ram {
                out.push(qmig_codec::mapped_ram::MappedBlock { name: b.idstr.to_vec(), used_length: b.used_length, header: h });
            }
        }
        Ok::<_, String>(out.is_empty() || dec.ram.in_block_list())
    })?;
    match err {
        Some(e) => Err(e.to_string()),
        None => Ok(out),
    }
}

/// `--extract DIR`: one sparse file per RAM block, `desc.json`, `state.json`.
pub fn extract(bytes: &[u8], ctx: Context, dir: &Path) -> Result<Vec<(String, u64)>, String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let mut dec = MainDecoder::for_file(ctx.clone(), bytes);
    if let Some(v) = dec.vmdesc() {
        std::fs::write(dir.join("desc.json"), serde_json::to_vec_pretty(&v.json).unwrap_or_default()).map_err(|e| e.to_string())?;
    }
    if let Ok(s) = dump_state(bytes, ctx) {
        std::fs::write(dir.join("state.json"), serde_json::to_vec_pretty(&s).unwrap_or_default()).map_err(|e| e.to_string())?;
    }
    let mut files: Vec<(String, std::fs::File, u64)> = Vec::new();
    let mut written = Vec::new();
    let mut mapped: Vec<(usize, qmig_codec::mapped_ram::MappedBlock)> = Vec::new();
    let mut run: Option<(usize, u64, Vec<u8>)> = None;
    let (_, err) = walk(&mut dec, bytes, |_, d| {
        match &d.record {
            Record::Ram(RamRecord::MemSize { .. }) => {
                flush_extract(&mut run, &mut files)?;
                files.clear();
            }
            Record::Ram(RamRecord::Block(b)) => {
                let name = lossy(b.idstr);
                let safe: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '_' }).collect();
                let f = std::fs::File::create(dir.join(format!("{safe}.ram"))).map_err(|e| e.to_string())?;
                f.set_len(b.used_length).map_err(|e| e.to_string())?;
                if let Some(h) = b.mapped_ram {
                    mapped.push((
                        files.len(),
                        qmig_codec::mapped_ram::MappedBlock { name: b.idstr.to_vec(), used_length: b.used_length, header: h },
                    ));
                }
                files.push((name, f, 0));
            }
            Record::Ram(RamRecord::Page { block_index: Some(i), offset, data, .. }) => {
                let i = *i as usize;
                if let Some((_, _, n)) = files.get_mut(i) {
                    *n += 1;
                }
                // Coalesce consecutive pages of one block into one write.
                let contiguous =
                    run.as_ref().is_some_and(|(bi, start, buf)| *bi == i && *start + buf.len() as u64 == *offset && buf.len() < (4 << 20));
                if !contiguous {
                    flush_extract(&mut run, &mut files)?;
                    run = Some((i, *offset, Vec::with_capacity(4 << 20)));
                }
                if let Some((_, _, buf)) = run.as_mut() {
                    buf.extend_from_slice(data);
                }
            }
            _ => {}
        }
        Ok::<_, String>(true)
    })?;
    if let Some(e) = err {
        return Err(e.to_string());
    }
    flush_extract(&mut run, &mut files)?;
    for (i, b) in &mapped {
        if b.header.is_skipped() {
            continue;
        }
        let ps = b.header.page_size.max(1);
        let bitmap = b.bitmap(bytes).map_err(|e| e.to_string())?;
        let (_, f, n) = &mut files[*i];
        for (wi, byte) in bitmap.iter().enumerate() {
            for bit in 0..8 {
                if byte & (1 << bit) != 0 {
                    let off = (wi as u64 * 8 + bit) * ps;
                    if let Ok(qmig_codec::mapped_ram::PageLookup::Present(p)) = b.page(bytes, off) {
                        write_at(f, off, p)?;
                        *n += 1;
                    }
                }
            }
        }
    }
    for (name, _, n) in files {
        written.push((name, n));
    }
    Ok(written)
}

type ExtractRun = Option<(usize, u64, Vec<u8>)>;

fn flush_extract(run: &mut ExtractRun, files: &mut [(String, std::fs::File, u64)]) -> Result<(), String> {
    if let Some((i, off, buf)) = run.take() {
        if let Some((_, f, _)) = files.get_mut(i) {
            write_at(f, off, &buf)?;
        }
    }
    Ok(())
}

fn write_at(f: &mut std::fs::File, off: u64, data: &[u8]) -> Result<(), String> {
    std::os::unix::fs::FileExt::write_all_at(f, data, off).map_err(|e| e.to_string())
}
