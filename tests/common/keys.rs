//! Throwaway OpenPGP keys: the publisher's (trusted through `signing_keys`) and an attacker's,
//! each generated once per test binary, signing the way releases.hashicorp.com does.

use std::sync::OnceLock;

use pgp::{
    composed::{
        ArmorOptions, DetachedSignature, EncryptionCaps, KeyType, SecretKeyParamsBuilder,
        SignedPublicKey, SignedSecretKey, SubkeyParamsBuilder,
    },
    crypto::hash::HashAlgorithm,
    ser::Serialize,
    types::{KeyDetails, Password},
};

/// A throwaway RSA signing key: certify-only primary plus a signing subkey, like HashiCorp's.
pub struct TestKey {
    secret: SignedSecretKey,
    pub armored_public: String,
    pub key_id: String,
}

impl TestKey {
    pub fn generate(name: &str) -> Self {
        let params = SecretKeyParamsBuilder::default()
            .key_type(KeyType::Rsa(2048))
            .can_certify(true)
            .can_sign(false)
            .can_encrypt(EncryptionCaps::None)
            .primary_user_id(format!("{name} <{name}@example.invalid>"))
            .subkey(
                SubkeyParamsBuilder::default()
                    .key_type(KeyType::Rsa(2048))
                    .can_sign(true)
                    .can_encrypt(EncryptionCaps::None)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        let secret = params.generate(rand::thread_rng()).unwrap();
        let public = SignedPublicKey::from(secret.clone());
        Self {
            armored_public: public.to_armored_string(ArmorOptions::default()).unwrap(),
            key_id: hex::encode_upper(public.primary_key.legacy_key_id()),
            secret,
        }
    }

    /// A binary detached signature, as releases.hashicorp.com serves them.
    pub fn sign(&self, data: &[u8]) -> Vec<u8> {
        DetachedSignature::sign_binary_data(
            rand::thread_rng(),
            &self.secret.secret_subkeys[0].key,
            &Password::empty(),
            HashAlgorithm::Sha256,
            data,
        )
        .unwrap()
        .to_bytes()
        .unwrap()
    }

    pub fn short_id(&self) -> &str {
        &self.key_id[8..]
    }
}

/// The publisher's key, trusted through `signing_keys` (generated once per test binary).
pub fn publisher_key() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(|| TestKey::generate("publisher"))
}

/// A key nobody trusts.
pub fn attacker_key() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(|| TestKey::generate("attacker"))
}
