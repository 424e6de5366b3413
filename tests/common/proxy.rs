//! A real forward proxy for egress tests: Debian's `tinyproxy` as a child process on an
//! ephemeral loopback port, with a generated config file and a log of its own, so a test can
//! tell from the log which requests crossed it. `tests/run.sh` installs it; `TINYPROXY=/path`
//! uses another binary. The child is killed when the value is dropped.

use std::{
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub struct Tinyproxy {
    pub addr: SocketAddr,
    pub log: PathBuf,
    child: Option<Child>,
}

fn binary() -> String {
    std::env::var("TINYPROXY").unwrap_or_else(|_| "tinyproxy".to_owned())
}

impl Tinyproxy {
    /// Starts tinyproxy under `dir` (config and log files there) and waits until it accepts
    /// connections.
    pub fn start(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        // tinyproxy takes a fixed port from its config: ask the kernel for a free one.
        let port = TcpListener::bind(("127.0.0.1", 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let log = dir.join("tinyproxy.log");
        let config = dir.join("tinyproxy.conf");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListen 127.0.0.1\nTimeout 30\nLogFile \"{}\"\nLogLevel Info\n\
                 MaxClients 50\nAllow 127.0.0.1\nDisableViaHeader Yes\n",
                log.display()
            ),
        )
        .unwrap();
        let binary = binary();
        let child = Command::new(&binary)
            .arg("-d")
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| match e.kind() {
                std::io::ErrorKind::NotFound => panic!(
                    "{binary} not found: run tests/run.sh, which installs it (or apt-get install \
                     tinyproxy; TINYPROXY=/path for another binary)"
                ),
                _ => panic!("cannot run {binary}: {e}"),
            });
        let mut proxy = Self {
            addr,
            log,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).is_err() {
            if let Some(status) = proxy.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("tinyproxy exited ({status}): {}", proxy.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "tinyproxy not listening on {addr}: {}",
                proxy.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        proxy
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The request lines tinyproxy logged (`GET http://host:port/path HTTP/1.1`).
    pub fn requests(&self) -> Vec<String> {
        self.log_text()
            .lines()
            .filter_map(|line| line.split_once("): ").map(|(_, rest)| rest))
            .filter(|rest| {
                ["GET ", "HEAD ", "CONNECT "]
                    .iter()
                    .any(|m| rest.starts_with(m))
            })
            .map(str::to_owned)
            .collect()
    }

    /// Kills tinyproxy and waits until its port refuses connections.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(self.addr).is_ok() {
            assert!(Instant::now() < deadline, "tinyproxy still listening");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
