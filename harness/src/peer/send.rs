//! `qmig send`: replay a recorded source side into a real destination.
//!
//! The main connection is paced by the recorded order: before each chunk the source
//! sent, qmig waits (bounded) until the destination has sent back at least as many
//! return-path bytes as it had at that point in the recording, so commands that need a
//! reply (PING/PONG, switchover-ack) are sent when the recording sent them. Multifd and
//! preempt connections are opened in recorded accept order and streamed alongside.
//! The report says whether the destination behaved as recorded.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use qmig_codec::return_path::RpRecord;
use qmig_codec::{decode_all, lossy};

use super::record::{Addr, Stream};
use crate::case::{parse_trace, Direction, RecordKind};

/// What the destination did, next to what the recording says it did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SendReport {
    /// Connections opened.
    pub connections: usize,
    /// Bytes sent on the main connection.
    pub main_bytes: u64,
    /// Return-path messages received now.
    pub rp_now: Vec<String>,
    /// Return-path messages in the recording.
    pub rp_recorded: Vec<String>,
    /// The destination closed or reset the main connection before everything was sent.
    pub cut_short: bool,
    /// Waits that ran out.
    pub timeouts: u32,
}

fn rp_summary(bytes: &[u8]) -> Vec<String> {
    let mut v = Vec::new();
    let mut dec = qmig_codec::channels::ReturnPathDecoder::default();
    let _ = decode_all(&mut dec, bytes, |d| {
        v.push(match &d.record {
            RpRecord::Message(m) => format!("{} {}", m.ty, serde_json::to_string(&m.body).unwrap_or_default()),
            RpRecord::Bitmap(b) => format!("bitmap {} bytes", b.size),
        })
    });
    v
}

/// Replay the connections of a socket case (trace files in accept order) to `to`.
pub fn send(traces: &[Vec<u8>], to: &Addr, timeout: Duration) -> Result<SendReport, String> {
    let deadline = Instant::now() + timeout;
    let mut rep = SendReport::default();
    let mut parsed = Vec::new();
    for t in traces {
        parsed.push(parse_trace(t).map_err(|e| e.to_string())?);
    }
    let main_ix = parsed
        .iter()
        .position(|t| t.direction_bytes(Direction::SrcToDst).starts_with(b"QEVM"))
        .ok_or("no main connection (QEVM) in the case")?;
    rep.rp_recorded = rp_summary(&parsed[main_ix].direction_bytes(Direction::DstToSrc));
    // Connections in accept order; the main one waits for nothing, the others start
    // when the recording opened them relative to the main one.
    let t0 = parsed[main_ix].header.get("t_accept_ns").and_then(|v| v.as_u64()).unwrap_or(0);
    let main = Stream::connect(to, deadline).map_err(|e| format!("connect {to}: {e}"))?;
    rep.connections = 1;
    let rp_buf = Arc::new(Mutex::new(Vec::<u8>::new()));
    let mut reader = main.try_clone().map_err(|e| e.to_string())?;
    let _ = reader.set_read_timeout(Some(Duration::from_millis(100)));
    let rb = rp_buf.clone();
    let closed = Arc::new(Mutex::new(false));
    let cl = closed.clone();
    let rd = std::thread::spawn(move || {
        let mut b = [0u8; 4096];
        while Instant::now() < deadline {
            match reader.read(&mut b) {
                Ok(0) => break,
                Ok(n) => rb.lock().map(|mut v| v.extend_from_slice(&b[..n])).unwrap_or(()),
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(_) => break,
            }
        }
        if let Ok(mut c) = cl.lock() {
            *c = true;
        }
    });
    let mut others = Vec::new();
    for (i, t) in parsed.iter().enumerate() {
        if i == main_ix {
            continue;
        }
        let data = t.direction_bytes(Direction::SrcToDst);
        let delay = t.header.get("t_accept_ns").and_then(|v| v.as_u64()).unwrap_or(t0).saturating_sub(t0);
        let to = to.clone();
        others.push(std::thread::spawn(move || -> bool {
            std::thread::sleep(Duration::from_nanos(delay.min(2_000_000_000)));
            let Ok(mut s) = Stream::connect(&to, deadline) else { return false };
            let ok = s.write_all(&data).is_ok();
            s.shutdown(Shutdown::Write);
            let mut sink = [0u8; 1024];
            let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
            while Instant::now() < deadline {
                match s.read(&mut sink) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            ok
        }));
        rep.connections += 1;
    }
    let mut w = main;
    let mut rp_seen_recorded = 0usize;
    for r in &parsed[main_ix].records {
        match (r.kind, r.dir) {
            (RecordKind::Data, Direction::DstToSrc) => rp_seen_recorded += r.payload.len(),
            (RecordKind::Data, Direction::SrcToDst) => {
                // Wait (bounded) for the replies the recorded source had seen by now.
                let wait_until = (Instant::now() + Duration::from_secs(5)).min(deadline);
                while rp_buf.lock().map(|v| v.len()).unwrap_or(0) < rp_seen_recorded {
                    if Instant::now() >= wait_until || closed.lock().map(|c| *c).unwrap_or(true) {
                        rep.timeouts += 1;
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                if w.write_all(r.payload).is_err() {
                    rep.cut_short = true;
                    break;
                }
                rep.main_bytes += r.payload.len() as u64;
            }
            (RecordKind::Eof, Direction::SrcToDst) => w.shutdown(Shutdown::Write),
            _ => {}
        }
    }
    w.shutdown(Shutdown::Write);
    let _ = rd.join();
    for o in others {
        let _ = o.join();
    }
    rep.rp_now = rp_summary(&rp_buf.lock().map(|v| v.clone()).unwrap_or_default());
    let _ = lossy(b"");
    Ok(rep)
}
