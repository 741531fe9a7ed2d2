use std::collections::BTreeMap;
use std::fmt;

use super::{InvalidInput, KeyId, KeyKind, KeySpec, KeyUsage};
use crate::clock::UnixMillis;
use crate::rpc::Rpc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    Enabled,
    Disabled,
    PendingDeletion,
    /// The material is gone; only metadata remains. Terminal.
    Destroyed,
    /// A key of origin EXTERNAL whose material has not been imported yet, or was deleted or expired.
    PendingImport,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Enabled => "ENABLED",
            State::Disabled => "DISABLED",
            State::PendingDeletion => "PENDING_DELETION",
            State::Destroyed => "DESTROYED",
            State::PendingImport => "PENDING_IMPORT",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ENABLED" => State::Enabled,
            "DISABLED" => State::Disabled,
            "PENDING_DELETION" => State::PendingDeletion,
            "DESTROYED" => State::Destroyed,
            "PENDING_IMPORT" => State::PendingImport,
            _ => return None,
        })
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a key's material came from: made by kmsd, or imported by its owner (AWS's origin `EXTERNAL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Kmsd,
    External,
}

impl Origin {
    pub const fn as_str(self) -> &'static str {
        match self {
            Origin::Kmsd => "KMSD",
            Origin::External => "EXTERNAL",
        }
    }

    /// As CreateKey takes it: KMSD if empty.
    pub fn parse(text: &str) -> Result<Self, InvalidInput> {
        match text {
            "" | "KMSD" => Ok(Origin::Kmsd),
            "EXTERNAL" => Ok(Origin::External),
            other => Err(InvalidInput(format!(
                "origin {other:?} is not KMSD (kmsd makes the material) or EXTERNAL (you import it)"
            ))),
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a caller asks of a key, for the state rules below and for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Encrypt,
    Decrypt,
    GenerateDataKey,
    GenerateDataKeyWithoutPlaintext,
    ReEncrypt,
    EnableKey,
    DisableKey,
    RotateKey,
    ScheduleKeyDeletion,
    CancelKeyDeletion,
    CreateAlias,
    UpdateAlias,
    UpdateKeyDescription,
    TagResource,
    UntagResource,
    EnableKeyRotation,
    DisableKeyRotation,
    Sign,
    Verify,
    GetPublicKey,
    GenerateMac,
    VerifyMac,
    GenerateDataKeyPair,
    GenerateDataKeyPairWithoutPlaintext,
    GetParametersForImport,
    ImportKeyMaterial,
    DeleteImportedKeyMaterial,
}

impl Operation {
    /// The RPC that asks for it, whose name messages use.
    pub const fn rpc(self) -> Rpc {
        match self {
            Operation::Encrypt => Rpc::Encrypt,
            Operation::Decrypt => Rpc::Decrypt,
            Operation::GenerateDataKey => Rpc::GenerateDataKey,
            Operation::GenerateDataKeyWithoutPlaintext => Rpc::GenerateDataKeyWithoutPlaintext,
            Operation::ReEncrypt => Rpc::ReEncrypt,
            Operation::EnableKey => Rpc::EnableKey,
            Operation::DisableKey => Rpc::DisableKey,
            Operation::RotateKey => Rpc::RotateKey,
            Operation::ScheduleKeyDeletion => Rpc::ScheduleKeyDeletion,
            Operation::CancelKeyDeletion => Rpc::CancelKeyDeletion,
            Operation::CreateAlias => Rpc::CreateAlias,
            Operation::UpdateAlias => Rpc::UpdateAlias,
            Operation::UpdateKeyDescription => Rpc::UpdateKeyDescription,
            Operation::TagResource => Rpc::TagResource,
            Operation::UntagResource => Rpc::UntagResource,
            Operation::EnableKeyRotation => Rpc::EnableKeyRotation,
            Operation::DisableKeyRotation => Rpc::DisableKeyRotation,
            Operation::Sign => Rpc::Sign,
            Operation::Verify => Rpc::Verify,
            Operation::GetPublicKey => Rpc::GetPublicKey,
            Operation::GenerateMac => Rpc::GenerateMac,
            Operation::VerifyMac => Rpc::VerifyMac,
            Operation::GenerateDataKeyPair => Rpc::GenerateDataKeyPair,
            Operation::GenerateDataKeyPairWithoutPlaintext => {
                Rpc::GenerateDataKeyPairWithoutPlaintext
            }
            Operation::GetParametersForImport => Rpc::GetParametersForImport,
            Operation::ImportKeyMaterial => Rpc::ImportKeyMaterial,
            Operation::DeleteImportedKeyMaterial => Rpc::DeleteImportedKeyMaterial,
        }
    }

    /// Whether a key of `kind` and `origin` serves this operation at all, whatever its state.
    pub fn fits(self, kind: KeyKind, origin: Origin) -> bool {
        match self {
            Operation::GetParametersForImport
            | Operation::ImportKeyMaterial
            | Operation::DeleteImportedKeyMaterial => origin == Origin::External,
            Operation::RotateKey | Operation::EnableKeyRotation | Operation::DisableKeyRotation
                if origin == Origin::External =>
            {
                false
            }
            Operation::Encrypt | Operation::Decrypt | Operation::ReEncrypt => {
                kind.usage == KeyUsage::EncryptDecrypt
            }
            Operation::GenerateDataKey
            | Operation::GenerateDataKeyWithoutPlaintext
            | Operation::GenerateDataKeyPair
            | Operation::GenerateDataKeyPairWithoutPlaintext
            | Operation::RotateKey
            | Operation::EnableKeyRotation
            | Operation::DisableKeyRotation => kind.spec == KeySpec::SymmetricDefault,
            Operation::Sign | Operation::Verify => kind.usage == KeyUsage::SignVerify,
            Operation::GetPublicKey => kind.spec.is_asymmetric(),
            Operation::GenerateMac | Operation::VerifyMac => {
                kind.usage == KeyUsage::GenerateVerifyMac
            }
            _ => true,
        }
    }

    /// What a key needs to serve this operation, for messages.
    fn needs(self) -> &'static str {
        match self {
            Operation::Encrypt | Operation::Decrypt | Operation::ReEncrypt => {
                "a key whose usage is ENCRYPT_DECRYPT"
            }
            Operation::GenerateDataKey
            | Operation::GenerateDataKeyWithoutPlaintext
            | Operation::GenerateDataKeyPair
            | Operation::GenerateDataKeyPairWithoutPlaintext => "a SYMMETRIC_DEFAULT key",
            Operation::RotateKey | Operation::EnableKeyRotation | Operation::DisableKeyRotation => {
                "a SYMMETRIC_DEFAULT key whose material kmsd made: key pairs, HMAC keys and imported keys are not \
                 rotated, as in AWS KMS (create a new key and move its alias instead)"
            }
            Operation::GetParametersForImport
            | Operation::ImportKeyMaterial
            | Operation::DeleteImportedKeyMaterial => "a key created with origin EXTERNAL",
            Operation::Sign | Operation::Verify => "a key whose usage is SIGN_VERIFY",
            Operation::GetPublicKey => "an asymmetric key (RSA, ECC or ML-DSA)",
            Operation::GenerateMac | Operation::VerifyMac => {
                "a key whose usage is GENERATE_VERIFY_MAC"
            }
            _ => "any key",
        }
    }

    pub const fn name(self) -> &'static str {
        self.rpc().name()
    }

    /// Whether a key in `state` allows this operation.
    pub fn allowed_in(self, state: State) -> bool {
        use State::*;
        match self {
            Operation::Encrypt
            | Operation::Decrypt
            | Operation::GenerateDataKey
            | Operation::GenerateDataKeyWithoutPlaintext
            | Operation::ReEncrypt
            | Operation::RotateKey
            | Operation::EnableKeyRotation
            | Operation::DisableKeyRotation
            | Operation::Sign
            | Operation::Verify
            | Operation::GetPublicKey
            | Operation::GenerateMac
            | Operation::VerifyMac
            | Operation::GenerateDataKeyPair
            | Operation::GenerateDataKeyPairWithoutPlaintext => state == Enabled,
            Operation::EnableKey | Operation::DisableKey | Operation::DeleteImportedKeyMaterial => {
                matches!(state, Enabled | Disabled)
            }
            Operation::ScheduleKeyDeletion
            | Operation::CreateAlias
            | Operation::UpdateAlias
            | Operation::UpdateKeyDescription
            | Operation::TagResource
            | Operation::UntagResource
            | Operation::GetParametersForImport
            | Operation::ImportKeyMaterial => matches!(state, Enabled | Disabled | PendingImport),
            Operation::CancelKeyDeletion => state == PendingDeletion,
        }
    }

    /// What the key would need for this operation to be allowed, for the caller to act on.
    fn remedy(self, state: State) -> &'static str {
        match (self, state) {
            (_, State::Destroyed) => "its material has been destroyed and cannot be recovered",
            (Operation::CancelKeyDeletion, _) => {
                "only a key pending deletion can have its deletion cancelled"
            }
            (_, State::PendingDeletion) => {
                "cancel the deletion with CancelKeyDeletion, then enable it with EnableKey"
            }
            (_, State::Disabled) => "enable it with EnableKey first",
            (_, State::PendingImport) => {
                "import its material first, with GetParametersForImport and ImportKeyMaterial"
            }
            (_, State::Enabled) => "the operation does not apply to an enabled key",
        }
    }
}

/// A change to a key's details, not its state or its material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyUpdate {
    Description(String),
    /// Tags added, or given new values.
    Tag(BTreeMap<String, String>),
    /// Tags removed (keys that are not there are ignored, as AWS does).
    Untag(Vec<String>),
    /// Automatic rotation every so many days.
    EnableRotation(u32),
    DisableRotation,
}

impl KeyUpdate {
    pub fn description(text: String) -> Result<Self, InvalidInput> {
        super::check_description(&text)?;
        Ok(KeyUpdate::Description(text))
    }

    pub fn tag(tags: impl IntoIterator<Item = (String, String)>) -> Result<Self, InvalidInput> {
        let tags: BTreeMap<String, String> = tags.into_iter().collect();
        if tags.is_empty() {
            return Err(InvalidInput("give at least one tag".into()));
        }
        super::check_tags(tags.iter())?;
        Ok(KeyUpdate::Tag(tags))
    }

    pub fn untag(keys: Vec<String>) -> Result<Self, InvalidInput> {
        if keys.is_empty() {
            return Err(InvalidInput("give at least one tag key".into()));
        }
        for k in &keys {
            super::check_tag_key(k)?;
        }
        Ok(KeyUpdate::Untag(keys))
    }

    /// `days` 0 means the default period.
    pub fn enable_rotation(days: u32) -> Result<Self, InvalidInput> {
        let days = match days {
            0 => super::limits::DEFAULT_ROTATION_DAYS,
            d => super::check_rotation_period(d)?,
        };
        Ok(KeyUpdate::EnableRotation(days))
    }

    pub fn operation(&self) -> Operation {
        match self {
            KeyUpdate::Description(_) => Operation::UpdateKeyDescription,
            KeyUpdate::Tag(_) => Operation::TagResource,
            KeyUpdate::Untag(_) => Operation::UntagResource,
            KeyUpdate::EnableRotation(_) => Operation::EnableKeyRotation,
            KeyUpdate::DisableRotation => Operation::DisableKeyRotation,
        }
    }
}

/// A key's kind does not serve the operation, in any state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("key {key_id} ({spec}, usage {usage}, origin {origin}): {op} needs {needs}", spec = .kind.spec, usage = .kind.usage, op = .operation.name(), needs = .operation.needs())]
pub struct UsageError {
    pub key_id: KeyId,
    pub kind: KeyKind,
    pub origin: Origin,
    pub operation: Operation,
}

impl UsageError {
    /// The operation is one kmsd (like AWS KMS) does not offer for such keys at all, rather than one asked of the
    /// wrong key (AWS's `UnsupportedOperationException` rather than `InvalidKeyUsageException`).
    pub fn is_unsupported(&self) -> bool {
        matches!(
            self.operation,
            Operation::RotateKey
                | Operation::EnableKeyRotation
                | Operation::DisableKeyRotation
                | Operation::GetParametersForImport
                | Operation::ImportKeyMaterial
                | Operation::DeleteImportedKeyMaterial
        )
    }
}

/// Why a key refuses an operation: its kind, or its state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(transparent)]
    Usage(#[from] UsageError),
    #[error(transparent)]
    State(#[from] StateError),
}

/// A key is in a state that does not allow the operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("key {key_id} is {state}: {op} is not allowed ({remedy})", op = .operation.name(), remedy = .operation.remedy(*.state))]
pub struct StateError {
    pub key_id: KeyId,
    pub state: State,
    pub operation: Operation,
}

/// A key's metadata: everything but its material and aliases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsKey {
    pub id: KeyId,
    pub description: String,
    pub state: State,
    pub created_at: UnixMillis,
    pub primary_version: u32,
    pub rotation_period_days: Option<u32>,
    /// When automatic rotation is next due; `None` when it is off.
    pub next_rotation_at: Option<UnixMillis>,
    /// When a key pending deletion will be destroyed, or when a destroyed key was.
    pub deletion_at: Option<UnixMillis>,
    pub tags: BTreeMap<String, String>,
    /// Its spec and usage, fixed at creation.
    pub kind: KeyKind,
    /// Where its material comes from, fixed at creation.
    pub origin: Origin,
    /// Imported material: when it expires (`None`: it does not).
    pub valid_to: Option<UnixMillis>,
    /// Imported material: a fingerprint of the first material imported, which any later import must match (as
    /// AWS KMS requires). Kept when the material is deleted or expires.
    pub import_fingerprint: Option<String>,
}

impl KmsKey {
    /// Whether the key serves `operation`: its kind first (which never changes), then its state.
    pub fn check(&self, operation: Operation) -> Result<(), Refusal> {
        if !operation.fits(self.kind, self.origin) {
            return Err(UsageError {
                key_id: self.id,
                kind: self.kind,
                origin: self.origin,
                operation,
            }
            .into());
        }
        if operation.allowed_in(self.state) {
            Ok(())
        } else {
            Err(StateError {
                key_id: self.id,
                state: self.state,
                operation,
            }
            .into())
        }
    }

    /// The record after `operation` is applied at `now`, or why it cannot be.
    /// `arg_days` is the deletion window for `ScheduleKeyDeletion`.
    pub fn transition(
        &self,
        operation: Operation,
        now: UnixMillis,
        arg_days: u32,
    ) -> Result<KmsKey, Refusal> {
        self.check(operation)?;
        let mut next = self.clone();
        match operation {
            Operation::EnableKey => {
                next.state = State::Enabled;
                // A key keeps its rotation schedule while disabled; if a rotation fell due meanwhile, the next
                // maintenance pass makes it.
                if let Some(days) = self.rotation_period_days {
                    next.next_rotation_at = self.next_rotation_at.or(Some(now.plus_days(days)));
                }
            }
            Operation::DisableKey => next.state = State::Disabled,
            Operation::ScheduleKeyDeletion => {
                next.state = State::PendingDeletion;
                next.deletion_at = Some(now.plus_days(arg_days));
            }
            Operation::CancelKeyDeletion => {
                next.state = State::Disabled;
                next.deletion_at = None;
            }
            Operation::RotateKey => {
                next.primary_version = self.primary_version + 1;
                next.next_rotation_at = self.rotation_period_days.map(|d| now.plus_days(d));
            }
            _ => {}
        }
        Ok(next)
    }

    /// The record with `update` applied, if the key's state allows it.
    pub fn updated(&self, update: &KeyUpdate, now: UnixMillis) -> Result<KmsKey, Refusal> {
        self.check(update.operation())?;
        let mut next = self.clone();
        match update {
            KeyUpdate::Description(text) => next.description = text.clone(),
            KeyUpdate::Tag(tags) => next
                .tags
                .extend(tags.iter().map(|(k, v)| (k.clone(), v.clone()))),
            KeyUpdate::Untag(keys) => next.tags.retain(|k, _| !keys.contains(k)),
            KeyUpdate::EnableRotation(days) => {
                // A new period starts a new schedule; enabling again with the same period keeps the next date.
                if next.rotation_period_days != Some(*days) || next.next_rotation_at.is_none() {
                    next.next_rotation_at = Some(now.plus_days(*days));
                }
                next.rotation_period_days = Some(*days);
            }
            KeyUpdate::DisableRotation => {
                next.rotation_period_days = None;
                next.next_rotation_at = None;
            }
        }
        Ok(next)
    }

    /// The record after its material is destroyed, if its deletion window ended by `now`.
    pub fn destroyed_if_due(&self, now: UnixMillis) -> Option<KmsKey> {
        match (self.state, self.deletion_at) {
            (State::PendingDeletion, Some(at)) if at <= now => Some(KmsKey {
                state: State::Destroyed,
                next_rotation_at: None,
                ..self.clone()
            }),
            _ => None,
        }
    }

    /// Whether imported material has reached its expiry at `now` (and is still to be deleted, if the key has it).
    pub fn material_expired(&self, now: UnixMillis) -> bool {
        self.origin == Origin::External
            && matches!(
                self.state,
                State::Enabled | State::Disabled | State::PendingDeletion
            )
            && self.valid_to.is_some_and(|at| at <= now)
    }

    /// Whether automatic rotation is due at `now`.
    pub fn rotation_due(&self, now: UnixMillis) -> bool {
        self.state == State::Enabled && self.next_rotation_at.is_some_and(|at| at <= now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(state: State) -> KmsKey {
        KmsKey {
            id: KeyId::new_random(),
            description: String::new(),
            state,
            created_at: UnixMillis(0),
            primary_version: 1,
            rotation_period_days: Some(10),
            next_rotation_at: Some(UnixMillis(0).plus_days(10)),
            deletion_at: None,
            tags: BTreeMap::new(),
            kind: KeyKind::SYMMETRIC,
            origin: Origin::Kmsd,
            valid_to: None,
            import_fingerprint: None,
        }
    }

    #[test]
    fn a_key_serves_only_what_its_kind_allows_in_any_state() {
        let signing = KmsKey {
            kind: KeyKind::new(KeySpec::EccNistP256, KeyUsage::SignVerify).unwrap(),
            rotation_period_days: None,
            next_rotation_at: None,
            ..record(State::Disabled)
        };
        for op in [
            Operation::Encrypt,
            Operation::GenerateDataKey,
            Operation::GenerateMac,
        ] {
            let Err(Refusal::Usage(err)) = signing.check(op) else {
                panic!("{op:?} allowed on a signing key");
            };
            assert!(!err.is_unsupported());
            assert!(err.to_string().contains("SIGN_VERIFY"), "{err}");
        }
        let Err(Refusal::Usage(err)) = signing.check(Operation::RotateKey) else {
            panic!("a key pair rotated");
        };
        assert!(err.is_unsupported(), "{err}");
        // The kind fits, so the state decides.
        assert!(matches!(
            signing.check(Operation::Sign),
            Err(Refusal::State(_))
        ));
        let enabled = KmsKey {
            state: State::Enabled,
            ..signing
        };
        assert!(enabled.check(Operation::Sign).is_ok());
        assert!(enabled.check(Operation::GetPublicKey).is_ok());
        assert!(
            record(State::Enabled)
                .check(Operation::GetPublicKey)
                .is_err()
        );
        let rsa_encryption = KeyKind::new(KeySpec::Rsa2048, KeyUsage::EncryptDecrypt).unwrap();
        let kmsd = Origin::Kmsd;
        assert!(Operation::Encrypt.fits(rsa_encryption, kmsd));
        assert!(Operation::GetPublicKey.fits(rsa_encryption, kmsd));
        assert!(!Operation::Sign.fits(rsa_encryption, kmsd));
        assert!(!Operation::GenerateDataKey.fits(rsa_encryption, kmsd));
        assert!(!Operation::ImportKeyMaterial.fits(KeyKind::SYMMETRIC, kmsd));
        assert!(Operation::ImportKeyMaterial.fits(KeyKind::SYMMETRIC, Origin::External));
        assert!(!Operation::RotateKey.fits(KeyKind::SYMMETRIC, Origin::External));
    }

    #[test]
    fn only_enabled_keys_do_crypto() {
        for state in [State::Disabled, State::PendingDeletion, State::Destroyed] {
            let err = record(state).check(Operation::Decrypt).unwrap_err();
            assert!(err.to_string().contains(state.as_str()), "{err}");
        }
        assert!(record(State::Enabled).check(Operation::Encrypt).is_ok());
    }

    #[test]
    fn deletion_round_trip() {
        let now = UnixMillis(1_000);
        let pending = record(State::Enabled)
            .transition(Operation::ScheduleKeyDeletion, now, 7)
            .unwrap();
        assert_eq!(pending.state, State::PendingDeletion);
        assert_eq!(pending.deletion_at, Some(now.plus_days(7)));
        assert!(pending.destroyed_if_due(now.plus_days(6)).is_none());
        assert_eq!(
            pending.destroyed_if_due(now.plus_days(7)).unwrap().state,
            State::Destroyed
        );
        let cancelled = pending
            .transition(Operation::CancelKeyDeletion, now, 0)
            .unwrap();
        assert_eq!(cancelled.state, State::Disabled);
        assert_eq!(cancelled.deletion_at, None);
        assert!(pending.transition(Operation::EnableKey, now, 0).is_err());
    }

    #[test]
    fn rotation_moves_primary_and_schedule() {
        let now = UnixMillis(0).plus_days(10);
        let key = record(State::Enabled);
        assert!(key.rotation_due(now));
        let rotated = key.transition(Operation::RotateKey, now, 0).unwrap();
        assert_eq!(rotated.primary_version, 2);
        assert!(!rotated.rotation_due(now));
        assert!(
            record(State::Disabled)
                .transition(Operation::RotateKey, now, 0)
                .is_err()
        );
    }
}
