//! The committed synthetic vectors (VFIO, XBZRLE, the precopy-initial-data RFC, postcopy
//! page requests: what QEMU cannot produce here) are exactly what the generator writes,
//! say so in their metadata, round-trip through the codec and replay clean.
//! `QMIG_REGEN=1` rewrites them.

use std::path::PathBuf;

use qmig_harness::replay;
use qmig_harness::synth::SYNTHETIC;

#[test]
fn synthetic_vectors_are_current_and_conform() {
    let vectors = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../vectors");
    let tmp = std::env::temp_dir().join(format!("qmig-synth-{}", std::process::id()));
    for c in SYNTHETIC {
        if std::env::var_os("QMIG_REGEN").is_some() {
            c.write(&vectors).unwrap();
        }
        c.write(&tmp).unwrap();
        for f in std::fs::read_dir(tmp.join(c.name)).unwrap().flatten() {
            let committed = std::fs::read(vectors.join(c.name).join(f.file_name()))
                .unwrap_or_else(|e| panic!("{}: {e} (QMIG_REGEN=1 to write)", c.name));
            assert!(
                committed == std::fs::read(f.path()).unwrap(),
                "{}/{:?} is stale: QMIG_REGEN=1 cargo test -p qmig-harness --test synthetic",
                c.name,
                f.file_name()
            );
        }
        let l = replay::load(&vectors.join(c.name)).unwrap();
        assert_eq!(l.meta.as_ref().unwrap()["origin"], "synthetic");
        // Round trip of the main stream.
        let main = &l.channels[0].bytes;
        let mut ctx = qmig_codec::Context::default();
        if c.src.qemu.starts_with("rfc:") {
            ctx.dialect = c.src.qemu.parse().unwrap();
            if c.src.caps.contains(&"virtio-iterative") {
                ctx.set_cap("virtio-iterative");
            }
        }
        let mut dec = qmig_codec::MainDecoder::for_file(ctx, main);
        let mut out = Vec::new();
        match qmig_codec::decode_all(&mut dec, main, |d| d.record.encode(&mut out)) {
            Ok(_) => assert!(out == *main, "{}: round trip", c.name),
            // Streams the source stopped writing (refused, waiting) end after a whole record.
            Err(e) => {
                assert!(c.expected.2.is_some() && matches!(e.kind, qmig_codec::ErrorKind::Truncated { .. }), "{}: {e}", c.name);
                assert!(e.offset == out.len() as u64 && out == main[..out.len()], "{}: round trip up to the cut", c.name);
            }
        }
        let r = replay::replay_case(&l);
        // The models' prediction agrees with the outcome the protocol gives for this pair.
        let status = |s: &str| serde_json::from_value::<serde_json::Value>(serde_json::json!(s)).unwrap();
        let (es, ed, cause) = c.expected;
        let got = serde_json::to_value(&r.outcome).unwrap();
        assert_eq!((got["src"].clone(), got["dst"].clone()), (status(es), status(ed)), "{}: {}", c.name, r.text());
        assert_eq!(r.outcome.cause, cause, "{}: {}", c.name, r.text());
        assert_eq!(l.meta.as_ref().unwrap()["expected_outcome"]["cause"], serde_json::json!(cause));
        match cause {
            None => {
                assert_eq!(r.exit_code(), 0, "{}: {}", c.name, r.text());
                assert!(r.findings.iter().all(|f| f.severity < qmig_harness::rules::Severity::Warning), "{}: {}", c.name, r.text());
            }
            // The cause is a finding of its own, at the byte where the destination refuses.
            Some(rule) => assert!(r.findings.iter().any(|f| f.rule == rule), "{}: {}", c.name, r.text()),
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
}
