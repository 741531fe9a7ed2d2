//! The generated code in `src/gen/` is what `proto/` compiles to today. This test regenerates it; if anything
//! differs, it writes the new files and fails, so a change to `proto/` shows up in the same commit as its code.

// Tests fail loudly; unwrap is how they say so.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

#[test]
fn generated_code_is_fresh() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let proto_dir = crate_dir.join("../../proto");
    let gen_dir = crate_dir.join("src/gen");
    let fds = protox::compile([proto_dir.join("kms/v1/kms.proto")], [&proto_dir]).unwrap();

    let out = tempfile_dir();
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Server traits only for the daemon, so a client builds none of tonic's server code.
        .server_mod_attribute("kms.v1", "#[cfg(feature = \"server\")]")
        .out_dir(&out)
        .compile_fds(fds.clone())
        .unwrap();

    let mut stale = Vec::new();
    for (name, fresh) in [
        ("kms.v1.rs", std::fs::read(out.join("kms.v1.rs")).unwrap()),
        ("kms_descriptor.bin", prost::Message::encode_to_vec(&fds)),
    ] {
        let path = gen_dir.join(name);
        if std::fs::read(&path).ok().as_deref() != Some(&fresh[..]) {
            std::fs::write(&path, &fresh).unwrap();
            stale.push(name);
        }
    }
    std::fs::remove_dir_all(&out).unwrap();
    assert!(
        stale.is_empty(),
        "src/gen/{stale:?} did not match proto/ and was regenerated: review and commit it"
    );
}

fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kmsd-proto-gen-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
