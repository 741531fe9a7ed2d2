//! The identities a client certificate carries: its URI SANs (a SPIFFE id, say), then its subject CN.
//!
//! Only certificates rustls has already verified against the configured client CA reach here; this module reads
//! names, it does not decide trust.

use x509_parser::extensions::GeneralName;

/// URI SANs in certificate order, then the subject's common names.
pub fn identities(der: &[u8]) -> Result<Vec<String>, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("the client certificate cannot be parsed: {e}"))?;
    let mut out = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::URI(uri) = name {
                out.push((*uri).to_owned());
            }
        }
    }
    for cn in cert.subject().iter_common_name() {
        if let Ok(s) = cn.as_str() {
            out.push(s.to_owned());
        }
    }
    Ok(out)
}
