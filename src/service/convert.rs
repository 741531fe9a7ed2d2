//! Domain values to protobuf messages.

use crate::keys::{Origin, State};
use crate::kms::{KeyView, VersionView};
use crate::proto as pb;
use crate::storage::AliasRow;

pub fn state(s: State) -> pb::KeyState {
    match s {
        State::Enabled => pb::KeyState::Enabled,
        State::Disabled => pb::KeyState::Disabled,
        State::PendingDeletion => pb::KeyState::PendingDeletion,
        State::Destroyed => pb::KeyState::Destroyed,
        State::PendingImport => pb::KeyState::PendingImport,
    }
}

pub fn metadata(view: &KeyView) -> pb::KeyMetadata {
    let r = &view.record;
    pb::KeyMetadata {
        key_id: r.id.to_string(),
        description: r.description.clone(),
        state: state(r.state) as i32,
        creation_time: Some(r.created_at.to_timestamp()),
        primary_version: r.primary_version,
        rotation_period_days: r.rotation_period_days.unwrap_or(0),
        next_rotation_time: match r.state {
            State::Enabled => r.next_rotation_at.map(|t| t.to_timestamp()),
            _ => None,
        },
        deletion_time: r.deletion_at.map(|t| t.to_timestamp()),
        aliases: view.aliases.iter().map(|a| a.to_string()).collect(),
        tags: r.tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        key_spec: r.kind.spec.to_string(),
        key_usage: r.kind.usage.to_string(),
        encryption_algorithms: names(r.kind.encryption_algorithms()),
        signing_algorithms: names(r.kind.signing_algorithms()),
        mac_algorithms: names(r.kind.mac_algorithms()),
        origin: r.origin.to_string(),
        expiration_model: match (r.origin, r.valid_to) {
            (Origin::Kmsd, _) => String::new(),
            (Origin::External, Some(_)) => "KEY_MATERIAL_EXPIRES".into(),
            (Origin::External, None) => "KEY_MATERIAL_DOES_NOT_EXPIRE".into(),
        },
        valid_to: r.valid_to.map(|t| t.to_timestamp()),
    }
}

/// AWS's names of a list of algorithms.
pub fn names<T: std::fmt::Display>(items: &[T]) -> Vec<String> {
    items.iter().map(T::to_string).collect()
}

pub fn version(v: &VersionView) -> pb::KeyVersion {
    pb::KeyVersion {
        version: v.version,
        creation_time: Some(v.created_at.to_timestamp()),
        primary: v.primary,
        destroyed: v.destroyed,
    }
}

pub fn alias(a: &AliasRow) -> pb::Alias {
    pb::Alias {
        alias_name: a.name.to_string(),
        key_id: a.key_id.to_string(),
        creation_time: Some(a.created_at.to_timestamp()),
    }
}

pub fn principal(p: &crate::auth::Principal) -> pb::Principal {
    pb::Principal {
        name: p.name.clone(),
        description: p.description.clone(),
        admin: p.admin,
        create_keys: p.create_keys,
        certificate_subjects: p.certificate_subjects.clone(),
        creation_time: Some(p.created_at.to_timestamp()),
        disabled_time: p.disabled_at.map(|t| t.to_timestamp()),
    }
}

pub fn token(t: &crate::auth::TokenInfo) -> pb::Token {
    pb::Token {
        token_id: t.id.clone(),
        principal: t.principal.clone(),
        description: t.description.clone(),
        creation_time: Some(t.created_at.to_timestamp()),
        expiration_time: t.expires_at.map(|t| t.to_timestamp()),
        revocation_time: t.revoked_at.map(|t| t.to_timestamp()),
    }
}

pub fn access_key(k: &crate::auth::AccessKeyInfo) -> pb::AccessKey {
    pb::AccessKey {
        access_key_id: k.id.clone(),
        principal: k.principal.clone(),
        description: k.description.clone(),
        creation_time: Some(k.created_at.to_timestamp()),
        revocation_time: k.revoked_at.map(|t| t.to_timestamp()),
    }
}
