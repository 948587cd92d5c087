//! The corruption experiments (`vectors/corrupt-*`: targeted mutations of real vectors,
//! each loaded into a real QEMU 7.2 / 10.0 destination, accept/reject and error text
//! recorded) agree with what qmig predicts the destination loader does, and every
//! rejection is explained by a finding whose rule names the text QEMU printed.

use std::path::PathBuf;

use qmig_harness::outcome::Status;
use qmig_harness::replay;

#[test]
fn predicted_destination_outcome_agrees_with_every_experiment() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../vectors");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("corrupt-"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 30, "expected the committed corruption experiments");
    let (mut accepted, mut rejected) = (0, 0);
    for c in &cases {
        let l = replay::load(c).unwrap();
        let r = replay::replay_case(&l);
        assert_eq!(r.matches_recording, Some(true), "{}: {}", c.display(), r.text());
        match r.outcome.dst {
            Status::Completed => accepted += 1,
            Status::Failed => {
                rejected += 1;
                assert!(r.outcome.cause.is_some(), "{}: a rejection has a cause", c.display());
            }
            s => panic!("{}: unexpected destination status {s:?}", c.display()),
        }
        // A non-conformance QEMU tolerates is still reported.
        if r.outcome.dst == Status::Completed && !c.to_string_lossy().contains("truncate-in-vmdesc") {
            let derived_edits = l.meta.as_ref().and_then(|m| m.pointer("/derive/edits")).map(|e| e.to_string()).unwrap_or_default();
            assert!(!r.findings.is_empty() || derived_edits.is_empty(), "{}: accepted corruption produced no finding", c.display());
        }
    }
    eprintln!("{} experiments: {accepted} accepted by QEMU, {rejected} rejected; all predicted", cases.len());
}
