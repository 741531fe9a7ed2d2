//! TLS and mutual TLS with a certificate authority made in the test, and the refusal to serve plaintext beyond
//! loopback.

use std::sync::Arc;

use kmsd::config::TlsFiles;
use kmsd::server::StartError;
use kmsd_client::ClientBuilder;
use kmsd_proto::pb::admin_service_client::AdminServiceClient;
use kmsd_proto::pb::*;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, SanType,
};
use tonic::Code;

use crate::support::*;

pub(crate) struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its private key, PEM.
pub(crate) struct Pem {
    pub cert: String,
    pub key: String,
}

impl Ca {
    pub(crate) fn new(name: &str) -> Ca {
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Ca { issuer }
    }

    pub(crate) fn pem(&self) -> String {
        self.issuer.pem()
    }

    pub(crate) fn server(&self) -> Pem {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params)
    }

    /// A client certificate with this CN and, if given, a URI SAN.
    fn client(&self, cn: &str, uri: Option<&str>) -> Pem {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, cn);
        if let Some(uri) = uri {
            params.subject_alt_names = vec![SanType::URI(uri.try_into().unwrap())];
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params)
    }

    fn sign(&self, params: CertificateParams) -> Pem {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

/// A daemon serving TLS with `ca`'s server certificate, verifying client certificates against `ca`.
async fn tls_server(ca: &Ca) -> TestServer {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let tls_dir = tempfile::tempdir().unwrap();
    let server_pem = ca.server();
    let files = TlsFiles {
        cert: write(tls_dir.path(), "server.crt", &server_pem.cert),
        key: write(tls_dir.path(), "server.key", &server_pem.key),
        client_ca: Some(write(tls_dir.path(), "ca.crt", &ca.pem())),
    };
    let mut config = config(dir.path());
    config.network.tls = Some(files);
    let clock = kmsd::clock::ManualClock::new();
    let server = try_start(&config, clock.clone()).await.unwrap();
    TestServer {
        dir,
        clock,
        server,
        tls_ca: Some(ca.pem()),
    }
}

fn https(server: &TestServer) -> String {
    format!("https://localhost:{}", server.server.local_addr().port())
}

#[tokio::test(flavor = "multi_thread")]
async fn mutual_tls_identifies_the_caller_by_its_certificate() {
    let ca = Ca::new("kmsd test CA");
    let server = tls_server(&ca).await;
    let admin_token = server.admin_token();
    // The administrator, over TLS with a token, maps a SPIFFE id to a principal and grants it data keys.
    AdminServiceClient::new(server.channel().await)
        .create_principal(CreatePrincipalRequest {
            name: "billing".into(),
            certificate_subjects: vec!["spiffe://example.org/billing".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let mut kms = server.client().await;
    let key = create_key(&mut kms, "alias/tls").await;
    kms.put_key_policy(PutKeyPolicyRequest {
        key_id: key.key_id.clone(),
        policy: Some(KeyPolicy {
            statements: vec![PolicyStatement {
                principals: vec!["billing".into()],
                operations: vec!["GenerateDataKey".into()],
                ..Default::default()
            }],
        }),
    })
    .await
    .unwrap();

    // The service presents a certificate with that URI SAN, and no token.
    let billing_cert = ca.client("billing-7f9c", Some("spiffe://example.org/billing"));
    let billing = ClientBuilder::new(https(&server))
        .ca_certificate(ca.pem())
        .identity(billing_cert.cert, billing_cert.key)
        .connect()
        .await
        .unwrap();
    let who = billing.who_am_i().await.unwrap();
    assert_eq!(
        (
            who.principal.as_str(),
            who.method.as_str(),
            who.credential.as_str()
        ),
        ("billing", "certificate", "spiffe://example.org/billing")
    );
    let billing = billing.with_request_id("mtls-gdk");
    billing.generate_data_key("alias/tls", &[]).await.unwrap();
    let e = one_event(&server, "mtls-gdk").await;
    assert_eq!(
        (e.principal.as_str(), outcome(&e)),
        ("billing", Outcome::Success)
    );
    assert_eq!(
        e.parameters["certificate_subject"],
        "spiffe://example.org/billing"
    );
    let denied = billing
        .with_request_id("mtls-encrypt")
        .encrypt("alias/tls", b"x", &[])
        .await
        .unwrap_err();
    assert!(
        matches!(denied, kmsd_client::Error::PermissionDenied(_)),
        "{denied:?}"
    );
    let e = one_event(&server, "mtls-encrypt").await;
    assert_eq!(
        (e.principal.as_str(), outcome(&e)),
        ("billing", Outcome::Denied)
    );

    // A certificate from the same CA that no principal claims: UNAUTHENTICATED, naming its identities.
    let unknown_cert = ca.client("intruder", None);
    let unknown = ClientBuilder::new(https(&server))
        .ca_certificate(ca.pem())
        .identity(unknown_cert.cert, unknown_cert.key)
        .connect()
        .await
        .unwrap()
        .with_request_id("mtls-unknown");
    let err = unknown.who_am_i().await.unwrap_err();
    assert!(
        matches!(err, kmsd_client::Error::Unauthenticated(_)),
        "{err:?}"
    );
    assert!(err.to_string().contains("intruder"), "{err}");
    let e = one_event(&server, "mtls-unknown").await;
    assert_eq!(
        (e.principal.as_str(), e.error_code.as_str()),
        ("anonymous", "UNAUTHENTICATED")
    );

    // A certificate from another CA does not get through the handshake.
    let other_ca = Ca::new("someone else's CA");
    let forged = other_ca.client("billing", Some("spiffe://example.org/billing"));
    let refused = ClientBuilder::new(https(&server))
        .ca_certificate(ca.pem())
        .identity(forged.cert, forged.key)
        .retries(0, std::time::Duration::ZERO)
        .connect()
        .await;
    match refused {
        Err(_) => {}
        Ok(client) => assert!(client.who_am_i().await.is_err()),
    }
    // Nor does a plaintext client.
    let plaintext = ClientBuilder::new(format!(
        "http://127.0.0.1:{}",
        server.server.local_addr().port()
    ))
    .token(admin_token)
    .retries(0, std::time::Duration::ZERO)
    .connect()
    .await;
    match plaintext {
        Err(_) => {}
        Ok(client) => assert!(client.who_am_i().await.is_err()),
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn plaintext_beyond_loopback_is_refused_unless_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let refused =
        kmsd::server::start(&config, listener, Arc::new(kmsd::clock::ManualClock::new())).await;
    let Err(StartError::Transport(message)) = refused else {
        panic!("a plaintext daemon on 0.0.0.0 must not start");
    };
    assert!(message.contains("--insecure-plaintext"), "{message}");
    assert!(
        !dir.path().join("kmsd.db").exists(),
        "refused before touching the data directory"
    );

    config.network.insecure_plaintext = true;
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let server = kmsd::server::start(&config, listener, Arc::new(kmsd::clock::ManualClock::new()))
        .await
        .unwrap();
    server.shutdown().await;

    // `kmsd config check` says the same before anything starts.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kmsd"))
        .args(["config", "check", "--listen", "0.0.0.0:50051", "--data-dir"])
        .arg(dir.path())
        .env_remove("KMSD_INSECURE_PLAINTEXT")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("TLS is off"));
    let _ = Code::Ok;
}
