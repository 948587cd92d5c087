//! Every committed vector replays with the outcome the real QEMUs recorded, and the
//! models reach that outcome without reading the recording's outcome fields.

use std::path::PathBuf;

use qmig_harness::replay;

fn cases() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../vectors");
    let mut v: Vec<PathBuf> =
        std::fs::read_dir(&dir).unwrap().filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.join("case.json").is_file()).collect();
    v.sort();
    assert!(v.len() >= 10, "expected the committed vectors under {}", dir.display());
    v
}

/// The outcome fields of case.json that must never feed the models.
const OUTCOME_FIELDS: &[&str] =
    &["final_status", "stderr", "exit_status", "killed_by_harness", "outcome", "statuses_seen", "final_status_note", "exited_on_its_own"];

#[test]
fn every_vector_matches_its_recording() {
    let mut bad = Vec::new();
    for c in cases() {
        let l = replay::load(&c).unwrap_or_else(|e| panic!("{e}"));
        let r = replay::replay_case(&l);
        // Corruption experiments are violations by construction: only the outcome must match.
        let derived = l.meta.as_ref().is_some_and(|m| m.get("derive").is_some());
        let synthetic = l.meta.as_ref().is_some_and(|m| m.get("origin").and_then(|o| o.as_str()) == Some("synthetic"));
        if (r.matches_recording != Some(true) && !synthetic) || (!derived && r.exit_code() != 0) {
            bad.push(format!("{}: {}", c.display(), r.text()));
        }
        // Same outcome with the recording's outcome fields deleted.
        let mut blind = l.clone();
        if let Some(m) = blind.meta.as_mut() {
            m.as_object_mut().unwrap().remove("outcome");
            for side in ["src", "dst"] {
                if let Some(s) = m.get_mut(side).and_then(|s| s.as_object_mut()) {
                    for f in OUTCOME_FIELDS {
                        s.remove(*f);
                    }
                }
            }
        }
        let rb = replay::replay_case(&blind);
        assert_eq!(rb.outcome, r.outcome, "{}: outcome depends on the recording's outcome fields", c.display());
        assert_eq!(rb.matches_recording, None);
        let _ = synthetic;
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}
