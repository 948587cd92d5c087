//! Guard: QEMU's wire enums, per release, are all classified by the codec's open newtypes.
//!
//! The tables below are QEMU's enums as of each release (WIRE-FORMAT §1.1, §4.2, §5.2,
//! §6.1, §9.1). When a new release adds a value, add it here: the test then fails until
//! the codec names it. With `QMIG_QEMU_SRC=<qemu source tree>` the test also reads the
//! enums straight from QEMU's sources and fails on any name it does not know.

use qmig_codec::codes::{CommandCode, RamFlags, RpMessageType, SectionType, VfioTag};
use qmig_codec::Version;

/// (release, MIG_CMD_MAX, MIG_RP_MSG_MAX, highest VFIO tag id, highest RAM flag)
type Release = ((u8, u8), u16, u16, u64, u64);
const RELEASES: &[Release] = &[
    ((7, 2), 11, 7, 4, 0x100),
    ((8, 0), 11, 7, 4, 0x100),
    ((8, 1), 11, 8, 5, 0x200),
    ((8, 2), 11, 8, 5, 0x200),
    ((9, 0), 11, 8, 5, 0x200),
    ((9, 1), 11, 8, 5, 0x200),
    ((9, 2), 11, 8, 5, 0x200),
    ((10, 0), 12, 8, 5, 0x200),
    ((10, 1), 12, 8, 6, 0x200),
    ((10, 2), 12, 8, 6, 0x200),
];

#[test]
fn every_release_enum_value_is_classified() {
    for &((maj, min), cmd_max, rp_max, vfio_max, ram_max) in RELEASES {
        let v = Version::new(maj, min);
        for c in 1..cmd_max {
            let code = CommandCode(c);
            let since = code.known_since().unwrap_or_else(|| panic!("{v}: MIG_CMD {c} unclassified"));
            assert!(Version::new(since.0, since.1) <= v, "{v}: MIG_CMD {c} classified as newer ({since:?})");
        }
        for t in 1..rp_max {
            let ty = RpMessageType(t);
            let since = ty.known_since().unwrap_or_else(|| panic!("{v}: MIG_RP_MSG {t} unclassified"));
            assert!(Version::new(since.0, since.1) <= v);
        }
        for id in 1..=vfio_max {
            let tag = VfioTag(0xffff_ffff_ef10_0000 | id);
            let since = tag.known_since().unwrap_or_else(|| panic!("{v}: VFIO tag {id} unclassified"));
            assert!(Version::new(since.0, since.1) <= v);
        }
        let mut bit = 1u64;
        while bit <= ram_max {
            assert!(RamFlags::from_bits(bit).is_some(), "{v}: RAM flag 0x{bit:x} unclassified");
            assert!(RamFlags::known_since(bit).is_some());
            bit <<= 1;
        }
    }
    for t in [0u8, 1, 2, 3, 4, 5, 6, 7, 8, 0x7e] {
        assert!(SectionType(t).is_known(), "section type {t}");
    }
    // Values beyond every release stay open: kept, shown as unknown.
    assert_eq!(CommandCode(12).to_string(), "unknown (0xc)");
    assert!(!RpMessageType(8).is_known());
}

/// Read `enum qemu_vm_cmd` / `enum mig_rp_message_type` names from a QEMU tree.
fn enum_names(src: &str, enum_head: &str) -> Vec<String> {
    let Some(start) = src.find(enum_head) else {
        return Vec::new();
    };
    let body = &src[start..];
    let end = body.find("};").unwrap_or(body.len());
    body[..end]
        .lines()
        .skip(1)
        .filter_map(|l| {
            let l = l.trim();
            let name: String = l.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            (name.starts_with("MIG_")).then_some(name)
        })
        .collect()
}

#[test]
fn enums_in_qemu_source_are_classified() {
    let Some(root) = std::env::var_os("QMIG_QEMU_SRC") else {
        eprintln!("SKIPPED: set QMIG_QEMU_SRC to a QEMU source tree to check its enums directly");
        return;
    };
    let root = std::path::PathBuf::from(root);
    let savevm = std::fs::read_to_string(root.join("migration/savevm.c")).expect("savevm.c");
    let cmds = enum_names(&savevm, "enum qemu_vm_cmd");
    assert!(!cmds.is_empty());
    for (i, name) in cmds.iter().enumerate() {
        if name == "MIG_CMD_MAX" {
            continue;
        }
        let known = CommandCode(i as u16).name().unwrap_or("");
        assert_eq!(known, name, "MIG_CMD value {i}");
    }
    let mh = std::fs::read_to_string(root.join("migration/migration.h")).expect("migration.h");
    let rps = enum_names(&mh, "enum mig_rp_message_type");
    for (i, name) in rps.iter().enumerate() {
        if name == "MIG_RP_MSG_MAX" {
            continue;
        }
        assert_eq!(RpMessageType(i as u16).name().unwrap_or(""), name, "MIG_RP_MSG value {i}");
    }
}
