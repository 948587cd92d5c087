//! Cases generated from a version × machine × capability matrix. For every cell a source
//! stream is synthesized the way a QEMU of that version and machine type writes it
//! (configuration capabilities, OPEN_RETURN_PATH, POSTCOPY_ADVISE, SWITCHOVER_START, and
//! no switchover while it waits for an ack that will not come) and replayed against the
//! destination; the expected outcome is computed from the compatibility rules of
//! WIRE-FORMAT §2, §4, §10-11 (not written by hand), and the real vectors that sit in a
//! cell of the matrix must agree with it too.

use qmig_codec::codes::{CommandCode, RpMessageType, SectionType};
use qmig_codec::command::{Advise, CommandBody};
use qmig_codec::ram::RamRecord;
use qmig_codec::return_path::{RpBody, RpMessage};
use qmig_harness::outcome::Status;
use qmig_harness::profile::SideProfile;
use qmig_harness::replay;
use qmig_harness::synth::{eos, page_bytes, Builder, BLOCK, BLOCK_LEN};

const VERSIONS: &[&str] = &["7.2", "8.2", "10.0"];
const MACHINES: &[&str] = &["pc-i440fx-7.2", "pc-i440fx-10.0"];
/// mapped-ram's one-sided cells are covered by the real vectors (its file layout is not synthesized here).
const CAPS: &[&str] = &["x-ignore-shared", "return-path", "switchover-ack", "postcopy-ram"];

fn side(v: &str, machine: &str, caps: &[&str]) -> SideProfile {
    SideProfile {
        version: v.parse().unwrap(),
        machine: Some(machine.into()),
        caps: caps.iter().map(|c| c.to_string()).collect(),
        ..SideProfile::default()
    }
}

/// What the rules say happens (independent of the checker's code paths).
fn expected(src: &SideProfile, dst: &SideProfile) -> (Status, Option<&'static str>) {
    let validated = |p: &SideProfile| -> Vec<&'static str> {
        if p.version.major >= 9 {
            vec!["x-ignore-shared", "mapped-ram"]
        } else {
            vec!["x-ignore-shared"]
        }
    };
    let sent: Vec<&str> = validated(src).into_iter().filter(|c| src.has(c)).collect();
    let known_to_dst = |c: &str| c != "mapped-ram" || dst.version.major >= 9;
    if sent.iter().any(|c| !known_to_dst(c)) {
        return (Status::Failed, Some("stream/config/unknown-capability"));
    }
    if validated(dst).iter().any(|c| sent.contains(c) != dst.has(c)) {
        return (Status::Failed, Some("stream/config/capability-mismatch"));
    }
    if src.has("postcopy-ram") != dst.has("postcopy-ram") && src.has("postcopy-ram") {
        return (Status::Failed, Some("caps/postcopy-ram/one-sided"));
    }
    if src.has("switchover-ack") && !dst.has("switchover-ack") {
        return (Status::Waiting, Some("caps/switchover-ack/src-only"));
    }
    let sends_start = src.version.major >= 10 && src.machine.as_deref() == Some("pc-i440fx-10.0");
    if sends_start && dst.version.major < 10 {
        return (Status::Failed, Some("cmd/switchover-start/unsupported"));
    }
    (Status::Completed, None)
}

/// The stream a source of this profile writes (mapped-ram / ignore-shared streams are
/// modelled by their configuration section: the RAM body stays plain here).
fn stream(src: &SideProfile, ack_from_dst: bool) -> Builder {
    let mut b = Builder::default();
    let validated: Vec<&[u8]> = ["x-ignore-shared", "mapped-ram"]
        .iter()
        .filter(|c| src.has(c) && (src.version.major >= 9 || **c == "x-ignore-shared"))
        .map(|c| c.as_bytes())
        .collect();
    b.header().config(src.machine.as_deref().unwrap_or("pc").as_bytes(), &validated);
    let rp = src.uses_return_path();
    if rp {
        b.cmd(CommandCode::OPEN_RETURN_PATH, CommandBody::OpenReturnPath);
        if ack_from_dst {
            b.rp(RpMessage::new(RpMessageType::SWITCHOVER_ACK, RpBody::SwitchoverAck));
        }
        b.cmd(CommandCode::PING, CommandBody::Ping { value: 1 }).rp(RpMessage::new(RpMessageType::PONG, RpBody::Pong { value: 1 }));
    }
    if src.has("postcopy-ram") {
        b.cmd(
            CommandCode::POSTCOPY_ADVISE,
            CommandBody::PostcopyAdvise(Advise::Sizes { ram_pagesize_summary: 4096, target_page_size: 4096 }),
        );
    }
    // The block list carries a GPA per block under x-ignore-shared.
    let gpa = src.has("x-ignore-shared").then_some(0u64);
    b.ram_setup_with(2, BLOCK_LEN, gpa, &[]).ram_part(SectionType::PART, 2, 0, &page_bytes(1));
    if src.switchover_ack() && !ack_from_dst {
        return b; // the source keeps iterating; the recording ends here
    }
    if src.sends_switchover_start() {
        b.cmd(CommandCode::SWITCHOVER_START, CommandBody::SwitchoverStart);
    }
    b.ram_part(SectionType::END, 2, 0x2000, &page_bytes(2)).device(3, b"timer", &[0u8; 24]).eof(&[("timer", 24)]);
    if rp {
        b.rp(RpMessage::new(RpMessageType::SHUT, RpBody::Shut { error: 0 }));
    }
    b
}

fn subsets() -> Vec<Vec<&'static str>> {
    (0..(1u32 << CAPS.len())).map(|m| CAPS.iter().enumerate().filter(|(i, _)| m & (1 << i) != 0).map(|(_, c)| *c).collect()).collect()
}

#[test]
fn matrix_outcomes_match_the_computed_expectation() {
    let mut cells = 0;
    for sv in VERSIONS {
        for dv in VERSIONS {
            for m in MACHINES {
                if m.ends_with("10.0") && sv.starts_with('7')
                    || m.ends_with("10.0") && dv.starts_with('7')
                    || m.ends_with("10.0") && dv.starts_with('8')
                    || m.ends_with("10.0") && sv.starts_with('8')
                {
                    continue; // that machine type does not exist in that QEMU (preflight says not-run)
                }
                for sc in subsets() {
                    // One-sided only on one capability at a time (both-sided for the rest), as in the issue.
                    for flip in CAPS {
                        let sc: Vec<&str> = sc
                            .iter()
                            .copied()
                            .filter(|c| {
                                // migrate_caps_check: switchover-ack needs return-path; postcopy excludes these.
                                let needs_rp = *c == "switchover-ack" && !sc.contains(&"return-path");
                                let no_postcopy = (*c == "x-ignore-shared" || *c == "mapped-ram") && sc.contains(&"postcopy-ram");
                                !needs_rp && !no_postcopy
                            })
                            .collect();
                        let mut dc: Vec<&str> = sc.clone();
                        if dc.contains(flip) {
                            dc.retain(|c| c != flip);
                        } else {
                            dc.push(flip);
                        }
                        if (*flip == "switchover-ack" || *flip == "return-path")
                            && !dc.contains(&"return-path")
                            && dc.contains(&"switchover-ack")
                        {
                            continue; // QEMU refuses switchover-ack without return-path (migrate_caps_check)
                        }
                        let known = |v: &str, c: &str| !(c == "switchover-ack" && v == "7.2" || c == "mapped-ram" && v != "10.0");
                        if sc.iter().any(|c| !known(sv, c)) || dc.iter().any(|c| !known(dv, c)) {
                            continue; // capability unknown to that release: migrate-set-capabilities refuses it
                        }
                        let src = side(sv, m, &sc);
                        let dst = side(dv, m, &dc);
                        let (want, cause) = expected(&src, &dst);
                        let ack = dst.switchover_ack() && dst.uses_return_path() && src.uses_return_path();
                        let b = stream(&src, ack);
                        let r = replay::run(&b.loaded("matrix"), src.clone(), Some(dst.clone()));
                        assert_eq!((r.outcome.dst, r.outcome.cause), (want, cause), "src {sv} {m} {sc:?} -> dst {dv} {dc:?}: {}", r.text());
                        cells += 1;
                    }
                }
            }
        }
    }
    eprintln!("{cells} matrix cells checked");
    assert!(cells > 200);
}

#[test]
fn real_vectors_in_the_matrix_agree() {
    for (case, want) in [
        ("file100-mapped-ram-src-only", Status::Failed),
        ("file100-mapped-ram-dst-only", Status::Failed),
        ("file100-ignore-shared-src-only", Status::Failed),
        ("file100-ignore-shared-dst-only", Status::Failed),
        ("sock100-switchover-ack-src-only", Status::Waiting),
        ("sock100-postcopy-src-only", Status::Failed),
        ("sock100-return-path-src-only", Status::Completed),
        ("sock72-to-100", Status::Completed),
        ("sock100-to-72", Status::Completed),
    ] {
        let l = replay::load(&std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../vectors").join(case)).unwrap();
        let (src, dst) = replay::sides(l.meta.as_ref());
        let (e, _) = expected(&src, dst.as_ref().unwrap());
        assert_eq!(e, want, "{case}: the computed expectation");
        assert_eq!(replay::replay_case(&l).outcome.dst, want, "{case}: the replay");
    }
}

// ---------------------------------------------------------------------------------------
// Multifd sync modes (WIRE-FORMAT §6.7): version × machine type × the
// multifd-flush-after-each-section property on each side.

/// Legacy (sync at every RAM section end) per §6.7: before 8.1 there is no property; from
/// 8.1 the property decides, and `hw_compat_8_0` turns it on for machine types up to 8.0.
fn legacy_per_spec(version: &str, machine: &str, prop: Option<bool>) -> bool {
    let v: f32 = version.parse().unwrap();
    let m: f32 = machine.rsplit('-').next().unwrap().parse().unwrap();
    v < 8.1 || prop.unwrap_or(m < 8.1)
}

/// A multifd stream as a source in that mode writes it: a SYNC on every channel at each
/// sync point, `MULTIFD_FLUSH` markers in modern mode (8.1–9.0 also at completion; 9.1–9.2
/// sync at completion without a marker; 10.0 not at all).
fn multifd_stream(version: &str, machine: &str, legacy: bool) -> Builder {
    use qmig_codec::Channel;
    use qmig_harness::synth::{multifd_init, multifd_packet};
    let v: f32 = version.parse().unwrap();
    let flush = RamRecord::MultifdFlush { raw: 0x200 };
    let sync = |b: &mut Builder| {
        for ch in 0..2 {
            b.chan(Channel::Multifd(ch), |o| o.extend_from_slice(&multifd_packet(1, b"", &[], &[], 0)));
        }
    };
    let mut b = Builder::default();
    b.header().config(machine.as_bytes(), &[]);
    for ch in 0..2u32 {
        b.chan(Channel::Multifd(ch), |o| o.extend_from_slice(&multifd_init(ch as u8, &[0; 16])));
    }
    sync(&mut b);
    let setup_flush: &[RamRecord<'_>] = if legacy { &[] } else { &[flush] };
    b.ram_setup_with(2, BLOCK_LEN, None, setup_flush);
    // One round: a page per channel, then the round's sync.
    for ch in 0..2u32 {
        let page = page_bytes(ch as u8);
        b.chan(Channel::Multifd(ch), |o| o.extend_from_slice(&multifd_packet(0, BLOCK, &[ch as u64 * 4096], &page, 1)));
    }
    sync(&mut b);
    let part_end: &[RamRecord<'_>] = if legacy { &[eos()] } else { &[flush, eos()] };
    b.section(SectionType::PART, 2, None).ram(part_end).footer(2);
    let ends_with_sync = legacy || (8.1..9.1).contains(&v) || (9.1..10.0).contains(&v);
    if ends_with_sync {
        sync(&mut b);
    }
    let end: &[RamRecord<'_>] = if !legacy && (8.1..9.1).contains(&v) { &[flush, eos()] } else { &[eos()] };
    if v >= 10.0 && machine.ends_with("10.0") {
        b.cmd(CommandCode::SWITCHOVER_START, CommandBody::SwitchoverStart);
    }
    b.section(SectionType::END, 2, None).ram(end).footer(2);
    b.device(3, b"timer", &[0u8; 24]).eof(&[("timer", 24)]);
    b
}

#[test]
fn multifd_sync_matrix() {
    let versions = ["7.2", "8.2", "9.1", "10.0"];
    let machines = ["pc-i440fx-7.2", "pc-i440fx-8.0", "pc-i440fx-9.1"];
    let props = [None, Some(true), Some(false)];
    let mut cells = 0;
    for sv in versions {
        for dv in versions {
            for m in machines {
                let mv: f32 = m.rsplit('-').next().unwrap().parse().unwrap();
                if mv > sv.parse().unwrap() || mv > dv.parse().unwrap() {
                    continue; // that machine type does not exist in that QEMU
                }
                for sp in props {
                    for dp in props {
                        if (sp.is_some() && sv == "7.2") || (dp.is_some() && dv == "7.2") {
                            continue; // no such property before 8.1
                        }
                        let mk = |v: &str, p: Option<bool>| {
                            let mut s = side(v, m, &["multifd"]);
                            s.params.insert("multifd-channels".into(), 2.into());
                            if let Some(p) = p {
                                s.params.insert("multifd-flush-after-each-section".into(), p.into());
                            }
                            s
                        };
                        let (src, dst) = (mk(sv, sp), mk(dv, dp));
                        let (sl, dl) = (legacy_per_spec(sv, m, sp), legacy_per_spec(dv, m, dp));
                        let want = match (sl, dl) {
                            (a, b) if a == b => (Status::Completed, None),
                            // The setup's MULTIFD_FLUSH is a flag 7.2 does not know (§6.2): it fails first.
                            (false, true) if dv == "7.2" => (Status::Failed, Some("ram/flags/not-in-version")),
                            (true, false) => (Status::Failed, Some("caps/multifd/sync-mode-mismatch")),
                            (false, true) => (Status::Waiting, Some("caps/multifd/sync-mode-mismatch")),
                            _ => unreachable!(),
                        };
                        let r = replay::run(&multifd_stream(sv, m, sl).loaded("multifd-matrix"), src, Some(dst));
                        assert_eq!((r.outcome.dst, r.outcome.cause), want, "src {sv} {m} {sp:?} -> dst {dv} {dp:?}: {}", r.text());
                        if want.1.is_none() {
                            assert_eq!(r.exit_code(), 0, "src {sv} {m} {sp:?} -> dst {dv} {dp:?}: {}", r.text());
                        }
                        cells += 1;
                    }
                }
            }
        }
    }
    eprintln!("{cells} multifd sync cells checked");
    assert!(cells > 100, "{cells}");
}

#[test]
fn real_multifd_vectors_in_the_sync_matrix_agree() {
    for (case, sl, dl) in [
        ("sock72-multifd", true, true),
        ("sock72-to-100-multifd", true, true),
        ("sock100-multifd", false, false),
        ("sock100-multifd-flush-legacy-src-only", true, false),
        ("sock100-multifd-flush-legacy-dst-only", false, true),
    ] {
        let l = replay::load(&std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../vectors").join(case)).unwrap();
        let (src, dst) = replay::sides(l.meta.as_ref());
        let dst = dst.unwrap();
        let prop = |p: &SideProfile| p.params.get("multifd-flush-after-each-section").map(|v| v == "on" || v == true);
        let m = src.machine.clone().unwrap();
        assert_eq!(legacy_per_spec(&src.version.to_string(), &m, prop(&src)), sl, "{case} source mode");
        assert_eq!(legacy_per_spec(&dst.version.to_string(), &m, prop(&dst)), dl, "{case} destination mode");
        let r = replay::replay_case(&l);
        assert_eq!(r.matches_recording, Some(true), "{case}: {}", r.text());
    }
}
