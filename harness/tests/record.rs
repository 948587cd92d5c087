//! `qmig record` against a fake upstream on loopback: every byte of every connection is
//! in the traces, in both directions, with EOFs.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::Duration;

use qmig_harness::peer::record::{Addr, RecordConfig, Recorder};
use qmig_harness::replay::read_trace;

#[test]
fn proxy_records_every_connection_both_ways() {
    // Upstream: reply "ack:<n bytes>" after the client half-closes.
    let up = TcpListener::bind("127.0.0.1:0").unwrap();
    let up_addr = up.local_addr().unwrap().to_string();
    let server = std::thread::spawn(move || {
        for _ in 0..2 {
            let (mut s, _) = up.accept().unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).unwrap();
            s.write_all(format!("ack:{}", got.len()).as_bytes()).unwrap();
        }
    });
    let dir = std::env::temp_dir().join(format!("qmig-record-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cfg = RecordConfig {
        listen: "tcp:127.0.0.1:0".parse().unwrap(),
        upstream: Addr::Tcp(up_addr),
        out: dir.clone(),
        timeout: Duration::from_secs(20),
        idle_exit: Duration::from_millis(0),
        max_conns: Some(2),
    };
    let r = Recorder::bind(cfg).unwrap();
    let Addr::Tcp(local) = r.local() else { panic!() };
    let h = std::thread::spawn(move || r.serve().unwrap());
    let payloads: [&[u8]; 2] = [b"QEVM\0\0\0\x03hello", &[0x11u8, 0x22, 0x33, 0x44, 9, 9, 9]];
    for p in payloads {
        let mut c = TcpStream::connect(&local).unwrap();
        c.write_all(p).unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        let mut back = Vec::new();
        c.read_to_end(&mut back).unwrap();
        assert_eq!(back, format!("ack:{}", p.len()).as_bytes());
    }
    server.join().unwrap();
    let sum = h.join().unwrap();
    assert_eq!(sum.connections, 2);
    assert!(!sum.timed_out);
    for (i, p) in payloads.iter().enumerate() {
        let b = std::fs::read(dir.join(format!("conn{i}.qmtrace"))).unwrap();
        let (fwd, back) = read_trace(&b).unwrap();
        assert_eq!(fwd.bytes, *p);
        assert_eq!(back.bytes, format!("ack:{}", p.len()).as_bytes());
        assert!(fwd.closed && back.closed, "both EOFs recorded");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn timeout_bounds_a_recording_nobody_uses() {
    let cfg = RecordConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        upstream: "127.0.0.1:9".parse().unwrap(),
        out: std::env::temp_dir().join(format!("qmig-record-idle-{}", std::process::id())),
        timeout: Duration::from_millis(300),
        idle_exit: Duration::from_millis(0),
        max_conns: None,
    };
    let t = std::time::Instant::now();
    let sum = Recorder::bind(cfg).unwrap().serve().unwrap();
    assert!(sum.timed_out && t.elapsed() < Duration::from_secs(5));
}
