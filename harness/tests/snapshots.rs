//! Snapshot of `qmig inspect --json` for every vector (page bodies reduced to digests,
//! page runs collapsed), with the vector's metadata attached. Review with `cargo insta review`.

use qmig_harness::{inspect, replay};

#[test]
fn inspect_json_of_every_vector() {
    insta::glob!("../../vectors", "*/case.json", |path| {
        let dir = path.parent().unwrap();
        let l = replay::load(dir).unwrap();
        if l.meta.as_ref().is_some_and(|m| m.get("derive").is_some()) {
            return; // corruption experiments: judged by tests/corruption.rs, not snapshotted
        }
        let src = replay::side_from_meta(l.meta.as_ref().and_then(|m| m.get("src"))).unwrap_or_default();
        let mut ctx = src.codec_context();
        ctx.caps.retain(|c| c != "mapped-ram" && c != "x-ignore-shared");
        let dump = inspect::dump_main(&l.channels[0].bytes, ctx, false, |_| {});
        // Only the recordings the harness cut (a source left waiting, a destination that
        // stopped reading) may end inside a record; the error is part of the snapshot.
        let cut = l.meta.as_ref().and_then(|m| m.pointer("/dst/final_status")).and_then(|v| v.as_str()) == Some("failed")
            || l.meta.as_ref().and_then(|m| m.pointer("/src/killed_by_harness")).and_then(|v| v.as_bool()) == Some(true)
            || l.meta.as_ref().and_then(|m| m.pointer("/expected_outcome/cause")).is_some_and(|c| !c.is_null());
        assert!(dump.error.is_none() || cut, "{}: {:?}", dir.display(), dump.error);
        let (evs, _) = replay::decode_channels(&l, &src);
        let others: Vec<(String, Vec<qmig_harness::events::Event>)> = l
            .channels
            .iter()
            .skip(1)
            .map(|ch| {
                (
                    ch.channel.clone().unwrap().to_string(),
                    evs.iter().filter(|e| Some(&e.channel) == ch.channel.as_ref()).map(|e| strip_time(e.clone())).collect(),
                )
            })
            .collect();
        let v = inspect::json_dump(&l.name, &dump, &others);
        let meta = l.meta.clone().unwrap_or_default();
        let info = serde_json::json!({"name": meta.get("name"), "desc": meta.get("desc"), "origin": meta.get("origin"), "outcome": meta.get("outcome")});
        insta::with_settings!({info => &info, omit_expression => true}, {
            insta::assert_json_snapshot!(v);
        });
    });
}

fn strip_time(mut e: qmig_harness::events::Event) -> qmig_harness::events::Event {
    e.t_ns = None;
    e
}
