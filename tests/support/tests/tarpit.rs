//! Tarpit: connections are accepted and never answered; clients must time out by themselves.

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate_test_support::{Tarpit, git};

#[test]
fn accepts_and_never_answers() {
    let tarpit = Tarpit::start().expect("start tarpit");
    let mut stream = TcpStream::connect(tarpit.addr()).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let mut buf = [0u8; 16];
    let err = stream.read(&mut buf).expect_err("no data ever comes");
    assert!(
        matches!(
            err.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "{err}"
    );
    assert_eq!(tarpit.connections(), 1);

    // git gives up on a silent http server when told to
    let started = Instant::now();
    let out = git()
        .args(["-c", "http.lowSpeedLimit=1", "-c", "http.lowSpeedTime=1"])
        .args(["ls-remote", &format!("http://{}/repo.git", tarpit.addr())])
        .output()
        .expect("run git");
    assert!(!out.status.success());
    assert!(started.elapsed() < Duration::from_secs(20));

    // dropping closes held connections: the read sees end of file
    drop(tarpit);
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    assert_eq!(stream.read(&mut buf).expect("eof after drop"), 0);
}
