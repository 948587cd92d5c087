//! The `qmig` binary as a user runs it: exit codes, JSON shapes, analyze-migration.py's
//! views, stdin, and the error view of a broken stream.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

fn qmig() -> Command {
    Command::new(env!("CARGO_BIN_EXE_qmig"))
}

fn vec(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../vectors").join(name)
}

#[test]
fn inspect_views() {
    let o = qmig().arg("inspect").arg(vec("file100-precopy")).output().unwrap();
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("configuration machine=pc-q35-10.0") && text.contains("VMDESCRIPTION"), "{text}");

    let o = qmig().args(["inspect", "--json"]).arg(vec("sock100-postcopy")).output().unwrap();
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["schema"], "qmig-inspect/1");
    assert_eq!(v["channels"][1]["channel"], "return-path");

    let o = qmig().args(["inspect", "--dump", "state"]).arg(vec("file72-precopy").join("stream.bin")).output().unwrap();
    assert!(o.status.success());
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(s.get("timer (0)").is_some() && s.get("globalstate (0)").is_some(), "{s}");

    let o = qmig().args(["inspect", "--dump", "desc"]).arg(vec("file72-precopy").join("stream.bin")).output().unwrap();
    let d: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(d["page_size"], 4096);

    let dir = std::env::temp_dir().join(format!("qmig-extract-{}", std::process::id()));
    let o = qmig().args(["inspect", "--extract"]).arg(&dir).arg(vec("file100-precopy").join("stream.bin")).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ram = std::fs::read(dir.join("ram0.ram")).unwrap();
    assert_eq!(ram.len(), 4 << 20);
    // The capture's text pattern region at 0x120000 is in the extracted RAM.
    assert!(ram[0x120000..0x130000].windows(9).any(|w| w == b"QMIG page"), "pattern region extracted");
    assert!(dir.join("desc.json").is_file() && dir.join("state.json").is_file());
    // mapped-ram files extract through the bitmap.
    let dir2 = dir.join("mapped");
    let o = qmig().args(["inspect", "--extract"]).arg(&dir2).arg(vec("file100-mapped-ram").join("stream.bin")).output().unwrap();
    assert!(o.status.success());
    let ram = std::fs::read(dir2.join("ram0.ram")).unwrap();
    assert!(ram.windows(9).any(|w| w == b"QMIG page"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A mapped-ram page by guest address, in O(1) from the bitmap, agrees with `--extract`.
#[test]
fn mapped_ram_page_lookup() {
    let path = vec("file100-mapped-ram").join("stream.bin");
    let bytes = std::fs::read(&path).unwrap();
    let blocks = qmig_harness::inspect::mapped_blocks(&bytes, qmig_codec::Context::default()).unwrap();
    let b = blocks.iter().find(|b| b.name == b"ram0").expect("ram0 block");
    let dir = std::env::temp_dir().join(format!("qmig-lookup-{}", std::process::id()));
    let o = qmig().args(["inspect", "--extract"]).arg(&dir).arg(&path).output().unwrap();
    assert!(o.status.success());
    let ram = std::fs::read(dir.join("ram0.ram")).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let mut present = 0;
    for addr in (0..b.used_length).step_by(0x1000 + 8) {
        let page = (addr & !0xfff) as usize;
        match b.page(&bytes, addr).unwrap() {
            qmig_codec::mapped_ram::PageLookup::Present(p) => {
                present += 1;
                assert_eq!(p, &ram[page..page + 0x1000], "page at 0x{addr:x}");
            }
            qmig_codec::mapped_ram::PageLookup::Zero => assert!(ram[page..page + 0x1000].iter().all(|&x| x == 0)),
        }
    }
    assert!(present > 0);
    assert!(b.page(&bytes, b.used_length).is_err());
}

#[test]
fn stdin_and_broken_streams() {
    let bytes = std::fs::read(vec("file72-precopy").join("stream.bin")).unwrap();
    let mut c = qmig().args(["inspect", "-"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    c.stdin.take().unwrap().write_all(&bytes).unwrap();
    assert!(c.wait_with_output().unwrap().status.success());

    // A broken stream: records up to the break, then the error and a hex dump; exit 1.
    let broken = &bytes[..bytes.len() / 3];
    let mut c = qmig().args(["inspect", "-"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    c.stdin.take().unwrap().write_all(broken).unwrap();
    let o = c.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("ERROR main @0x") && text.contains(">"), "{text}");

    let mut c = qmig()
        .args(["check", "-", "--src-version", "7.2", "--dst-version", "7.2"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(&bytes).unwrap();
    assert_eq!(c.wait_with_output().unwrap().status.code(), Some(0));
}

#[test]
fn replay_exit_codes_and_reports() {
    assert_eq!(qmig().arg("replay").arg(vec("sock100-postcopy")).output().unwrap().status.code(), Some(0));
    // A corrupted stream: the source broke a rule -> 1, and the JSON names the outcome.
    let o = qmig().args(["replay", "--json"]).arg(vec("corrupt-file100-footer-id-wrong")).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["outcome"]["dst"], "failed");
    assert_eq!(v["outcome"]["cause"], "stream/section/footer");
    assert_eq!(v["matches_recording"], true);
    // A usage error -> 2.
    assert_eq!(qmig().args(["replay", "/nonexistent"]).output().unwrap().status.code(), Some(2));
    // JUnit.
    let j = std::env::temp_dir().join(format!("qmig-junit-{}.xml", std::process::id()));
    qmig().args(["replay", "--junit"]).arg(&j).arg(vec("sock100-multifd")).output().unwrap();
    assert!(std::fs::read_to_string(&j).unwrap().contains("<testsuite name=\"qmig\""));
    // Rules and preflight.
    let o = qmig().args(["rules", "--json"]).output().unwrap();
    let rules: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(rules.as_array().unwrap().len() >= 60);
    let o = qmig().args(["preflight", "--json", "--src-caps", "mapped-ram"]).output().unwrap();
    let p: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(p["outcome"]["cause"], "stream/config/capability-mismatch");
    // Per-side parameters and dialects.
    let pre = |args: &[&str]| -> serde_json::Value {
        let o = qmig().args(["preflight", "--json"]).args(args).output().unwrap();
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let p = pre(&["--src-caps", "multifd", "--dst-caps", "multifd", "--dst-param", "multifd-flush-after-each-section=on"]);
    assert_eq!((p["outcome"]["dst"].as_str(), p["outcome"]["cause"].as_str()), (Some("waiting"), Some("caps/multifd/sync-mode-mismatch")));
    let p = pre(&["--src-caps", "multifd", "--dst-caps", "multifd", "--src-param", "multifd-channels=4"]);
    assert_eq!(p["outcome"]["cause"], serde_json::Value::Null, "{p}");
    let p = pre(&[
        "--src-version",
        "8.1",
        "--src-caps",
        "return-path,switchover-ack",
        "--dst-dialect",
        "precopy-initial-data",
        "--dst-caps",
        "return-path,precopy-initial-data",
    ]);
    assert_eq!(p["outcome"]["src"], "waiting", "{p}");
    let o = qmig().args(["preflight", "--src-param", "novalue"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "a parameter without = is a usage error");
}

#[test]
fn profile_disables_rules_with_reasons() {
    let dir = std::env::temp_dir().join(format!("qmig-profile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("vmm.json");
    std::fs::write(&p, r#"{"name": "examplevmm 1.0", "disabled_rules": [{"rule": "stream/section/footer", "reason": "our VMM writes footers late (known, tracked)"}]}"#).unwrap();
    let o = qmig().args(["replay", "--json", "--profile"]).arg(&p).arg(vec("corrupt-file100-footer-id-wrong")).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["findings"].as_array().unwrap().iter().all(|f| f["rule"] != "stream/section/footer"));
    std::fs::write(&p, r#"{"disabled_rules": [{"rule": "stream/section/footer", "reason": ""}]}"#).unwrap();
    assert_eq!(qmig().args(["replay", "--profile"]).arg(&p).arg(vec("sock100-multifd")).output().unwrap().status.code(), Some(2));
    // Baseline: the same report is no change.
    let base = dir.join("base.json");
    let o = qmig().args(["replay", "--json"]).arg(vec("sock100-multifd")).output().unwrap();
    std::fs::write(&base, &o.stdout).unwrap();
    assert_eq!(qmig().args(["replay", "--expected"]).arg(&base).arg(vec("sock100-multifd")).output().unwrap().status.code(), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}
