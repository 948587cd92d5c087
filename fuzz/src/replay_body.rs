//! The harness replay fuzz body: arbitrary main-stream and return-path bytes through the
//! peer models. Never a panic, always a verdict. Shared with `harness/tests/fuzz_replay.rs`.

/// First byte: how many of the following bytes are the return path; the rest is the main stream.
pub fn replay(data: &[u8]) {
    let split = data.first().map(|b| *b as usize + 1).unwrap_or(0).min(data.len());
    let (rp, main) = data.split_at(split);
    let rp = rp.get(1..).unwrap_or_default();
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
        channels: vec![mk(main, qmig_codec::Channel::Main), mk(rp, qmig_codec::Channel::ReturnPath)],
    };
    for caps in [&["return-path"][..], &["postcopy-ram", "switchover-ack", "return-path"][..]] {
        let side = qmig_harness::profile::SideProfile { caps: caps.iter().map(|c| c.to_string()).collect(), ..Default::default() };
        let r = qmig_harness::replay::run(&l, side.clone(), Some(side));
        let code = r.exit_code();
        assert!((0..=3).contains(&code));
        let _ = r.text();
        let _ = serde_json_len(&r);
    }
}

fn serde_json_len(r: &qmig_harness::report::Report) -> usize {
    format!("{:?}", r.outcome).len()
}
