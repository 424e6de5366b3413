//! The real `tfmirror` binary as a child process, started the way operators start it: `serve`
//! in the background, or a one-shot subcommand run to completion.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// A running `tfmirror serve`; killed on drop.
pub struct Serving {
    pub child: Child,
    /// The base URL from its "listening on" line.
    pub base: String,
    /// From spawn to that line.
    pub ready: Duration,
    /// Its log up to that line.
    pub startup_log: Vec<String>,
}

impl Serving {
    /// Starts `binary serve --config CONFIG` with `RUST_LOG=rust_log` and waits up to 30 s for
    /// it to say where it listens. Its log keeps being drained so it never blocks on a full pipe.
    pub fn start(binary: &Path, config: &Path, rust_log: &str) -> Self {
        let started = Instant::now();
        let mut child = Command::new(binary)
            .args(["serve", "--config"])
            .arg(config)
            .env("RUST_LOG", rust_log)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut seen = Vec::new();
        while let Ok(line) = rx.recv_timeout(Duration::from_secs(30)) {
            if let Some(rest) = line.split("listening on ").nth(1) {
                let base = rest.trim().to_owned();
                let ready = started.elapsed();
                std::thread::spawn(move || while rx.recv().is_ok() {});
                seen.push(line);
                return Self {
                    child,
                    base,
                    ready,
                    startup_log: seen,
                };
            }
            seen.push(line);
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("tfmirror did not start:\n{}", seen.join("\n"));
    }

    /// Like `start`, but its log goes to the file `log`, as a deployed server's does (a pipe
    /// drained by this process would make the reader part of what is measured).
    pub fn start_logging_to(binary: &Path, config: &Path, rust_log: &str, log: &Path) -> Self {
        let started = Instant::now();
        let mut child = Command::new(binary)
            .args(["serve", "--config"])
            .arg(config)
            .env("RUST_LOG", rust_log)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        let deadline = started + Duration::from_secs(30);
        while Instant::now() < deadline {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if let Some(rest) = text.split("listening on ").nth(1) {
                let base = rest.lines().next().unwrap_or("").trim().to_owned();
                return Self {
                    child,
                    base,
                    ready: started.elapsed(),
                    startup_log: text.lines().map(str::to_owned).collect(),
                };
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "tfmirror did not start:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn rss_kb(&self) -> u64 {
        rss_kb(self.pid())
    }

    /// SIGKILL (std's `Child::kill` on Unix): no destructor or signal handler runs.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `tfmirror ARGS --config CONFIG` to completion without blocking the test's runtime (a
/// fake upstream in the same runtime must keep answering it).
pub async fn tfmirror(args: &[&str], config: &Path) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_tfmirror"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap()
}

/// A process's resident set size in KiB (0 once it is gone).
pub fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}
