//! OpenPGP detached signatures on SHA256SUMS documents, checked against a set of trusted keys.
//!
//! rPGP checks the cryptography only; key liveness is our job. We judge every key and subkey
//! at the signature's creation time, not now, exactly as Terraform effectively does: HashiCorp
//! re-signed its historical releases in April 2021 with subkey `B0B441097685B676`, which
//! expired in 2022, and those signatures must keep verifying. A signing subkey counts only with
//! a valid binding signature that grants the signing flag and carries a valid back-signature;
//! a revoked key or subkey never counts.

use std::{io::Cursor, sync::Arc};

use pgp::{
    composed::{Deserializable, DetachedSignature, SignedPublicKey, SignedPublicSubKey},
    crypto::hash::HashAlgorithm,
    packet::{Signature, SignatureType},
    types::{KeyDetails, KeyId, Tag, Timestamp},
};

/// HashiCorp's release signing key (`34365D9472D7468F`, publication expiring 2030-03-01), the
/// same bytes Terraform embeds. Trusted by default.
pub const HASHICORP_PUBLIC_KEY: &str = include_str!("hashicorp.asc");

/// HashiCorp's partner key (`7D72D4268E4660FC`): a key whose `trust_signature` it made is
/// "signed by a HashiCorp partner", as Terraform grades it.
pub const HASHICORP_PARTNERS_KEY: &str = include_str!("hashicorp-partners.asc");

/// The `source` of the built-in key, as the public registry names it.
pub const HASHICORP_SOURCE: &str = "HashiCorp";

/// Largest detached signature we read; real ones are ~550 bytes.
pub const MAX_SIGNATURE_BYTES: u64 = 64 * 1024;

#[derive(Debug, Clone, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read OpenPGP public key from {source_name}: {reason}")]
    Unreadable { source_name: String, reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("signature is ASCII-armored; a binary detached signature is required")]
    Armored,
    #[error("signature cannot be parsed: {0}")]
    Malformed(String),
    #[error("signature has no creation time")]
    NoCreationTime,
    #[error("signature was made by unknown key {issuers}")]
    UnknownIssuer { issuers: String },
    #[error("signing key {key_id} was not valid when the signature was made: {reason}")]
    KeyNotValid {
        key_id: String,
        reason: &'static str,
    },
    #[error("signature by {key_id} does not match the signed document")]
    Mismatch { key_id: String },
    #[error("signature is of type {0}; only binary or text signatures sign a document")]
    WrongType(String),
    #[error("signature uses {0}, which is too weak; SHA-2 is required")]
    WeakHash(String),
    #[error("signature expired at {0}")]
    Expired(String),
    #[error("signature file holds no signature")]
    Empty,
}

/// Most signature packets read from one file (real ones hold one or two).
const MAX_SIGNATURES_PER_FILE: usize = 16;

/// A public key we trust to sign SHA256SUMS documents.
#[derive(Debug)]
pub struct TrustedKey {
    /// Upper-case hex long key id of the primary key.
    pub key_id: String,
    /// The armored key exactly as configured; handed to Terraform in `signing_keys`.
    pub armored: String,
    /// Where the key came from ([`HASHICORP_SOURCE`] or the configured file).
    pub source: String,
    /// HashiCorp's own key, built in (never a key that merely says it is HashiCorp's).
    built_in: bool,
    key: SignedPublicKey,
}

impl TrustedKey {
    pub fn parse(armored: &str, source: &str) -> Result<Self, KeyError> {
        let (key, _headers) = SignedPublicKey::from_armor_single(Cursor::new(armored.as_bytes()))
            .map_err(|e| KeyError::Unreadable {
            source_name: source.to_owned(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            key_id: hex::encode_upper(key.primary_key.legacy_key_id()),
            armored: armored.to_owned(),
            source: source.to_owned(),
            built_in: false,
            key,
        })
    }

    /// Whether this is HashiCorp's built-in release key.
    pub fn is_hashicorp(&self) -> bool {
        self.built_in
    }

    /// The short (8 hex digit) id HashiCorp puts in signature file names (`.72D7468F.sig`).
    pub fn short_id(&self) -> &str {
        &self.key_id[self.key_id.len().saturating_sub(8)..]
    }
}

/// How Terraform grades the key that signed a release (`package_authentication.go`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// HashiCorp's built-in key: "signed by HashiCorp".
    HashiCorp,
    /// A key with a valid `trust_signature` by HashiCorp's partner key.
    Partner,
    /// Any other key: "self-signed".
    Community,
}

impl Tier {
    /// The signing key's tier, given the `trust_signature` published with it. A trust
    /// signature that is present but does not verify is an error, as it is for Terraform.
    pub fn of(
        signed_by: &TrustedKey,
        trust_signature: Option<&str>,
    ) -> Result<Self, SignatureError> {
        let partners = Keyring::hashicorp_partners()
            .map_err(|e| SignatureError::Malformed(format!("built-in partner key: {e}")))?;
        Self::against(&partners, signed_by, trust_signature)
    }

    /// As [`Tier::of`], with trust signatures checked against `partners`.
    fn against(
        partners: &Keyring,
        signed_by: &TrustedKey,
        trust_signature: Option<&str>,
    ) -> Result<Self, SignatureError> {
        if signed_by.is_hashicorp() {
            return Ok(Self::HashiCorp);
        }
        match trust_signature.filter(|t| !t.trim().is_empty()) {
            None => Ok(Self::Community),
            Some(trust) => {
                partners.verify_armored(signed_by.armored.as_bytes(), trust)?;
                Ok(Self::Partner)
            }
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::HashiCorp => "hashicorp",
            Self::Partner => "partner",
            Self::Community => "community",
        }
    }
}

/// The keys one upstream trusts.
#[derive(Debug, Clone)]
pub struct Keyring {
    keys: Vec<Arc<TrustedKey>>,
}

impl Keyring {
    pub fn new(keys: Vec<TrustedKey>) -> Self {
        Self {
            keys: keys.into_iter().map(Arc::new).collect(),
        }
    }

    /// HashiCorp's built-in key alone.
    pub fn hashicorp() -> Result<Self, KeyError> {
        let mut key = TrustedKey::parse(HASHICORP_PUBLIC_KEY, HASHICORP_SOURCE)?;
        key.built_in = true;
        Ok(Self::new(vec![key]))
    }

    /// HashiCorp's partner key alone, which makes `trust_signature`s.
    pub fn hashicorp_partners() -> Result<Self, KeyError> {
        Ok(Self::new(vec![TrustedKey::parse(
            HASHICORP_PARTNERS_KEY,
            "HashiCorp partners",
        )?]))
    }

    /// Checks an ASCII-armored detached signature (a `trust_signature` over a key's armor).
    pub fn verify_armored(
        &self,
        document: &[u8],
        armored: &str,
    ) -> Result<Arc<TrustedKey>, SignatureError> {
        let (detached, _headers) = DetachedSignature::from_armor_single(Cursor::new(armored))
            .map_err(|e| SignatureError::Malformed(e.to_string()))?;
        self.verify_detached(document, &detached)
    }

    /// Trusts one more key.
    pub fn add(&mut self, key: TrustedKey) {
        self.keys.push(Arc::new(key));
    }

    pub fn keys(&self) -> &[Arc<TrustedKey>] {
        &self.keys
    }

    /// Checks `signature` (binary, detached) over `document` and names the key that made it.
    /// Every signature packet in the file is considered, by issuer, as Terraform does: the
    /// first that verifies wins; otherwise the most telling refusal is reported.
    pub fn verify(
        &self,
        document: &[u8],
        signature: &[u8],
    ) -> Result<Arc<TrustedKey>, SignatureError> {
        if signature.starts_with(b"-----BEGIN") {
            return Err(SignatureError::Armored);
        }
        let signatures = DetachedSignature::from_bytes_many(Cursor::new(signature))
            .map_err(|e| SignatureError::Malformed(e.to_string()))?;
        let mut refusal = SignatureError::Empty;
        for detached in signatures.take(MAX_SIGNATURES_PER_FILE) {
            let detached = detached.map_err(|e| SignatureError::Malformed(e.to_string()))?;
            match self.verify_detached(document, &detached) {
                Ok(key) => return Ok(key),
                Err(e) => {
                    // An unknown issuer says the least: keep what another packet said.
                    let says_less = matches!(e, SignatureError::UnknownIssuer { .. })
                        && !matches!(refusal, SignatureError::Empty);
                    if !says_less {
                        refusal = e;
                    }
                }
            }
        }
        Err(refusal)
    }

    fn verify_detached(
        &self,
        document: &[u8],
        detached: &DetachedSignature,
    ) -> Result<Arc<TrustedKey>, SignatureError> {
        let sig = &detached.signature;
        check_signature_itself(sig)?;
        let made_at = sig.created().ok_or(SignatureError::NoCreationTime)?;
        let issuers = sig.issuer_key_id();
        let issuer_fprs = sig.issuer_fingerprint();
        let issued_by = |key: &dyn KeyDetails| {
            issuers.iter().any(|id| **id == key.legacy_key_id())
                || issuer_fprs.iter().any(|fp| **fp == key.fingerprint())
        };

        for trusted in &self.keys {
            let cert = &trusted.key;
            let refuse = |reason| SignatureError::KeyNotValid {
                key_id: trusted.key_id.clone(),
                reason,
            };
            if issued_by(&cert.primary_key) {
                check_primary(cert, made_at, true).map_err(refuse)?;
                return sig
                    .verify(&cert.primary_key, document)
                    .map(|()| Arc::clone(trusted))
                    .map_err(|_| SignatureError::Mismatch {
                        key_id: trusted.key_id.clone(),
                    });
            }
            if let Some(subkey) = cert.public_subkeys.iter().find(|s| issued_by(&s.key)) {
                check_primary(cert, made_at, false).map_err(refuse)?;
                check_signing_subkey(cert, subkey, made_at).map_err(refuse)?;
                return sig
                    .verify(&subkey.key, document)
                    .map(|()| Arc::clone(trusted))
                    .map_err(|_| SignatureError::Mismatch {
                        key_id: trusted.key_id.clone(),
                    });
            }
        }
        Err(SignatureError::UnknownIssuer {
            issuers: describe_issuers(&issuers),
        })
    }
}

/// What Terraform's OpenPGP library demands of a document signature before any key is
/// looked at: a binary or text signature, a SHA-2 hash, and not past its own expiry.
fn check_signature_itself(sig: &Signature) -> Result<(), SignatureError> {
    match sig.typ() {
        Some(SignatureType::Binary | SignatureType::Text) => {}
        other => return Err(SignatureError::WrongType(format!("{other:?}"))),
    }
    match sig.hash_alg() {
        Some(
            HashAlgorithm::Sha256
            | HashAlgorithm::Sha384
            | HashAlgorithm::Sha512
            | HashAlgorithm::Sha224
            | HashAlgorithm::Sha3_256
            | HashAlgorithm::Sha3_512,
        ) => {}
        other => return Err(SignatureError::WeakHash(format!("{other:?}"))),
    }
    if let (Some(created), Some(lifetime)) = (sig.created(), sig.signature_expiration_time()) {
        // A zero lifetime means the signature never expires (RFC 9580, 5.2.3.18).
        let seconds = lifetime.as_secs();
        if seconds > 0 {
            let expires = u64::from(created.as_secs()).saturating_add(u64::from(seconds));
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            if expires <= now {
                return Err(SignatureError::Expired(format!("unix time {expires}")));
            }
        }
    }
    Ok(())
}

fn describe_issuers(issuers: &[&KeyId]) -> String {
    if issuers.is_empty() {
        return "(no issuer given)".to_owned();
    }
    issuers
        .iter()
        .map(hex::encode_upper)
        .collect::<Vec<_>>()
        .join(", ")
}

fn newest<'a>(sigs: impl Iterator<Item = &'a Signature>) -> Option<&'a Signature> {
    sigs.max_by_key(|s| s.created().map(Timestamp::as_secs).unwrap_or(0))
}

/// The primary key must not be revoked and must be alive at `at`, with its lifetime read from
/// its newest valid self-signature (HashiCorp re-issues those to extend the expiry).
fn check_primary(
    cert: &SignedPublicKey,
    at: Timestamp,
    signs_itself: bool,
) -> Result<(), &'static str> {
    let primary = &cert.primary_key;
    if cert
        .details
        .revocation_signatures
        .iter()
        .any(|s| s.verify_key(primary).is_ok())
    {
        return Err("the key is revoked");
    }
    let self_sigs = cert.details.users.iter().flat_map(|user| {
        user.signatures.iter().filter(move |s| {
            s.verify_certification(primary, Tag::UserId, &user.id)
                .is_ok()
        })
    });
    let direct = cert
        .details
        .direct_signatures
        .iter()
        .filter(|s| s.verify_key(primary).is_ok());
    let newest_self_sig =
        newest(self_sigs.chain(direct)).ok_or("the key has no valid self-signature")?;
    if signs_itself {
        let flags = newest_self_sig.key_flags();
        if !flags.sign() {
            return Err("the primary key is not allowed to sign");
        }
    }
    check_lifetime(
        primary.created_at(),
        newest_self_sig.key_expiration_time().map(|d| d.as_secs()),
        at,
    )
}

fn check_signing_subkey(
    cert: &SignedPublicKey,
    subkey: &SignedPublicSubKey,
    at: Timestamp,
) -> Result<(), &'static str> {
    let primary = &cert.primary_key;
    let valid = |typ: SignatureType| {
        subkey
            .signatures
            .iter()
            .filter(move |s| s.typ() == Some(typ))
            .filter(|s| s.verify_subkey_binding(primary, &subkey.key).is_ok())
    };
    if valid(SignatureType::SubkeyRevocation).next().is_some() {
        return Err("the signing subkey is revoked");
    }
    let binding = newest(valid(SignatureType::SubkeyBinding))
        .ok_or("the subkey has no valid binding signature")?;
    if !binding.key_flags().sign() {
        return Err("the subkey is not a signing subkey");
    }
    // Without the back-signature anyone could bind our subkey to their own primary key.
    let backsig = binding
        .embedded_signature()
        .ok_or("the signing subkey has no primary key binding")?;
    backsig
        .verify_primary_key_binding(&subkey.key, primary)
        .map_err(|_| "the signing subkey's primary key binding is invalid")?;
    check_lifetime(
        subkey.key.created_at(),
        binding.key_expiration_time().map(|d| d.as_secs()),
        at,
    )
}

/// A key created at `created` with lifetime `expires_after_secs` (absent or 0: forever) is
/// alive at `at` when `created <= at < created + lifetime`.
fn check_lifetime(
    created: Timestamp,
    expires_after_secs: Option<u32>,
    at: Timestamp,
) -> Result<(), &'static str> {
    if at.as_secs() < created.as_secs() {
        return Err("the signature predates the key");
    }
    match expires_after_secs {
        Some(lifetime) if lifetime > 0 => {
            let expiry = u64::from(created.as_secs()) + u64::from(lifetime);
            if u64::from(at.as_secs()) >= expiry {
                return Err("the key had expired");
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const SUMS: &[u8] = include_bytes!(
        "../../tests/fixtures/hashicorp-null-3.1.0/terraform-provider-null_3.1.0_SHA256SUMS"
    );
    const SIG: &[u8] = include_bytes!(
        "../../tests/fixtures/hashicorp-null-3.1.0/terraform-provider-null_3.1.0_SHA256SUMS.sig"
    );

    #[test]
    fn real_hashicorp_signature_by_expired_subkey_verifies() {
        let keyring = Keyring::hashicorp().unwrap();
        let key = keyring.verify(SUMS, SIG).unwrap();
        assert_eq!(key.key_id, "34365D9472D7468F");
        assert_eq!(key.short_id(), "72D7468F");
    }

    #[test]
    fn any_altered_byte_fails() {
        let keyring = Keyring::hashicorp().unwrap();
        for i in [0, SUMS.len() / 2, SUMS.len() - 1] {
            let mut doc = SUMS.to_vec();
            doc[i] ^= 0x01;
            assert!(
                keyring.verify(&doc, SIG).is_err(),
                "flipped document byte {i}"
            );
        }
        let mut doc = SUMS.to_vec();
        doc.push(b'\n');
        assert!(keyring.verify(&doc, SIG).is_err(), "appended newline");
        for i in [SIG.len() / 2, SIG.len() - 1] {
            let mut sig = SIG.to_vec();
            sig[i] ^= 0x01;
            assert!(
                keyring.verify(SUMS, &sig).is_err(),
                "flipped signature byte {i}"
            );
        }
    }

    #[test]
    fn empty_keyring_knows_no_issuer() {
        let err = Keyring::new(vec![]).verify(SUMS, SIG).unwrap_err();
        assert!(matches!(err, SignatureError::UnknownIssuer { .. }), "{err}");
        assert!(err.to_string().contains("B0B441097685B676"), "{err}");
    }

    #[test]
    fn armored_and_garbage_signatures_are_refused() {
        let keyring = Keyring::hashicorp().unwrap();
        assert_eq!(
            keyring
                .verify(SUMS, b"-----BEGIN PGP SIGNATURE-----\n")
                .unwrap_err(),
            SignatureError::Armored
        );
        assert!(matches!(
            keyring.verify(SUMS, b"garbage").unwrap_err(),
            SignatureError::Malformed(_)
        ));
    }

    #[test]
    fn lifetime_is_judged_at_signature_time() {
        let t = Timestamp::from_secs;
        assert!(check_lifetime(t(100), None, t(1_000_000)).is_ok());
        assert!(check_lifetime(t(100), Some(0), t(1_000_000)).is_ok());
        assert!(check_lifetime(t(100), Some(50), t(149)).is_ok());
        assert!(check_lifetime(t(100), Some(50), t(150)).is_err());
        assert!(check_lifetime(t(100), Some(50), t(99)).is_err());
    }

    /// A throwaway key pair: certify-only primary plus a signing subkey, like HashiCorp's.
    fn throwaway(name: &str) -> (pgp::composed::SignedSecretKey, TrustedKey) {
        use pgp::composed::{
            ArmorOptions, EncryptionCaps, KeyType, SecretKeyParamsBuilder, SubkeyParamsBuilder,
        };
        // Made three days ago, so that signatures can be dated in the past.
        let created = Timestamp::from_secs(Timestamp::now().as_secs() - 3 * 86_400);
        let params = SecretKeyParamsBuilder::default()
            .key_type(KeyType::Rsa(2048))
            .can_certify(true)
            .can_sign(false)
            .can_encrypt(EncryptionCaps::None)
            .created_at(created)
            .primary_user_id(format!("{name} <{name}@example.invalid>"))
            .subkey(
                SubkeyParamsBuilder::default()
                    .key_type(KeyType::Rsa(2048))
                    .can_sign(true)
                    .can_encrypt(EncryptionCaps::None)
                    .created_at(created)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        let secret = params.generate(rand::thread_rng()).unwrap();
        let public = SignedPublicKey::from(secret.clone());
        let armored = public.to_armored_string(ArmorOptions::default()).unwrap();
        (secret, TrustedKey::parse(&armored, name).unwrap())
    }

    #[test]
    fn tiers_follow_terraform() {
        use pgp::{composed::ArmorOptions, crypto::hash::HashAlgorithm, types::Password};
        let (partner_secret, partner) = throwaway("partners");
        let (_, provider) = throwaway("provider");
        let partners = Keyring::new(vec![TrustedKey::parse(&partner.armored, "p").unwrap()]);
        let trust = DetachedSignature::sign_binary_data(
            rand::thread_rng(),
            &partner_secret.secret_subkeys[0].key,
            &Password::empty(),
            HashAlgorithm::Sha256,
            provider.armored.as_bytes(),
        )
        .unwrap()
        .to_armored_string(ArmorOptions::default())
        .unwrap();
        assert_eq!(
            Tier::against(&partners, &provider, Some(&trust)).unwrap(),
            Tier::Partner
        );
        assert_eq!(
            Tier::against(&partners, &provider, None).unwrap(),
            Tier::Community
        );
        // A trust signature over another key, or garbage, is an error, not "community".
        assert!(Tier::against(&partners, &partner, Some(&trust)).is_err());
        assert!(Tier::against(&partners, &provider, Some("garbage")).is_err());
        let hashicorp = Keyring::hashicorp().unwrap();
        assert_eq!(
            Tier::against(&partners, &hashicorp.keys()[0], None).unwrap(),
            Tier::HashiCorp
        );
        // A key that merely calls itself HashiCorp's is not.
        let impostor = TrustedKey::parse(&provider.armored, HASHICORP_SOURCE).unwrap();
        assert_eq!(Tier::of(&impostor, None).unwrap(), Tier::Community);
        // The built-in partner key parses.
        assert!(Keyring::hashicorp_partners().is_ok());
    }

    /// A detached signature over `data` by `secret`'s signing subkey, made as asked.
    fn made(
        secret: &pgp::composed::SignedSecretKey,
        typ: SignatureType,
        hash: HashAlgorithm,
        created: Timestamp,
        lifetime: Option<u32>,
        data: &[u8],
    ) -> Vec<u8> {
        use pgp::{
            packet::{SignatureConfig, Subpacket, SubpacketData},
            ser::Serialize,
            types::Password,
        };
        let key = &secret.secret_subkeys[0].key;
        let mut config = SignatureConfig::v4(typ, key.algorithm(), hash);
        config.hashed_subpackets = vec![
            Subpacket::regular(SubpacketData::IssuerFingerprint(key.fingerprint())).unwrap(),
            Subpacket::regular(SubpacketData::SignatureCreationTime(created)).unwrap(),
        ];
        if let Some(seconds) = lifetime {
            config.hashed_subpackets.push(
                Subpacket::regular(SubpacketData::SignatureExpirationTime(
                    pgp::types::Duration::from_secs(seconds),
                ))
                .unwrap(),
            );
        }
        config.unhashed_subpackets =
            vec![Subpacket::regular(SubpacketData::IssuerKeyId(key.legacy_key_id())).unwrap()];
        let signature = config.sign(key, &Password::empty(), data).unwrap();
        DetachedSignature::new(signature).to_bytes().unwrap()
    }

    #[test]
    fn signatures_are_judged_as_strictly_as_terraform_does() {
        let (secret, trusted) = throwaway("publisher");
        let (stranger_secret, _) = throwaway("stranger");
        let ring = Keyring::new(vec![TrustedKey::parse(&trusted.armored, "p").unwrap()]);
        let doc = b"terraform-provider-x_1.0.0_linux_amd64.zip\n";
        let now = Timestamp::now();
        let sig = |typ, hash, created, lifetime| made(&secret, typ, hash, created, lifetime, doc);

        assert!(ring
            .verify(
                doc,
                &sig(SignatureType::Binary, HashAlgorithm::Sha256, now, None)
            )
            .is_ok());
        assert!(ring
            .verify(
                doc,
                &sig(SignatureType::Text, HashAlgorithm::Sha512, now, None)
            )
            .is_ok());
        for weak in [HashAlgorithm::Sha1, HashAlgorithm::Md5] {
            let refused = ring.verify(doc, &sig(SignatureType::Binary, weak, now, None));
            assert!(
                matches!(refused, Err(SignatureError::WeakHash(_))),
                "{weak:?}: {refused:?}"
            );
        }
        // rPGP makes only binary and text signatures over data; a standalone one is made by
        // rewriting the type octet of a binary one (its cryptography no longer matters: the
        // type is refused before any key is looked at).
        let mut standalone = sig(SignatureType::Binary, HashAlgorithm::Sha256, now, None);
        let body = match standalone[1] {
            0..=191 => 2,
            192..=223 => 3,
            _ => 6,
        };
        assert_eq!(standalone[body], 4, "a version 4 signature packet");
        standalone[body + 1] = 0x02;
        let refused = ring.verify(doc, &standalone);
        assert!(
            matches!(refused, Err(SignatureError::WrongType(_))),
            "{refused:?}"
        );
        // Made a day ago to last an hour: expired. To last two days: still good. Zero: forever.
        let yesterday = Timestamp::from_secs(now.as_secs() - 86_400);
        let refused = ring.verify(
            doc,
            &sig(
                SignatureType::Binary,
                HashAlgorithm::Sha256,
                yesterday,
                Some(3600),
            ),
        );
        assert!(
            matches!(refused, Err(SignatureError::Expired(_))),
            "{refused:?}"
        );
        for lifetime in [2 * 86_400, 0] {
            let signed = sig(
                SignatureType::Binary,
                HashAlgorithm::Sha256,
                yesterday,
                Some(lifetime),
            );
            assert!(ring.verify(doc, &signed).is_ok(), "lifetime {lifetime}");
        }
        // Two packets in one file: a stranger's first, then the publisher's; any order works.
        let stranger = made(
            &stranger_secret,
            SignatureType::Binary,
            HashAlgorithm::Sha256,
            now,
            None,
            doc,
        );
        let good = sig(SignatureType::Binary, HashAlgorithm::Sha256, now, None);
        for file in [
            [stranger.clone(), good.clone()].concat(),
            [good, stranger.clone()].concat(),
        ] {
            assert!(ring.verify(doc, &file).is_ok());
        }
        // A weak packet beside an unknown one is reported as weak, not as unknown.
        let weak = sig(SignatureType::Binary, HashAlgorithm::Sha1, now, None);
        let refused = ring.verify(doc, &[stranger, weak].concat());
        assert!(
            matches!(refused, Err(SignatureError::WeakHash(_))),
            "{refused:?}"
        );
        assert!(matches!(
            ring.verify(doc, b""),
            Err(SignatureError::Empty | SignatureError::Malformed(_))
        ));
    }
}
