//! Domain values to protobuf messages.

use crate::keys::KeyState;
use crate::kms::{KeyView, VersionView};
use crate::proto;
use crate::storage::AliasRow;

pub fn state(s: KeyState) -> proto::KeyState {
    match s {
        KeyState::Enabled => proto::KeyState::Enabled,
        KeyState::Disabled => proto::KeyState::Disabled,
        KeyState::PendingDeletion => proto::KeyState::PendingDeletion,
        KeyState::Destroyed => proto::KeyState::Destroyed,
    }
}

pub fn metadata(view: &KeyView) -> proto::KeyMetadata {
    let r = &view.record;
    proto::KeyMetadata {
        key_id: r.id.to_string(),
        description: r.description.clone(),
        state: state(r.state) as i32,
        creation_time: Some(r.created_at.to_timestamp()),
        primary_version: r.primary_version,
        rotation_period_days: r.rotation_period_days.unwrap_or(0),
        next_rotation_time: match r.state {
            KeyState::Enabled => r.next_rotation_at.map(|t| t.to_timestamp()),
            _ => None,
        },
        deletion_time: r.deletion_at.map(|t| t.to_timestamp()),
        aliases: view.aliases.iter().map(|a| a.to_string()).collect(),
        tags: r.tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
    }
}

pub fn version(v: &VersionView) -> proto::KeyVersion {
    proto::KeyVersion {
        version: v.version,
        creation_time: Some(v.created_at.to_timestamp()),
        primary: v.primary,
        destroyed: v.destroyed,
    }
}

pub fn alias(a: &AliasRow) -> proto::Alias {
    proto::Alias {
        alias_name: a.name.to_string(),
        key_id: a.key_id.to_string(),
        creation_time: Some(a.created_at.to_timestamp()),
    }
}

pub fn principal(p: &crate::auth::Principal) -> proto::Principal {
    proto::Principal {
        name: p.name.clone(),
        description: p.description.clone(),
        admin: p.admin,
        create_keys: p.create_keys,
        certificate_subjects: p.certificate_subjects.clone(),
        creation_time: Some(p.created_at.to_timestamp()),
        disabled_time: p.disabled_at.map(|t| t.to_timestamp()),
    }
}

pub fn token(t: &crate::auth::TokenInfo) -> proto::Token {
    proto::Token {
        token_id: t.id.clone(),
        principal: t.principal.clone(),
        description: t.description.clone(),
        creation_time: Some(t.created_at.to_timestamp()),
        expiration_time: t.expires_at.map(|t| t.to_timestamp()),
        revocation_time: t.revoked_at.map(|t| t.to_timestamp()),
    }
}
