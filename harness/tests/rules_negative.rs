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

// ---------------------------------------------------------------------------------------
// The rest of the catalogue: one deliberately wrong stream (or settings) per rule.

use qmig_codec::codes::VfioTag;
use qmig_codec::config::{ConfigSubsection, Configuration};
use qmig_codec::multifd::MULTIFD_MAGIC;
use qmig_codec::vfio::VfioRecord;
use qmig_codec::vmdesc::VmDescTrailer;
use qmig_codec::Channel;
use qmig_harness::outcome;

/// Info rules are not violations: the rule is reported, and nothing at warning or above.
#[track_caller]
fn only_info(r: &Report, rule: &'static str) {
    assert!(rules_of(r).is_empty(), "findings: {:#?}", r.findings);
    assert!(r.findings.iter().any(|f| f.rule == rule && f.severity == Severity::Info), "{rule} missing: {:#?}", r.findings);
}

fn with_params(mut p: SideProfile, kv: &[(&str, serde_json::Value)]) -> SideProfile {
    for (k, v) in kv {
        p.params.insert(k.to_string(), v.clone());
    }
    p
}

fn multifd(v: &str) -> SideProfile {
    with_params(side(v, &["multifd"]), &[("multifd-channels", 2.into())])
}

/// The tail of the baseline without the destination's SHUT (for sides without a return path).
fn tail_no_rp(b: &mut Builder) {
    b.ram_part(SectionType::END, 2, 0x2000, &page_bytes(2)).device(3, b"timer", &[0u8; 24]).eof(&[("timer", 24)]);
}

fn config_with(b: &mut Builder, subsections: Vec<ConfigSubsection<'_>>) {
    let c = Configuration { machine: b"pc-i440fx-10.0", subsections };
    b.main(|o| c.encode(o));
}

#[test]
fn configuration_rules() {
    // No configuration section at all.
    let mut b = Builder::default();
    b.header().cmd(CommandCode::OPEN_RETURN_PATH, CommandBody::OpenReturnPath).ram_setup(2).ram_part(
        SectionType::PART,
        2,
        0,
        &page_bytes(1),
    );
    tail_no_rp(&mut b);
    let r = run(&b, rp(), rp());
    only(&r, rules::CONFIG_MISSING);
    assert_eq!(r.outcome.dst, Status::Failed);

    // 64 KiB target pages (the stream then carries no pages, so nothing else misparses).
    let mut b = Builder::default();
    b.header();
    config_with(&mut b, vec![ConfigSubsection::TargetPageBits { version: 1, bits: 16 }]);
    b.ram_setup(2).section(SectionType::END, 2, None).ram(&[eos()]).footer(2).device(3, b"timer", &[0u8; 24]).eof(&[("timer", 24)]);
    let r = run(&b, side("10.0", &[]), side("10.0", &[]));
    only(&r, rules::CONFIG_PAGE_BITS);
    assert_eq!(r.outcome.cause, Some(rules::CONFIG_PAGE_BITS));

    // validate-uuid with a different destination UUID.
    let uuid = [0x11u8; 16];
    let mut b = Builder::default();
    b.header();
    config_with(&mut b, vec![ConfigSubsection::Uuid { version: 1, uuid: &uuid }]);
    b.ram_setup(2).ram_part(SectionType::PART, 2, 0, &page_bytes(1));
    tail_no_rp(&mut b);
    let mut dst = side("10.0", &["validate-uuid"]);
    dst.uuid = Some("22222222-2222-2222-2222-222222222222".into());
    let r = run(&b, side("10.0", &["validate-uuid"]), dst);
    only(&r, rules::CONFIG_UUID);
    assert_eq!(r.outcome.cause, Some(rules::CONFIG_UUID));
}

#[test]
fn settings_only_rules() {
    // The source's machine type does not exist in the destination's QEMU.
    let mut src = side("10.0", &[]);
    src.machine = Some("pc-q35-10.0".into());
    let p = outcome::preflight(&src, &side("7.2", &[]));
    assert_eq!(p[0].0, rules::CAPS_MACHINE_UNKNOWN, "{p:?}");
    assert_eq!(p[0].2.dst, Status::NotRun);

    // return-path on the source only: the destination follows OPEN_RETURN_PATH anyway.
    let mut b = Builder::default();
    synth::baseline(&mut b, &page_bytes(1));
    only_info(&run(&b, rp(), side("10.0", &[])), rules::CAPS_RETURN_PATH_ONE_SIDED);

    // multifd sync modes differ: flush-after-each-section on the source only.
    let legacy = with_params(multifd("10.0"), &[("multifd-flush-after-each-section", true.into())]);
    let p = outcome::preflight(&legacy, &multifd("10.0"));
    assert_eq!(p.iter().map(|(r, _, _)| *r).collect::<Vec<_>>(), vec![rules::MULTIFD_SYNC_MODE], "{p:?}");
    assert_eq!(p[0].2.dst, Status::Failed);
    let p = outcome::preflight(&multifd("10.0"), &legacy);
    assert_eq!(p[0].2.dst, Status::Waiting);
}

#[test]
fn more_framing_rules() {
    // A device the vmdesc (standing for the destination's device list) does not have.
    let mut b = Builder::default();
    base_until_end(&mut b, true);
    b.ram_part(SectionType::END, 2, 0x2000, &page_bytes(2))
        .device(3, b"timer", &[0u8; 24])
        .device(4, b"bogus", &[1, 2, 3])
        .eof(&[("timer", 24)])
        .rp(RpMessage::new(RpMessageType::SHUT, RpBody::Shut { error: 0 }));
    let r = run(&b, rp(), rp());
    only(&r, rules::UNKNOWN_DEVICE);
    assert_eq!(r.outcome.cause, Some(rules::UNKNOWN_DEVICE));

    // A section id announced twice.
    let mut b = Builder::default();
    base_until_end(&mut b, true);
    b.ram_part(SectionType::END, 2, 0x2000, &page_bytes(2)).device(2, b"timer", &[0u8; 24]).eof(&[("timer", 24)]);
    b.rp(RpMessage::new(RpMessageType::SHUT, RpBody::Shut { error: 0 }));
    only(&run(&b, rp(), rp()), rules::DUPLICATE_ID);

    // vmdesc describes a device that was never sent.
    let mut b = Builder::default();
    base_until_end(&mut b, true);
    b.ram_part(SectionType::END, 2, 0x2000, &page_bytes(2)).device(3, b"timer", &[0u8; 24]).eof(&[("timer", 24), ("ghost", 4)]);
    b.rp(RpMessage::new(RpMessageType::SHUT, RpBody::Shut { error: 0 }));
    only(&run(&b, rp(), rp()), rules::VMDESC_MISMATCH);

    // Bytes after the vmdesc.
    let mut b = Builder::default();
    base_until_end(&mut b, true);
    b.ram_part(SectionType::END, 2, 0x2000, &page_bytes(2)).device(3, b"timer", &[0u8; 24]).eof(&[("timer", 24)]).raw(b"junk");
    b.rp(RpMessage::new(RpMessageType::SHUT, RpBody::Shut { error: 0 }));
    let r = run(&b, rp(), rp());
    only(&r, rules::AFTER_EOF);
    assert_eq!(r.outcome.dst, Status::Completed);

    // A vmdesc after a postcopy stream.
    let mut b = Builder::default();
    synth::postcopy_stream(&mut b);
    let json = br#"{"page_size":4096,"devices":[{"name":"timer","instance_id":0,"fields":[{"name":"d","type":"buffer","size":24}]}]}"#;
    b.main(|o| VmDescTrailer { len: json.len() as u32, json }.encode(o));
    let s = side("10.0", &["postcopy-ram"]);
    only(&run(&b, s.clone(), s), rules::EOF_IN_POSTCOPY);

    // Without vmdesc the device sections are delimited by their footers (informational).
    let mut b = Builder::default();
    synth::postcopy_stream(&mut b);
    let s = side("10.0", &["postcopy-ram"]);
    only_info(&run(&b, s.clone(), s), rules::BOUNDARY_INFERRED);

    // A CONTINUE page before any page named its block: the loader cannot frame it.
    let mut b = Builder::default();
    b.header().config(b"pc-i440fx-10.0", &[]).cmd(CommandCode::OPEN_RETURN_PATH, CommandBody::OpenReturnPath).ram_setup(2);
    let page = page_bytes(1);
    b.section(SectionType::PART, 2, None)
        .ram(&[RamRecord::Page { raw: 0x28, offset: 0, block: None, block_index: None, data: &page }, eos()]);
    let r = run(&b, rp(), rp());
    only(&r, rules::DECODE);
    assert_eq!(r.outcome.dst, Status::Failed);
}

#[test]
fn more_command_rules() {
    // Return path on, but the setup sections start before OPEN_RETURN_PATH.
    let mut b = Builder::default();
    b.header().config(b"pc-i440fx-10.0", &[]).ram_setup(2).ram_part(SectionType::PART, 2, 0, &page_bytes(1));
    b.cmd(CommandCode::SWITCHOVER_START, CommandBody::SwitchoverStart);
    tail_no_rp(&mut b);
    only(&run(&b, rp(), rp()), rules::CMD_RP_MISSING);

    let pc = side("10.0", &["return-path", "postcopy-ram"]);
    let advise = || CommandBody::PostcopyAdvise(Advise::Sizes { ram_pagesize_summary: 4096, target_page_size: 4096 });
    // ADVISE twice.
    let mut b = Builder::default();
    b.header().config(b"pc-i440fx-10.0", &[]).cmd(CommandCode::OPEN_RETURN_PATH, CommandBody::OpenReturnPath);
    b.cmd(CommandCode::POSTCOPY_ADVISE, advise()).cmd(CommandCode::POSTCOPY_ADVISE, advise());
    b.ram_setup(2).ram_part(SectionType::PART, 2, 0, &page_bytes(1)).cmd(CommandCode::SWITCHOVER_START, CommandBody::SwitchoverStart);
    tail_no_rp(&mut b);
    let r = run(&b, pc.clone(), pc.clone());
    only(&r, rules::CMD_ADVISE_STATE);
    assert_eq!(r.outcome.cause, Some(rules::CMD_ADVISE_STATE));

    // postcopy-ram on, no ADVISE before setup.
    let mut b = Builder::default();
    b.header().config(b"pc-i440fx-10.0", &[]).cmd(CommandCode::OPEN_RETURN_PATH, CommandBody::OpenReturnPath);
    b.ram_setup(2).ram_part(SectionType::PART, 2, 0, &page_bytes(1)).cmd(CommandCode::SWITCHOVER_START, CommandBody::SwitchoverStart);
    tail_no_rp(&mut b);
    only(&run(&b, pc.clone(), pc.clone()), rules::CMD_ADVISE_MISSING);

    // A 0-byte ADVISE (source without postcopy-ram) to a destination with postcopy-ram.
    let mut b = Builder::default();
    b.header().config(b"pc-i440fx-10.0", &[]).cmd(CommandCode::OPEN_RETURN_PATH, CommandBody::OpenReturnPath);
    b.cmd(CommandCode::POSTCOPY_ADVISE, CommandBody::PostcopyAdvise(Advise::Empty));
    b.ram_setup(2).ram_part(SectionType::PART, 2, 0, &page_bytes(1)).cmd(CommandCode::SWITCHOVER_START, CommandBody::SwitchoverStart);
    tail_no_rp(&mut b);
    let r = run(&b, side("10.0", &["return-path"]), pc.clone());
    only(&r, rules::CMD_ADVISE_MISMATCH);
    assert_eq!(r.outcome.dst, Status::Failed);

    // DISCARD of a block the source never announced; DISCARD with version 1.
    let s = side("10.0", &["postcopy-ram"]);
    for (version, block) in [(0u8, &b"bogus"[..]), (1, BLOCK)] {
        let mut b = Builder::default();
        synth::postcopy_stream_discard(&mut b, version, block);
        let r = run(&b, s.clone(), s.clone());
        only(&r, rules::CMD_DISCARD_FORMAT);
        assert_eq!(r.outcome.dst, Status::Failed, "version {version}");
    }

    // COLO is not modelled: reported as unsupported, never a silent pass.
    let mut b = Builder::default();
    b.header().config(b"pc-i440fx-10.0", &[]).cmd(CommandCode::OPEN_RETURN_PATH, CommandBody::OpenReturnPath);
    b.cmd(CommandCode::ENABLE_COLO, CommandBody::EnableColo).ram_setup(2).ram_part(SectionType::PART, 2, 0, &page_bytes(1));
    b.cmd(CommandCode::SWITCHOVER_START, CommandBody::SwitchoverStart);
    tail_no_rp(&mut b);
    let r = run(&b, rp(), rp());
    only(&r, rules::CMD_COLO);
    assert_eq!(r.exit_code(), 3);
}

#[test]
fn more_return_path_rules() {
    // A PONG with length 8 (PONG is 4 bytes).
    let mut b = Builder::default();
    base_until_end(&mut b, true);
    b.rp_raw(&[0, 3, 0, 8, 0, 0, 0, 1, 0, 0, 0, 1]);
    finish(&mut b);
    only(&run(&b, rp(), rp()), rules::RP_BAD);

    // Return-path bytes although the source never opened it.
    let mut b = Builder::default();
    b.header().config(b"pc-i440fx-10.0", &[]).ram_setup(2).ram_part(SectionType::PART, 2, 0, &page_bytes(1));
    b.cmd(CommandCode::SWITCHOVER_START, CommandBody::SwitchoverStart);
    tail_no_rp(&mut b);
    b.rp(RpMessage::new(RpMessageType::SHUT, RpBody::Shut { error: 0 }));
    only(&run(&b, side("10.0", &[]), side("10.0", &[])), rules::RP_WITHOUT_OPEN);

    // A postcopy page request for a block the source never announced.
    let mut b = Builder::default();
    synth::postcopy_stream(&mut b);
    b.rp(RpMessage::new(RpMessageType::REQ_PAGES_ID, RpBody::ReqPagesId { start: 0, len: 4096, block: b"bogus" }));
    let s = side("10.0", &["postcopy-ram"]);
    only(&run(&b, s.clone(), s), rules::RP_REQ_UNKNOWN_BLOCK);

    // SHUT(1): the destination tells the source it failed (informational).
    let mut b = Builder::default();
    base_until_end(&mut b, true);
    tail_no_rp(&mut b);
    b.rp(RpMessage::new(RpMessageType::SHUT, RpBody::Shut { error: 1 }));
    only_info(&run(&b, rp(), rp()), rules::RP_SHUT_ERROR);
}

/// A VFIO stream whose START body is `start` and with one extra `part` tag, 10.0 framing.
fn vfio_with(b: &mut Builder, start: &[VfioRecord<'_>], part: &[VfioRecord<'_>]) {
    b.header().config(b"pc-q35-10.0", &[]).cmd(CommandCode::OPEN_RETURN_PATH, CommandBody::OpenReturnPath).ram_setup(2);
    b.section(SectionType::START, 5, Some((b"0000:00:05.0/vfio", 0, 1))).vfio(start).footer(5);
    b.section(SectionType::PART, 5, None).vfio(part).footer(5);
    b.ram_part(SectionType::PART, 2, 0, &page_bytes(1)).cmd(CommandCode::SWITCHOVER_START, CommandBody::SwitchoverStart);
    b.ram_part(SectionType::END, 2, 0x2000, &page_bytes(1));
    b.section(SectionType::END, 5, None).vfio(&[VfioRecord::Marker { tag: VfioTag::END_OF_STATE }]).footer(5);
    b.eof(&[]);
}

#[test]
fn more_vfio_rules() {
    let data = page_bytes(3);
    let eos = VfioRecord::Marker { tag: VfioTag::END_OF_STATE };
    // Setup state not closed by END_OF_STATE.
    let mut b = Builder::default();
    vfio_with(
        &mut b,
        &[VfioRecord::Marker { tag: VfioTag::DEV_SETUP_STATE }, VfioRecord::Data { size: 16, data: &data[..16] }, eos],
        &[VfioRecord::Data { size: 16, data: &data[..16] }, eos],
    );
    let r = run(&b, rp(), rp());
    only(&r, rules::VFIO_ORDER);
    assert_eq!(r.outcome.dst, Status::Failed);

    // DEV_CONFIG_LOAD_READY (10.1) to a 10.0 destination.
    let mut b = Builder::default();
    vfio_with(
        &mut b,
        &[VfioRecord::Marker { tag: VfioTag::DEV_SETUP_STATE }, eos],
        &[VfioRecord::Marker { tag: VfioTag::DEV_CONFIG_LOAD_READY }],
    );
    let r = run(&b, side("10.1", &["return-path"]), rp());
    only(&r, rules::VFIO_LOAD_READY_VERSION);
    assert_eq!(r.outcome.dst, Status::Failed);
}

/// The real mapped-ram vector, with `edit` applied to its stream bytes.
fn mapped_ram_variant(edit: impl FnOnce(&mut Vec<u8>)) -> Report {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../vectors/file100-mapped-ram");
    let mut l = replay::load(&dir).expect("vector");
    edit(&mut l.channels[0].bytes);
    let (src, dst) = replay::sides(l.meta.as_ref());
    replay::run(&l, src, dst)
}

/// Offset of the first PART section's EOS in file100-mapped-ram (from `qmig inspect`).
const MAPPED_PART_EOS: usize = 0x52_0012;

#[test]
fn mapped_ram_and_ram_rules() {
    let r = mapped_ram_variant(|_| {});
    assert!(rules_of(&r).is_empty(), "{:#?}", r.findings);

    // A page record in the stream of a mapped-ram migration.
    let r = mapped_ram_variant(|b| {
        let mut rec = Vec::new();
        RamRecord::Zero { raw: 0x02, offset: 0, block: Some(b"ram0"), block_index: None, fill: 0 }.encode(&mut rec);
        b.splice(MAPPED_PART_EOS..MAPPED_PART_EOS, rec);
    });
    only(&r, rules::RAM_MAPPED_PAGES_IN_STREAM);
    assert_eq!(r.outcome.dst, Status::Failed);

    // MULTIFD_FLUSH with mapped-ram.
    let r = mapped_ram_variant(|b| {
        let mut rec = Vec::new();
        RamRecord::MultifdFlush { raw: 0x200 }.encode(&mut rec);
        b.splice(MAPPED_PART_EOS..MAPPED_PART_EOS, rec);
    });
    only(&r, rules::RAM_MULTIFD_FLUSH_MAPPED);

    // pages_offset of ram0 (be64 at 0x84) not page aligned.
    let r = mapped_ram_variant(|b| b[0x84..0x8c].copy_from_slice(&0x10_0800u64.to_be_bytes()));
    only(&r, rules::RAM_MAPPED_LAYOUT);
    assert_eq!(r.outcome.dst, Status::Failed);

    // The block list adds up to more than MEM_SIZE.
    let mut b = Builder::default();
    b.header().config(b"pc-i440fx-10.0", &[]).cmd(CommandCode::OPEN_RETURN_PATH, CommandBody::OpenReturnPath);
    b.ram_setup_with(2, 0x8000, None, &[]);
    let r = run(&b, rp(), rp());
    only(&r, rules::RAM_MEM_SIZE_TOTAL);
    assert_eq!(r.outcome.dst, Status::Failed);

    // XBZRLE pages without the capability.
    let mut b = Builder::default();
    synth::xbzrle_stream(&mut b);
    only(&run(&b, side("10.0", &[]), side("10.0", &[])), rules::RAM_XBZRLE_WITHOUT_CAP);
}

#[test]
fn multifd_rules() {
    let clean = |b: &mut Builder| synth::multifd_stream(b, 2, 2);
    let mut b = Builder::default();
    clean(&mut b);
    let r = run(&b, multifd("10.0"), multifd("10.0"));
    assert!(rules_of(&r).is_empty(), "{:#?}", r.findings);
    assert_eq!((r.outcome.src, r.outcome.dst), (Status::Completed, Status::Completed));

    // One SYNC too many on every channel.
    let mut b = Builder::default();
    synth::multifd_stream(&mut b, 2, 3);
    only(&run(&b, multifd("10.0"), multifd("10.0")), rules::MULTIFD_SYNC_COUNT);

    // Sync modes differ (flush-after-each-section on the destination only): it hangs.
    let mut b = Builder::default();
    clean(&mut b);
    let legacy = with_params(multifd("10.0"), &[("multifd-flush-after-each-section", "on".into())]);
    let r = run(&b, multifd("10.0"), legacy);
    only(&r, rules::MULTIFD_SYNC_MODE);
    assert_eq!((r.outcome.dst, r.outcome.cause), (Status::Waiting, Some(rules::MULTIFD_SYNC_MODE)));

    // multifd on the source only.
    let mut b = Builder::default();
    clean(&mut b);
    let r = run(&b, multifd("10.0"), side("10.0", &[]));
    only(&r, rules::CAPS_MULTIFD_ONE_SIDED);

    // A channel that does not start with MultiFDInit_t.
    let mut b = Builder::default();
    clean(&mut b);
    b.chan(Channel::Multifd(2), |o| o.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]));
    let r = run(&b, multifd("10.0"), with_params(multifd("10.0"), &[("multifd-channels", 3.into())]));
    only(&r, rules::MULTIFD_DECODE);

    // A channel id beyond multifd-channels.
    let mut b = Builder::default();
    clean(&mut b);
    b.chan(Channel::Multifd(2), |o| o.extend_from_slice(&synth::multifd_init(7, &[0; 16])));
    only(&run(&b, multifd("10.0"), multifd("10.0")), rules::MULTIFD_CHANNEL_ID);

    // A channel UUID that is not the destination's.
    let mut b = Builder::default();
    clean(&mut b);
    let mut dst = multifd("10.0");
    dst.uuid = Some("33333333-3333-3333-3333-333333333333".into());
    let r = run(&b, multifd("10.0"), dst);
    only(&r, rules::MULTIFD_UUID);
    assert_eq!(r.outcome.dst, Status::Failed);

    // Pages of an unknown block; an offset beyond the block.
    let page = page_bytes(4);
    for (rule, block, off) in [(rules::MULTIFD_UNKNOWN_BLOCK, &b"bogus"[..], 0), (rules::MULTIFD_OUTSIDE, BLOCK, BLOCK_LEN)] {
        let mut b = Builder::default();
        synth::multifd_stream(&mut b, 2, 2);
        b.chan(Channel::Multifd(0), |o| o.extend_from_slice(&synth::multifd_packet(0, block, &[off], &page, 9)));
        let r = run(&b, multifd("10.0"), multifd("10.0"));
        only(&r, rule);
        assert_eq!(r.outcome.dst, Status::Failed, "{rule}");
    }

    // zlib-compressed payloads: not inflated, so reported as unsupported.
    let mut b = Builder::default();
    synth::multifd_stream(&mut b, 2, 2);
    b.chan(Channel::Multifd(0), |o| o.extend_from_slice(&synth::multifd_packet(0x2, BLOCK, &[0], b"\x78\x9c\x03\x00", 9)));
    let r = run(&b, multifd("10.0"), multifd("10.0"));
    only(&r, rules::MULTIFD_COMPRESSION);
    assert_eq!(MULTIFD_MAGIC, 0x1122_3344);
}

#[test]
fn preempt_channel_that_does_not_frame() {
    let mut b = Builder::default();
    synth::postcopy_stream(&mut b);
    b.chan(Channel::Preempt, |o| o.extend_from_slice(&0x1000u64.to_be_bytes()));
    let s = side("10.0", &["postcopy-ram", "postcopy-preempt"]);
    only(&run(&b, s.clone(), s), rules::PREEMPT_DECODE);

    // Urgent pages: the requested one (0x9000, by REQ_PAGES) is clean, 0x20000 was never asked for.
    let urgent = |off: u64| {
        let page = page_bytes(9);
        let mut o = Vec::new();
        RamRecord::Page { raw: off | 8, offset: off, block: Some(BLOCK), block_index: None, data: &page }.encode(&mut o);
        o
    };
    let s = side("10.0", &["postcopy-ram", "postcopy-preempt"]);
    let mut b = Builder::default();
    synth::postcopy_stream(&mut b);
    b.chan(Channel::Preempt, |o| o.extend_from_slice(&urgent(0x9000)));
    let r = run(&b, s.clone(), s.clone());
    assert!(rules_of(&r).is_empty(), "{:#?}", r.findings);
    b.chan(Channel::Preempt, |o| o.extend_from_slice(&urgent(0x20000)));
    only(&run(&b, s.clone(), s.clone()), rules::PREEMPT_UNREQUESTED);

    // A request whose range runs past 2^64, and the urgent page it asked for: no overflow.
    let top: u64 = !0xfff;
    let mut b = Builder::default();
    synth::postcopy_stream(&mut b);
    b.rp(RpMessage::new(RpMessageType::REQ_PAGES_ID, RpBody::ReqPagesId { start: top, len: 0x2000, block: BLOCK }));
    b.chan(Channel::Preempt, |o| o.extend_from_slice(&urgent(top)));
    only(&run(&b, s.clone(), s), rules::RP_REQ_OUTSIDE);
}

/// Guard: every rule of the catalogue is named by a test in this file.
#[test]
fn every_rule_has_a_negative_test() {
    let catalogue = include_str!("../src/rules.rs");
    let tests = include_str!("rules_negative.rs");
    let names: Vec<&str> = catalogue
        .lines()
        .filter_map(|l| l.strip_prefix("    ")?.split_once(" = \"").map(|(n, _)| n))
        .filter(|n| n.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
        .collect();
    assert_eq!(names.len(), rules::CATALOGUE.len(), "parsed {names:?}");
    let missing: Vec<&&str> =
        names.iter().filter(|n| !tests.contains(&format!("rules::{n})")) && !tests.contains(&format!("rules::{n},"))).collect();
    assert!(missing.is_empty(), "rules without a negative test: {missing:?}");
}

fn rfc(dialect: &str, caps: &[&str]) -> SideProfile {
    let (version, dialect, _) = SideProfile::from_case_qemu(&format!("rfc:{dialect}"));
    SideProfile { version, dialect, ..side("10.0", caps) }
}

#[test]
fn dialect_rules() {
    let init = || rfc("precopy-initial-data", &["return-path", "precopy-initial-data"]);
    // The RFC handshake to a merged destination; a device the destination cannot advise.
    let mut b = Builder::default();
    synth::rfc_initial_data_refused(&mut b);
    let r = run(&b, init(), side("10.0", &["return-path", "switchover-ack"]));
    only(&r, rules::CMD_INITIAL_DATA_DIALECT);
    assert_eq!(r.outcome.dst, Status::Failed);
    let r = run(&b, init(), with_params(init(), &[("initial-data-devices", serde_json::json!([]))]));
    only(&r, rules::CMD_INITIAL_DATA_DEVICE);
    assert_eq!(r.outcome.dst, Status::Failed);

    // A per-device advise before the general enable.
    let mut b = Builder::default();
    synth::rfc_initial_data_stream(&mut b);
    let general = b.main.windows(6).position(|w| w == [8, 0, 11, 1, 12, 1]).unwrap();
    let cmd = 5 + 268;
    let (g, d) = (b.main[general..general + cmd].to_vec(), b.main[general + cmd..general + 2 * cmd].to_vec());
    b.main.splice(general..general + 2 * cmd, [d, g].concat());
    only(&run(&b, init(), init()), rules::CMD_INITIAL_DATA_ORDER);

    // virtio-iterative: the capability only the RFC knows reaches a merged destination.
    let virtio = || rfc("virtio-iterative", &["return-path", "virtio-iterative"]);
    let mut b = Builder::default();
    synth::virtio_iterative_stream(&mut b, true, 1);
    let r = run(&b, virtio(), side("10.0", &["return-path"]));
    only(&r, rules::CONFIG_CAP_NOT_AT_DST);
    assert_eq!(r.outcome.dst, Status::Failed);

    // A PART body of the iterative section that is not NO_DATA; a flag the loader does not know.
    let mut b = Builder::default();
    synth::virtio_iterative_stream(&mut b, true, 0);
    let no_data = qmig_codec::virtio_iterative::VNET_MIG_F_NO_DATA.to_be_bytes();
    let at = b.main.windows(8).position(|w| w == no_data).unwrap();
    b.main[at..at + 8].copy_from_slice(&qmig_codec::virtio_iterative::VNET_MIG_F_END_DATA.to_be_bytes());
    let r = run(&b, virtio(), virtio());
    only(&r, rules::VIRTIO_ITER_ORDER);
    assert_eq!(r.outcome.dst, Status::Completed);
    b.main[at + 7] = 0x09;
    let r = run(&b, virtio(), virtio());
    only(&r, rules::VIRTIO_ITER_ORDER);
    assert_eq!(r.outcome.dst, Status::Failed);
}
