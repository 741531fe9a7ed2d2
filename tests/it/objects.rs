//! The storage client against a real daemon and a real directory: each mode's round trip, what the KMS audit log
//! says, tampering, wrong and missing customer keys, disabled keys, rewrap, and the bucket-key cache.

use std::collections::BTreeMap;
use std::path::PathBuf;

use kmsd_client::envelope::EnvelopeError;
use kmsd_client::objects::{CustomerKey, Encryption, Mode, ObjectClient, ObjectError, open_store};
use kmsd_client::{CacheLimits, Error as KmsError};
use kmsd_proto::pb::*;

use crate::support::*;

struct Fixture {
    server: TestServer,
    dir: tempfile::TempDir,
    objects: ObjectClient,
}

impl Fixture {
    async fn new() -> Fixture {
        let server = TestServer::start().await;
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(dir.path().to_str().unwrap()).unwrap();
        let objects = ObjectClient::new(store, server.kms_client().await).with_frame_size(4096);
        Fixture {
            server,
            dir,
            objects,
        }
    }

    fn body_path(&self, bucket: &str, key: &str) -> PathBuf {
        self.dir.path().join("objects").join(bucket).join(key)
    }

    fn record_path(&self, bucket: &str, key: &str) -> PathBuf {
        self.dir.path().join("keys").join(bucket).join(key)
    }

    async fn put(
        &self,
        key: &str,
        data: &[u8],
        encryption: Encryption,
    ) -> kmsd_client::objects::ObjectInfo {
        self.objects
            .put("photos", key, data, encryption, &BTreeMap::new())
            .await
            .unwrap()
    }

    async fn get(&self, key: &str, customer: Option<&CustomerKey>) -> Result<Vec<u8>, ObjectError> {
        let mut out = Vec::new();
        self.objects
            .get("photos", key, &mut out, customer)
            .await
            .map(|_| out)
    }
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn each_mode_round_trips_and_says_how_it_is_stored() {
    let f = Fixture::new().await;
    create_key(&mut f.server.client().await, "alias/photos").await;
    let body = data(50_000);
    let context: BTreeMap<String, String> = [("owner".to_owned(), "alice".to_owned())].into();

    // SSE-KMS, with the caller's context.
    let info = f
        .objects
        .put(
            "photos",
            "cats/kms.jpg",
            &body[..],
            Encryption::Kms("alias/photos".into()),
            &context,
        )
        .await
        .unwrap();
    assert_eq!(info.record.mode, Mode::Kms);
    assert_eq!(info.record.key_version, Some(1));
    assert_eq!(f.get("cats/kms.jpg", None).await.unwrap(), body);
    // Every Decrypt in the daemon's log names the object it was for.
    let decrypts = f
        .server
        .audit_client()
        .await
        .query_events(QueryEventsRequest {
            event_name: "Decrypt".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(decrypts.len(), 1);
    let ctx = &decrypts[0].encryption_context;
    assert_eq!(
        (
            ctx["kmsd:bucket"].as_str(),
            ctx["kmsd:key"].as_str(),
            ctx["owner"].as_str()
        ),
        ("photos", "cats/kms.jpg", "alice")
    );

    // SSE-S3: the store's key is created on first use, then reused.
    let first = f
        .put("cats/s3-a.jpg", &body, Encryption::ServiceManaged)
        .await;
    let second = f
        .put("cats/s3-b.jpg", b"", Encryption::ServiceManaged)
        .await;
    assert_eq!(first.record.mode, Mode::ServiceManaged);
    assert_eq!(first.record.kms_key_id, second.record.kms_key_id);
    let store_key = describe(&mut f.server.client().await, "alias/kmsd/storage").await;
    assert_eq!(
        first.record.kms_key_id.as_deref(),
        Some(store_key.key_id.as_str())
    );
    assert_eq!(f.get("cats/s3-a.jpg", None).await.unwrap(), body);
    assert_eq!(f.get("cats/s3-b.jpg", None).await.unwrap(), b"");

    // SSE-C: no KMS call, the key never stored.
    let raw = [42u8; 32];
    let customer = CustomerKey::from_bytes(raw);
    let calls_before = verify_log(&f.server).await.head_sequence;
    let info = f
        .put("cats/c.jpg", &body, Encryption::Customer(customer.clone()))
        .await;
    assert_eq!(
        (info.record.mode, info.record.kms_key_id.clone()),
        (Mode::Customer, None)
    );
    assert_eq!(f.get("cats/c.jpg", Some(&customer)).await.unwrap(), body);
    assert_eq!(
        verify_log(&f.server).await.head_sequence,
        calls_before + 1,
        "only the VerifyLog call itself was recorded: SSE-C made no KMS call"
    );
    let record = std::fs::read(f.record_path("photos", "cats/c.jpg")).unwrap();
    assert!(
        !record.windows(32).any(|w| w == raw),
        "the customer key is not stored"
    );
    let base64_key = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, raw);
    assert!(CustomerKey::from_base64(&base64_key, "AAAAAAAAAAAAAAAAAAAAAA==").is_err());
    assert!(CustomerKey::from_base64(&base64_key, &customer.md5_base64()).is_ok());

    // head, list, delete.
    let head = f.objects.head("photos", "cats/kms.jpg").await.unwrap();
    assert_eq!(head.record.context, context);
    let listed: Vec<String> = f
        .objects
        .list("photos", "cats")
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.key)
        .collect();
    assert_eq!(
        listed,
        [
            "cats/c.jpg",
            "cats/kms.jpg",
            "cats/s3-a.jpg",
            "cats/s3-b.jpg"
        ]
    );
    f.objects.delete("photos", "cats/s3-b.jpg").await.unwrap();
    assert!(matches!(
        f.get("cats/s3-b.jpg", None).await,
        Err(ObjectError::NotFound { .. })
    ));
    assert!(matches!(
        f.objects
            .put(
                "Bad_Bucket",
                "x",
                &b""[..],
                Encryption::ServiceManaged,
                &BTreeMap::new()
            )
            .await,
        Err(ObjectError::InvalidArgument(_))
    ));
    assert!(matches!(
        f.objects
            .put(
                "photos",
                "a/../b",
                &b""[..],
                Encryption::ServiceManaged,
                &BTreeMap::new()
            )
            .await,
        Err(ObjectError::InvalidArgument(_))
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn customer_keys_are_checked_before_any_byte_is_returned() {
    let f = Fixture::new().await;
    let right = CustomerKey::from_bytes([1u8; 32]);
    let wrong = CustomerKey::from_bytes([2u8; 32]);
    f.put("c", &data(20_000), Encryption::Customer(right.clone()))
        .await;
    let mut out = Vec::new();
    let err = f
        .objects
        .get("photos", "c", &mut out, Some(&wrong))
        .await
        .unwrap_err();
    assert!(matches!(err, ObjectError::WrongCustomerKey(_)), "{err}");
    assert!(out.is_empty(), "nothing of the body reached the caller");
    assert!(matches!(
        f.get("c", None).await,
        Err(ObjectError::CustomerKeyRequired(_))
    ));
    f.put("k", b"x", Encryption::ServiceManaged).await;
    assert!(matches!(
        f.get("k", Some(&right)).await,
        Err(ObjectError::CustomerKeyNotExpected(_))
    ));
    assert!(matches!(
        f.objects.rewrap("photos", "c", None).await,
        Err(ObjectError::NotRewrappable(_))
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn tampered_objects_fail_with_a_clear_error() {
    let f = Fixture::new().await;
    let body = data(5 * 4096 + 100);
    for name in ["a", "b"] {
        f.put(name, &body, Encryption::ServiceManaged).await;
    }
    let pristine = std::fs::read(f.body_path("photos", "a")).unwrap();
    let header_len = pristine.len() - body.len() - 6 * (1 + 16) - 4;
    let frame = 1 + 4096 + 16;
    let restore = || std::fs::write(f.body_path("photos", "a"), &pristine).unwrap();
    let expect = |result: Result<Vec<u8>, ObjectError>, what: &str| -> EnvelopeError {
        match result {
            Err(ObjectError::Envelope { source, .. }) => source,
            other => panic!("{what}: expected an envelope error, got {other:?}"),
        }
    };

    let mut flipped = pristine.clone();
    flipped[header_len + 2 * frame + 10] ^= 1;
    std::fs::write(f.body_path("photos", "a"), &flipped).unwrap();
    assert!(matches!(
        expect(f.get("a", None).await, "flipped"),
        EnvelopeError::FrameTampered(3)
    ));

    std::fs::write(
        f.body_path("photos", "a"),
        &pristine[..pristine.len() - 200],
    )
    .unwrap();
    assert!(matches!(
        expect(f.get("a", None).await, "truncated"),
        EnvelopeError::Truncated
    ));

    let mut dropped = pristine[..header_len + frame].to_vec();
    dropped.extend_from_slice(&pristine[header_len + 2 * frame..]);
    std::fs::write(f.body_path("photos", "a"), &dropped).unwrap();
    assert!(matches!(
        expect(f.get("a", None).await, "dropped"),
        EnvelopeError::FrameTampered(2)
    ));

    let mut reordered = pristine.clone();
    reordered[header_len..header_len + 2 * frame].copy_from_slice(
        &[
            &pristine[header_len + frame..header_len + 2 * frame],
            &pristine[header_len..header_len + frame],
        ]
        .concat(),
    );
    std::fs::write(f.body_path("photos", "a"), &reordered).unwrap();
    assert!(matches!(
        expect(f.get("a", None).await, "reordered"),
        EnvelopeError::FrameTampered(1)
    ));

    // A frame from another object (same key, same frame number) does not fit.
    let other = std::fs::read(f.body_path("photos", "b")).unwrap();
    let mut swapped = pristine.clone();
    swapped[header_len..header_len + frame].copy_from_slice(&other[header_len..header_len + frame]);
    std::fs::write(f.body_path("photos", "a"), &swapped).unwrap();
    assert!(matches!(
        expect(f.get("a", None).await, "swapped frame"),
        EnvelopeError::FrameTampered(1)
    ));

    let mut header = pristine.clone();
    header[8] ^= 1; // the frame size
    std::fs::write(f.body_path("photos", "a"), &header).unwrap();
    assert!(f.get("a", None).await.is_err(), "edited header");
    restore();
    assert_eq!(f.get("a", None).await.unwrap(), body);

    // b's body under a's name: its envelope names object b.
    std::fs::write(f.body_path("photos", "a"), &other).unwrap();
    assert!(matches!(
        expect(f.get("a", None).await, "moved body"),
        EnvelopeError::ContextMismatch | EnvelopeError::WrongKey
    ));
    restore();

    // A key record edited to claim another context: kmsd refuses to decrypt the data key.
    let record_path = f.record_path("photos", "a");
    let record = std::fs::read_to_string(&record_path).unwrap();
    std::fs::write(
        &record_path,
        record.replace("\"kmsd:key\":\"a\"", "\"kmsd:key\":\"b\""),
    )
    .unwrap();
    assert!(matches!(
        f.get("a", None).await,
        Err(ObjectError::Kms(KmsError::InvalidCiphertext(_)))
    ));
    std::fs::write(&record_path, "{not json").unwrap();
    assert!(matches!(
        f.get("a", None).await,
        Err(ObjectError::Corrupt { .. })
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn rewrap_moves_the_data_key_without_touching_the_body_and_disabled_keys_block_gets() {
    let f = Fixture::new().await;
    let mut c = f.server.client().await;
    create_key(&mut c, "alias/old").await;
    let new = create_key(&mut c, "alias/new").await;
    let body = data(30_000);
    f.put("doc", &body, Encryption::Kms("alias/old".into()))
        .await;
    let stored = std::fs::read(f.body_path("photos", "doc")).unwrap();
    let modified = std::fs::metadata(f.body_path("photos", "doc"))
        .unwrap()
        .modified()
        .unwrap();

    // Under the newest version of its own key.
    c.rotate_key(RotateKeyRequest {
        key_id: "alias/old".into(),
    })
    .await
    .unwrap();
    let info = f.objects.rewrap("photos", "doc", None).await.unwrap();
    assert_eq!(info.record.key_version, Some(2));
    // Under another key; the old one can then be disabled.
    let info = f
        .objects
        .rewrap("photos", "doc", Some("alias/new"))
        .await
        .unwrap();
    assert_eq!(
        (info.record.kms_key_id.as_deref(), info.record.mode),
        (Some(new.key_id.as_str()), Mode::Kms)
    );
    assert_eq!(
        std::fs::read(f.body_path("photos", "doc")).unwrap(),
        stored,
        "the body is untouched"
    );
    assert_eq!(
        std::fs::metadata(f.body_path("photos", "doc"))
            .unwrap()
            .modified()
            .unwrap(),
        modified
    );
    let record = std::fs::read_to_string(f.record_path("photos", "doc")).unwrap();
    assert!(
        !record.contains(&describe(&mut c, "alias/old").await.key_id),
        "no trace of the old key"
    );
    c.disable_key(DisableKeyRequest {
        key_id: "alias/old".into(),
    })
    .await
    .unwrap();
    assert_eq!(f.get("doc", None).await.unwrap(), body);

    // Disabling the key an object is under stops every get, with kmsd's reason.
    c.disable_key(DisableKeyRequest {
        key_id: "alias/new".into(),
    })
    .await
    .unwrap();
    let err = f.get("doc", None).await.unwrap_err();
    assert!(
        matches!(err, ObjectError::Kms(KmsError::KeyState(_))),
        "{err:?}"
    );
    assert!(err.to_string().contains("DISABLED"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hundred_concurrent_puts_make_one_generate_data_key_call() {
    let f = Fixture::new().await;
    let key = create_key(&mut f.server.client().await, "alias/bulk").await;
    let cached = f.objects.clone().with_cache(CacheLimits::default());
    let mut puts = Vec::new();
    for i in 0..100 {
        let objects = cached.clone();
        puts.push(tokio::spawn(async move {
            let body = format!("object {i}").into_bytes();
            objects
                .put(
                    "bulk",
                    &format!("o/{i}"),
                    &body[..],
                    Encryption::Kms("alias/bulk".into()),
                    &BTreeMap::new(),
                )
                .await
                .unwrap()
        }));
    }
    for put in puts {
        put.await.unwrap();
    }
    let generated = f
        .server
        .audit_client()
        .await
        .query_events(QueryEventsRequest {
            event_name: "GenerateDataKey".into(),
            key_id: key.key_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(generated.len(), 1, "one KMS call for a hundred puts");
    assert_eq!(generated[0].encryption_context["kmsd:bucket"], "bulk");
    assert!(
        !generated[0].encryption_context.contains_key("kmsd:key"),
        "a bucket key names no object"
    );
    for i in [0, 57, 99] {
        let mut out = Vec::new();
        cached
            .get("bulk", &format!("o/{i}"), &mut out, None)
            .await
            .unwrap();
        assert_eq!(out, format!("object {i}").into_bytes());
    }
}

/// `kmsctl object` as a person runs it: a file in, the same file out, in each mode.
#[tokio::test(flavor = "multi_thread")]
async fn kmsctl_object_round_trips_a_file() {
    let f = Fixture::new().await;
    create_key(&mut f.server.client().await, "alias/cli").await;
    let work = tempfile::tempdir().unwrap();
    let input = work.path().join("in.bin");
    std::fs::write(&input, data(3 * 1024 * 1024 + 17)).unwrap();
    let store = f.dir.path().to_str().unwrap().to_owned();
    let key_b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [9u8; 32]);
    let md5 = CustomerKey::from_bytes([9u8; 32]).md5_base64();
    let run = |args: Vec<String>| {
        let endpoint = f.server.endpoint();
        let token = f.server.admin_token();
        let store = store.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                std::process::Command::new(env!("CARGO_BIN_EXE_kmsctl"))
                    .args(&args)
                    .env("KMSD_ENDPOINT", endpoint)
                    .env("KMSD_TOKEN", token)
                    .env("KMSD_STORE", store)
                    .output()
                    .unwrap()
            })
            .await
            .unwrap()
        }
    };
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    for (name, mode_args) in [
        ("s3", s(&[])),
        ("kms", s(&["--kms-key", "alias/cli"])),
        (
            "c",
            s(&["--customer-key", &key_b64, "--customer-key-md5", &md5]),
        ),
    ] {
        let mut put = s(&[
            "object",
            "put",
            "docs",
            name,
            "--in",
            input.to_str().unwrap(),
        ]);
        put.extend(mode_args.clone());
        let out = run(put).await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let output = work.path().join(format!("{name}.out"));
        let mut get = s(&[
            "object",
            "get",
            "docs",
            name,
            "--out",
            output.to_str().unwrap(),
        ]);
        if name == "c" {
            get.extend(s(&["--customer-key", &key_b64, "--customer-key-md5", &md5]));
        }
        let out = run(get).await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            std::fs::read(&output).unwrap(),
            std::fs::read(&input).unwrap()
        );
        let head = run(s(&["--json", "object", "head", "docs", name])).await;
        let head: serde_json::Value = serde_json::from_slice(&head.stdout).unwrap();
        let expected = match name {
            "s3" => "SSE-S3",
            "kms" => "SSE-KMS",
            _ => "SSE-C",
        };
        assert_eq!(head["mode"], expected);
    }
    // A get that fails leaves no partial file behind.
    let output = work.path().join("nope.out");
    let out = run(s(&[
        "object",
        "get",
        "docs",
        "c",
        "--out",
        output.to_str().unwrap(),
    ]))
    .await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("give its customer key"));
    assert!(!output.exists() && !output.with_extension("kmsd-partial").exists());
}

/// A store named by URL rather than a directory (here object_store's in-memory backend, behind a prefix), as an S3
/// bucket is: the same client, the same guarantees.
#[tokio::test(flavor = "multi_thread")]
async fn a_store_named_by_url_works_the_same() {
    let server = TestServer::start().await;
    let store = open_store("memory:///tenant-a/kmsd").unwrap();
    let objects = ObjectClient::new(store.clone(), server.kms_client().await);
    let body = data(70_000);
    objects
        .put(
            "bkt",
            "k",
            &body[..],
            Encryption::ServiceManaged,
            &BTreeMap::new(),
        )
        .await
        .unwrap();
    let mut out = Vec::new();
    objects.get("bkt", "k", &mut out, None).await.unwrap();
    assert_eq!(out, body);
    assert_eq!(objects.list("bkt", "").await.unwrap().len(), 1);
    assert!(matches!(
        open_store("ftp://nowhere/x"),
        Err(ObjectError::Store(_) | ObjectError::InvalidArgument(_))
    ));
}
