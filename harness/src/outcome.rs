//! The predicted outcome per side, from the bytes and the two sides' settings alone, and
//! `preflight`: the same prediction without any bytes.

use serde::Serialize;

use crate::model::Checker;
use crate::profile::SideProfile;
use crate::rules;

/// What a side ends up doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Migration completed.
    Completed,
    /// Failed.
    Failed,
    /// Left waiting forever (e.g. for an ack).
    Waiting,
    /// Never started (e.g. unknown machine type).
    NotRun,
    /// Cannot tell from what was given.
    Unknown,
}

/// The outcome of a migration attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// Source.
    pub src: Status,
    /// Destination.
    pub dst: Status,
    /// Rule ID of the cause, or null.
    pub cause: Option<&'static str>,
}

/// How the bytes reached the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// A file written, then loaded.
    File,
    /// A live socket.
    Socket,
}

/// Settings-only prediction: problems visible before any byte is sent.
pub fn preflight(src: &SideProfile, dst: &SideProfile) -> Vec<(&'static str, String, Outcome)> {
    let mut v = Vec::new();
    if let Some(m) = &src.machine {
        if let Some(mv) = crate::profile::machine_version(m) {
            if mv > dst.version {
                v.push((
                    rules::CAPS_MACHINE_UNKNOWN,
                    format!("machine type {m} does not exist in QEMU {}", dst.version),
                    Outcome { src: Status::Unknown, dst: Status::NotRun, cause: Some(rules::CAPS_MACHINE_UNKNOWN) },
                ));
            }
        }
    }
    for c in src.validated_caps().iter().chain(dst.validated_caps()) {
        if src.has(c) != dst.has(c) && !v.iter().any(|(_, m, _): &(_, String, _)| m.contains(c)) {
            v.push((
                rules::CONFIG_CAP_MISMATCH,
                format!("{c} is {} on the source and {} on the destination", onoff(src.has(c)), onoff(dst.has(c))),
                Outcome { src: Status::Failed, dst: Status::Failed, cause: Some(rules::CONFIG_CAP_MISMATCH) },
            ));
        }
    }
    if src.has("postcopy-ram") && !dst.has("postcopy-ram") {
        v.push((
            rules::CAPS_POSTCOPY_ONE_SIDED,
            "RAM postcopy is disabled but have 16 byte advise".into(),
            Outcome { src: Status::Failed, dst: Status::Failed, cause: Some(rules::CAPS_POSTCOPY_ONE_SIDED) },
        ));
    }
    if src.sends_switchover_start() && !dst.knows_switchover_start() {
        v.push((
            rules::CMD_SWITCHOVER_START_UNKNOWN,
            "MIG_CMD 0xb unknown".into(),
            Outcome { src: Status::Failed, dst: Status::Failed, cause: Some(rules::CMD_SWITCHOVER_START_UNKNOWN) },
        ));
    }
    if src.rfc_initial_data() && src.switchover_ack() && !dst.rfc_initial_data() {
        v.push((
            rules::CMD_INITIAL_DATA_DIALECT,
            format!("the precopy-initial-data RFC source sends INITIAL_DATA_ENABLE (command 11, 268 bytes) to a merged {}", dst.version),
            Outcome { src: Status::Failed, dst: Status::Failed, cause: Some(rules::CMD_INITIAL_DATA_DIALECT) },
        ));
    }
    // A merged source with switchover-ack sends no INITIAL_DATA_ENABLE handshake, so an RFC
    // destination never enables initial data and never acks.
    let never_acks = !dst.switchover_ack() || (!src.rfc_initial_data() && dst.rfc_initial_data());
    if src.switchover_ack() && src.uses_return_path() && never_acks {
        v.push((
            rules::SRC_ACK_WAITING,
            "the source waits for a SWITCHOVER_ACK the destination never sends".into(),
            Outcome { src: Status::Waiting, dst: Status::Waiting, cause: Some(rules::SRC_ACK_WAITING) },
        ));
    }
    if src.has("multifd") && dst.has("multifd") && src.multifd_legacy_sync() != dst.multifd_legacy_sync() {
        let legacy = src.multifd_legacy_sync();
        v.push((
            rules::MULTIFD_SYNC_MODE,
            format!(
                "multifd syncs {} on the source, {} on the destination",
                if legacy { "after each section" } else { "per round" },
                if legacy { "per round" } else { "after each section" }
            ),
            if legacy {
                Outcome { src: Status::Completed, dst: Status::Failed, cause: Some(rules::MULTIFD_SYNC_MODE) }
            } else {
                Outcome { src: Status::Completed, dst: Status::Waiting, cause: Some(rules::MULTIFD_SYNC_MODE) }
            },
        ));
    }
    if src.has("multifd") != dst.has("multifd") {
        v.push((
            rules::CAPS_MULTIFD_ONE_SIDED,
            format!("multifd is {} on the source and {} on the destination", onoff(src.has("multifd")), onoff(dst.has("multifd"))),
            Outcome { src: Status::Unknown, dst: Status::Unknown, cause: Some(rules::CAPS_MULTIFD_ONE_SIDED) },
        ));
    }
    v
}

fn onoff(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

/// Conclude the outcome from a finished checker.
pub fn conclude(c: &Checker<'_>, transport: Transport, dst_loaded: bool) -> Outcome {
    let stream_done = c.eof && !c.main_error;
    let src = if transport == Transport::File || !dst_loaded {
        if stream_done {
            Status::Completed
        } else {
            Status::Unknown
        }
    } else {
        Status::Unknown
    };
    if !dst_loaded {
        return Outcome { src, dst: Status::NotRun, cause: None };
    }
    // A source that waits for an ack that never comes (the recording then cut the stream).
    let cut = c.dst_fatal.as_ref().is_none_or(|f| f.rule == rules::TRUNCATED);
    if transport == Transport::Socket
        && cut
        && c.src.switchover_ack()
        && c.src.uses_return_path()
        && c.acked.is_none()
        && c.switched.is_none()
        && !stream_done
    {
        return Outcome { src: Status::Waiting, dst: Status::Waiting, cause: Some(rules::SRC_ACK_WAITING) };
    }
    if let Some(f) = &c.dst_fatal {
        // A source with a return path learns of the failure; one without it finishes writing.
        let src = match transport {
            Transport::File => src,
            Transport::Socket if c.src.uses_return_path() || !c.eof => Status::Failed,
            Transport::Socket => Status::Completed,
        };
        return Outcome { src, dst: Status::Failed, cause: Some(f.rule) };
    }
    // A source that waits for an ack that never comes.
    if transport == Transport::Socket
        && c.src.switchover_ack()
        && c.src.vm_running
        && c.src.uses_return_path()
        && c.acked.is_none()
        && !stream_done
    {
        return Outcome { src: Status::Waiting, dst: Status::Waiting, cause: Some(rules::SRC_ACK_WAITING) };
    }
    if let Some(cause) = c.dst_hang {
        // The destination's main loop blocks: it neither completes nor fails.
        let src = match transport {
            Transport::Socket if stream_done && !c.src.uses_return_path() => Status::Completed,
            Transport::Socket => Status::Unknown,
            Transport::File => src,
        };
        return Outcome { src, dst: Status::Waiting, cause: Some(cause) };
    }
    if stream_done {
        let src = if transport == Transport::Socket { Status::Completed } else { src };
        return Outcome { src, dst: Status::Completed, cause: None };
    }
    if c.main_closed || c.main_error {
        let src = if transport == Transport::Socket { Status::Failed } else { src };
        return Outcome { src, dst: Status::Failed, cause: Some(rules::TRUNCATED) };
    }
    Outcome { src: if transport == Transport::Socket { Status::Unknown } else { src }, dst: Status::Unknown, cause: None }
}
