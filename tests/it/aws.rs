//! The AWS-compatible endpoint, tested by real AWS clients: runs the pytest suite in `tests/aws/` (boto3, the AWS
//! CLI, the AWS Encryption SDK CLI, and moto's server as the reference the parity tests also run against) with this
//! build's `kmsd` and `kmsctl`.
//!
//! The suite's packages come from PyPI (`tests/aws/requirements.txt`), installed by `.ci/run` into the virtual
//! environment whose `python3` is first on its PATH. Where they are missing the test says so and returns, unless
//! `TEST_AWS_REQUIRED` is set (as `.ci/run` sets it), which makes it a failure: CI never skips this suite.

use std::process::Command;

const REQUIRE: &str = "TEST_AWS_REQUIRED";
const MODULES: &str = "import boto3, moto, pytest, aws_encryption_sdk_cli, awscli";

#[test]
fn real_aws_clients_against_kmsd_and_moto() {
    let python = std::env::var("TEST_AWS_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let ready = Command::new(&python)
        .args(["-c", MODULES])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ready {
        assert!(
            std::env::var_os(REQUIRE).is_none(),
            "{python} lacks the AWS suite's packages: pip install -r tests/aws/requirements.txt"
        );
        eprintln!(
            "skipping the AWS client suite: {python} lacks its packages (pip install -r tests/aws/requirements.txt, \
             or set TEST_AWS_PYTHON)"
        );
        return;
    }
    let suite = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/aws");
    let out = Command::new(&python)
        .args(["-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", suite])
        .env("TEST_KMSD_BIN", env!("CARGO_BIN_EXE_kmsd"))
        .env("TEST_KMSCTL_BIN", env!("CARGO_BIN_EXE_kmsctl"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("run pytest");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the AWS client suite failed:\n{report}"
    );
    // The summary lists what moto was skipped for (tests/aws/test_parity.py skips only moto).
    eprintln!("{report}");
}
