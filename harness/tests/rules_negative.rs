//! One deliberately wrong stream per rule, made with the encoder's raw emitters: each is
//! caught by exactly the rule it targets (no other warning or error), and the
//! well-formed baselines raise nothing.

use std::collections::BTreeSet;

use qmig_codec::codes::{CommandCode, RpMessageType, SectionType};
use qmig_codec::command::{Advise, Command, CommandBody};
use qmig_codec::ram::RamRecord;
use qmig_codec::return_path::{RpBody, RpMessage};
use qmig_harness::outcome::Status;
use qmig_harness::profile::SideProfile;
use qmig_harness::replay;
use qmig_harness::report::Report;
use qmig_harness::rules::{self, Severity};
use qmig_harness::synth::{self, eos, page_bytes, Builder, BLOCK, BLOCK_LEN};

fn side(v: &str, caps: &[&str]) -> SideProfile {
    SideProfile { version: v.parse().unwrap(), caps: caps.iter().map(|c| c.to_string()).collect(), ..SideProfile::default() }
}

fn rp() -> SideProfile {
    side("10.0", &["return-path"])
}

fn run(b: &Builder, src: SideProfile, dst: SideProfile) -> Report {
    replay::run(&b.loaded("synthetic"), src, Some(dst))
}

fn rules_of(r: &Report) -> BTreeSet<&'static str> {
    r.findings.iter().filter(|f| f.severity >= Severity::Warning).map(|f| f.rule).collect()
}

#[track_caller]
fn only(r: &Report, rule: &'static str) {
    let got = rules_of(r);
    assert_eq!(got, BTreeSet::from([rule]), "findings: {:#?}", r.findings);
    let f = r.findings.iter().find(|f| f.rule == rule).unwrap();
    assert!(!f.context.is_empty() || f.offset == 0, "finding has hex context");
}

/// Baseline up to (not including) the RAM END section.
fn base_until_end(b: &mut Builder, with_switchover_start: bool) {
    synth::baseline_head(b, &page_bytes(1), with_switchover_start);
}

fn finish(b: &mut Builder) {
    synth::baseline_tail(b, &page_bytes(2));
}

#[test]
fn baselines_are_clean() {
    let mut b = Builder::default();
    synth::baseline(&mut b, &page_bytes(1));
    let r = run(&b, rp(), rp());
    assert!(rules_of(&r).is_empty(), "{:#?}", r.findings);
    assert_eq!((r.outcome.src, r.outcome.dst, r.outcome.cause), (Status::Completed, Status::Completed, None));
    assert_eq!(r.exit_code(), 0);

    let mut b = Builder::default();
    synth::vfio_stream(&mut b);
    let s = side("10.0", &["return-path", "switchover-ack"]);
    let r = run(&b, s.clone(), s);
    assert!(rules_of(&r).is_empty(), "{:#?}", r.findings);

    let mut b = Builder::default();
    synth::postcopy_stream(&mut b);
    let s = side("10.0", &["postcopy-ram"]);
    let r = run(&b, s.clone(), s);
    assert!(rules_of(&r).is_empty(), "{:#?}", r.findings);
    assert_eq!(r.outcome.dst, Status::Completed);

    let mut b = Builder::default();
    synth::xbzrle_stream(&mut b);
    let s = side("10.0", &["xbzrle"]);
    let r = run(&b, s.clone(), s);
    assert!(rules_of(&r).is_empty(), "{:#?}", r.findings);
}

#[test]
fn header_magic_and_version() {
    let mut b = Builder::default();
    b.raw(b"QEVX\0\0\0\x03");
    only(&run(&b, rp(), rp()), rules::HEADER_MAGIC);
    let mut b = Builder::default();
    b.raw(b"QEVM\0\0\0\x02");
    only(&run(&b, rp(), rp()), rules::HEADER_VERSION);
}

#[test]
fn configuration_mismatches_are_outcomes_not_violations() {
    let mut b = Builder::default();
    synth::baseline(&mut b, &page_bytes(1));
    let r = run(&b, rp(), side("10.0", &["return-path", "x-ignore-shared"]));
    only(&r, rules::CONFIG_CAP_MISMATCH);
    assert_eq!(r.outcome.dst, Status::Failed);
    assert_eq!(r.outcome.cause, Some(rules::CONFIG_CAP_MISMATCH));
    assert_eq!(r.exit_code(), 0, "a destination refusing a mismatched configuration is not a violation");

    let mut dst = rp();
    dst.machine = Some("pc-q35-10.0".into());
    only(&run(&b, rp(), dst), rules::CONFIG_MACHINE);
}

#[test]
fn unknown_capability() {
    let mut b = Builder::default();
    b.header().config(b"pc-i440fx-10.0", &[b"bogus-cap"]);
    b.eof(&[]);
    let r = run(&b, side("10.0", &[]), side("10.0", &[]));
    assert!(rules_of(&r).contains(rules::CONFIG_CAP_UNKNOWN), "{:#?}", r.findings);
    assert!(!rules_of(&r).contains(rules::CONFIG_CAP_UNVALIDATED));
}

#[test]
fn framing_rules() {
    // PART for an id never announced.
    let mut b = Builder::default();
    base_until_end(&mut b, true);
    b.section(SectionType::PART, 9, None).ram(&[eos()]).footer(9);
    finish(&mut b);
    only(&run(&b, rp(), rp()), rules::UNKNOWN_ID);

    // A footer with the wrong id.
    let mut b = Builder::default();
    base_until_end(&mut b, true);
    b.section(SectionType::PART, 2, None).ram(&[eos()]).footer(7);
    finish(&mut b);
    let r = run(&b, rp(), rp());
    only(&r, rules::FOOTER);
    assert!(r.findings[0].section.as_ref().is_some_and(|s| s.id == 2 && s.idstr == "ram"), "{:?}", r.findings[0].section);

    // PART after END.
    let mut b = Builder::default();
    synth::baseline(&mut b, &page_bytes(1));
    let eof_at = b.main.iter().rposition(|&x| x == 0).unwrap();
    let _ = eof_at;
    let mut b = Builder::default();
    base_until_end(&mut b, true);
    b.ram_part(SectionType::END, 2, 0x2000, &page_bytes(2)).ram_part(SectionType::PART, 2, 0x3000, &page_bytes(2));
    b.device(3, b"timer", &[0u8; 24]).eof(&[("timer", 24)]);
    only(&run(&b, rp(), rp()), rules::PART_AFTER_END);

    // An iterable section never ended.
    let mut b = Builder::default();
    base_until_end(&mut b, true);
    b.device(3, b"timer", &[0u8; 24]).eof(&[("timer", 24)]);
    only(&run(&b, rp(), rp()), rules::ITERABLE_NOT_ENDED);

    // The same device sent twice.
    let mut b = Builder::default();
    base_until_end(&mut b, true);
    b.device(4, b"timer", &[0u8; 24]);
    finish(&mut b);
    only(&run(&b, rp(), rp()), rules::DUPLICATE_DEVICE);

    // An unknown item type.
    let mut b = Builder::default();
    base_until_end(&mut b, true);
    b.raw(&[0x42, 1, 2, 3]);
    let r = run(&b, rp(), rp());
    only(&r, rules::UNKNOWN_TYPE);
    assert_eq!(r.outcome.dst, Status::Failed);

    // Truncated inside a page.
    let mut b = Builder::default();
    synth::baseline(&mut b, &page_bytes(1));
    b.main.truncate(300);
    only(&run(&b, rp(), rp()), rules::TRUNCATED);

    // No vmdesc after EOF (QEMU prints and goes on).
    let mut b = Builder::default();
    base_until_end(&mut b, true);
    b.ram_part(SectionType::END, 2, 0x2000, &page_bytes(2)).eof_only();
    let r = run(&b, rp(), rp());
    only(&r, rules::VMDESC_MISSING);
    assert_eq!(r.src.verdict, qmig_harness::report::Verdict::PassLenient);
    assert_eq!(r.outcome.dst, Status::Completed);
}

#[test]
fn command_rules() {
    // Unknown command code.
    let mut b = Builder::default();
    base_until_end(&mut b, true);
    b.cmd(CommandCode(0x55), CommandBody::Unknown { payload: b"" });
    finish(&mut b);
    only(&run(&b, rp(), rp()), rules::CMD_UNKNOWN);

    // Fixed-length command with a wrong length.
    let mut b = Builder::default();
    base_until_end(&mut b, true);
    let mut c = Command::new(CommandCode::PING, CommandBody::Ping { value: 7 });
    c.len = 3;
    b.main(|o| c.encode(o));
    only(&run(&b, rp(), rp()), rules::CMD_LENGTH);

    // PING without a return path.
    let mut b = Builder::default();
    b.header().config(b"pc-i440fx-10.0", &[]).cmd(CommandCode::PING, CommandBody::Ping { value: 1 }).ram_setup(2);
    b.cmd(CommandCode::SWITCHOVER_START, CommandBody::SwitchoverStart);
    b.section(SectionType::END, 2, None).ram(&[eos()]).footer(2).eof(&[]);
    only(&run(&b, side("10.0", &[]), side("10.0", &[])), rules::CMD_PING_NO_RP);

    // OPEN_RETURN_PATH although the source has neither return-path nor postcopy-ram.
    let mut b = Builder::default();
    synth::baseline(&mut b, &page_bytes(1));
    only(&run(&b, side("10.0", &[]), side("10.0", &[])), rules::CMD_RP_NOT_ENABLED);

    // SWITCHOVER_START to an 8.2 destination.
    let mut b = Builder::default();
    synth::baseline(&mut b, &page_bytes(1));
    let r = run(&b, rp(), side("8.2", &["return-path"]));
    only(&r, rules::CMD_SWITCHOVER_START_UNKNOWN);
    assert_eq!(r.outcome.cause, Some(rules::CMD_SWITCHOVER_START_UNKNOWN));

    // Postcopy ADVISE(16) to a destination without postcopy-ram.
    let mut b = Builder::default();
    b.header().config(b"pc-i440fx-10.0", &[]).cmd(CommandCode::OPEN_RETURN_PATH, CommandBody::OpenReturnPath);
    b.cmd(CommandCode::POSTCOPY_ADVISE, CommandBody::PostcopyAdvise(Advise::Sizes { ram_pagesize_summary: 4096, target_page_size: 4096 }));
    b.ram_setup(2).cmd(CommandCode::SWITCHOVER_START, CommandBody::SwitchoverStart);
    finish(&mut b);
    let r = run(&b, side("10.0", &["postcopy-ram"]), rp());
    assert!(rules_of(&r).contains(rules::CAPS_POSTCOPY_ONE_SIDED), "{:#?}", r.findings);
    assert_eq!(r.outcome.cause, Some(rules::CAPS_POSTCOPY_ONE_SIDED));

    // LISTEN / RUN / DISCARD in the wrong postcopy state.
    for (code, body, rule) in [
        (CommandCode::POSTCOPY_LISTEN, CommandBody::PostcopyListen, rules::CMD_LISTEN_STATE),
        (CommandCode::POSTCOPY_RUN, CommandBody::PostcopyRun, rules::CMD_RUN_STATE),
    ] {
        let mut b = Builder::default();
        base_until_end(&mut b, true);
        b.cmd(code, body);
        finish(&mut b);
        only(&run(&b, rp(), rp()), rule);
    }
    let ranges = [0u64.to_be_bytes(), 0x1000u64.to_be_bytes()].concat();
    let mut b = Builder::default();
    base_until_end(&mut b, true);
    b.cmd(
        CommandCode::POSTCOPY_RAM_DISCARD,
        CommandBody::PostcopyRamDiscard { version: 0, block: BLOCK, nil: 0, ranges: &ranges, count: 1 },
    );
    finish(&mut b);
    only(&run(&b, rp(), rp()), rules::CMD_DISCARD_STATE);

    // RESUME outside recovery.
    let mut b = Builder::default();
    base_until_end(&mut b, true);
    b.cmd(CommandCode::POSTCOPY_RESUME, CommandBody::PostcopyResume);
    finish(&mut b);
    only(&run(&b, rp(), rp()), rules::CMD_RECOVERY_ONLY);
}

#[test]
fn packaged_without_run() {
    let mut pkg = Vec::new();
    Command::new(CommandCode::POSTCOPY_LISTEN, CommandBody::PostcopyListen).encode(&mut pkg);
    let mut b = Builder::default();
    b.header().config(b"pc-i440fx-10.0", &[]).cmd(CommandCode::OPEN_RETURN_PATH, CommandBody::OpenReturnPath);
    b.cmd(CommandCode::POSTCOPY_ADVISE, CommandBody::PostcopyAdvise(Advise::Sizes { ram_pagesize_summary: 4096, target_page_size: 4096 }));
    b.ram_setup(2).cmd(CommandCode::SWITCHOVER_START, CommandBody::SwitchoverStart);
    b.cmd(CommandCode::PACKAGED, CommandBody::Packaged { length: pkg.len() as u32 }).raw(&pkg);
    b.section(SectionType::END, 2, None).ram(&[eos()]).footer(2).eof_only();
    let s = side("10.0", &["postcopy-ram"]);
    only(&run(&b, s.clone(), s), rules::CMD_PACKAGED_CONTENT);
}

#[test]
fn ram_rules() {
    let page = page_bytes(4);
    let cases: Vec<(&'static str, Vec<RamRecord<'_>>)> = vec![
        (rules::RAM_UNKNOWN_BLOCK, vec![RamRecord::Page { raw: 8, offset: 0, block: Some(b"bogus"), block_index: None, data: &page }]),
        (
            rules::RAM_OUTSIDE,
            vec![RamRecord::Page { raw: BLOCK_LEN | 8, offset: BLOCK_LEN, block: Some(BLOCK), block_index: Some(0), data: &page }],
        ),
        (rules::RAM_ZERO_FILL, vec![RamRecord::Zero { raw: 2, offset: 0, block: Some(BLOCK), block_index: Some(0), fill: 1 }]),
    ];
    for (rule, recs) in cases {
        let mut b = Builder::default();
        base_until_end(&mut b, true);
        let mut all = recs.clone();
        all.push(eos());
        b.section(SectionType::PART, 2, None).ram(&all).footer(2);
        finish(&mut b);
        let r = run(&b, rp(), rp());
        only(&r, rule);
        assert_eq!(r.outcome.dst, Status::Failed, "{rule}");
    }
    // MULTIFD_FLUSH to a 7.2 destination (stream from a 7.2 machine type: no SWITCHOVER_START).
    let mut b = Builder::default();
    base_until_end(&mut b, false);
    b.section(SectionType::PART, 2, None).ram(&[RamRecord::MultifdFlush { raw: 0x200 }, eos()]).footer(2);
    finish(&mut b);
    only(&run(&b, rp(), side("7.2", &["return-path"])), rules::RAM_FLAG_VERSION);

    // A page before any MEM_SIZE list.
    let mut b = Builder::default();
    b.header().config(b"pc-i440fx-10.0", &[]).cmd(CommandCode::OPEN_RETURN_PATH, CommandBody::OpenReturnPath);
    b.section(SectionType::START, 2, Some((b"ram", 0, 4)))
        .ram(&[RamRecord::Page { raw: 8, offset: 0, block: Some(BLOCK), block_index: None, data: &page }, eos()])
        .footer(2);
    b.cmd(CommandCode::SWITCHOVER_START, CommandBody::SwitchoverStart);
    finish(&mut b);
    only(&run(&b, rp(), rp()), rules::RAM_BEFORE_BLOCKS);

    // ram section version 3.
    let mut b = Builder::default();
    b.header().config(b"pc-i440fx-10.0", &[]).cmd(CommandCode::OPEN_RETURN_PATH, CommandBody::OpenReturnPath);
    b.section(SectionType::START, 2, Some((b"ram", 0, 3)))
        .ram(&[eos()])
        .footer(2)
        .cmd(CommandCode::SWITCHOVER_START, CommandBody::SwitchoverStart);
    b.section(SectionType::END, 2, None).ram(&[eos()]).footer(2).eof(&[]);
    only(&run(&b, rp(), rp()), rules::RAM_VERSION);
}

#[test]
fn return_path_rules() {
    let mut b = Builder::default();
    base_until_end(&mut b, true);
    b.rp(RpMessage::new(RpMessageType::PONG, RpBody::Pong { value: 6 }));
    finish(&mut b);
    only(&run(&b, rp(), rp()), rules::RP_PONG_UNMATCHED);

    let mut b = Builder::default();
    base_until_end(&mut b, true);
    b.cmd(CommandCode::PING, CommandBody::Ping { value: 5 });
    finish(&mut b);
    only(&run(&b, rp(), rp()), rules::RP_PONG_MISSING);

    let mut b = Builder::default();
    base_until_end(&mut b, true);
    b.rp(RpMessage::new(RpMessageType::SWITCHOVER_ACK, RpBody::SwitchoverAck));
    finish(&mut b);
    only(&run(&b, rp(), rp()), rules::RP_ACK_UNEXPECTED);

    let ack = side("10.0", &["return-path", "switchover-ack"]);
    let mut b = Builder::default();
    base_until_end(&mut b, false);
    b.rp(RpMessage::new(RpMessageType::SWITCHOVER_ACK, RpBody::SwitchoverAck))
        .rp(RpMessage::new(RpMessageType::SWITCHOVER_ACK, RpBody::SwitchoverAck));
    b.cmd(CommandCode::SWITCHOVER_START, CommandBody::SwitchoverStart);
    finish(&mut b);
    only(&run(&b, ack.clone(), ack.clone()), rules::RP_ACK_DUPLICATE);

    // The source switches over before the ack.
    let mut b = Builder::default();
    base_until_end(&mut b, true);
    b.ram_part(SectionType::END, 2, 0x2000, &page_bytes(2)).rp(RpMessage::new(RpMessageType::SWITCHOVER_ACK, RpBody::SwitchoverAck));
    b.device(3, b"timer", &[0u8; 24]).eof(&[("timer", 24)]);
    only(&run(&b, ack.clone(), ack.clone()), rules::SRC_BEFORE_ACK);

    // Page request in precopy.
    let mut b = Builder::default();
    base_until_end(&mut b, true);
    b.rp(RpMessage::new(RpMessageType::REQ_PAGES_ID, RpBody::ReqPagesId { start: 0, len: 4096, block: BLOCK }));
    finish(&mut b);
    only(&run(&b, rp(), rp()), rules::RP_REQ_NOT_POSTCOPY);

    // Unknown type; bad resume ack.
    let mut b = Builder::default();
    base_until_end(&mut b, true);
    b.rp(RpMessage::new(RpMessageType(42), RpBody::Unknown { payload: b"" }));
    finish(&mut b);
    only(&run(&b, rp(), rp()), rules::RP_UNKNOWN);
    let mut b = Builder::default();
    base_until_end(&mut b, true);
    b.rp(RpMessage::new(RpMessageType::RESUME_ACK, RpBody::ResumeAck { value: 2 }));
    finish(&mut b);
    only(&run(&b, rp(), rp()), rules::RP_RESUME_ACK);
}

#[test]
fn postcopy_page_request_outside_block() {
    let mut b = Builder::default();
    synth::postcopy_stream(&mut b);
    b.rp(RpMessage::new(RpMessageType::REQ_PAGES, RpBody::ReqPages { start: BLOCK_LEN, len: 4096 }));
    let s = side("10.0", &["postcopy-ram"]);
    only(&run(&b, s.clone(), s), rules::RP_REQ_OUTSIDE);
}

#[test]
fn switchover_ack_one_sided_leaves_the_source_waiting() {
    // The source waits for the ack: the stream stops after the iterations.
    let mut b = Builder::default();
    base_until_end(&mut b, false);
    let r = replay::run(&b.loaded("waiting"), side("10.0", &["return-path", "switchover-ack"]), Some(rp()));
    assert_eq!((r.outcome.src, r.outcome.cause), (Status::Waiting, Some(rules::SRC_ACK_WAITING)));
}

#[test]
fn vfio_init_data_sent_without_switchover_ack() {
    let mut b = Builder::default();
    synth::vfio_stream_ack(&mut b, false);
    let r = run(&b, rp(), rp());
    only(&r, rules::VFIO_INIT_WITHOUT_ACK);
    assert_eq!(r.outcome.dst, Status::Failed);
}
