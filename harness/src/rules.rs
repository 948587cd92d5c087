//! The rule catalogue: one entry per check, with a stable ID, the side at fault, the
//! severity, the requirement in one sentence and the QEMU source it comes from.
//! Checks name their rule by the constant; `qmig rules` prints this table.

use serde::Serialize;

/// Who is at fault when a rule is broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Side {
    /// The source (writer of the main stream).
    Src,
    /// The destination (writer of the return path).
    Dst,
    /// Neither: the two sides were configured inconsistently (an outcome, not a violation).
    Config,
}

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    /// For information only.
    Info,
    /// A departure QEMU tolerates (verdict pass-lenient).
    Warning,
    /// A violation.
    Error,
    /// A feature qmig does not model yet.
    Unsupported,
}

/// One catalogue entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Rule {
    /// Stable ID, e.g. `rp/switchover-ack/unexpected`.
    pub id: &'static str,
    /// Side at fault.
    pub side: Side,
    /// Severity.
    pub severity: Severity,
    /// The requirement, one sentence.
    pub requirement: &'static str,
    /// QEMU source reference (file:function).
    pub qemu_ref: &'static str,
    /// The text a real QEMU prints when it rejects this (substring), if it does.
    pub qemu_message: Option<&'static str>,
}

macro_rules! rules {
    ($( $(#[$m:meta])* $name:ident = $id:literal, $side:ident, $sev:ident, $req:literal, $src:literal, $msg:expr; )*) => {
        $( $(#[$m])* #[doc = $req] pub const $name: &str = $id; )*
        /// Every rule, in catalogue order.
        pub static CATALOGUE: &[Rule] = &[
            $( Rule { id: $id, side: Side::$side, severity: Severity::$sev, requirement: $req, qemu_ref: $src, qemu_message: $msg }, )*
        ];
    };
}

rules! {
    HEADER_MAGIC = "stream/header/magic", Src, Error, "The main stream starts with the magic 0x5145564d (QEVM).", "migration/savevm.c:qemu_loadvm_state_header", Some("Not a migration stream");
    HEADER_VERSION = "stream/header/version", Src, Error, "The stream version is 3.", "migration/savevm.c:qemu_loadvm_state_header", Some("v2 format is obsolete|Unsupported migration stream version");
    CONFIG_MISSING = "stream/config/missing", Config, Error, "A configuration section follows the header when the destination expects one (send-configuration).", "migration/savevm.c:qemu_loadvm_state_header", Some("Configuration section missing");
    CONFIG_MACHINE = "stream/config/machine-mismatch", Config, Error, "The received machine type is a prefix of the destination's machine type.", "migration/savevm.c:configuration_post_load", Some("Machine type received is");
    CONFIG_PAGE_BITS = "stream/config/page-bits-mismatch", Config, Error, "TARGET_PAGE_BITS match on both sides.", "migration/savevm.c:configuration_post_load", Some("Received TARGET_PAGE_BITS");
    CONFIG_CAP_MISMATCH = "stream/config/capability-mismatch", Config, Error, "Every validated capability (x-ignore-shared, mapped-ram, …) is on at both sides or off at both.", "migration/savevm.c:configuration_validate_capabilities", Some("but received capability is");
    CONFIG_CAP_UNKNOWN = "stream/config/unknown-capability", Src, Error, "The capability list names only capabilities the destination knows.", "migration/savevm.c:get_capability", Some("Received unknown capability");
    CONFIG_CAP_NOT_AT_DST = "stream/config/capability-unknown-to-destination", Config, Error, "A capability the source validates is one the destination's QEMU knows (an RFC dialect's or a newer release's capability cannot reach a merged or older destination).", "migration/savevm.c:get_capability", Some("Received unknown capability");
    CONFIG_CAP_UNVALIDATED = "stream/config/unvalidated-capability", Src, Warning, "The capability list holds only capabilities the writer validates.", "migration/savevm.c:should_validate_capability", None;
    CONFIG_UUID = "stream/config/uuid-mismatch", Config, Error, "With validate-uuid the received UUID equals the destination's.", "migration/savevm.c:vmstate_uuid_post_load", Some("UUID received is");
    DECODE = "stream/decode", Src, Error, "Every byte of the stream frames as a record of the protocol.", "migration/savevm.c:qemu_loadvm_state_main", None;
    TRUNCATED = "stream/truncated", Src, Error, "The stream is not cut inside a record or before EOF.", "migration/savevm.c:qemu_loadvm_state_main", None;
    UNKNOWN_TYPE = "stream/section/unknown-type", Src, Error, "Every top-level item has a known type byte.", "migration/savevm.c:qemu_loadvm_state_main", Some("nknown");
    UNKNOWN_ID = "stream/section/unknown-id", Src, Error, "PART/END carry a section id announced by START.", "migration/savevm.c:qemu_loadvm_section_part_end", Some("Unknown savevm section");
    UNKNOWN_DEVICE = "stream/section/unknown-device", Src, Error, "Every FULL section names a device (idstr, instance) the destination has; qmig takes the vmdesc's device list as the destination's.", "migration/savevm.c:qemu_loadvm_section_start_full", Some("Unknown savevm section or instance|Unknown section or instance");
    DUPLICATE_ID = "stream/section/duplicate-id", Src, Error, "A section id is announced by START/FULL only once.", "migration/savevm.c:qemu_loadvm_section_start_full", None;
    DUPLICATE_DEVICE = "stream/section/duplicate-device", Src, Warning, "A device (idstr, instance) is sent as FULL at most once per stream.", "migration/savevm.c:qemu_savevm_state_complete_precopy_non_iterable", None;
    PART_AFTER_END = "stream/section/part-after-end", Src, Error, "No PART or END follows the END of an iterable section.", "migration/savevm.c:qemu_savevm_state_complete_precopy_iterable", None;
    ITERABLE_NOT_ENDED = "stream/section/iterable-not-ended", Src, Error, "Every START-ed iterable section gets an END before EOF.", "migration/savevm.c:qemu_savevm_state_complete_precopy_iterable", None;
    FOOTER = "stream/section/footer", Src, Error, "Every section body ends with a footer carrying its own section id.", "migration/savevm.c:check_section_footer", Some("section footer|id in footer");
    BOUNDARY_INFERRED = "stream/section/boundary-inferred", Src, Info, "Without vmdesc a device section is delimited by its footer; the boundary is inferred.", "scripts/analyze-migration.py", None;
    VMDESC_MISSING = "stream/vmdesc/missing", Src, Warning, "A precopy stream ends with a vmdesc trailer after EOF (unless suppress-vmdesc).", "migration/savevm.c:qemu_loadvm_state", Some("Expected vmdescription section");
    VMDESC_MISMATCH = "stream/vmdesc/mismatch", Src, Warning, "vmdesc describes exactly the FULL sections that were sent.", "migration/savevm.c:qemu_savevm_state_complete_precopy_non_iterable", None;
    AFTER_EOF = "stream/after-eof", Src, Warning, "After EOF only a well-formed vmdesc trailer follows (QEMU skips the vmdesc without parsing it and never reads further).", "migration/savevm.c:qemu_loadvm_state", None;
    EOF_IN_POSTCOPY = "stream/vmdesc/in-postcopy", Src, Warning, "A postcopy stream carries no vmdesc.", "migration/savevm.c:qemu_savevm_state_complete_postcopy", None;
    CMD_UNKNOWN = "cmd/unknown", Src, Error, "Commands are 1..MAX of the destination's version.", "migration/savevm.c:loadvm_process_command", Some("unknown (len");
    CMD_LENGTH = "cmd/bad-length", Src, Error, "Fixed-length commands carry exactly their length.", "migration/savevm.c:loadvm_process_command", Some("received with bad length");
    CMD_RP_NOT_ENABLED = "cmd/open-return-path/not-enabled", Src, Warning, "OPEN_RETURN_PATH is sent only when return-path or postcopy-ram is on.", "migration/migration.c:migration_thread", None;
    CMD_RP_MISSING = "cmd/open-return-path/missing", Src, Error, "With return-path or postcopy-ram on, OPEN_RETURN_PATH is the first command.", "migration/migration.c:migration_thread", None;
    CMD_PING_NO_RP = "cmd/ping/no-return-path", Src, Error, "PING is sent only after OPEN_RETURN_PATH.", "migration/savevm.c:loadvm_process_command", Some("received with no return path");
    CMD_ADVISE_STATE = "cmd/postcopy-advise/wrong-state", Src, Error, "POSTCOPY_ADVISE comes once, before any section.", "migration/savevm.c:loadvm_postcopy_handle_advise", Some("CMD_POSTCOPY_ADVISE in wrong postcopy state");
    CMD_ADVISE_MISMATCH = "cmd/postcopy-advise/capability-mismatch", Config, Error, "POSTCOPY_ADVISE has 16 bytes iff postcopy-ram is on at the destination.", "migration/savevm.c:loadvm_postcopy_handle_advise", Some("byte advise");
    CMD_ADVISE_MISSING = "cmd/postcopy-advise/missing", Src, Error, "With postcopy-ram on, POSTCOPY_ADVISE precedes the setup sections.", "migration/migration.c:migration_thread", None;
    CMD_DISCARD_STATE = "cmd/postcopy-discard/wrong-state", Src, Error, "POSTCOPY_RAM_DISCARD comes after ADVISE and before LISTEN.", "migration/savevm.c:loadvm_postcopy_ram_handle_discard", Some("CMD_POSTCOPY_RAM_DISCARD in wrong postcopy state");
    CMD_DISCARD_FORMAT = "cmd/postcopy-discard/format", Src, Error, "POSTCOPY_RAM_DISCARD has version 0, a nil after the name and ranges inside a known block.", "migration/savevm.c:loadvm_postcopy_ram_handle_discard", Some("CMD_POSTCOPY_RAM_DISCARD");
    CMD_LISTEN_STATE = "cmd/postcopy-listen/wrong-state", Src, Error, "POSTCOPY_LISTEN comes after ADVISE (or DISCARD), first inside PACKAGED.", "migration/savevm.c:loadvm_postcopy_handle_listen", Some("CMD_POSTCOPY_LISTEN in wrong postcopy state");
    CMD_RUN_STATE = "cmd/postcopy-run/wrong-state", Src, Error, "POSTCOPY_RUN comes after LISTEN, last inside PACKAGED.", "migration/savevm.c:loadvm_postcopy_handle_run", Some("CMD_POSTCOPY_RUN in wrong postcopy state");
    CMD_PACKAGED_CONTENT = "cmd/packaged/contents", Src, Error, "A PACKAGED stream holds LISTEN, FULL sections and commands, and ends with RUN; no header, no EOF.", "migration/savevm.c:loadvm_handle_cmd_packaged", None;
    CMD_RECOVERY_ONLY = "cmd/recovery-only", Src, Error, "RECV_BITMAP and POSTCOPY_RESUME are sent only in postcopy recovery.", "migration/savevm.c:loadvm_handle_recv_bitmap", None;
    CMD_SWITCHOVER_START_UNKNOWN = "cmd/switchover-start/unsupported", Config, Error, "SWITCHOVER_START is sent only to destinations that know it (10.0+; machine types ≤ 9.2 turn it off).", "migration/savevm.c:qemu_savevm_maybe_send_switchover_start", Some("unknown (len");
    CMD_INITIAL_DATA_DIALECT = "cmd/initial-data-enable/dialect", Config, Error, "MIG_CMD_INITIAL_DATA_ENABLE (precopy-initial-data RFC v1: command 11, 268 bytes) is sent only to a destination of that dialect; merged releases read command 11 as unknown (before 10.0) or as SWITCHOVER_START with a bad length.", "migration/savevm.c:loadvm_process_command", Some("unknown (len|received with bad length");
    CMD_INITIAL_DATA_DEVICE = "cmd/initial-data-enable/device-unsupported", Config, Error, "A per-device INITIAL_DATA_ENABLE names a device that supports precopy initial data at the destination.", "migration/savevm.c:loadvm_process_command (precopy-initial-data RFC v1 patch 2/8, the INITIAL_DATA_ENABLE handler)", Some("support precopy initial data|Could not find SaveStateEntry|required initial_data_advise op");
    CMD_INITIAL_DATA_ORDER = "cmd/initial-data-enable/order", Src, Error, "The general INITIAL_DATA_ENABLE comes first and every INITIAL_DATA_ENABLE precedes the setup sections.", "migration/savevm.c (precopy-initial-data RFC v1 patch 2/8: the handshake follows OPEN_RETURN_PATH/PING/ADVISE/ENABLE_COLO, before setup)", None;
    CMD_COLO = "cmd/enable-colo/unsupported", Src, Unsupported, "COLO streams are not modelled.", "migration/colo.c", None;
    RP_BAD = "rp/decode", Dst, Error, "Every return-path message is framed with a known length (≤ 512).", "migration/migration.c:source_return_path_thread", Some("message");
    RP_UNKNOWN = "rp/unknown-type", Dst, Error, "Return-path messages have a type the source knows.", "migration/migration.c:source_return_path_thread", Some("Received invalid message");
    RP_WITHOUT_OPEN = "rp/without-open", Dst, Error, "The destination writes on the return path only after OPEN_RETURN_PATH.", "migration/savevm.c:loadvm_process_command", None;
    RP_PONG_UNMATCHED = "rp/pong/unmatched", Dst, Error, "Each PONG echoes the value of an outstanding PING (in postcopy PONGs may overtake each other).", "migration/savevm.c:loadvm_process_command", None;
    RP_PONG_MISSING = "rp/pong/missing", Dst, Warning, "Every PING is answered by a PONG before the return path closes.", "migration/savevm.c:loadvm_process_command", None;
    RP_REQ_NOT_POSTCOPY = "rp/req-pages/not-postcopy", Dst, Error, "Page requests are sent only once postcopy is advised.", "migration/postcopy-ram.c:postcopy_request_page", None;
    RP_REQ_UNKNOWN_BLOCK = "rp/req-pages/unknown-block", Dst, Error, "Page requests name a RAMBlock the source announced (REQ_PAGES needs a previous REQ_PAGES_ID).", "migration/migration.c:migrate_handle_rp_req_pages", Some("invalid block");
    RP_REQ_OUTSIDE = "rp/req-pages/outside-block", Dst, Error, "Requested ranges lie inside the block and are page aligned.", "migration/ram.c:ram_save_queue_pages", Some("MIG_RP_MSG_REQ_PAGES");
    RP_ACK_UNEXPECTED = "rp/switchover-ack/unexpected", Dst, Error, "SWITCHOVER_ACK is sent only when switchover-ack is on at the destination.", "migration/savevm.c:loadvm_process_command", None;
    RP_ACK_DUPLICATE = "rp/switchover-ack/duplicate", Dst, Warning, "SWITCHOVER_ACK is sent at most once.", "migration/savevm.c:qemu_loadvm_approve_switchover", None;
    RP_SHUT_ERROR = "rp/shut/error", Dst, Info, "SHUT(1) tells the source that loading failed.", "migration/migration.c:process_incoming_migration_co", Some("Sibling indicated error");
    RP_RESUME_ACK = "rp/resume-ack/value", Dst, Error, "RESUME_ACK carries 1, only after POSTCOPY_RESUME.", "migration/migration.c:migrate_handle_rp_resume_ack", Some("illegal resume_ack value");
    SRC_BEFORE_ACK = "src/switchover-ack/switched-before-ack", Src, Error, "With switchover-ack on, the source completes (END sections, SWITCHOVER_START, PACKAGED) only after SWITCHOVER_ACK.", "migration/migration.c:migration_can_switchover", None;
    SRC_ACK_WAITING = "caps/switchover-ack/src-only", Config, Error, "switchover-ack is on at both sides or at neither (it is not negotiated): a source with it on waits for an ack that never comes.", "migration/migration.c:migration_can_switchover", None;
    CAPS_RETURN_PATH_ONE_SIDED = "caps/return-path/one-sided", Config, Info, "return-path is set on both sides (the destination follows the source's OPEN_RETURN_PATH anyway).", "migration/savevm.c:loadvm_process_command", None;
    CAPS_MULTIFD_ONE_SIDED = "caps/multifd/one-sided", Config, Error, "multifd is on at both sides or at neither.", "migration/migration.c:migration_ioc_process_incoming", None;
    CAPS_POSTCOPY_ONE_SIDED = "caps/postcopy-ram/one-sided", Config, Error, "postcopy-ram is on at both sides or at neither.", "migration/savevm.c:loadvm_postcopy_handle_advise", Some("byte advise");
    CAPS_MACHINE_UNKNOWN = "caps/machine/unknown-to-destination", Config, Error, "The destination's QEMU has the source's machine type.", "hw/core/machine.c", Some("unsupported machine type");
    VIRTIO_ITER_ORDER = "virtio-iterative/order", Src, Error, "A virtio-net-iterative START body is INIT_STATE, the device state, END_DATA; PART and END bodies are NO_DATA; no other flag.", "hw/net/virtio-net.c (virtio-iterative RFC, Message-ID 20250722124127.2497406-*: the iterative load handler)", Some("Uknown flag");
    VFIO_ORDER = "vfio/order", Src, Error, "A VFIO START body is SETUP_STATE END_OF_STATE; data chunks come before the end marker.", "hw/vfio/migration.c:vfio_load_state", Some("EOS not found");
    VFIO_INIT_WITHOUT_ACK = "vfio/init-data-sent/without-switchover-ack", Src, Error, "DEV_INIT_DATA_SENT is sent only with switchover-ack on.", "hw/vfio/migration.c:vfio_load_state", Some("Received INIT_DATA_SENT but switchover ack is not used");
    VFIO_LOAD_READY_VERSION = "vfio/config-load-ready/version", Config, Error, "DEV_CONFIG_LOAD_READY is sent only to 10.1+ destinations with multifd transfer.", "hw/vfio/migration.c:vfio_load_state", Some("Unknown tag");
    RAM_VERSION = "ram/section-version", Src, Error, "The ram section has version 4.", "migration/ram.c:ram_load", None;
    RAM_BEFORE_BLOCKS = "ram/page/before-mem-size", Src, Error, "Page records come after the MEM_SIZE block list.", "migration/ram.c:ram_load_precopy", Some("Can't find block");
    RAM_UNKNOWN_BLOCK = "ram/page/unknown-block", Src, Error, "Pages name a block of the MEM_SIZE list.", "migration/ram.c:ram_block_from_stream", Some("Can't find block");
    RAM_OUTSIDE = "ram/page/outside-block", Src, Error, "Page offsets lie inside their block.", "migration/ram.c:host_from_ram_block_offset", Some("Illegal RAM offset");
    RAM_ZERO_FILL = "ram/zero/nonzero-fill", Src, Error, "Zero pages carry fill byte 0.", "migration/ram.c:ram_load_precopy", Some("Found a zero page with value");
    RAM_FLAG_VERSION = "ram/flags/not-in-version", Config, Error, "RAM flags are ones the destination's version knows (MULTIFD_FLUSH 8.1+, COMPRESS_PAGE ≤ 9.0).", "migration/ram.c:ram_load_precopy", Some("Unknown combination of migration flags");
    RAM_XBZRLE_WITHOUT_CAP = "ram/xbzrle/without-capability", Src, Warning, "XBZRLE pages are sent only with the xbzrle capability.", "migration/ram.c:save_xbzrle_page", None;
    RAM_MAPPED_PAGES_IN_STREAM = "ram/mapped-ram/page-in-stream", Src, Error, "With mapped-ram, page records never appear in the stream.", "migration/ram.c:ram_load_precopy", Some("Unexpected RAM flags");
    RAM_MAPPED_LAYOUT = "ram/mapped-ram/layout", Src, Error, "Mapped-ram regions are page aligned (1 MiB by the source), bitmap before pages, inside the file.", "migration/ram.c:parse_ramblock_mapped_ram", Some("bad alignment");
    RAM_MEM_SIZE_TOTAL = "ram/mem-size/total", Src, Error, "The block list's used lengths add up to the MEM_SIZE total.", "migration/ram.c:parse_ramblocks", None;
    RAM_MULTIFD_FLUSH_MAPPED = "ram/multifd-flush/mapped-ram", Src, Error, "MULTIFD_FLUSH is never sent with mapped-ram.", "migration/ram.c:ram_load_precopy", Some("Unexpected RAM flags");
    MULTIFD_DECODE = "multifd/decode", Src, Error, "Multifd channels carry one MultiFDInit_t then well-formed packets.", "migration/multifd.c:multifd_recv_unfill_packet", Some("multifd");
    MULTIFD_CHANNEL_ID = "multifd/channel-id", Src, Error, "Channel ids are below multifd-channels.", "migration/multifd.c:multifd_recv_initial_packet", Some("is greater than number of channels");
    MULTIFD_UUID = "multifd/uuid", Config, Error, "The channel UUID equals the destination's qemu_uuid.", "migration/multifd.c:multifd_recv_initial_packet", Some("received uuid");
    MULTIFD_UNKNOWN_BLOCK = "multifd/unknown-block", Src, Error, "Packets name a block of the MEM_SIZE list.", "migration/multifd-nocomp.c:multifd_ram_unfill_packet", Some("unknown ram block");
    MULTIFD_OUTSIDE = "multifd/offset-outside-block", Src, Error, "Packet offsets lie inside the block.", "migration/multifd-nocomp.c:multifd_ram_unfill_packet", Some("offset too long");
    MULTIFD_SYNC_MODE = "caps/multifd/sync-mode-mismatch", Config, Error, "Both sides sync multifd channels the same way: at every RAM section end (legacy: releases before 8.1, machine types up to 8.0, multifd-flush-after-each-section=on) or once per dirty round marked by MULTIFD_FLUSH.", "migration/multifd-nocomp.c:multifd_ram_flush_and_sync", None;
    MULTIFD_SYNC_COUNT = "multifd/sync/count", Src, Error, "Every multifd channel carries one SYNC packet per sync point of the main stream: each RAM EOS in legacy mode, each MULTIFD_FLUSH in modern mode (9.1 and 9.2 add one at completion).", "migration/multifd.c:multifd_send_sync_main", None;
    MULTIFD_COMPRESSION = "multifd/compression", Config, Unsupported, "Compressed multifd payloads are not inflated by qmig.", "migration/multifd-zlib.c", None;
    PREEMPT_UNREQUESTED = "postcopy/preempt/unrequested", Src, Warning, "The postcopy-preempt channel carries only pages the destination requested (REQ_PAGES / REQ_PAGES_ID).", "migration/ram.c:ram_save_queue_pages", None;
    PREEMPT_DECODE = "postcopy/preempt/decode", Src, Error, "The preempt channel carries bare RAM records ended by EOS.", "migration/ram.c:ram_load_postcopy", None;
}

/// Look a rule up by ID.
pub fn rule(id: &str) -> Option<&'static Rule> {
    CATALOGUE.iter().find(|r| r.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_shaped() {
        let mut seen = std::collections::HashSet::new();
        for r in CATALOGUE {
            assert!(seen.insert(r.id), "duplicate {}", r.id);
            assert!(
                r.id.split('/').count() >= 2 && r.id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '/' || c == '-'),
                "{}",
                r.id
            );
            assert!(r.qemu_ref.contains('/') || r.qemu_ref.contains('.'), "{} has no source ref", r.id);
            assert!(r.requirement.ends_with('.'), "{}", r.id);
        }
    }
}
