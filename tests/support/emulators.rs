//! The emulators the tests drive, installed by scripts/test.sh: moto's server (in .venv) and
//! kinesalite (npm, in .tools/kinesalite), on free loopback ports, killed when dropped; and
//! `tests/support/aws.py`, which creates and reads back through them with boto3.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// An emulator process, killed when dropped.
pub struct Emulator {
    child: Child,
    pub endpoint: String,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn venv(bin: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin").join(bin);
    assert!(p.exists(), "{} is missing: scripts/test.sh installs moto into .venv", p.display());
    p
}

pub fn moto() -> Emulator {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(venv("moto_server"))
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "moto did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    Emulator { child, endpoint: format!("http://127.0.0.1:{port}") }
}

/// kinesalite bound to loopback, with enough shards for every test stream.
pub fn kinesalite() -> Emulator {
    let module = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".tools/kinesalite/node_modules/kinesalite");
    assert!(module.exists(), "{} is missing: scripts/test.sh installs kinesalite with npm", module.display());
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let script = format!(
        "require({:?})({{createStreamMs:0,deleteStreamMs:0,updateStreamMs:0,shardLimit:1000}}).listen({port},'127.0.0.1')",
        module.display().to_string()
    );
    let child = Command::new("node").args(["-e", &script]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "kinesalite did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    Emulator { child, endpoint: format!("http://127.0.0.1:{port}") }
}

pub fn aws(args: &[&str]) -> Vec<u8> {
    let helper = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/aws.py");
    let out = Command::new(venv("python")).arg(helper).args(args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// Lines read back with the helper `args` once at least `n` arrived, or after 60 s.
pub fn arrived(args: &[&str], n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got: Vec<String> = String::from_utf8_lossy(&aws(args)).lines().map(String::from).collect();
        if got.len() >= n || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}
