//! Every real stream file under `vectors/` decodes end to end, round-trips byte for byte,
//! frames identically with and without vmdesc, and gives the same records when fed in
//! chunks of any size.

use std::path::PathBuf;

use qmig_codec::stream::MappedRamRegion;
use qmig_codec::{decode_all, Chunked, Context, Decoded, MainDecoder, Record};

fn stream_files() -> Vec<PathBuf> {
    let dir =
        std::env::var_os("QMIG_VECTORS").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../vectors"));
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("vectors/ exists")
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("stream.bin"))
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no vectors/*/stream.bin found: the real-vector tests would prove nothing");
    v
}

/// Records with borrowed data turned into comparable owned text (mapped-ram region data dropped).
fn normalize(d: &Decoded<Record<'_>>) -> String {
    let r = match &d.record {
        Record::MappedRamRegion(m) => Record::MappedRamRegion(MappedRamRegion { block_index: m.block_index, data: None }),
        r => r.clone(),
    };
    format!("{}+{} d{} s{:?} {:?}", d.offset, d.len, d.depth, d.section, r)
}

fn whole(bytes: &[u8], with_vmdesc: bool) -> (Vec<String>, Vec<u8>) {
    let mut dec = if with_vmdesc { MainDecoder::for_file(Context::default(), bytes) } else { MainDecoder::new(Context::default()) };
    let mut recs = Vec::new();
    let mut out = Vec::with_capacity(bytes.len());
    let end = decode_all(&mut dec, bytes, |d| {
        d.record.encode(&mut out);
        recs.push(normalize(&d));
    })
    .unwrap_or_else(|e| panic!("decode failed: {e}"));
    assert_eq!(end, bytes.len() as u64, "every byte accounted for");
    assert!(qmig_codec::ChannelDecoder::is_finished(&dec), "stream ended properly");
    (recs, out)
}

fn chunked(bytes: &[u8], chunk: usize) -> Vec<String> {
    let mut c = Chunked::new(MainDecoder::for_file(Context::default(), bytes));
    let mut recs = Vec::new();
    for piece in bytes.chunks(chunk) {
        c.feed(piece);
        while let Some(d) = c.next_record().unwrap_or_else(|e| panic!("chunk {chunk}: {e}")) {
            recs.push(normalize(&d));
        }
    }
    c.finish();
    while let Some(d) = c.next_record().unwrap_or_else(|e| panic!("chunk {chunk} at end: {e}")) {
        recs.push(normalize(&d));
    }
    recs
}

#[test]
fn real_streams_decode_round_trip_and_chunk() {
    for p in stream_files() {
        let bytes = std::fs::read(&p).unwrap();
        let name = p.parent().unwrap().file_name().unwrap().to_string_lossy().to_string();
        let (recs, out) = whole(&bytes, true);
        assert!(out == bytes, "{name}: encode(decode(x)) != x");
        let has_vmdesc = qmig_codec::vmdesc::find_trailer(&bytes).is_some();
        if has_vmdesc {
            // Inference by footers must find the same boundaries the vmdesc gives.
            let (inferred, _) = whole(&bytes, false);
            let strip = |v: &[String]| v.iter().map(|s| s.replace("InferredFooter", "Vmdesc")).collect::<Vec<_>>();
            assert_eq!(strip(&inferred), strip(&recs), "{name}: footer inference disagrees with vmdesc");
        }
        let sizes: &[usize] = if bytes.len() < 2 << 20 { &[1, 7, 4099, 65536] } else { &[4099, 65536, 1 << 20] };
        for &c in sizes {
            assert_eq!(chunked(&bytes, c), recs, "{name}: chunk size {c} gives different records");
        }
        eprintln!("{name}: {} records, {} bytes OK", recs.len(), bytes.len());
    }
}
