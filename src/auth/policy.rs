//! Key policies: who may do what with one key, and under which conditions.
//!
//! A policy is a list of allow statements. A statement names principals (or `*`, any authenticated principal), the
//! operations they may call on the key, and conditions that must all hold: encryption-context keys that must be
//! present, context keys that must equal given values (AWS's `kms:EncryptionContext:<key>` condition), and whether
//! the caller must state a reason. A call is allowed when at least one statement names its principal and operation
//! and all that statement's conditions hold. There is no deny: nothing is allowed that no statement allows.
//! Administrators need no statement.

use std::collections::BTreeMap;
use std::fmt;

use kmsd_proto::key_policy::{PolicyDocument, Statement};

use super::Caller;
use crate::keys::{EncryptionContext, InvalidInput, KeyId, KeyRef, Operation};
use crate::rpc::Rpc;

/// The most statements one policy may hold, and the most principals, operations or conditions one statement may.
pub const MAX_STATEMENTS: usize = 64;
pub const MAX_ITEMS: usize = 64;

/// Anyone authenticated, in a statement's `principals`; every operation, in its `operations`.
pub const WILDCARD: &str = "*";

/// What a key policy can grant: an RPC whose admission [`Requires::KeyPolicy`](crate::rpc::Requires::KeyPolicy), named as the RPC is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Permission(Rpc);

impl Permission {
    /// The permission `rpc` needs from a key's policy, unless no policy grants it.
    pub fn of(rpc: Rpc) -> Option<Permission> {
        rpc.granted_by_policy().then_some(Permission(rpc))
    }

    /// Every permission, in the order of [`Rpc::ALL`].
    pub fn all() -> impl Iterator<Item = Permission> {
        Rpc::ALL.iter().copied().filter_map(Permission::of)
    }

    pub fn name(self) -> &'static str {
        self.0.name()
    }

    /// The permission a statement's operation names, if a policy may grant it.
    pub fn parse(name: &str) -> Option<Permission> {
        Rpc::from_policy_name(name).map(Permission)
    }

    /// The permission a key operation needs; `None` for operations no policy grants (CreateAlias).
    pub fn for_operation(operation: Operation) -> Option<Permission> {
        Permission::of(operation.rpc())
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "kms:{}", self.name())
    }
}

/// Proof that a call may use one key: what `kms`'s per-key operations take, so a handler cannot use a key its caller
/// was not authorized for. Made only in this module: by [`authorize`] once the key's policy allowed the access (then
/// it names the key by the id the policy was found under, so an alias moved meanwhile cannot redirect the call), and
/// by [`administrator`] for an administrator, who needs no statement.
#[derive(Debug, Clone)]
pub struct Authorized(KeyRef);

impl Authorized {
    /// The key the call may use.
    pub fn key(&self) -> &KeyRef {
        &self.0
    }
}

/// Which keys a call that opens a ciphertext may use: the one it was authorized for, or, for an administrator who
/// named none, whichever key the ciphertext names.
#[derive(Debug, Clone)]
pub enum KeyAccess {
    Key(Authorized),
    AnyKey(AnyKey),
}

impl KeyAccess {
    /// The key the ciphertext must be under, if one is required.
    pub fn key(&self) -> Option<&KeyRef> {
        match self {
            KeyAccess::Key(a) => Some(a.key()),
            KeyAccess::AnyKey(_) => None,
        }
    }
}

/// Proof that the caller is an administrator, who may use any key.
#[derive(Debug, Clone)]
pub struct AnyKey(());

/// An administrator's authority over `key` (or over any key), or `None` for anyone else.
pub fn administrator(caller: &Caller, key: Option<KeyRef>) -> Option<KeyAccess> {
    if !caller.is_admin() {
        return None;
    }
    Some(match key {
        Some(key) => KeyAccess::Key(Authorized(key)),
        None => KeyAccess::AnyKey(AnyKey(())),
    })
}

/// Allows `access` to key `id` if `policy` (the key's) grants it, naming the key by that id.
pub fn authorize(
    policy: &PolicyDocument,
    access: &Access<'_>,
    id: KeyId,
) -> Result<Authorized, Denied> {
    evaluate(policy, access, &id)?;
    Ok(Authorized(KeyRef::Id(id)))
}

/// What a call asks of a key's policy.
#[derive(Debug, Clone, Copy)]
pub struct Access<'a> {
    pub principal: &'a str,
    pub permission: Permission,
    /// The encryption context the call uses on this key; `None` for calls that take none.
    pub context: Option<&'a EncryptionContext>,
    pub has_reason: bool,
}

/// Why a policy refused: the message names the missing permission or the unmet condition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Denied(pub String);

/// Checks a policy's shape: known operations, sane sizes, principal names that `known` accepts.
pub fn validate(policy: &PolicyDocument, known: impl Fn(&str) -> bool) -> Result<(), InvalidInput> {
    let bad = |msg: String| Err(InvalidInput(format!("policy: {msg}")));
    if policy.statements.len() > MAX_STATEMENTS {
        return bad(format!("at most {MAX_STATEMENTS} statements"));
    }
    for (i, s) in policy.statements.iter().enumerate() {
        let at = if s.sid.is_empty() {
            format!("statement {i}")
        } else {
            format!("statement {i} ({:?})", s.sid)
        };
        if s.sid.len() > 128 {
            return bad(format!("{at}: sid is longer than 128 bytes"));
        }
        if s.principals.is_empty() || s.operations.is_empty() {
            return bad(format!(
                "{at} must name at least one principal and one operation"
            ));
        }
        let lists = [
            ("principals", s.principals.len()),
            ("operations", s.operations.len()),
            ("context_keys_present", s.context_keys_present.len()),
            ("context_equals", s.context_equals.len()),
        ];
        if let Some((name, _)) = lists.iter().find(|(_, n)| *n > MAX_ITEMS) {
            return bad(format!("{at}: at most {MAX_ITEMS} entries in {name}"));
        }
        for p in &s.principals {
            if p != WILDCARD && !known(p) {
                return bad(format!(
                    "{at} names principal {p:?}, which does not exist; create it first (CreatePrincipal)"
                ));
            }
        }
        for op in &s.operations {
            if op != WILDCARD && Permission::parse(op).is_none() {
                let names: Vec<_> = Permission::all().map(Permission::name).collect();
                return bad(format!(
                    "{at} names operation {op:?}; the operations are {} or *",
                    names.join(", ")
                ));
            }
        }
        for k in s.context_keys_present.iter().chain(s.context_equals.keys()) {
            if k.is_empty() || k.len() > 1024 {
                return bad(format!(
                    "{at}: a context key in a condition must be 1-1024 bytes"
                ));
            }
        }
    }
    Ok(())
}

/// Allows the access if a statement of `policy` grants it; otherwise says what is missing.
pub fn evaluate(
    policy: &PolicyDocument,
    access: &Access<'_>,
    key: &dyn fmt::Display,
) -> Result<(), Denied> {
    let op = access.permission.name();
    let mut unmet: Option<String> = None;
    for s in &policy.statements {
        let names_principal = s
            .principals
            .iter()
            .any(|p| p == WILDCARD || p == access.principal);
        let names_operation = s.operations.iter().any(|o| o == WILDCARD || o == op);
        if !(names_principal && names_operation) {
            continue;
        }
        match unmet_condition(s, access) {
            None => return Ok(()),
            Some(why) => {
                unmet.get_or_insert(why);
            }
        }
    }
    Err(Denied(match unmet {
        Some(why) => format!(
            "principal {:?} may call {op} on key {key} only {why}",
            access.principal
        ),
        None => format!(
            "principal {:?} lacks permission {} on key {key}: no statement of the key's policy grants it \
                 (an administrator can add one with PutKeyPolicy)",
            access.principal, access.permission
        ),
    }))
}

/// The first condition of statement `s` the access does not meet, phrased to complete "may call X on key K only
/// ...".
fn unmet_condition(s: &Statement, access: &Access<'_>) -> Option<String> {
    let empty = BTreeMap::new();
    let pairs = access.context.map_or(&empty, |c| c.pairs());
    for key in &s.context_keys_present {
        if !pairs.contains_key(key) {
            return Some(format!(
                "with an encryption context that has the key {key:?}"
            ));
        }
    }
    for (key, want) in &s.context_equals {
        if pairs.get(key) != Some(want) {
            return Some(format!(
                "with an encryption context where {key:?} is {want:?}"
            ));
        }
    }
    if s.require_reason && !access.has_reason {
        return Some("with a stated reason (the x-kms-reason header)".to_owned());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn ctx(pairs: &[(&str, &str)]) -> EncryptionContext {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        EncryptionContext::parse(map, "encryption_context").unwrap()
    }

    fn policy() -> PolicyDocument {
        PolicyDocument {
            statements: vec![Statement {
                sid: "billing".into(),
                principals: vec!["billing".into()],
                operations: vec!["Decrypt".into(), "GenerateDataKey".into()],
                context_equals: [("tenant".to_owned(), "acme".to_owned())].into(),
                ..Default::default()
            }],
        }
    }

    fn access<'a>(p: &'a str, rpc: Rpc, c: Option<&'a EncryptionContext>) -> Access<'a> {
        let perm = Permission::of(rpc).unwrap();
        Access {
            principal: p,
            permission: perm,
            context: c,
            has_reason: false,
        }
    }

    #[test]
    fn grants_only_what_a_statement_names_under_its_conditions() {
        let p = policy();
        let acme = ctx(&[("tenant", "acme"), ("object", "x")]);
        let other = ctx(&[("tenant", "globex")]);
        assert!(evaluate(&p, &access("billing", Rpc::Decrypt, Some(&acme)), &"k").is_ok());
        let e = evaluate(&p, &access("billing", Rpc::Decrypt, Some(&other)), &"k").unwrap_err();
        assert!(e.0.contains("\"tenant\" is \"acme\""), "{e}");
        let e = evaluate(&p, &access("billing", Rpc::Encrypt, Some(&acme)), &"k").unwrap_err();
        assert!(e.0.contains("lacks permission kms:Encrypt"), "{e}");
        let e = evaluate(&p, &access("intruder", Rpc::Decrypt, Some(&acme)), &"k").unwrap_err();
        assert!(e.0.contains("\"intruder\" lacks"), "{e}");
        // A condition on the context is never met by a call without one.
        assert!(evaluate(&p, &access("billing", Rpc::Decrypt, None), &"k").is_err());
    }

    #[test]
    fn wildcards_present_keys_and_reasons() {
        let p = PolicyDocument {
            statements: vec![Statement {
                principals: vec![WILDCARD.into()],
                operations: vec![WILDCARD.into()],
                context_keys_present: vec!["case".into()],
                require_reason: true,
                ..Default::default()
            }],
        };
        let with_case = ctx(&[("case", "42")]);
        let mut a = access("anyone", Rpc::RotateKey, Some(&with_case));
        let e = evaluate(&p, &a, &"k").unwrap_err();
        assert!(e.0.contains("stated reason"), "{e}");
        a.has_reason = true;
        assert!(evaluate(&p, &a, &"k").is_ok());
        a.context = None;
        assert!(evaluate(&p, &a, &"k").unwrap_err().0.contains("\"case\""));
    }

    #[test]
    fn validation_names_the_problem_and_json_round_trips() {
        let p = policy();
        assert!(validate(&p, |n| n == "billing").is_ok());
        let e = validate(&p, |_| false).unwrap_err();
        assert!(
            e.0.contains("principal \"billing\", which does not exist"),
            "{e}"
        );
        let mut bad = policy();
        bad.statements[0].operations.push("Frobnicate".into());
        assert!(
            validate(&bad, |_| true)
                .unwrap_err()
                .0
                .contains("Frobnicate")
        );
        let mut long = policy();
        long.statements[0].operations = vec!["Decrypt".into(); MAX_ITEMS + 1];
        let e = validate(&long, |_| true).unwrap_err();
        assert!(e.0.contains("at most 64 entries in operations"), "{e}");
        assert_eq!(PolicyDocument::from_json(&p.to_json()).unwrap(), p);
        assert!(PolicyDocument::from_json(r#"{"statements":[],"extra":1}"#).is_err());
    }
}
