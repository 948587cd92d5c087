//! The harness replay fuzz body: arbitrary main-stream and return-path bytes through the
//! peer models. Never a panic, always a verdict. Shared with `harness/tests/fuzz_replay.rs`.

/// First byte: how many of the following bytes are the return path; the rest is the main
/// stream, whose last `data[2]` bytes become a postcopy-preempt and a multifd channel (half each).
pub fn replay(data: &[u8]) {
    let split = data.first().map(|b| *b as usize + 1).unwrap_or(0).min(data.len());
    let (rp, main) = data.split_at(split);
    let rp = rp.get(1..).unwrap_or_default();
    let tail = data.get(2).map(|b| *b as usize).unwrap_or(0).min(main.len());
    let (main, extra) = main.split_at(main.len() - tail);
    let (preempt, multifd) = extra.split_at(extra.len() / 2);
    let mk = |bytes: &[u8], ch| qmig_harness::events::ChannelBytes {
        channel: Some(ch),
        bytes: bytes.to_vec(),
        chunks: vec![(0, 1)],
        closed: true,
        conn: Some(0),
    };
    let l = qmig_harness::replay::Loaded {
        name: "fuzz".into(),
        meta: None,
        transport: qmig_harness::outcome::Transport::Socket,
        channels: vec![
            mk(main, qmig_codec::Channel::Main),
            mk(rp, qmig_codec::Channel::ReturnPath),
            mk(preempt, qmig_codec::Channel::Preempt),
            mk(multifd, qmig_codec::Channel::Multifd(0)),
        ],
    };
    let merged =
        |caps: &[&str]| qmig_harness::profile::SideProfile { caps: caps.iter().map(|c| c.to_string()).collect(), ..Default::default() };
    let mut pairs = vec![
        (merged(&["return-path"]), merged(&["return-path"])),
        (merged(&["postcopy-ram", "switchover-ack", "return-path"]), merged(&["postcopy-ram", "switchover-ack", "return-path"])),
        (merged(&["postcopy-ram", "postcopy-preempt", "return-path"]), merged(&["postcopy-ram", "postcopy-preempt", "return-path"])),
    ];
    // A pair of dialects picked by the second byte (the same or different on the two sides),
    // each with its own capabilities on: RFC code paths of the codec and the models.
    let pick = data.get(1).copied().unwrap_or(0) as usize;
    let (src_d, dst_d) = (DIALECTS[pick % DIALECTS.len()], DIALECTS[(pick / DIALECTS.len()) % DIALECTS.len()]);
    pairs.push((rfc_side(src_d), rfc_side(dst_d)));
    for (src, dst) in pairs {
        let r = qmig_harness::replay::run(&l, src, Some(dst));
        let code = r.exit_code();
        assert!((0..=3).contains(&code));
        let _ = r.text();
        let _ = serde_json_len(&r);
    }
}

const DIALECTS: &[(&str, &[&str])] = &[
    ("10.0", &["return-path", "multifd"]),
    ("rfc:precopy-initial-data", &["return-path", "precopy-initial-data"]),
    ("rfc:fixed-ram", &["fixed-ram"]),
    ("rfc:fixed-ram-borisov", &["fixed-ram"]),
    ("rfc:virtio-iterative", &["return-path", "virtio-iterative"]),
    ("7.2", &["return-path"]),
];

fn rfc_side((qemu, caps): (&str, &[&str])) -> qmig_harness::profile::SideProfile {
    let (version, dialect, label) = qmig_harness::profile::SideProfile::from_case_qemu(qemu);
    qmig_harness::profile::SideProfile { version, dialect, label, caps: caps.iter().map(|c| c.to_string()).collect(), ..Default::default() }
}

fn serde_json_len(r: &qmig_harness::report::Report) -> usize {
    format!("{:?}", r.outcome).len()
}
