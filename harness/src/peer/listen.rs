//! `qmig listen`: qmig stands in for the migration destination.
//!
//! It accepts the main connection and any multifd / preempt channels, decodes every
//! channel incrementally as bytes arrive, answers the return path the way a QEMU
//! destination would (PONG for each PING, SWITCHOVER_ACK when switchover-ack is on,
//! SHUT at the end, page requests when asked to exercise postcopy), records every
//! connection as a trace, and ends with a verdict from the harness models. Every wait
//! has a timeout; a peer that stalls, disconnects or sends garbage yields a verdict.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use qmig_codec::codes::{CommandCode, RpMessageType};
use qmig_codec::command::CommandBody;
use qmig_codec::multifd::{MultifdDecoder, MULTIFD_MAGIC};
use qmig_codec::ram::RamRecord;
use qmig_codec::return_path::{RpBody, RpMessage};
use qmig_codec::{Chunked, Context, DecodeError, MainDecoder, Record};

use super::record::{Addr, Listener, SharedTrace, Stream};
use crate::case::{Clock, RecordKind};

/// Deliberate misbehaviour, to watch how a source reacts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Knob {
    /// Never send SWITCHOVER_ACK.
    DropSwitchoverAck,
    /// Answer each PING with a PONG of a different value.
    WrongPong,
    /// In postcopy, request a page beyond the end of the first block.
    BadPageRequest,
    /// Stop reading after the setup sections (the source stalls).
    Stall,
}

impl std::str::FromStr for Knob {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "drop-switchover-ack" => Knob::DropSwitchoverAck,
            "wrong-pong" => Knob::WrongPong,
            "bad-page-request" => Knob::BadPageRequest,
            "stall" => Knob::Stall,
            _ => return Err(format!("unknown knob '{s}' (drop-switchover-ack, wrong-pong, bad-page-request, stall)")),
        })
    }
}

/// Settings of a stand-in destination.
#[derive(Debug, Clone)]
pub struct ListenConfig {
    /// Address to listen on.
    pub addr: Addr,
    /// Capabilities on (QAPI names).
    pub caps: Vec<String>,
    /// Decoder context (dialect, version).
    pub ctx: Context,
    /// Where to write traces, case.json and report.json.
    pub out: PathBuf,
    /// Overall bound.
    pub timeout: Duration,
    /// Request this many pages once postcopy runs.
    pub request_pages: u32,
    /// Misbehaviour knobs.
    pub knobs: Vec<Knob>,
}

/// What happened.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ListenSummary {
    /// The stream reached EOF and was accepted.
    pub completed: bool,
    /// Connections accepted.
    pub connections: usize,
    /// Main-stream bytes.
    pub main_bytes: u64,
    /// Return-path messages sent.
    pub rp_sent: Vec<String>,
    /// The decode error that ended the stream, if any.
    pub error: Option<String>,
    /// Stopped by the timeout.
    pub timed_out: bool,
}

fn send(rp: &mut Stream, trace: &SharedTrace, m: RpMessage<'_>, log: &mut Vec<String>) {
    let mut b = Vec::new();
    m.encode(&mut b);
    trace.record(RecordKind::Data, 1, &b);
    let _ = rp.write_all(&b);
    log.push(format!("{}", m.ty));
}

fn drain_multifd(mut s: Stream, trace: SharedTrace, first: Vec<u8>, ctx: Context, index: u32, deadline: Instant) {
    let mut dec = Chunked::new(MultifdDecoder::new(ctx, index));
    trace.record(RecordKind::Data, 0, &first);
    dec.feed(&first);
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buf = vec![0u8; 256 * 1024];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => {
                trace.record(RecordKind::Eof, 0, b"");
                break;
            }
            Ok(n) => {
                trace.record(RecordKind::Data, 0, &buf[..n]);
                dec.feed(&buf[..n]);
                while let Ok(Some(_)) = dec.next_record() {}
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) => {
                trace.record(RecordKind::Error, 0, e.to_string().as_bytes());
                break;
            }
        }
    }
}

/// Run one incoming migration and return what happened. Traces go to `cfg.out`.
pub fn run(cfg: &ListenConfig, listener: Listener) -> std::io::Result<ListenSummary> {
    std::fs::create_dir_all(&cfg.out)?;
    let deadline = Instant::now() + cfg.timeout;
    let clock = Clock::new();
    let mut sum = ListenSummary::default();
    let mut ctx = cfg.ctx.clone();
    for c in &cfg.caps {
        ctx.set_cap(c);
    }
    let has = |c: &str| cfg.caps.iter().any(|x| x == c);
    let knob = |k: Knob| cfg.knobs.contains(&k);
    let mut main: Option<(Stream, SharedTrace)> = None;
    let mut workers = Vec::new();
    let mut multifd_n = 0u32;
    // Accept connections until the main one arrives; classify each by its first bytes.
    let classify = |s: &mut Stream| -> Vec<u8> {
        let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
        let mut first = vec![0u8; 4];
        let mut got = 0;
        let until = Instant::now() + Duration::from_secs(5);
        while got < 4 && Instant::now() < until {
            match s.read(&mut first[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(_) => {}
            }
        }
        first.truncate(got);
        first
    };
    let mut dec = Chunked::new(MainDecoder::new(ctx.clone()));
    let mut main_done = false;
    let mut rp_open = false;
    let mut postcopy_running = false;
    let mut requested = false;
    let mut setup_done = false;
    let mut buf = vec![0u8; 256 * 1024];
    let mut first_block: Option<(Vec<u8>, u64)> = None;
    loop {
        if Instant::now() >= deadline {
            sum.timed_out = true;
            break;
        }
        if let Some(mut s) = listener.try_accept()? {
            let n = sum.connections;
            sum.connections += 1;
            let t_accept = clock.now_ns();
            let first = classify(&mut s);
            let is_multifd = first.len() == 4 && u32::from_be_bytes([first[0], first[1], first[2], first[3]]) == MULTIFD_MAGIC;
            let header =
                serde_json::json!({"conn_index": n, "client": s.peer(), "t_accept_ns": t_accept, "label": "recorded by qmig listen"});
            let trace = SharedTrace::create(&cfg.out.join(format!("conn{n}.qmtrace")), &header, clock)?;
            if is_multifd || main.is_some() {
                let c2 = dec.dec.ctx.clone();
                let idx = multifd_n;
                multifd_n += is_multifd as u32;
                workers.push(std::thread::spawn(move || drain_multifd(s, trace, first, c2, idx, deadline)));
            } else {
                trace.record(RecordKind::Data, 0, &first);
                dec.feed(&first);
                sum.main_bytes += first.len() as u64;
                let _ = s.set_read_timeout(Some(Duration::from_millis(50)));
                main = Some((s, trace));
            }
            continue;
        }
        let Some((s, trace)) = main.as_mut() else {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        };
        if knob(Knob::Stall) && setup_done {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        match s.read(&mut buf) {
            Ok(0) => {
                trace.record(RecordKind::Eof, 0, b"");
                dec.finish();
                main_done = true;
            }
            Ok(n) => {
                trace.record(RecordKind::Data, 0, &buf[..n]);
                sum.main_bytes += n as u64;
                dec.feed(&buf[..n]);
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) => {
                trace.record(RecordKind::Error, 0, e.to_string().as_bytes());
                main_done = true;
            }
        }
        let mut rp = match s.try_clone() {
            Ok(r) => r,
            Err(_) => break,
        };
        let mut finished = false;
        loop {
            let r: Result<Option<qmig_codec::Decoded<Record<'_>>>, DecodeError> = dec.next_record();
            match r {
                Ok(Some(d)) => match &d.record {
                    Record::Command(c) => match (c.code, &c.body) {
                        (CommandCode::OPEN_RETURN_PATH, _) => {
                            rp_open = true;
                            if has("switchover-ack") && !knob(Knob::DropSwitchoverAck) {
                                send(
                                    &mut rp,
                                    trace,
                                    RpMessage::new(RpMessageType::SWITCHOVER_ACK, RpBody::SwitchoverAck),
                                    &mut sum.rp_sent,
                                );
                            }
                        }
                        (CommandCode::PING, CommandBody::Ping { value }) if rp_open => {
                            let v = if knob(Knob::WrongPong) { value.wrapping_add(1000) } else { *value };
                            send(&mut rp, trace, RpMessage::new(RpMessageType::PONG, RpBody::Pong { value: v }), &mut sum.rp_sent);
                        }
                        (CommandCode::POSTCOPY_RUN, _) => postcopy_running = true,
                        _ => {}
                    },
                    Record::Ram(RamRecord::Block(b)) if first_block.is_none() => first_block = Some((b.idstr.to_vec(), b.used_length)),
                    Record::Ram(RamRecord::Eos { .. }) => setup_done = true,
                    Record::Eof if d.depth == 0 => {
                        sum.completed = true;
                    }
                    _ => {}
                },
                Ok(None) => break,
                Err(e) => {
                    sum.error = Some(e.to_string());
                    finished = true;
                    break;
                }
            }
        }
        if postcopy_running && !requested && rp_open && (cfg.request_pages > 0 || knob(Knob::BadPageRequest)) {
            requested = true;
            if let Some((name, used)) = first_block.clone() {
                for i in 0..cfg.request_pages.max(1) {
                    let start = if knob(Knob::BadPageRequest) { used } else { (i as u64 * 0x1000) % used.max(0x1000) };
                    send(
                        &mut rp,
                        trace,
                        RpMessage::new(RpMessageType::REQ_PAGES_ID, RpBody::ReqPagesId { start, len: 4096, block: &name }),
                        &mut sum.rp_sent,
                    );
                }
            }
        }
        // The stream is over when EOF (+ vmdesc) was decoded and the decoder is finished,
        // or the source closed, or decoding failed.
        let stream_over = sum.completed && qmig_codec::ChannelDecoder::is_finished(&dec.dec) && dec.buffered() == 0;
        if finished || main_done || (stream_over && sum.completed) {
            if rp_open {
                let ok = sum.error.is_none() && sum.completed;
                send(&mut rp, trace, RpMessage::new(RpMessageType::SHUT, RpBody::Shut { error: if ok { 0 } else { 1 } }), &mut sum.rp_sent);
            }
            trace.record(RecordKind::Eof, 1, b"");
            rp.shutdown(Shutdown::Write);
            // Drain whatever the source still sends (e.g. the vmdesc), briefly.
            let until = Instant::now() + Duration::from_millis(500);
            while !main_done && Instant::now() < until {
                match s.read(&mut buf) {
                    Ok(0) => {
                        trace.record(RecordKind::Eof, 0, b"");
                        break;
                    }
                    Ok(n) => trace.record(RecordKind::Data, 0, &buf[..n]),
                    Err(_) => {}
                }
            }
            break;
        }
    }
    for w in workers {
        let _ = w.join();
    }
    Ok(sum)
}
