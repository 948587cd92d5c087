//! `qmig send` replays committed 7.2 → 10.0, 10.0 → 10.0 and one-sided capability traces
//! into a real destination QEMU (configured like the recorded one by
//! `vectors/tools/start_dst.py`) and must reproduce the recorded outcome. Skipped —
//! loudly — where QEMU is absent.

use std::path::PathBuf;
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn have_qemu() -> bool {
    let prefix = std::env::var("QMIG_QEMU_PREFIX").unwrap_or_else(|_| "/opt/qmig-qemu".into());
    ["7.2", "10.0"].iter().all(|v| PathBuf::from(&prefix).join(format!("qemu-{v}/usr/bin/qemu-system-x86_64")).is_file())
}

#[test]
fn recorded_sources_replay_into_real_destinations() {
    if !have_qemu() {
        eprintln!("SKIPPED: QEMU 7.2/10.0 not installed (bash vectors/setup-qemu.sh); qmig send live tests did not run");
        return;
    }
    let scratch = std::env::temp_dir().join(format!("qmig-send-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    for case in [
        "sock72-to-100",
        "sock100-precopy-rp",
        "sock100-switchover-ack",
        "sock100-multifd",
        "sock100-to-72",
        "sock100-return-path-src-only",
        "sock100-postcopy-src-only",
    ] {
        let dir = repo().join("vectors").join(case);
        let out = Command::new("python3").arg(repo().join("vectors/tools/start_dst.py")).arg(&dir).arg(&scratch).output().expect("python3");
        assert!(out.status.success(), "{case}: start_dst.py: {}", String::from_utf8_lossy(&out.stderr));
        let line = String::from_utf8_lossy(&out.stdout).to_string();
        let mut it = line.split_whitespace();
        let (port, qmp, pid) = (it.next().unwrap().to_string(), it.next().unwrap().to_string(), it.next().unwrap().to_string());
        let r = qmig_harness::cli::send(&dir, &format!("tcp:127.0.0.1:{port}"), Some(std::path::Path::new(&qmp)), 30);
        let _ = Command::new("kill").arg(&pid).status();
        assert_eq!(r, Ok(0), "{case}: the destination did not behave as recorded");
    }
    let _ = std::fs::remove_dir_all(&scratch);
}
