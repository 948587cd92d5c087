//! The peer models: one pass over the merged events drives what a conforming source
//! may send and what the destination of a given version checks.
//!
//! Two judgments are kept apart: every departure from the protocol becomes a
//! [`Finding`]; only the checks the real destination makes set
//! [`Checker::dst_fatal`], which decides the predicted outcome.

#![allow(clippy::collapsible_match)] // one arm per message type reads better than guards

use std::collections::{HashMap, HashSet, VecDeque};

use qmig_codec::codes::{CommandCode, RpMessageType, SectionType, VfioTag};
use qmig_codec::{Channel, ErrorKind, SectionRef};
use serde::Serialize;

use crate::events::{Event, EventKind, PageKind};
use crate::profile::SideProfile;
use crate::rules::{self, rule, Severity, Side};

/// One departure from the protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Rule ID.
    pub rule: &'static str,
    /// Side at fault.
    pub side: Side,
    /// Severity.
    pub severity: Severity,
    /// Channel.
    pub channel: Channel,
    /// Byte offset in the channel.
    pub offset: u64,
    /// Section, if one applies.
    pub section: Option<SectionRef>,
    /// What was seen.
    pub message: String,
    /// Hex of the bytes around the offset.
    pub context: String,
    /// Whether the real destination rejects the stream here.
    pub qemu_rejects: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Postcopy {
    None,
    Advise,
    Discard,
    Listening,
    Running,
}

#[derive(Debug, Clone)]
struct Sec {
    idstr: String,
    instance: u32,
    iterable: bool,
    ended: bool,
    body_items: u32,
    vfio_setup: bool,
}

/// The checker: both peers' state machines over one event sequence.
#[derive(Debug)]
pub struct Checker<'c> {
    /// Source settings.
    pub src: SideProfile,
    /// Destination settings (what the stream is judged against).
    pub dst: SideProfile,
    /// Findings so far.
    pub findings: Vec<Finding>,
    /// The first check the real destination would fail on.
    pub dst_fatal: Option<Finding>,
    bytes: HashMap<String, &'c [u8]>,
    header: bool,
    rp_open: bool,
    commands_seen: u32,
    sections_seen: u32,
    postcopy: Postcopy,
    secs: HashMap<u32, Sec>,
    full_devices: HashSet<(String, u32)>,
    cur: Option<u32>,
    pings: VecDeque<u32>,
    /// SWITCHOVER_ACK received (with its time).
    pub acked: Option<Option<u64>>,
    /// The source's switchover point (first END/SWITCHOVER_START/PACKAGED), with time.
    pub switched: Option<(Option<u64>, u64)>,
    blocks: Vec<(String, u64)>,
    mem_total: Option<(u64, u64)>,
    package: Vec<(u32, bool)>,
    last_req_block: Option<String>,
    /// QEMU_VM_EOF seen at top level.
    pub eof: bool,
    /// vmdesc seen.
    pub vmdesc: bool,
    /// The main channel ended (writer closed it).
    pub main_closed: bool,
    /// The return path carried SHUT, with its value.
    pub shut: Option<u64>,
    /// Decode stopped on the main channel.
    pub main_error: bool,
    mapped: bool,
    multifd_ids: HashSet<u8>,
    inferred_reported: bool,
    config_seen: bool,
    /// The stream carries a vmdesc (its device list stands for the destination's).
    pub vmdesc_present: bool,
    /// The devices the vmdesc describes, `(idstr, instance)`.
    pub vmdesc_devices: Vec<(String, u32)>,
    unknown_devices: HashSet<(String, u32)>,
    /// A rule after which the destination hangs (its main loop blocked), if one broke.
    pub dst_hang: Option<&'static str>,
    ram_eos: u32,
    ram_flushes: u32,
    multifd_sync: HashMap<u32, u32>,
    multifd_broken: HashSet<u32>,
    multifd_closed: HashSet<u32>,
    multifd_uuid: Option<String>,
    compression_reported: bool,
    cur_ty: Option<SectionType>,
    initial_data_general: bool,
    requested: Vec<(String, u64, u64)>,
}

fn fmt_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(" ")
}

impl<'c> Checker<'c> {
    /// A checker for a source and a destination.
    pub fn new(src: SideProfile, dst: SideProfile) -> Self {
        let mapped = src.has("mapped-ram") || src.has("fixed-ram");
        Checker {
            src,
            dst,
            findings: Vec::new(),
            dst_fatal: None,
            bytes: HashMap::new(),
            header: false,
            rp_open: false,
            commands_seen: 0,
            sections_seen: 0,
            postcopy: Postcopy::None,
            secs: HashMap::new(),
            full_devices: HashSet::new(),
            cur: None,
            pings: VecDeque::new(),
            acked: None,
            switched: None,
            blocks: Vec::new(),
            mem_total: None,
            package: Vec::new(),
            last_req_block: None,
            eof: false,
            vmdesc: false,
            main_closed: false,
            shut: None,
            main_error: false,
            mapped,
            multifd_ids: HashSet::new(),
            inferred_reported: false,
            config_seen: false,
            vmdesc_present: false,
            vmdesc_devices: Vec::new(),
            unknown_devices: HashSet::new(),
            dst_hang: None,
            ram_eos: 0,
            ram_flushes: 0,
            multifd_sync: HashMap::new(),
            multifd_broken: HashSet::new(),
            multifd_closed: HashSet::new(),
            multifd_uuid: None,
            compression_reported: false,
            cur_ty: None,
            initial_data_general: false,
            requested: Vec::new(),
        }
    }

    /// Tell the checker the stream's vmdesc (its device list stands for the destination's).
    pub fn set_vmdesc(&mut self, d: Option<&qmig_codec::vmdesc::VmDesc>) {
        self.vmdesc_present = d.is_some();
        self.vmdesc_devices = d.map(|d| d.devices().map(|(n, i)| (n.to_string(), i)).collect()).unwrap_or_default();
    }

    /// Give the checker a channel's bytes, for hex context in findings.
    pub fn with_bytes(mut self, channel: &Channel, bytes: &'c [u8]) -> Self {
        self.bytes.insert(channel.to_string(), bytes);
        self
    }

    fn section_ref(&self, id: Option<u32>) -> Option<SectionRef> {
        let id = id.or(self.cur)?;
        Some(SectionRef { id, idstr: self.secs.get(&id).map(|s| s.idstr.clone()).unwrap_or_default() })
    }

    fn context(&self, ch: &Channel, off: u64) -> String {
        match self.bytes.get(&ch.to_string()) {
            Some(b) => {
                let s = (off as usize).saturating_sub(8).min(b.len());
                let e = (off as usize + 16).min(b.len());
                fmt_hex(&b[s..e])
            }
            None => String::new(),
        }
    }

    /// Record a finding; `rejects` says whether the real destination fails on it.
    pub fn report(&mut self, id: &'static str, ev: &Event, rejects: bool, message: String) {
        let r = rule(id).unwrap_or_else(|| panic!("rule {id} is not in the catalogue"));
        let f = Finding {
            rule: r.id,
            side: r.side,
            severity: r.severity,
            channel: ev.channel.clone(),
            offset: ev.offset,
            section: self.section_ref(ev.section),
            message,
            context: self.context(&ev.channel, ev.offset),
            qemu_rejects: rejects,
        };
        if rejects && self.dst_fatal.is_none() {
            self.dst_fatal = Some(f.clone());
        }
        self.findings.push(f);
    }

    fn dst_alive(&self) -> bool {
        self.dst_fatal.is_none()
    }

    /// Feed one event.
    pub fn event(&mut self, ev: &Event) {
        match &ev.channel {
            Channel::Main => self.main(ev),
            Channel::ReturnPath => self.rp(ev),
            Channel::Multifd(_) => self.multifd(ev),
            Channel::Preempt => self.preempt(ev),
            Channel::Other(_) => {}
        }
    }

    fn decode_error(&mut self, ev: &Event, e: &qmig_codec::DecodeError, rule_id: &'static str) {
        let id = match &e.kind {
            ErrorKind::Truncated { .. } | ErrorKind::CrossesPackage(_) => rules::TRUNCATED,
            ErrorKind::BadMagic(_) => rules::HEADER_MAGIC,
            ErrorKind::BadVersion(_) => rules::HEADER_VERSION,
            ErrorKind::FooterMismatch { .. } | ErrorKind::MissingFooter(_) => rules::FOOTER,
            ErrorKind::UnknownSectionId(_) => rules::UNKNOWN_ID,
            ErrorKind::CommandLength { .. } => rules::CMD_LENGTH,
            ErrorKind::CommandPayload { cmd, .. } if *cmd == CommandCode::POSTCOPY_RAM_DISCARD => rules::CMD_DISCARD_FORMAT,
            ErrorKind::UnknownSectionType(_) => rules::UNKNOWN_TYPE,
            _ if ev.channel == Channel::Preempt => rule_id,
            ErrorKind::Ram(m) if m.contains("Unknown combination") => rules::RAM_FLAG_VERSION,
            ErrorKind::Ram(m) if m.contains("bytes left of MEM_SIZE") => rules::RAM_MEM_SIZE_TOTAL,
            ErrorKind::Configuration(m) if m.contains("Configuration section missing") => rules::CONFIG_MISSING,
            ErrorKind::Configuration(m) if m.contains("page bits") => rules::CONFIG_PAGE_BITS,
            ErrorKind::Vfio(_) => rules::VFIO_ORDER,
            ErrorKind::Device(m) if m.contains("virtio-net iterative") => rules::VIRTIO_ITER_ORDER,
            ErrorKind::MappedRam(_) => rules::RAM_MAPPED_LAYOUT,
            ErrorKind::RpLength { .. } | ErrorKind::RpPayload(_) if rule_id == rules::RP_BAD => rules::RP_BAD,
            ErrorKind::Multifd(m) if m.contains("uuid") => rules::MULTIFD_UUID,
            _ => rule_id,
        };
        let ev2 = Event { section: e.section.as_ref().map(|s| s.id).or(ev.section), ..ev.clone() };
        let rejects = ev.channel != Channel::ReturnPath;
        self.report(id, &ev2, rejects, e.to_string());
    }

    fn main(&mut self, ev: &Event) {
        let cmd_ix = self.commands_seen;
        if self.header && !self.config_seen && !matches!(ev.kind, EventKind::Header | EventKind::Config { .. } | EventKind::Error(_)) {
            // Every machine type QEMU 7.2+ can run sends (and expects) the configuration section.
            self.config_seen = true;
            self.report(rules::CONFIG_MISSING, ev, true, "Configuration section missing".into());
        }
        match &ev.kind {
            EventKind::Header => self.header = true,
            EventKind::Config { machine, caps, page_bits, uuid } => {
                self.config_seen = true;
                self.config(ev, machine, caps, *page_bits, uuid.as_deref())
            }
            EventKind::Section { ty, id, idstr, instance, version } => self.section(ev, *ty, *id, idstr.as_deref(), *instance, *version),
            EventKind::Footer { .. } => {
                self.cur = None;
            }
            EventKind::MemSize { total } => {
                self.blocks.clear();
                self.mem_total = Some((*total, 0));
            }
            EventKind::RamBlock { name, used_length, mapped } => {
                self.blocks.push((name.clone(), *used_length));
                if let Some((t, sum)) = self.mem_total.as_mut() {
                    *sum += used_length;
                    let (t, sum) = (*t, *sum);
                    if sum > t {
                        self.report(rules::RAM_MEM_SIZE_TOTAL, ev, true, format!("blocks add up to 0x{sum:x} > MEM_SIZE 0x{t:x}"));
                    }
                }
                if mapped.is_some() && !self.dst.has("mapped-ram") && !self.dst.has("fixed-ram") {
                    // The configuration check normally catches this first.
                }
            }
            EventKind::Page { kind, block, name, offset } => self.page(ev, *kind, *block, name.as_deref(), *offset),
            EventKind::RamFlush => {
                self.ram_flushes += 1;
                if !self.dst.knows_multifd_flush() {
                    self.report(
                        rules::RAM_FLAG_VERSION,
                        ev,
                        true,
                        format!("MULTIFD_FLUSH sent to a {} destination: Unknown combination of migration flags: 0x200", self.dst.version),
                    );
                } else if self.mapped {
                    self.report(rules::RAM_MULTIFD_FLUSH_MAPPED, ev, true, "MULTIFD_FLUSH with mapped-ram: Unexpected RAM flags".into());
                }
            }
            EventKind::RamEos => self.ram_eos += 1,
            EventKind::RamHook | EventKind::MappedRegion { .. } | EventKind::DeviceState { inferred: false } | EventKind::VmDesc { .. } => {
                if matches!(ev.kind, EventKind::VmDesc { .. }) {
                    self.vmdesc = true;
                    if matches!(self.postcopy, Postcopy::Listening | Postcopy::Running) {
                        self.report(rules::EOF_IN_POSTCOPY, ev, false, "vmdesc after a postcopy stream".into());
                    }
                    if self.vmdesc_present {
                        self.check_vmdesc(ev);
                    }
                }
            }
            EventKind::DeviceState { inferred: true }
                if self.vmdesc_present && ev.section.and_then(|id| self.secs.get(&id)).is_some_and(|s| !s.iterable) =>
            {
                let name = self.section_ref(ev.section).map(|s| s.idstr).unwrap_or_default();
                if let Some(s) = ev.section.and_then(|id| self.secs.get(&id)) {
                    self.unknown_devices.insert((s.idstr.clone(), s.instance));
                }
                self.report(
                    rules::UNKNOWN_DEVICE,
                    ev,
                    true,
                    format!("Unknown savevm section or instance '{name}': not in the vmdesc device list"),
                );
            }
            EventKind::DeviceState { inferred: true } => {
                if !self.inferred_reported {
                    self.inferred_reported = true;
                    self.report(rules::BOUNDARY_INFERRED, ev, false, "no vmdesc: device section ends found by their footers".into());
                }
            }
            EventKind::Vfio { tag, .. } => self.vfio(ev, *tag),
            EventKind::VirtioIter { flag } => self.virtio_iter(ev, *flag),
            EventKind::Command { code, len, arg, block, ranges, bytes } => {
                self.commands_seen += 1;
                self.command(ev, cmd_ix, *code, *len, *arg, block.as_deref(), ranges, *bytes);
            }
            EventKind::PackageEnd => {
                if let Some((items, ran)) = self.package.pop() {
                    if !ran {
                        self.report(
                            rules::CMD_PACKAGED_CONTENT,
                            ev,
                            false,
                            format!("PACKAGED stream of {items} items does not end with POSTCOPY_RUN"),
                        );
                    }
                }
            }
            EventKind::Eof => {
                if !self.package.is_empty() {
                    self.report(rules::CMD_PACKAGED_CONTENT, ev, false, "EOF inside a PACKAGED stream".into());
                } else {
                    self.eof = true;
                    let open: Vec<(u32, String)> =
                        self.secs.iter().filter(|(_, s)| s.iterable && !s.ended).map(|(i, s)| (*i, s.idstr.clone())).collect();
                    for (id, name) in open {
                        let e2 = Event { section: Some(id), ..ev.clone() };
                        self.report(rules::ITERABLE_NOT_ENDED, &e2, false, format!("iterable section {id} '{name}' never got an END"));
                    }
                }
            }
            EventKind::Unknown { ty } => {
                let rejects = true;
                self.report(rules::UNKNOWN_TYPE, ev, rejects, format!("Unknown savevm section type {ty}"));
            }
            EventKind::Error(e) if self.eof => {
                // QEMU reads the vmdesc only to skip it and stops there: a broken trailer or
                // bytes after it do not fail the load.
                self.report(rules::AFTER_EOF, ev, false, e.to_string());
            }
            EventKind::Error(e) => {
                self.main_error = true;
                let e = e.clone();
                self.decode_error(ev, &e, rules::DECODE);
            }
            EventKind::ChannelEnd { .. } => {
                self.main_closed = true;
                if self.eof && !self.vmdesc && self.postcopy == Postcopy::None && self.header {
                    self.report(rules::VMDESC_MISSING, ev, false, "Expected vmdescription section, but the stream ended".into());
                }
            }
            _ => {}
        }
    }

    /// vmdesc against the FULL sections sent: QEMU writes one entry per FULL section.
    fn check_vmdesc(&mut self, ev: &Event) {
        let described: HashSet<(String, u32)> = self.vmdesc_devices.iter().cloned().collect();
        let mut missing: Vec<&(String, u32)> = described.iter().filter(|d| !self.full_devices.contains(*d)).collect();
        let mut extra: Vec<&(String, u32)> =
            self.full_devices.iter().filter(|d| !described.contains(*d) && !self.unknown_devices.contains(*d)).collect();
        missing.sort();
        extra.sort();
        let name = |v: &[&(String, u32)]| v.iter().map(|(n, i)| format!("'{n}' instance {i}")).collect::<Vec<_>>().join(", ");
        let mut parts = Vec::new();
        if !missing.is_empty() {
            parts.push(format!("describes {} that the stream never sent", name(&missing)));
        }
        if !extra.is_empty() {
            parts.push(format!("does not describe {} that the stream sent", name(&extra)));
        }
        if !parts.is_empty() {
            self.report(rules::VMDESC_MISMATCH, ev, false, format!("vmdesc {}", parts.join("; ")));
        }
    }

    /// Checks that need every channel: the multifd SYNC count against the main stream.
    pub fn finish(&mut self) {
        let counted = self.src.has("multifd") && self.dst.has("multifd") && !self.mapped && self.eof && self.dst_alive();
        if !counted || self.src.multifd_legacy_sync() != self.dst.multifd_legacy_sync() {
            return;
        }
        let (expected, marker) = if self.src.multifd_legacy_sync() {
            (self.ram_eos, "RAM EOS")
        } else {
            (self.ram_flushes + self.src.multifd_unmarked_syncs(), "MULTIFD_FLUSH")
        };
        // Only channels recorded to their end and decoded to it are counted.
        let mut chans: Vec<(u32, u32)> = self
            .multifd_closed
            .iter()
            .filter(|ch| !self.multifd_broken.contains(ch))
            .map(|c| (*c, self.multifd_sync.get(c).copied().unwrap_or(0)))
            .collect();
        chans.sort();
        for (ch, n) in chans {
            if n != expected {
                let ev = Event {
                    channel: Channel::Multifd(ch),
                    offset: 0,
                    len: 0,
                    t_ns: None,
                    depth: 0,
                    section: None,
                    kind: EventKind::ChannelEnd { bytes: 0 },
                };
                let m = format!("multifd{ch} carries {n} SYNC packets, the main stream {expected} sync points ({marker})");
                self.report(rules::MULTIFD_SYNC_COUNT, &ev, false, m);
            }
        }
    }

    fn config(&mut self, ev: &Event, machine: &str, caps: &[String], page_bits: Option<u32>, uuid: Option<&str>) {
        if let Some(local) = self.dst.machine.clone() {
            if !local.starts_with(machine) {
                self.report(rules::CONFIG_MACHINE, ev, true, format!("Machine type received is '{machine}' and local is '{local}'"));
            }
        }
        let known = self.dst.known_caps();
        for c in caps {
            if !known.contains(&c.as_str()) {
                // The source's own QEMU knows it: the pairing is wrong, not the writer.
                let id = if self.src.known_caps().contains(&c.as_str()) { rules::CONFIG_CAP_NOT_AT_DST } else { rules::CONFIG_CAP_UNKNOWN };
                self.report(id, ev, true, format!("Received unknown capability {c}"));
            } else if !self.src.validated_caps().contains(&c.as_str()) {
                self.report(rules::CONFIG_CAP_UNVALIDATED, ev, false, format!("capability {c} is not one the source validates"));
            }
        }
        for v in self.dst.validated_caps() {
            let received = caps.iter().any(|c| c == v);
            let local = self.dst.has(v);
            if received != local {
                let onoff = |b: bool| if b { "on" } else { "off" };
                self.report(
                    rules::CONFIG_CAP_MISMATCH,
                    ev,
                    true,
                    format!("Capability {v} is {}, but received capability is {}", onoff(local), onoff(received)),
                );
            }
        }
        if let Some(bits) = page_bits {
            if bits != 12 {
                self.report(rules::CONFIG_PAGE_BITS, ev, true, format!("Received TARGET_PAGE_BITS is {bits} but local is 12"));
            }
        }
        if let (Some(rx), Some(local), Some(local_hex)) = (uuid, self.dst.uuid.clone(), self.dst.uuid_hex()) {
            if rx != local_hex {
                self.report(rules::CONFIG_UUID, ev, true, format!("UUID received is {rx} and local is {local}"));
            }
        }
    }

    fn section(&mut self, ev: &Event, ty: u8, id: u32, idstr: Option<&str>, instance: u32, version: u32) {
        self.sections_seen += 1;
        let ty = SectionType(ty);
        self.cur_ty = Some(ty);
        self.cur = Some(id);
        if let Some((items, _)) = self.package.last_mut() {
            *items += 1;
            if ty != SectionType::FULL {
                self.report(
                    rules::CMD_PACKAGED_CONTENT,
                    ev,
                    false,
                    format!("{ty} section inside PACKAGED (only FULL sections belong there)"),
                );
            }
        }
        match (ty, idstr) {
            (SectionType::START | SectionType::FULL, Some(name)) => {
                if self.secs.contains_key(&id) {
                    self.report(rules::DUPLICATE_ID, ev, false, format!("section id {id} announced again (as '{name}')"));
                }
                if ty == SectionType::FULL && !self.full_devices.insert((name.to_string(), instance)) {
                    self.report(rules::DUPLICATE_DEVICE, ev, false, format!("device '{name}' instance {instance} sent twice"));
                }
                if name == "ram" && version != 4 {
                    self.report(rules::RAM_VERSION, ev, true, format!("ram section version {version} (loader accepts only 4)"));
                }
                if ty == SectionType::START && self.src.uses_return_path() && !self.rp_open && self.sections_seen == 1 {
                    self.report(rules::CMD_RP_MISSING, ev, false, "setup sections began without OPEN_RETURN_PATH".into());
                }
                if ty == SectionType::START && self.src.has("postcopy-ram") && self.postcopy == Postcopy::None && self.sections_seen == 1 {
                    self.report(rules::CMD_ADVISE_MISSING, ev, false, "postcopy-ram is on but no POSTCOPY_ADVISE came before setup".into());
                }
                self.secs.insert(
                    id,
                    Sec {
                        idstr: name.to_string(),
                        instance,
                        iterable: ty == SectionType::START,
                        ended: false,
                        body_items: 0,
                        vfio_setup: false,
                    },
                );
            }
            (SectionType::PART | SectionType::END, _) => {
                let Some(s) = self.secs.get_mut(&id) else {
                    return;
                };
                let was_ended = s.ended;
                let n = s.idstr.clone();
                if ty == SectionType::END {
                    s.ended = true;
                }
                if was_ended {
                    self.report(rules::PART_AFTER_END, ev, false, format!("{ty} after END of section {id} '{n}'"));
                }
                if ty == SectionType::END {
                    self.mark_switch(ev);
                }
                if let Some(s) = self.secs.get_mut(&id) {
                    s.body_items = 0;
                    s.vfio_setup = false;
                }
            }
            _ => {}
        }
    }

    fn mark_switch(&mut self, ev: &Event) {
        if self.switched.is_none() {
            self.switched = Some((ev.t_ns, ev.offset));
            if self.src.switchover_ack() && self.src.vm_running && self.acked.is_none() && self.rp_open {
                self.report(rules::SRC_BEFORE_ACK, ev, false, "the source completed before SWITCHOVER_ACK arrived".into());
            }
        }
    }

    fn page(&mut self, ev: &Event, kind: PageKind, block: Option<u32>, name: Option<&str>, offset: u64) {
        if self.mapped {
            self.report(rules::RAM_MAPPED_PAGES_IN_STREAM, ev, true, "page record in a mapped-ram stream: Unexpected RAM flags".into());
            return;
        }
        match block {
            None if self.blocks.is_empty() => {
                self.report(rules::RAM_BEFORE_BLOCKS, ev, true, format!("page for '{}' before any MEM_SIZE list", name.unwrap_or("?")));
                return;
            }
            None => {
                self.report(rules::RAM_UNKNOWN_BLOCK, ev, true, format!("Can't find block {}", name.unwrap_or("?")));
                return;
            }
            Some(ix) => {
                if let Some((bname, used)) = self.blocks.get(ix as usize) {
                    if offset >= *used {
                        let m = format!("Illegal RAM offset {offset:x} in block {bname} (used_length 0x{used:x})");
                        self.report(rules::RAM_OUTSIDE, ev, true, m);
                    }
                }
            }
        }
        match kind {
            PageKind::Zero(fill) if fill != 0 => {
                let rejects = self.dst.rejects_nonzero_fill();
                self.report(rules::RAM_ZERO_FILL, ev, rejects, format!("Found a zero page with value {fill}"));
            }
            PageKind::Xbzrle if !self.src.has("xbzrle") => {
                self.report(rules::RAM_XBZRLE_WITHOUT_CAP, ev, false, "XBZRLE page without the xbzrle capability".into())
            }
            PageKind::Compressed if !self.dst.knows_compress_page() => {
                self.report(rules::RAM_FLAG_VERSION, ev, true, format!("COMPRESS_PAGE sent to a {} destination", self.dst.version))
            }
            _ => {}
        }
    }

    fn vfio(&mut self, ev: &Event, tag: u64) {
        let Some(id) = ev.section else { return };
        let ty_full = self.secs.get(&id).map(|s| !s.iterable).unwrap_or(false);
        let Some(s) = self.secs.get_mut(&id) else {
            return;
        };
        s.body_items += 1;
        let first = s.body_items == 1;
        let tag = VfioTag(tag);
        if tag == VfioTag::DEV_SETUP_STATE {
            s.vfio_setup = true;
        }
        let was_setup = s.vfio_setup;
        match tag {
            VfioTag::DEV_INIT_DATA_SENT => {
                if !self.dst.switchover_ack() {
                    self.report(rules::VFIO_INIT_WITHOUT_ACK, ev, true, "Received INIT_DATA_SENT but switchover ack is not used".into());
                }
            }
            VfioTag::DEV_CONFIG_LOAD_READY => {
                if self.dst.version < qmig_codec::Version::new(10, 1) {
                    self.report(
                        rules::VFIO_LOAD_READY_VERSION,
                        ev,
                        true,
                        format!("Unknown tag 0x{:x} for a {} destination", tag.0, self.dst.version),
                    );
                }
            }
            VfioTag::DEV_DATA_STATE if was_setup && first => {}
            VfioTag::DEV_CONFIG_STATE if !ty_full => {
                self.report(rules::VFIO_ORDER, ev, false, "DEV_CONFIG_STATE in an iterable VFIO section".into());
            }
            _ => {}
        }
        if was_setup && tag != VfioTag::DEV_SETUP_STATE && tag != VfioTag::END_OF_STATE {
            self.report(rules::VFIO_ORDER, ev, true, "SETUP STATE: EOS not found".into());
        }
    }

    fn virtio_iter(&mut self, ev: &Event, flag: u64) {
        use qmig_codec::virtio_iterative::{VNET_MIG_F_END_DATA, VNET_MIG_F_INIT_STATE, VNET_MIG_F_NO_DATA};
        let Some(s) = ev.section.and_then(|id| self.secs.get_mut(&id)) else {
            return;
        };
        s.body_items += 1;
        let n = s.body_items;
        let start = self.cur_ty == Some(SectionType::START);
        let ok = if start {
            (n == 1 && flag == VNET_MIG_F_INIT_STATE) || (n == 2 && flag == VNET_MIG_F_END_DATA)
        } else {
            n == 1 && flag == VNET_MIG_F_NO_DATA
        };
        if !ok {
            let what = if start { "START body is INIT_STATE, state, END_DATA" } else { "PART/END body is NO_DATA" };
            // The loader takes any of its three flags anywhere: a departure, not a failure.
            self.report(rules::VIRTIO_ITER_ORDER, ev, false, format!("virtio-net iterative flag 0x{flag:x} as item {n}: a {what}"));
        }
    }

    /// `MIG_CMD_INITIAL_DATA_ENABLE` (precopy-initial-data RFC v1): general enable or per-device advise.
    fn initial_data_enable(&mut self, ev: &Event, len: u16, general: bool, idstr: &str) {
        if !self.dst.rfc_initial_data() {
            let m = if self.dst.knows_switchover_start() {
                format!("SWITCHOVER_START received with bad length - expecting 0, got {len}")
            } else {
                format!("MIG_CMD 0xb unknown (len 0x{len:x}): a {} destination has no INITIAL_DATA_ENABLE", self.dst.version)
            };
            self.report(rules::CMD_INITIAL_DATA_DIALECT, ev, true, m);
            return;
        }
        if self.sections_seen > 0 || (!general && !self.initial_data_general) {
            let m = if self.sections_seen > 0 { "after the setup sections began" } else { "before the general enable" };
            self.report(rules::CMD_INITIAL_DATA_ORDER, ev, false, format!("INITIAL_DATA_ENABLE {m}"));
        }
        if general {
            self.initial_data_general = true;
        } else if !self.dst.initial_data_device(idstr) {
            self.report(rules::CMD_INITIAL_DATA_DEVICE, ev, true, format!("'{idstr}' doesn't support precopy initial data"));
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn command(
        &mut self,
        ev: &Event,
        index: u32,
        code: u16,
        _len: u16,
        arg: u64,
        block: Option<&str>,
        ranges: &[(u64, u64)],
        bytes: (u8, u8),
    ) {
        let code = CommandCode(code);
        if let Some((items, ran)) = self.package.last_mut() {
            *items += 1;
            let first = *items == 1;
            if code == CommandCode::POSTCOPY_RUN {
                *ran = true;
            }
            if first && code != CommandCode::POSTCOPY_LISTEN {
                self.report(rules::CMD_PACKAGED_CONTENT, ev, false, format!("PACKAGED stream starts with {code}, not POSTCOPY_LISTEN"));
            }
        }
        match code {
            CommandCode::OPEN_RETURN_PATH => {
                if !self.src.uses_return_path() {
                    self.report(
                        rules::CMD_RP_NOT_ENABLED,
                        ev,
                        false,
                        "OPEN_RETURN_PATH without return-path/postcopy-ram on the source".into(),
                    );
                }
                if index > 0 {
                    self.report(rules::CMD_RP_MISSING, ev, false, "OPEN_RETURN_PATH is not the first command".into());
                }
                self.rp_open = true;
                if self.src.uses_return_path() != self.dst.uses_return_path() {
                    self.report(rules::CAPS_RETURN_PATH_ONE_SIDED, ev, false, "return-path set on one side only".into());
                }
            }
            CommandCode::PING => {
                if !self.rp_open {
                    self.report(rules::CMD_PING_NO_RP, ev, true, format!("CMD_PING (0x{arg:x}) received with no return path"));
                }
                self.pings.push_back(arg as u32);
            }
            CommandCode::POSTCOPY_ADVISE => {
                if self.postcopy != Postcopy::None || self.sections_seen > 0 {
                    self.report(
                        rules::CMD_ADVISE_STATE,
                        ev,
                        self.postcopy != Postcopy::None,
                        "CMD_POSTCOPY_ADVISE in wrong postcopy state".into(),
                    );
                }
                let has16 = arg == 16;
                if has16 != self.dst.has("postcopy-ram") {
                    let m = if has16 {
                        "RAM postcopy is disabled but have 16 byte advise"
                    } else {
                        "RAM postcopy is enabled but have 0 byte advise"
                    };
                    let id = if has16 { rules::CAPS_POSTCOPY_ONE_SIDED } else { rules::CMD_ADVISE_MISMATCH };
                    self.report(id, ev, true, m.into());
                }
                self.postcopy = Postcopy::Advise;
            }
            CommandCode::POSTCOPY_RAM_DISCARD => {
                if !matches!(self.postcopy, Postcopy::Advise | Postcopy::Discard) {
                    self.report(
                        rules::CMD_DISCARD_STATE,
                        ev,
                        true,
                        format!("CMD_POSTCOPY_RAM_DISCARD in wrong postcopy state ({:?})", self.postcopy),
                    );
                } else {
                    self.postcopy = Postcopy::Discard;
                }
                if bytes.0 != 0 || bytes.1 != 0 {
                    self.report(
                        rules::CMD_DISCARD_FORMAT,
                        ev,
                        true,
                        format!("CMD_POSTCOPY_RAM_DISCARD invalid version ({}) or missing nil ({})", bytes.0, bytes.1),
                    );
                }
                let b = block.unwrap_or_default();
                match self.blocks.iter().find(|(n, _)| n == b) {
                    None => self.report(rules::CMD_DISCARD_FORMAT, ev, true, format!("discard for unknown block '{b}'")),
                    Some((_, used)) => {
                        if let Some((s, l)) = ranges.iter().find(|(s, l)| s.saturating_add(*l) > *used) {
                            let m = format!("discard range 0x{s:x}+0x{l:x} beyond block '{b}' (0x{used:x})");
                            self.report(rules::CMD_DISCARD_FORMAT, ev, false, m);
                        }
                    }
                }
                self.mark_switch(ev);
            }
            CommandCode::PACKAGED => {
                self.mark_switch(ev);
                self.package.push((0, false));
            }
            CommandCode::POSTCOPY_LISTEN => {
                if !matches!(self.postcopy, Postcopy::Advise | Postcopy::Discard) {
                    self.report(
                        rules::CMD_LISTEN_STATE,
                        ev,
                        true,
                        format!("CMD_POSTCOPY_LISTEN in wrong postcopy state ({:?})", self.postcopy),
                    );
                } else {
                    self.postcopy = Postcopy::Listening;
                }
            }
            CommandCode::POSTCOPY_RUN => {
                if self.postcopy != Postcopy::Listening {
                    self.report(rules::CMD_RUN_STATE, ev, true, format!("CMD_POSTCOPY_RUN in wrong postcopy state ({:?})", self.postcopy));
                } else {
                    self.postcopy = Postcopy::Running;
                }
            }
            CommandCode::ENABLE_COLO => self.report(rules::CMD_COLO, ev, false, "COLO is not modelled".into()),
            CommandCode::POSTCOPY_RESUME | CommandCode::RECV_BITMAP => {
                if self.header {
                    self.report(rules::CMD_RECOVERY_ONLY, ev, false, format!("{code} outside postcopy recovery"));
                }
            }
            CommandCode::SWITCHOVER_START if !self.src.rfc_initial_data() => {
                if !self.dst.knows_switchover_start() {
                    self.report(
                        rules::CMD_SWITCHOVER_START_UNKNOWN,
                        ev,
                        true,
                        format!("MIG_CMD 0xb unknown (len 0x0): a {} destination has no SWITCHOVER_START", self.dst.version),
                    );
                }
                self.mark_switch(ev);
            }
            CommandCode::SWITCHOVER_START => self.initial_data_enable(ev, _len, arg == 1, block.unwrap_or_default()),
            c => {
                if !c.is_known() || c == CommandCode::INVALID {
                    self.report(rules::CMD_UNKNOWN, ev, true, format!("MIG_CMD 0x{:x} unknown (len 0x{:x})", c.0, _len));
                }
            }
        }
    }

    fn rp(&mut self, ev: &Event) {
        match &ev.kind {
            EventKind::Rp { ty, a, b, block } => {
                if !self.rp_open {
                    self.report(rules::RP_WITHOUT_OPEN, ev, false, "return-path message before OPEN_RETURN_PATH".into());
                }
                let ty = RpMessageType(*ty);
                match ty {
                    // PONGs may overtake each other in postcopy (PING 3 is answered by the
                    // main thread after the package, PING 4 by the listen thread): match by value.
                    RpMessageType::PONG => match self.pings.iter().position(|v| *v as u64 == *a) {
                        Some(i) => {
                            self.pings.remove(i);
                        }
                        None => self.report(
                            rules::RP_PONG_UNMATCHED,
                            ev,
                            false,
                            format!("PONG({a}) answers no outstanding PING (outstanding: {:?})", self.pings),
                        ),
                    },
                    RpMessageType::SHUT => {
                        self.shut = Some(*a);
                        if *a != 0 {
                            self.report(rules::RP_SHUT_ERROR, ev, false, format!("Sibling indicated error {a}"));
                        }
                    }
                    RpMessageType::SWITCHOVER_ACK => {
                        if !self.dst.switchover_ack() {
                            self.report(
                                rules::RP_ACK_UNEXPECTED,
                                ev,
                                false,
                                "SWITCHOVER_ACK with switchover-ack off at the destination".into(),
                            );
                        }
                        if self.acked.is_some() {
                            self.report(rules::RP_ACK_DUPLICATE, ev, false, "second SWITCHOVER_ACK".into());
                        } else {
                            self.acked = Some(ev.t_ns);
                        }
                    }
                    RpMessageType::REQ_PAGES | RpMessageType::REQ_PAGES_ID => {
                        if self.postcopy == Postcopy::None {
                            self.report(rules::RP_REQ_NOT_POSTCOPY, ev, false, "page request without postcopy".into());
                        }
                        if let Some(bn) = block {
                            self.last_req_block = Some(bn.clone());
                        }
                        match self.last_req_block.clone() {
                            None => self.report(rules::RP_REQ_UNKNOWN_BLOCK, ev, false, "REQ_PAGES before any REQ_PAGES_ID".into()),
                            Some(bn) => match self.blocks.iter().find(|(n, _)| *n == bn) {
                                None => {
                                    self.report(rules::RP_REQ_UNKNOWN_BLOCK, ev, false, format!("page request for unknown block '{bn}'"))
                                }
                                Some((_, used)) => {
                                    self.requested.push((bn.clone(), *a, *b));
                                    if a.saturating_add(*b) > *used || *b == 0 || a % 4096 != 0 {
                                        self.report(
                                            rules::RP_REQ_OUTSIDE,
                                            ev,
                                            false,
                                            format!("request 0x{a:x}+0x{b:x} outside block '{bn}' (0x{used:x})"),
                                        );
                                    }
                                }
                            },
                        }
                    }
                    RpMessageType::RESUME_ACK if *a != 1 => {
                        self.report(rules::RP_RESUME_ACK, ev, false, format!("illegal resume_ack value {a}"))
                    }
                    t if !t.is_known() || t == RpMessageType::INVALID => {
                        self.report(rules::RP_UNKNOWN, ev, false, format!("Received invalid message 0x{:04x} length 0x{b:04x}", t.0))
                    }
                    _ => {}
                }
            }
            EventKind::Error(e) => {
                let e = e.clone();
                self.decode_error(ev, &e, rules::RP_BAD);
            }
            EventKind::ChannelEnd { .. } => {
                if !self.pings.is_empty() && self.dst_alive() && self.eof {
                    let v: Vec<u32> = self.pings.iter().copied().collect();
                    self.report(rules::RP_PONG_MISSING, ev, false, format!("PINGs {v:?} never answered"));
                }
            }
            _ => {}
        }
    }

    fn multifd(&mut self, ev: &Event) {
        match &ev.kind {
            EventKind::MultifdInit { id, uuid } => {
                if self.multifd_ids.is_empty() && self.dst.has("multifd") {
                    let (sl, dl) = (self.src.multifd_legacy_sync(), self.dst.multifd_legacy_sync());
                    if sl != dl {
                        let mode = |l: bool| if l { "after each section (legacy)" } else { "per round with MULTIFD_FLUSH" };
                        let m = format!("multifd sync: source {}, destination {}", mode(sl), mode(dl));
                        // A legacy source never sends MULTIFD_FLUSH: the receive threads block
                        // after the first SYNC and the pages they hold never load (a device
                        // load fails later). A legacy destination waits at every EOS for SYNCs
                        // a modern source does not send: its main loop hangs.
                        self.report(rules::MULTIFD_SYNC_MODE, ev, sl, m);
                        if dl {
                            self.dst_hang.get_or_insert(rules::MULTIFD_SYNC_MODE);
                        }
                    }
                }
                let expected = self.dst.uuid_hex();
                match (expected, &self.multifd_uuid) {
                    (Some(local), _) if *uuid != local => {
                        let m = format!("multifd: received uuid '{uuid}' and expected uuid '{local}' for channel {id}");
                        self.report(rules::MULTIFD_UUID, ev, true, m);
                    }
                    (None, Some(first)) if first != uuid => {
                        let m = format!("multifd: channel {id} carries uuid '{uuid}', an earlier channel '{first}'");
                        self.report(rules::MULTIFD_UUID, ev, true, m);
                    }
                    _ => {}
                }
                self.multifd_uuid.get_or_insert_with(|| uuid.clone());
                let channels = self.dst.params.get("multifd-channels").and_then(|v| v.as_u64()).unwrap_or(2);
                if *id as u64 > channels {
                    self.report(
                        rules::MULTIFD_CHANNEL_ID,
                        ev,
                        true,
                        format!("multifd: received channel id {id} is greater than number of channels {channels}"),
                    );
                }
                if !self.multifd_ids.insert(*id) {
                    self.report(rules::MULTIFD_DECODE, ev, false, format!("channel id {id} used twice"));
                }
                if !self.dst.has("multifd") {
                    // The destination ignores the extra connection: the pages it carries never
                    // load, and the load fails later (or the guest runs on wrong memory).
                    let first = self.multifd_ids.len() == 1;
                    self.report(
                        rules::CAPS_MULTIFD_ONE_SIDED,
                        ev,
                        first,
                        "multifd channel to a destination without multifd: Extra incoming migration connection; ignoring".into(),
                    );
                }
            }
            EventKind::MultifdPacket { block, offsets, normal, zero, flags } => {
                if let Channel::Multifd(ch) = ev.channel {
                    if flags & qmig_codec::codes::MultifdFlags::SYNC.bits() != 0 {
                        *self.multifd_sync.entry(ch).or_default() += 1;
                    }
                }
                let comp = qmig_codec::codes::MultifdCompression::from_flags(*flags);
                if comp != qmig_codec::codes::MultifdCompression::None && !self.compression_reported {
                    self.compression_reported = true;
                    self.report(rules::MULTIFD_COMPRESSION, ev, false, format!("multifd payloads compressed with {comp:?}: not inflated"));
                }
                if normal + zero == 0 {
                    return;
                }
                match self.blocks.iter().find(|(n, _)| n == block) {
                    None if !self.blocks.is_empty() => {
                        self.report(rules::MULTIFD_UNKNOWN_BLOCK, ev, true, format!("multifd: unknown ram block {block}"))
                    }
                    Some((_, used)) => {
                        if let Some(o) = offsets.iter().find(|o| **o >= *used) {
                            self.report(rules::MULTIFD_OUTSIDE, ev, true, format!("multifd: offset too long {o} (max {used:x})"));
                        }
                    }
                    None => {}
                }
            }
            EventKind::ChannelEnd { .. } => {
                if let Channel::Multifd(ch) = ev.channel {
                    self.multifd_closed.insert(ch);
                }
            }
            EventKind::Error(e) => {
                if let Channel::Multifd(ch) = ev.channel {
                    self.multifd_broken.insert(ch);
                }
                let e = e.clone();
                self.decode_error(ev, &e, rules::MULTIFD_DECODE);
            }
            _ => {}
        }
    }

    fn preempt(&mut self, ev: &Event) {
        match &ev.kind {
            EventKind::Page { block, name, offset, .. } => {
                let bname = name.clone().or_else(|| block.and_then(|i| self.blocks.get(i as usize)).map(|(n, _)| n.clone()));
                let page = offset & !0xfff;
                let asked = bname
                    .as_ref()
                    .is_some_and(|b| self.requested.iter().any(|(rb, s, l)| rb == b && page >= *s && page < s.saturating_add(*l)));
                if !asked {
                    let m = format!("urgent page 0x{offset:x} of '{}' that no page request asked for", bname.unwrap_or_default());
                    self.report(rules::PREEMPT_UNREQUESTED, ev, false, m);
                }
            }
            EventKind::Error(e) => {
                let e = e.clone();
                self.decode_error(ev, &e, rules::PREEMPT_DECODE);
            }
            _ => {}
        }
    }

    /// Findings at or above `sev` for a side.
    pub fn count(&self, side: Side, sev: Severity) -> usize {
        self.findings.iter().filter(|f| f.side == side && f.severity == sev).count()
    }
}
