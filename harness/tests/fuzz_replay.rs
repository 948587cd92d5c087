//! The `replay` fuzz target's body on stable: real vectors' main streams and return paths,
//! their truncations, and deterministic pseudo-random inputs through the peer models.

#[path = "../../fuzz/src/replay_body.rs"]
mod replay_body;

use std::path::PathBuf;

#[test]
fn replay_body_over_vectors_and_noise() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../vectors");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let Ok(l) = qmig_harness::replay::load(&e.path()) else { continue };
        let main = &l.channels[0].bytes;
        let rp = l.channels.get(1).map(|c| c.bytes.clone()).unwrap_or_default();
        let mut input = vec![rp.len().min(255) as u8];
        input.extend_from_slice(&rp[..rp.len().min(255)]);
        input.extend_from_slice(main);
        for cut in [input.len(), input.len() / 2, 300, 40] {
            replay_body::replay(&input[..cut.min(input.len())]);
        }
        n += 1;
    }
    assert!(n >= 20);
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for len in (0..3000).step_by(37) {
        let v: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        replay_body::replay(&v);
    }
}
