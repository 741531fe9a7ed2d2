//! The one list of the RPCs kmsd serves, and of the events the daemon records on its own.
//!
//! Every use of an RPC's name reads it from here: the call path (what a call must be admitted as, whether it may
//! change state), metrics, the permissions a key policy grants, audit event names, and the transport layer's
//! routing of calls that may change state onto tasks of their own. A test maps every method in the API's
//! descriptor set to an [`Rpc`] and back, so this list and `proto/` cannot drift apart.
//!
//! Invariants: no I/O and no protobuf types; adding an RPC is one line in the table below.

use std::fmt;

/// What a caller must be for a call to be admitted, before any handler code runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requires {
    /// Any authenticated caller (WhoAmI, GenerateRandom).
    Authenticated,
    /// An administrator, or a principal created with `create_keys`.
    CreateKeys,
    /// Any authenticated caller at admission; then the key's policy must grant this RPC on each key the call uses
    /// (administrators are always granted).
    KeyPolicy,
    /// An administrator.
    Admin,
    /// An administrator, whose record may use the disk below its hard floor: archival is how that space is won back.
    Archival,
}

/// Whether a call may change what kmsd stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Reads only; its record follows the work (the crypto hot path runs in the caller's task).
    Reads,
    /// May change state: its record is made durable at its gate, before the change is stored, and it runs on a
    /// task of its own so a caller going away cannot stop it between storing a change and serving it.
    Changes,
}

/// A kmsd gRPC service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    KeyManagementService,
    AuditService,
    AdminService,
}

impl Service {
    /// The fully-qualified service name, as paths, health checks and reflection spell it.
    pub const fn name(self) -> &'static str {
        match self {
            Service::KeyManagementService => "kms.v1.KeyManagementService",
            Service::AuditService => "kms.v1.AuditService",
            Service::AdminService => "kms.v1.AdminService",
        }
    }
}

macro_rules! rpcs {
    ($($service:ident { $($rpc:ident: $requires:ident, $effect:ident;)* })*) => {
        /// An RPC kmsd serves.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Rpc {
            $($($rpc,)*)*
        }

        impl Rpc {
            /// Every RPC, in the order of [`Rpc::index`].
            pub const ALL: &'static [Rpc] = &[$($(Rpc::$rpc,)*)*];

            /// The method name, as the API, audit records and metrics spell it.
            pub const fn name(self) -> &'static str {
                match self {
                    $($(Rpc::$rpc => stringify!($rpc),)*)*
                }
            }

            /// The gRPC path, `/<service>/<method>`.
            pub const fn path(self) -> &'static str {
                match self {
                    $($(Rpc::$rpc => concat!("/kms.v1.", stringify!($service), "/", stringify!($rpc)),)*)*
                }
            }

            pub const fn service(self) -> Service {
                match self {
                    $($(Rpc::$rpc => Service::$service,)*)*
                }
            }

            pub const fn requires(self) -> Requires {
                match self {
                    $($(Rpc::$rpc => Requires::$requires,)*)*
                }
            }

            pub const fn effect(self) -> Effect {
                match self {
                    $($(Rpc::$rpc => Effect::$effect,)*)*
                }
            }

            /// The RPC a gRPC path names, if any (on every call's path: a match the compiler turns into length and
            /// byte comparisons, not a scan).
            pub fn from_path(path: &str) -> Option<Rpc> {
                match path {
                    $($(concat!("/kms.v1.", stringify!($service), "/", stringify!($rpc)) => Some(Rpc::$rpc),)*)*
                    _ => None,
                }
            }
        }
    };
}

rpcs! {
    KeyManagementService {
        CreateKey: CreateKeys, Changes;
        DescribeKey: KeyPolicy, Reads;
        ListKeys: Admin, Reads;
        CreateAlias: Admin, Changes;
        DeleteAlias: Admin, Changes;
        ListAliases: Admin, Reads;
        EnableKey: KeyPolicy, Changes;
        DisableKey: KeyPolicy, Changes;
        RotateKey: KeyPolicy, Changes;
        ListKeyVersions: KeyPolicy, Reads;
        ScheduleKeyDeletion: KeyPolicy, Changes;
        CancelKeyDeletion: KeyPolicy, Changes;
        GenerateDataKey: KeyPolicy, Reads;
        GenerateDataKeyWithoutPlaintext: KeyPolicy, Reads;
        Encrypt: KeyPolicy, Reads;
        Decrypt: KeyPolicy, Reads;
        ReEncrypt: KeyPolicy, Reads;
        GenerateRandom: Authenticated, Reads;
        GetKeyPolicy: KeyPolicy, Reads;
        PutKeyPolicy: Admin, Changes;
        UpdateAlias: Admin, Changes;
        UpdateKeyDescription: KeyPolicy, Changes;
        TagResource: KeyPolicy, Changes;
        UntagResource: KeyPolicy, Changes;
        ListResourceTags: KeyPolicy, Reads;
        EnableKeyRotation: KeyPolicy, Changes;
        DisableKeyRotation: KeyPolicy, Changes;
        GetKeyRotationStatus: KeyPolicy, Reads;
        Sign: KeyPolicy, Reads;
        Verify: KeyPolicy, Reads;
        GetPublicKey: KeyPolicy, Reads;
        GenerateMac: KeyPolicy, Reads;
        VerifyMac: KeyPolicy, Reads;
        GenerateDataKeyPair: KeyPolicy, Reads;
        GenerateDataKeyPairWithoutPlaintext: KeyPolicy, Reads;
        GetParametersForImport: KeyPolicy, Reads;
        ImportKeyMaterial: KeyPolicy, Changes;
        DeleteImportedKeyMaterial: KeyPolicy, Changes;
    }
    AuditService {
        QueryEvents: Admin, Reads;
        VerifyLog: Admin, Reads;
        DescribeLog: Archival, Reads;
        SealArchive: Archival, Changes;
        ExportArchive: Archival, Reads;
        PruneEvents: Archival, Changes;
    }
    AdminService {
        WhoAmI: Authenticated, Reads;
        CreatePrincipal: Admin, Changes;
        ListPrincipals: Admin, Reads;
        DisablePrincipal: Admin, Changes;
        CreateToken: Admin, Changes;
        ListTokens: Admin, Reads;
        RevokeToken: Admin, Changes;
        CreateAccessKey: Admin, Changes;
        ListAccessKeys: Admin, Reads;
        RevokeAccessKey: Admin, Changes;
    }
}

impl Rpc {
    /// A dense index, `0..Rpc::ALL.len()`, for tables.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The RPC a key policy statement names (`Encrypt`, `DescribeKey`, ...): only those a policy may grant.
    pub fn from_policy_name(name: &str) -> Option<Rpc> {
        Rpc::ALL
            .iter()
            .copied()
            .find(|rpc| rpc.requires() == Requires::KeyPolicy && rpc.name() == name)
    }

    /// Whether a key policy may grant this RPC.
    pub fn granted_by_policy(self) -> bool {
        self.requires() == Requires::KeyPolicy
    }
}

impl fmt::Display for Rpc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Something the daemon does on its own, recorded as principal `kmsd`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DaemonEvent {
    /// A key's rotation period elapsed and a new version was made.
    AutomaticRotation,
    /// A key's deletion window ended and its material was destroyed.
    KeyDestroyed,
    /// Imported key material reached its expiry and was deleted (AWS's `DeleteExpiredKeyMaterial`).
    ImportedMaterialExpired,
    /// Unauthenticated calls refused below the disk's soft floor, recorded as one summary.
    UnauthenticatedCallsSummary,
}

impl DaemonEvent {
    pub const ALL: &'static [DaemonEvent] = &[
        DaemonEvent::AutomaticRotation,
        DaemonEvent::KeyDestroyed,
        DaemonEvent::ImportedMaterialExpired,
        DaemonEvent::UnauthenticatedCallsSummary,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            DaemonEvent::AutomaticRotation => "AutomaticRotation",
            DaemonEvent::KeyDestroyed => "KeyDestroyed",
            DaemonEvent::ImportedMaterialExpired => "ImportedMaterialExpired",
            DaemonEvent::UnauthenticatedCallsSummary => "UnauthenticatedCallsSummary",
        }
    }
}

/// What an audit record is the record of: its `event_name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A call of an RPC; also the daemon's own changes of the same kind (the bootstrap's CreatePrincipal, say).
    Call(Rpc),
    /// A call naming a method kmsd does not serve (its path is recorded as a parameter).
    UnknownMethod,
    Daemon(DaemonEvent),
}

impl Event {
    pub const fn name(self) -> &'static str {
        match self {
            Event::Call(rpc) => rpc.name(),
            Event::UnknownMethod => "UnknownMethod",
            Event::Daemon(event) => event.name(),
        }
    }

    /// The event a record names, if it is one of these.
    pub fn parse(name: &str) -> Option<Event> {
        if name == "UnknownMethod" {
            return Some(Event::UnknownMethod);
        }
        Rpc::ALL
            .iter()
            .map(|rpc| Event::Call(*rpc))
            .chain(DaemonEvent::ALL.iter().map(|e| Event::Daemon(*e)))
            .find(|e| e.name() == name)
    }
}

impl From<Rpc> for Event {
    fn from(rpc: Rpc) -> Event {
        Event::Call(rpc)
    }
}

impl From<DaemonEvent> for Event {
    fn from(event: DaemonEvent) -> Event {
        Event::Daemon(event)
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// Every method of every kmsd service in the API's descriptor set, as its path.
    fn described_paths() -> Vec<String> {
        let set = prost_types::FileDescriptorSet::decode(crate::proto::FILE_DESCRIPTOR_SET)
            .expect("the build's descriptor set decodes");
        let mut paths = Vec::new();
        for file in &set.file {
            for service in &file.service {
                for method in &service.method {
                    paths.push(format!(
                        "/{}.{}/{}",
                        file.package(),
                        service.name(),
                        method.name()
                    ));
                }
            }
        }
        paths
    }

    #[test]
    fn every_described_method_is_an_rpc_and_back() {
        let paths = described_paths();
        assert!(!paths.is_empty());
        for path in &paths {
            let rpc = Rpc::from_path(path).unwrap_or_else(|| panic!("{path} is not in Rpc"));
            assert_eq!(rpc.path(), path);
        }
        for rpc in Rpc::ALL {
            assert!(
                paths.iter().any(|p| p == rpc.path()),
                "{rpc} ({}) is not in the descriptor set",
                rpc.path()
            );
        }
        assert_eq!(paths.len(), Rpc::ALL.len());
    }

    #[test]
    fn indexes_are_dense_and_names_unique() {
        for (i, rpc) in Rpc::ALL.iter().enumerate() {
            assert_eq!(rpc.index(), i);
            assert_eq!(Event::parse(rpc.name()), Some(Event::Call(*rpc)));
        }
        for event in DaemonEvent::ALL {
            assert_eq!(Event::parse(event.name()), Some(Event::Daemon(*event)));
            assert!(Rpc::ALL.iter().all(|rpc| rpc.name() != event.name()));
        }
        assert_eq!(Rpc::from_path("/kms.v1.AuditService/CreateKey"), None);
        assert_eq!(Rpc::from_path("/kms.v1.KeyManagementService/Nope"), None);
        assert_eq!(Rpc::from_path("CreateKey"), None);
    }

    #[test]
    fn policies_grant_only_key_rpcs() {
        assert_eq!(Rpc::from_policy_name("Encrypt"), Some(Rpc::Encrypt));
        assert_eq!(Rpc::from_policy_name("PutKeyPolicy"), None);
        assert_eq!(Rpc::from_policy_name("CreateKey"), None);
    }
}
