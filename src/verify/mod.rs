//! "Is this trustworthy?" Pure checks over bytes: SHA256SUMS parsing, OpenPGP signatures and
//! the hashes Terraform records. No network, no disk.

pub mod checksums;
pub mod hashes;
pub mod signature;

pub use checksums::{Checksums, ChecksumsError, Sha256Digest};
pub use hashes::{h1_of_zip, HashError};
pub use signature::{KeyError, Keyring, SignatureError, Tier, TrustedKey};
