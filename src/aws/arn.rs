//! Amazon Resource Names for kmsd's keys and aliases, as the AWS-compatible endpoint will show and accept them:
//! `arn:aws:kms:<region>:<account>:key/<key id>` and `arn:aws:kms:<region>:<account>:alias/<name>`, the region and
//! account being this kmsd's ([`Home`], from its settings).
//!
//! Invariant: no I/O; an ARN names a kmsd key or alias only if its partition, service, region and account are this
//! kmsd's, so a request meant for another KMS never reaches one of its keys by accident.

use std::fmt;

use crate::keys::{AliasName, InvalidInput, KeyId, KeyRef};

const PARTITION: &str = "aws";
const SERVICE: &str = "kms";

/// Where this kmsd is, in AWS's terms: the region and account id its ARNs carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    region: String,
    account: String,
}

/// Why a `KeyId` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArnError {
    /// Not a key id, alias name or ARN at all (AWS: ValidationException or NotFoundException by operation).
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// A well-formed ARN of another region, account or partition: no such key here (AWS: NotFoundException).
    #[error("{0}")]
    Elsewhere(String),
}

/// `us-east-1`, where most tools default, and account `000000000000`.
impl Default for Home {
    fn default() -> Self {
        Home {
            region: "us-east-1".to_owned(),
            account: "000000000000".to_owned(),
        }
    }
}

impl Home {
    /// `region` as AWS spells regions (`us-east-1`), `account` twelve digits.
    pub fn new(region: &str, account: &str) -> Result<Home, InvalidInput> {
        let region_ok = !region.is_empty()
            && region.len() <= 32
            && region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !region_ok {
            return Err(InvalidInput(format!(
                "{region:?} is not a region name such as us-east-1"
            )));
        }
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(InvalidInput(format!(
                "{account:?} is not an account id: twelve digits, such as 111122223333"
            )));
        }
        Ok(Home {
            region: region.to_owned(),
            account: account.to_owned(),
        })
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    pub fn account(&self) -> &str {
        &self.account
    }

    pub fn key_arn(&self, id: KeyId) -> String {
        format!("{}key/{id}", self.prefix())
    }

    pub fn alias_arn(&self, alias: &AliasName) -> String {
        format!("{}{alias}", self.prefix())
    }

    fn prefix(&self) -> Prefix<'_> {
        Prefix(self)
    }

    /// What a `KeyId` names, in any of the forms AWS accepts: a key id, a key ARN, an alias name or an alias ARN.
    /// `field` names the field in messages.
    pub fn key_ref(&self, s: &str, field: &str) -> Result<KeyRef, ArnError> {
        let Some(rest) = s.strip_prefix("arn:") else {
            return Ok(KeyRef::parse(s, field)?);
        };
        let parts: Vec<&str> = rest.splitn(5, ':').collect();
        let [partition, service, region, account, resource] = parts[..] else {
            return Err(InvalidInput(format!(
                "{field} {s:?} is not an ARN of the form arn:aws:kms:<region>:<account>:key/<key id>"
            ))
            .into());
        };
        let resource = if resource.starts_with(AliasName::PREFIX) {
            KeyRef::Alias(AliasName::parse(resource)?)
        } else if let Some(id) = resource.strip_prefix("key/") {
            KeyRef::Id(KeyId::parse(id).map_err(|_| {
                InvalidInput(format!(
                    "{field} {s:?} names no key id (a UUID such as 1234abcd-12ab-34cd-56ef-1234567890ab)"
                ))
            })?)
        } else {
            return Err(InvalidInput(format!(
                "{field} {s:?} is neither a key ARN (…:key/<key id>) nor an alias ARN (…:alias/<name>)"
            ))
            .into());
        };
        if service != SERVICE {
            return Err(InvalidInput(format!("{field} {s:?} is not a KMS ARN")).into());
        }
        if (partition, region, account) != (PARTITION, self.region.as_str(), self.account.as_str())
        {
            return Err(ArnError::Elsewhere(format!(
                "{field} {s:?} names a key in {partition} {region}, account {account}; this KMS is {PARTITION} {}, \
                 account {}",
                self.region, self.account
            )));
        }
        Ok(resource)
    }
}

/// `arn:aws:kms:<region>:<account>:`.
struct Prefix<'a>(&'a Home);

impl fmt::Display for Prefix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "arn:{PARTITION}:{SERVICE}:{}:{}:",
            self.0.region, self.0.account
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "1234abcd-12ab-34cd-56ef-1234567890ab";

    fn home() -> Home {
        Home::new("us-east-1", "111122223333").unwrap()
    }

    #[test]
    fn arns_are_made_as_aws_makes_them_and_read_back() {
        let id = KeyId::parse(ID).unwrap();
        let alias = AliasName::parse("alias/app/prod").unwrap();
        let key_arn = home().key_arn(id);
        let alias_arn = home().alias_arn(&alias);
        assert_eq!(
            key_arn,
            format!("arn:aws:kms:us-east-1:111122223333:key/{ID}")
        );
        assert_eq!(
            alias_arn,
            "arn:aws:kms:us-east-1:111122223333:alias/app/prod"
        );
        assert_eq!(home().key_ref(&key_arn, "KeyId"), Ok(KeyRef::Id(id)));
        assert_eq!(
            home().key_ref(&alias_arn, "KeyId"),
            Ok(KeyRef::Alias(alias.clone()))
        );
        // The plain forms, as before.
        assert_eq!(home().key_ref(ID, "KeyId"), Ok(KeyRef::Id(id)));
        assert_eq!(
            home().key_ref("alias/app/prod", "KeyId"),
            Ok(KeyRef::Alias(alias))
        );
    }

    #[test]
    fn an_arn_of_another_region_account_or_partition_names_nothing_here() {
        for other in [
            format!("arn:aws:kms:eu-west-1:111122223333:key/{ID}"),
            format!("arn:aws:kms:us-east-1:999999999999:key/{ID}"),
            "arn:aws-cn:kms:us-east-1:111122223333:alias/app".to_owned(),
        ] {
            assert!(
                matches!(home().key_ref(&other, "KeyId"), Err(ArnError::Elsewhere(_))),
                "{other}"
            );
        }
    }

    #[test]
    fn malformed_ids_and_arns_are_refused_with_a_reason() {
        for bad in [
            "",
            "not-a-key",
            "arn:aws:kms:us-east-1:111122223333",
            "arn:aws:kms:us-east-1:111122223333:key/",
            "arn:aws:kms:us-east-1:111122223333:key/not-a-uuid",
            "arn:aws:kms:us-east-1:111122223333:grant/abc",
            "arn:aws:s3:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "arn:aws:kms:us-east-1:111122223333:alias/bad name",
        ] {
            assert!(
                matches!(home().key_ref(bad, "KeyId"), Err(ArnError::Invalid(_))),
                "{bad:?}"
            );
        }
        assert!(Home::new("US-EAST-1", "111122223333").is_err());
        assert!(Home::new("us-east-1", "1111").is_err());
        assert!(Home::new("", "111122223333").is_err());
    }
}
