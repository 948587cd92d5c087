//! Walk a main-stream file and print one line per record: `cargo run --example walk FILE`.
use qmig_codec::{decode_all, Context, MainDecoder, Record};

fn main() {
    let path = std::env::args().nth(1).expect("usage: walk FILE");
    let bytes = std::fs::read(&path).expect("read");
    let mut dec = MainDecoder::for_file(Context::default(), &bytes);
    let mut n = 0u64;
    let r = decode_all(&mut dec, &bytes, |d| {
        n += 1;
        match &d.record {
            Record::Ram(qmig_codec::ram::RamRecord::Page { .. }) | Record::Ram(qmig_codec::ram::RamRecord::Zero { .. }) => {}
            r => println!("{:#010x} +{:<6} d{} {:?}", d.offset, d.len, d.depth, short(r)),
        }
    });
    println!("{n} records: {r:?} of {} bytes", bytes.len());
}

fn short(r: &Record<'_>) -> String {
    let s = format!("{r:?}");
    s.chars().take(160).collect()
}
