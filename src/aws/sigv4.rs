//! AWS Signature Version 4, verified: how the AWS-compatible endpoint will know which access key signed a
//! request, and that nothing in it changed since.
//!
//! [`claim`] reads the `Authorization` and `X-Amz-Date` headers and checks what can be checked without the
//! secret: the algorithm, a credential scoped to this region, service `kms` and the request's own date, `host` and
//! `x-amz-date` among the signed headers, and a date within 15 minutes of now. The caller then looks the access
//! key up (an unknown one is AWS's `UnrecognizedClientException`, the caller's to say) and [`verify`] rebuilds the
//! canonical request from the request as it arrived (method, path, query, the signed headers, the SHA-256 of the
//! body), derives the signing key from the secret and compares signatures in constant time.
//!
//! Invariants: no I/O; the secret and the keys derived from it are zeroized when dropped; every refusal is one of
//! AWS's error names ([`SigError::aws_name`]), with a message that names no secret.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::clock::UnixMillis;

/// The only algorithm AWS signs with here.
const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The service a credential must be scoped to.
const SERVICE: &str = "kms";
/// How far the request's date may be from now, either way, as AWS allows.
const MAX_SKEW_MILLIS: i64 = 15 * 60 * 1000;

/// A request as it arrived.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The path, still percent-encoded as sent.
    pub path: &'a str,
    /// The query string as sent, without the `?` (empty when there is none).
    pub query: &'a str,
    /// Every header as sent, names in any case; a name may repeat.
    pub headers: &'a [(&'a str, &'a [u8])],
    pub body: &'a [u8],
}

/// Why a request's signature was refused, by AWS's names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigError {
    /// No `Authorization` header at all.
    #[error("Missing Authentication Token")]
    MissingAuthenticationToken,
    /// The header does not say everything a signature needs.
    #[error("{0}")]
    IncompleteSignature(String),
    /// The signature does not match, is out of date, or is scoped elsewhere.
    #[error("{0}")]
    InvalidSignature(String),
    /// The access key is not one kmsd knows (or it was revoked): the caller's finding.
    #[error("The security token included in the request is invalid.")]
    UnrecognizedClient,
}

impl SigError {
    /// The exception's name as AWS's JSON protocol gives it in `__type`.
    pub fn aws_name(&self) -> &'static str {
        match self {
            SigError::MissingAuthenticationToken => "MissingAuthenticationTokenException",
            SigError::IncompleteSignature(_) => "IncompleteSignatureException",
            SigError::InvalidSignature(_) => "InvalidSignatureException",
            SigError::UnrecognizedClient => "UnrecognizedClientException",
        }
    }
}

/// What a request's `Authorization` header claims, checked as far as it can be without the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub access_key_id: String,
    /// The scope's date, `YYYYMMDD`.
    date: String,
    region: String,
    /// Lower-case, in the order the signer listed them.
    signed_headers: Vec<String>,
    signature: [u8; 32],
    /// `X-Amz-Date` as sent, `YYYYMMDDTHHMMSSZ`.
    amz_date: String,
}

/// Reads and checks the claim of `request` (see the module documentation) for `region` at `now`.
pub fn claim(request: &Request<'_>, region: &str, now: UnixMillis) -> Result<Claim, SigError> {
    let authorization =
        header(request, "authorization").ok_or(SigError::MissingAuthenticationToken)?;
    let incomplete = |message: &str| SigError::IncompleteSignature(message.to_owned());
    let (algorithm, fields) = authorization.split_once(' ').ok_or_else(|| {
        incomplete("Authorization header requires 'Credential', 'SignedHeaders' and 'Signature'")
    })?;
    if algorithm != ALGORITHM {
        return Err(incomplete(
            "Unsupported AWS 'algorithm': only AWS4-HMAC-SHA256 is accepted",
        ));
    }
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for field in fields.split(',') {
        match field.trim().split_once('=') {
            Some(("Credential", v)) => credential = Some(v),
            Some(("SignedHeaders", v)) => signed = Some(v),
            Some(("Signature", v)) => signature = Some(v),
            _ => return Err(incomplete("Authorization header has a malformed field")),
        }
    }
    let (Some(credential), Some(signed), Some(signature)) = (credential, signed, signature) else {
        return Err(incomplete(
            "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature'",
        ));
    };
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key_id, date, scope_region, service, "aws4_request"] = scope[..] else {
        return Err(incomplete(
            "Credential must have the form <access key id>/<date>/<region>/kms/aws4_request",
        ));
    };
    if access_key_id.is_empty() {
        return Err(incomplete("Credential names no access key"));
    }
    let signed_headers: Vec<String> = signed.split(';').map(str::to_owned).collect();
    for required in ["host", "x-amz-date"] {
        if !signed_headers.iter().any(|h| h == required) {
            return Err(SigError::IncompleteSignature(format!(
                "'{required}' must be a 'SignedHeader' in the AWS Authorization"
            )));
        }
    }
    let signature = decode_signature(signature)
        .ok_or_else(|| incomplete("Signature must be 64 hexadecimal characters"))?;
    let invalid = |message: String| SigError::InvalidSignature(message);
    if service != SERVICE {
        return Err(invalid(format!(
            "Credential should be scoped to correct service: '{SERVICE}'."
        )));
    }
    if scope_region != region {
        return Err(invalid(format!(
            "Credential should be scoped to a valid region, not '{scope_region}'."
        )));
    }
    let amz_date = header(request, "x-amz-date")
        .ok_or_else(|| incomplete("The request has no X-Amz-Date header"))?;
    let signed_at = parse_amz_date(amz_date)
        .ok_or_else(|| incomplete("X-Amz-Date must have the form YYYYMMDDTHHMMSSZ"))?;
    if !amz_date.starts_with(date) || date.len() != 8 {
        return Err(invalid(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: \
             '{date}' != '{}'",
            &amz_date[..8]
        )));
    }
    let skew = now.0 - signed_at.0;
    if skew > MAX_SKEW_MILLIS {
        return Err(invalid(format!(
            "Signature expired: {amz_date} is now earlier than {} ({} - 15 min.)",
            amz(UnixMillis(now.0 - MAX_SKEW_MILLIS)),
            amz(now)
        )));
    }
    if -skew > MAX_SKEW_MILLIS {
        return Err(invalid(format!(
            "Signature not yet current: {amz_date} is still later than {} ({} + 15 min.)",
            amz(UnixMillis(now.0 + MAX_SKEW_MILLIS)),
            amz(now)
        )));
    }
    Ok(Claim {
        access_key_id: access_key_id.to_owned(),
        date: date.to_owned(),
        region: scope_region.to_owned(),
        signed_headers,
        signature,
        amz_date: amz_date.to_owned(),
    })
}

/// Checks `claim`'s signature over `request` with the access key's `secret`.
pub fn verify(claim: &Claim, request: &Request<'_>, secret: &[u8]) -> Result<(), SigError> {
    let body_hash = hex::encode(Sha256::digest(request.body));
    // A signer that sent the body's hash as a header signed that header: it must be this body's.
    if let Some(declared) = header(request, "x-amz-content-sha256")
        && !declared.eq_ignore_ascii_case(&body_hash)
    {
        return Err(SigError::InvalidSignature(
            "The provided 'x-amz-content-sha256' header does not match what was computed.".into(),
        ));
    }
    let canonical = canonical_request(claim, request, &body_hash)?;
    let scope = format!("{}/{}/{SERVICE}/aws4_request", claim.date, claim.region);
    let to_sign = format!(
        "{ALGORITHM}\n{}\n{scope}\n{}",
        claim.amz_date,
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let mut key = Zeroizing::new(Vec::with_capacity(4 + secret.len()));
    key.extend_from_slice(b"AWS4");
    key.extend_from_slice(secret);
    let mut signing_key = hmac(&key, claim.date.as_bytes());
    for part in [claim.region.as_bytes(), SERVICE.as_bytes(), b"aws4_request"] {
        signing_key = hmac(&signing_key[..], part);
    }
    let expected = hmac(&signing_key[..], to_sign.as_bytes());
    if bool::from(expected.ct_eq(&claim.signature)) {
        Ok(())
    } else {
        Err(SigError::InvalidSignature(
            "The request signature we calculated does not match the signature you provided. Check your AWS \
             Secret Access Key and signing method."
                .into(),
        ))
    }
}

fn hmac(key: &[u8], message: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(message);
    Zeroizing::new(mac.finalize().into_bytes().into())
}

/// The canonical request of SigV4: method, URI, query, the signed headers and their list, the body's hash.
fn canonical_request(
    claim: &Claim,
    request: &Request<'_>,
    body_hash: &str,
) -> Result<String, SigError> {
    let mut canonical = String::with_capacity(256 + request.path.len() + request.query.len());
    canonical.push_str(&request.method.to_ascii_uppercase());
    canonical.push('\n');
    canonical.push_str(&canonical_uri(request.path));
    canonical.push('\n');
    canonical.push_str(&canonical_query(request.query));
    canonical.push('\n');
    for name in &claim.signed_headers {
        let values: Vec<String> = request
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| trim_all(&String::from_utf8_lossy(v)))
            .collect();
        if values.is_empty() {
            return Err(SigError::IncompleteSignature(format!(
                "The signed header '{name}' is not in the request"
            )));
        }
        canonical.push_str(name);
        canonical.push(':');
        canonical.push_str(&values.join(","));
        canonical.push('\n');
    }
    canonical.push('\n');
    canonical.push_str(&claim.signed_headers.join(";"));
    canonical.push('\n');
    canonical.push_str(body_hash);
    Ok(canonical)
}

/// The path without `.` and `..` segments (RFC 3986 5.2.4), percent-encoded once more (every byte but the
/// unreserved ones and `/`), as AWS signs paths for services other than S3.
fn canonical_uri(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut normalized = String::from("/");
    normalized.push_str(&segments.join("/"));
    if path.ends_with('/') && !segments.is_empty() {
        normalized.push('/');
    }
    let mut encoded = String::with_capacity(normalized.len());
    for byte in normalized.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~' | b'/') {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// The query's `name=value` pairs as sent, sorted by name, then value.
fn canonical_query(query: &str) -> String {
    if query.is_empty() {
        return String::new();
    }
    let mut pairs: Vec<(&str, &str)> = query
        .split('&')
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .collect();
    pairs.sort_unstable();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// A header value with its ends trimmed and every run of spaces made one.
fn trim_all(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The first header named `name`, if it is text.
fn header<'r>(request: &'r Request<'_>, name: &str) -> Option<&'r str> {
    request
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
}

fn decode_signature(hex_signature: &str) -> Option<[u8; 32]> {
    let mut signature = [0u8; 32];
    hex::decode_to_slice(hex_signature, &mut signature).ok()?;
    Some(signature)
}

fn parse_amz_date(value: &str) -> Option<UnixMillis> {
    let parsed = chrono::NaiveDateTime::parse_from_str(value, "%Y%m%dT%H%M%SZ").ok()?;
    Some(UnixMillis(parsed.and_utc().timestamp_millis()))
}

fn amz(t: UnixMillis) -> String {
    chrono::DateTime::from_timestamp_millis(t.0)
        .map(|d| d.format("%Y%m%dT%H%M%SZ").to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    /// Requests signed by botocore's own signer (`tests/vectors/sigv4/generate.py`).
    struct Vector {
        name: String,
        method: String,
        path: String,
        query: String,
        headers: Vec<(String, Vec<u8>)>,
        body: Vec<u8>,
        secret: String,
        region: String,
        signed_at: UnixMillis,
    }

    impl Vector {
        fn request(&self) -> (Vec<(&str, &[u8])>, Request<'_>) {
            let headers: Vec<(&str, &[u8])> = self
                .headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_slice()))
                .collect();
            let request = Request {
                method: &self.method,
                path: &self.path,
                query: &self.query,
                headers: &[],
                body: &self.body,
            };
            (headers, request)
        }

        /// Checks the request (with `change` applied to a copy) as kmsd would, at `now`.
        fn check(&self, now: UnixMillis, change: impl FnOnce(&mut Vector)) -> Result<(), SigError> {
            let mut v = self.clone_vector();
            change(&mut v);
            let (headers, request) = v.request();
            let request = Request {
                headers: &headers,
                ..request
            };
            let claim = claim(&request, &self.region, now)?;
            verify(&claim, &request, v.secret.as_bytes())
        }

        fn clone_vector(&self) -> Vector {
            Vector {
                name: self.name.clone(),
                method: self.method.clone(),
                path: self.path.clone(),
                query: self.query.clone(),
                headers: self.headers.clone(),
                body: self.body.clone(),
                secret: self.secret.clone(),
                region: self.region.clone(),
                signed_at: self.signed_at,
            }
        }

        fn set_header(&mut self, name: &str, value: &str) {
            for (n, v) in &mut self.headers {
                if n.eq_ignore_ascii_case(name) {
                    *v = value.as_bytes().to_vec();
                }
            }
        }

        fn authorization(&self) -> String {
            let (_, v) = self
                .headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("authorization"))
                .unwrap();
            String::from_utf8(v.clone()).unwrap()
        }
    }

    fn vectors() -> Vec<Vector> {
        let file: serde_json::Value = serde_json::from_str(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/vectors/sigv4/botocore.json"
        )))
        .unwrap();
        file["vectors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| Vector {
                name: v["name"].as_str().unwrap().to_owned(),
                method: v["method"].as_str().unwrap().to_owned(),
                path: v["path"].as_str().unwrap().to_owned(),
                query: v["query"].as_str().unwrap().to_owned(),
                headers: v["headers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|h| {
                        (
                            h[0].as_str().unwrap().to_owned(),
                            h[1].as_str().unwrap().as_bytes().to_vec(),
                        )
                    })
                    .collect(),
                body: base64::engine::general_purpose::STANDARD
                    .decode(v["body_base64"].as_str().unwrap())
                    .unwrap(),
                secret: v["secret"].as_str().unwrap().to_owned(),
                region: v["region"].as_str().unwrap().to_owned(),
                signed_at: UnixMillis(v["signed_at_unix"].as_i64().unwrap() * 1000),
            })
            .collect()
    }

    const MINUTE: i64 = 60_000;

    #[test]
    fn every_botocore_signature_verifies_within_the_window() {
        let vectors = vectors();
        assert!(vectors.len() >= 6);
        for v in &vectors {
            for offset in [0, 14 * MINUTE, -14 * MINUTE] {
                let now = UnixMillis(v.signed_at.0 + offset);
                assert_eq!(v.check(now, |_| {}), Ok(()), "{} at {offset} ms", v.name);
            }
            // Headers the signer did not sign may change: a proxy adds some.
            let added = v.check(v.signed_at, |v| {
                v.headers
                    .push(("X-Forwarded-For".into(), b"10.0.0.1".to_vec()))
            });
            assert_eq!(added, Ok(()), "{}", v.name);
        }
    }

    #[test]
    fn a_changed_request_or_the_wrong_secret_is_refused() {
        for v in &vectors() {
            let at = v.signed_at;
            let invalid = |r: Result<(), SigError>, what: &str| {
                assert!(
                    matches!(r, Err(SigError::InvalidSignature(_))),
                    "{}: {what}: {r:?}",
                    v.name
                )
            };
            invalid(
                v.check(at, |v| v.body.push(b' ')),
                "a byte added to the body",
            );
            invalid(
                v.check(at, |v| v.secret.replace_range(0..1, "X")),
                "another secret",
            );
            invalid(
                v.check(at, |v| {
                    v.set_header("x-amz-target", "TrentService.ScheduleKeyDeletion")
                }),
                "another operation",
            );
            invalid(v.check(at, |v| v.method = "PUT".into()), "another method");
            invalid(v.check(at, |v| v.path.push('x')), "another path");
            invalid(v.check(at, |v| v.query.push_str("&z=1")), "another query");
            invalid(
                v.check(UnixMillis(at.0 + 16 * MINUTE), |_| {}),
                "16 minutes later",
            );
            invalid(
                v.check(UnixMillis(at.0 - 16 * MINUTE), |_| {}),
                "16 minutes earlier",
            );
            // The signature's last hex digit changed.
            let auth = v.authorization();
            let last = if auth.ends_with('0') { "1" } else { "0" };
            let tampered = format!("{}{last}", &auth[..auth.len() - 1]);
            invalid(
                v.check(at, |v| v.set_header("authorization", &tampered)),
                "a changed signature",
            );
        }
    }

    #[test]
    fn claims_are_checked_before_any_secret_is_looked_up() {
        let v = &vectors()[0];
        let at = v.signed_at;
        let request_with = |change: &dyn Fn(&mut Vector)| {
            let mut v = v.clone_vector();
            change(&mut v);
            let (headers, request) = v.request();
            let request = Request {
                headers: &headers,
                ..request
            };
            claim(&request, &v.region, at).map(|c| c.access_key_id)
        };
        assert_eq!(request_with(&|_| {}), Ok("AKIAKMSDEXAMPLE00001".to_owned()));
        assert_eq!(
            request_with(&|v| v.headers.retain(|(n, _)| n != "Authorization")),
            Err(SigError::MissingAuthenticationToken)
        );
        let auth = v.authorization();
        let incomplete = |r: Result<String, SigError>, what: &str| {
            assert!(
                matches!(r, Err(SigError::IncompleteSignature(_))),
                "{what}: {r:?}"
            )
        };
        incomplete(
            request_with(&|v| {
                v.set_header("authorization", &auth.replace("host;", ""));
            }),
            "host not signed",
        );
        incomplete(
            request_with(&|v| {
                v.set_header("authorization", &auth.replace(";x-amz-date", ""));
            }),
            "x-amz-date not signed",
        );
        incomplete(
            request_with(&|v| {
                v.set_header("authorization", &auth.replace("/aws4_request", ""));
            }),
            "a short credential",
        );
        incomplete(
            request_with(&|v| {
                v.set_header(
                    "authorization",
                    &auth.replace("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA1"),
                );
            }),
            "another algorithm",
        );
        incomplete(
            request_with(&|v| v.set_header("authorization", "AWS4-HMAC-SHA256")),
            "no fields",
        );
        // A request with no headers at all.
        let (_, bare) = v.request();
        assert_eq!(
            claim(&bare, "us-east-1", at),
            Err(SigError::MissingAuthenticationToken)
        );
        // A credential for another region or service is refused as AWS refuses it.
        let (headers, request) = v.request();
        let request = Request {
            headers: &headers,
            ..request
        };
        assert!(matches!(
            claim(&request, "eu-west-1", at),
            Err(SigError::InvalidSignature(m)) if m.contains("valid region")
        ));
        let other_service = auth.replace("/kms/", "/s3/");
        assert!(matches!(
            request_with(&|v| v.set_header("authorization", &other_service)),
            Err(SigError::InvalidSignature(m)) if m.contains("correct service")
        ));
    }

    #[test]
    fn canonical_paths_and_queries_follow_botocore() {
        assert_eq!(canonical_uri(""), "/");
        assert_eq!(canonical_uri("/"), "/");
        assert_eq!(canonical_uri("/a%20b/./c/../d~e"), "/a%2520b/d~e");
        assert_eq!(canonical_uri("/a/b/"), "/a/b/");
        assert_eq!(canonical_uri("/../.."), "/");
        assert_eq!(canonical_query("b=2&a=1&a=0&c=%2F"), "a=0&a=1&b=2&c=%2F");
        assert_eq!(canonical_query("flag"), "flag=");
        assert_eq!(trim_all("  several   spaces  here "), "several spaces here");
    }
}
