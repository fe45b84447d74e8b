//! `rediss://`: a RedisStore reaches a redis-server over TLS, trusting a
//! private CA named by `SSL_CERT_FILE`. One test in this binary: it sets
//! the environment variable, which no other thread reads meanwhile.

mod common;

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::free_port;
use ipcfs::broker::RedisStore;
use ipcfs::hub::framing::Framing;
use ipcfs::hub::policy::{Policy, Rule};
use ipcfs::hub::store::{Outgoing, Reader, Received, Sent, Store, Writer};
use ipcfs::hub::tree::Attr;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let st = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("openssl ({e}): the TLS test needs it installed"));
    assert!(st.success(), "openssl {args:?}: {st}");
}

#[test]
fn rediss_reaches_a_broker_with_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=ipcfs-test-ca",
        ],
    );
    openssl(
        d,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "s.key",
            "-out",
            "s.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(d.join("ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "s.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "s.crt",
            "-days",
            "2",
            "-extfile",
            "ext",
        ],
    );
    let port = free_port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args(["--tls-port", &port.to_string(), "--tls-auth-clients", "no"])
        .args([
            "--tls-cert-file",
            "s.crt",
            "--tls-key-file",
            "s.key",
            "--tls-ca-cert-file",
            "ca.crt",
        ])
        .args(["--requirepass", "pw"])
        .current_dir(d)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server (apt-get install redis-server)");
    let _server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "redis-server with TLS did not listen"
        );
        thread::sleep(Duration::from_millis(10));
    }
    let url = format!("rediss://:pw@127.0.0.1:{port}");

    // The public roots do not know this CA.
    let e = RedisStore::connect(&url, "a", Duration::from_secs(10))
        .err()
        .expect("an unknown issuer is refused");
    assert!(
        e.starts_with(&format!(
            "cannot reach the broker at rediss://127.0.0.1:{port}: "
        )),
        "{e}"
    );
    assert!(e.contains("UnknownIssuer"), "{e}");

    // SAFETY: the only test of this binary; nothing else reads the
    // environment now.
    unsafe { std::env::set_var("SSL_CERT_FILE", d.join("ca.crt")) };
    let a = RedisStore::connect(&url, "a", Duration::from_secs(10)).expect("TLS with the CA");
    let b = RedisStore::connect(&url, "b", Duration::from_secs(10)).expect("TLS with the CA");
    let p = Policy {
        rule: Rule::Arbitrary,
        capacity: None,
        max_message_size: 1024,
    };
    let dir_attr = Attr {
        mode: 0o755,
        uid: 0,
        gid: 0,
    };
    let id = a.mkdir(0, "box".as_ref(), dir_attr, &p).unwrap();
    let m = Outgoing {
        bytes: b"over tls".to_vec(),
        receipt: None,
    };
    assert_eq!(
        a.send(
            id,
            &Writer {
                wid: 1,
                pid: 1,
                nonblock: false,
                again: false,
            },
            &[m]
        )
        .unwrap(),
        Sent::Accepted
    );
    let r = Reader {
        wid: 1,
        pid: 1,
        size: 64,
        framing: Framing::Stream,
        nonblock: true,
    };
    match b.receive(id, &r).unwrap() {
        Received::Messages { msgs, flight } => {
            assert_eq!(msgs, vec![b"over tls".to_vec()]);
            b.ack(&flight).unwrap();
        }
        other => panic!("{other:?}"),
    }
    a.stop();
    b.stop();
}
