//! `kmsctl audit`: query, export and verify the audit log.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use kmsd_client::Client;
use kmsd_client::pb::{AuditEvent, Outcome, QueryEventsRequest, VerifyLogRequest};
use serde_json::{Value, json};

use super::output::{Output, table, time, time_millis};
use super::{Failure, parse_pair, write_output};

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Records matching every filter given, newest first.
    Query {
        #[command(flatten)]
        filter: Filter,
        /// At most this many records.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Oldest first instead.
        #[arg(long)]
        oldest_first: bool,
    },
    /// Every matching record, oldest first, as JSON.
    Export {
        #[command(flatten)]
        filter: Filter,
        #[arg(long, value_enum, default_value = "cloudtrail")]
        format: ExportFormat,
        /// Write to this file instead of stdout.
        #[arg(long = "out")]
        output: Option<PathBuf>,
    },
    /// Check the hash chain and signed checkpoints, through the daemon, or offline: a database (--db) or an
    /// archive file (--archive).
    Verify(VerifyArgs),
    /// Archive the records before a time into a file that verifies on its own (a signed checkpoint at its end),
    /// then remove them from the database, leaving a signed mark and a record of the removal (administrators only).
    /// The file is written, synced and verified before anything is removed. The way out of a full disk.
    Archive {
        /// Archive the records before this time: RFC 3339 (2026-11-01T00:00:00Z) or an age (30d).
        #[arg(long)]
        before: String,
        /// The archive file to write; it must not exist.
        #[arg(long)]
        out: PathBuf,
        /// Write and verify the archive, but keep the records in the database.
        #[arg(long)]
        keep: bool,
    },
    /// The log's extent, the database's size and the free space under it, with the floors kmsd keeps.
    Status,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    /// `{"Records": [...]}` with CloudTrail's field names.
    Cloudtrail,
    /// kmsd's own records, as QueryEvents returns them.
    Native,
}

#[derive(Args, Default)]
pub struct Filter {
    /// From this time: RFC 3339 (2026-11-28T21:00:00Z) or an age (30m, 12h, 7d).
    #[arg(long)]
    since: Option<String>,
    /// Until this time (exclusive), same forms as --since.
    #[arg(long)]
    until: Option<String>,
    /// A key id or alias.
    #[arg(long)]
    key: Option<String>,
    #[arg(long)]
    principal: Option<String>,
    /// The RPC, e.g. Decrypt.
    #[arg(long)]
    event: Option<String>,
    #[arg(long, value_enum)]
    outcome: Option<OutcomeArg>,
    /// An encryption context pair the record must have, KEY=VALUE; repeatable.
    #[arg(long = "context", value_parser = parse_pair)]
    context: Vec<(String, String)>,
    #[arg(long)]
    request_id: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum OutcomeArg {
    Success,
    Error,
    Denied,
}

#[derive(Args)]
pub struct VerifyArgs {
    /// Verify this database file offline instead of asking the daemon.
    #[arg(long, conflicts_with = "archive")]
    pub db: Option<PathBuf>,
    /// Verify this archive file (from `kmsctl audit archive`) offline.
    #[arg(long)]
    pub archive: Option<PathBuf>,
    /// Offline: the root key to derive the checkpoint key from (default: root.key beside the database).
    #[arg(long, requires = "db")]
    root_key_file: Option<PathBuf>,
    /// Offline: the hex Ed25519 public key checkpoints are signed with (from the daemon's log or VerifyLog),
    /// instead of the root key; for an archive, instead of the key the archive itself names.
    #[arg(long, conflicts_with = "root_key_file")]
    public_key: Option<String>,
    /// A checkpoint kept outside the daemon: its sequence number...
    #[arg(long, requires = "trusted_hash")]
    trusted_seq: Option<u64>,
    /// ...and its hash.
    #[arg(long, requires = "trusted_seq")]
    trusted_hash: Option<String>,
}

fn parse_time(s: &str) -> Result<prost_types::Timestamp, Failure> {
    if let Some(t) = kmsd::clock::UnixMillis::parse_rfc3339(s) {
        return Ok(t);
    }
    let (number, unit) = s.split_at(s.trim_end_matches(|c: char| c.is_ascii_alphabetic()).len());
    let seconds_per = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => 0,
    };
    match number.parse::<i64>() {
        Ok(n) if seconds_per > 0 && n >= 0 => {
            let now = chrono::Utc::now().timestamp();
            Ok(prost_types::Timestamp {
                seconds: now - n * seconds_per,
                nanos: 0,
            })
        }
        _ => Err(Failure(format!(
            "{s:?} is neither an RFC 3339 time (2026-11-28T21:00:00Z) nor an age such as 30m, 12h or 7d"
        ))),
    }
}

impl Filter {
    fn request(
        &self,
        oldest_first: bool,
        page_size: u32,
        page_token: String,
    ) -> Result<QueryEventsRequest, Failure> {
        Ok(QueryEventsRequest {
            start_time: self.since.as_deref().map(parse_time).transpose()?,
            end_time: self.until.as_deref().map(parse_time).transpose()?,
            key_id: self.key.clone().unwrap_or_default(),
            principal: self.principal.clone().unwrap_or_default(),
            event_name: self.event.clone().unwrap_or_default(),
            outcome: match self.outcome {
                None => Outcome::Unspecified,
                Some(OutcomeArg::Success) => Outcome::Success,
                Some(OutcomeArg::Error) => Outcome::Error,
                Some(OutcomeArg::Denied) => Outcome::Denied,
            } as i32,
            encryption_context: self.context.iter().cloned().collect(),
            request_id: self.request_id.clone().unwrap_or_default(),
            oldest_first,
            page_size,
            page_token,
        })
    }
}

async fn fetch(
    kms: &Client,
    filter: &Filter,
    oldest_first: bool,
    limit: usize,
) -> Result<Vec<AuditEvent>, Failure> {
    let page_size = limit.min(1000) as u32;
    let request = filter.request(oldest_first, page_size, String::new())?;
    Ok(kms.query_all_events(request, limit).await?)
}

pub async fn run(kms: &Client, out: &Output, cmd: AuditCommand) -> Result<(), Failure> {
    match cmd {
        AuditCommand::Query {
            filter,
            limit,
            oldest_first,
        } => {
            let events = fetch(kms, &filter, oldest_first, limit).await?;
            if out.json {
                let list: Vec<Value> = events.iter().map(native_json).collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({ "events": list })).unwrap_or_default()
                );
            } else {
                let rows: Vec<Vec<String>> = events
                    .iter()
                    .map(|e| {
                        vec![
                            e.sequence.to_string(),
                            time_millis(&e.event_time),
                            e.event_name.clone(),
                            e.principal.clone(),
                            e.key_id.clone(),
                            if e.key_version == 0 {
                                String::new()
                            } else {
                                e.key_version.to_string()
                            },
                            outcome_text(e),
                            e.reason.clone(),
                        ]
                    })
                    .collect();
                table(
                    &[
                        "SEQ",
                        "TIME",
                        "EVENT",
                        "PRINCIPAL",
                        "KEY ID",
                        "VER",
                        "OUTCOME",
                        "REASON",
                    ],
                    &rows,
                );
            }
            Ok(())
        }
        AuditCommand::Export {
            filter,
            format,
            output,
        } => {
            let events = fetch(kms, &filter, true, usize::MAX).await?;
            let doc = match format {
                ExportFormat::Cloudtrail => {
                    // The daemon says which region and account its key ARNs carry.
                    let log = kms.describe_log().await?;
                    let home = Home {
                        region: log.aws_region,
                        account: log.aws_account_id,
                    };
                    json!({ "Records": events.iter().map(|e| cloudtrail_json(e, &home)).collect::<Vec<_>>() })
                }
                ExportFormat::Native => {
                    json!({ "events": events.iter().map(native_json).collect::<Vec<_>>() })
                }
            };
            let text = serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n";
            write_output(output.as_ref(), text.as_bytes())
        }
        AuditCommand::Verify(args) => verify(kms, out, args).await,
        AuditCommand::Archive {
            before,
            out: path,
            keep,
        } => archive(kms, out, &before, &path, keep).await,
        AuditCommand::Status => status(kms, out).await,
    }
}

fn outcome_name(e: &AuditEvent) -> &'static str {
    match Outcome::try_from(e.outcome) {
        Ok(Outcome::Success) => "success",
        Ok(Outcome::Error) => "error",
        Ok(Outcome::Denied) => "denied",
        _ => "unknown",
    }
}

fn outcome_text(e: &AuditEvent) -> String {
    if e.error_code.is_empty() {
        outcome_name(e).to_owned()
    } else {
        format!("{} {}", outcome_name(e), e.error_code)
    }
}

fn empty_as_null(s: &str) -> Value {
    if s.is_empty() { Value::Null } else { json!(s) }
}

fn native_json(e: &AuditEvent) -> Value {
    json!({
        "sequence": e.sequence,
        "event_id": e.event_id,
        "event_time": time_millis(&e.event_time),
        "event_name": e.event_name,
        "principal": e.principal,
        "source_address": e.source_address,
        "user_agent": e.user_agent,
        "request_id": e.request_id,
        "key_id": empty_as_null(&e.key_id),
        "key_version": if e.key_version == 0 { Value::Null } else { json!(e.key_version) },
        "key_alias": empty_as_null(&e.key_alias),
        "parameters": e.parameters,
        "encryption_context": e.encryption_context,
        "reason": empty_as_null(&e.reason),
        "outcome": outcome_name(e),
        "error_code": empty_as_null(&e.error_code),
        "error_message": empty_as_null(&e.error_message),
        "prev_hash": e.prev_hash,
        "hash": e.hash,
    })
}

/// Where the daemon's keys are, in AWS's terms: the region and account of their ARNs.
struct Home {
    region: String,
    account: String,
}

impl Home {
    fn key_arn(&self, key_id: &str) -> String {
        format!("arn:aws:kms:{}:{}:key/{key_id}", self.region, self.account)
    }

    /// A key as CloudTrail lists it among an event's resources.
    fn resource(&self, key_id: &str) -> Value {
        json!({ "ARN": self.key_arn(key_id), "accountId": self.account, "type": "AWS::KMS::Key" })
    }
}

/// A record with AWS CloudTrail's field names, so tools built for KMS events in CloudTrail can read it: the keys
/// it used as `resources` (by ARN, with `AWS::KMS::Key`; ReEncrypt's source key too), the caller in `userIdentity`
/// (with its access key id when it signed with one), the region and account.
fn cloudtrail_json(e: &AuditEvent, home: &Home) -> Value {
    let mut request_parameters = serde_json::Map::new();
    if !e.key_id.is_empty() {
        request_parameters.insert(
            "keyId".into(),
            // As the caller named it, as CloudTrail records it.
            json!(if e.key_alias.is_empty() {
                &e.key_id
            } else {
                &e.key_alias
            }),
        );
    }
    if !e.encryption_context.is_empty() {
        request_parameters.insert("encryptionContext".into(), json!(e.encryption_context));
    }
    for (k, v) in &e.parameters {
        request_parameters.insert(k.clone(), json!(v));
    }
    let mut resources = Vec::new();
    if let Some(source) = e.parameters.get("source_key_id") {
        resources.push(home.resource(source));
    }
    if !e.key_id.is_empty() {
        resources.push(home.resource(&e.key_id));
    }
    let mut user_identity = json!({
        "type": "kmsd",
        "principalId": e.principal,
        "userName": e.principal,
        "accountId": home.account,
    });
    if let Some(access_key_id) = e.parameters.get("access_key_id") {
        user_identity["accessKeyId"] = json!(access_key_id);
    }
    json!({
        "eventVersion": "1.08",
        "userIdentity": user_identity,
        "eventTime": time(&e.event_time),
        "eventSource": "kms.kmsd",
        "eventName": e.event_name,
        "awsRegion": home.region,
        "sourceIPAddress": e.source_address,
        "userAgent": e.user_agent,
        "errorCode": empty_as_null(&e.error_code),
        "errorMessage": empty_as_null(&e.error_message),
        "requestParameters": request_parameters,
        "responseElements": Value::Null,
        "requestID": e.request_id,
        "eventID": e.event_id,
        "readOnly": matches!(
            e.event_name.as_str(),
            "DescribeKey" | "ListKeys" | "ListAliases" | "ListKeyVersions" | "ListResourceTags"
                | "GetKeyRotationStatus" | "GetKeyPolicy" | "QueryEvents" | "VerifyLog"
        ),
        "resources": resources,
        "eventType": "AwsApiCall",
        "managementEvent": true,
        "recipientAccountId": home.account,
        "eventCategory": "Management",
        "additionalEventData": {
            "keyVersion": if e.key_version == 0 { Value::Null } else { json!(e.key_version) },
            "reason": empty_as_null(&e.reason),
            "outcome": outcome_name(e),
            "sequence": e.sequence,
            "hash": e.hash,
        },
    })
}

struct Verdict {
    ok: bool,
    records: u64,
    checkpoints: u64,
    head_seq: u64,
    head_hash: String,
    first_bad: u64,
    problem: String,
    public_key: String,
}

async fn status(kms: &Client, out: &Output) -> Result<(), Failure> {
    let s = kms.describe_log().await?;
    if out.json {
        let doc = json!({
            "first_sequence": s.first_sequence,
            "head_sequence": s.head_sequence,
            "archived_through": s.archived_through,
            "database_bytes": s.database_bytes,
            "reusable_bytes": s.reusable_bytes,
            "free_bytes": s.free_bytes,
            "total_bytes": s.total_bytes,
            "soft_floor_bytes": s.soft_floor_bytes,
            "hard_floor_bytes": s.hard_floor_bytes,
            "disk_level": s.disk_level,
        });
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        return Ok(());
    }
    let mib = |n: u64| {
        let (unit, scale) = if n >= 10 << 30 {
            ("GiB", 1u64 << 30)
        } else {
            ("MiB", 1 << 20)
        };
        format!("{:.1} {unit}", n as f64 / scale as f64)
    };
    println!(
        "{:<20} {}..={}",
        "Records held:", s.first_sequence, s.head_sequence
    );
    if s.archived_through > 0 {
        println!("{:<20} 1..={}", "Archived:", s.archived_through);
    }
    println!(
        "{:<20} {} ({} of it free pages, reused before the file grows)",
        "Database:",
        mib(s.database_bytes),
        mib(s.reusable_bytes)
    );
    println!(
        "{:<20} {} of {}",
        "Free on its disk:",
        mib(s.free_bytes),
        mib(s.total_bytes)
    );
    println!(
        "{:<20} soft {}, hard {}",
        "Floors:",
        mib(s.soft_floor_bytes),
        mib(s.hard_floor_bytes)
    );
    let meaning = match s.disk_level.as_str() {
        "ample" => "ample: every call is recorded one by one",
        "low" => {
            "LOW: below the soft floor, unauthenticated calls are recorded as summaries; archive the log"
        }
        "critical" => {
            "CRITICAL: below the hard floor, every call but archival fails closed; archive the log now"
        }
        other => other,
    };
    println!("{:<20} {}", "Disk:", meaning);
    Ok(())
}

async fn archive(
    kms: &Client,
    out: &Output,
    before: &str,
    path: &std::path::Path,
    keep: bool,
) -> Result<(), Failure> {
    use kmsd::audit::archive::{self, FORMAT, Header};
    use std::io::Write;

    let sealed = kms.seal_archive(parse_time(before)?).await?;
    let cp = sealed
        .checkpoint
        .clone()
        .ok_or_else(|| Failure("the daemon sealed no checkpoint".into()))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let cannot = |e: std::io::Error| Failure(format!("cannot write {}: {e}", path.display()));
    let file = options.open(path).map_err(cannot)?;
    let mut w = std::io::BufWriter::new(file);
    let header = Header {
        format: FORMAT.to_owned(),
        version: 1,
        log_id: sealed.log_id.clone(),
        public_key: sealed.public_key.clone(),
        first_sequence: sealed.first_sequence,
        prev_hash: sealed.prev_hash.clone(),
        last_sequence: sealed.last_sequence,
        last_hash: sealed.last_hash.clone(),
    };
    writeln!(w, "{}", serde_json::to_string(&header).unwrap_or_default()).map_err(cannot)?;
    let mut after = sealed.first_sequence - 1;
    while after < sealed.last_sequence {
        let page = kms.export_archive(after, sealed.last_sequence).await?;
        for line in &page.records {
            writeln!(w, "{line}").map_err(cannot)?;
        }
        if page.last_sequence <= after {
            return Err(Failure("the daemon's export made no progress".into()));
        }
        after = page.last_sequence;
    }
    let checkpoint = kmsd::audit::Checkpoint {
        head_seq: cp.head_sequence,
        head_hash: cp.head_hash,
        time: cp
            .time
            .as_ref()
            .map(|t| kmsd::clock::UnixMillis::from_timestamp(t).rfc3339_millis())
            .unwrap_or_default(),
        log_id: cp.log_id,
        signature: cp.signature,
    };
    writeln!(w, "{}", archive::checkpoint_line(&checkpoint)).map_err(cannot)?;
    let file = w.into_inner().map_err(|e| cannot(e.into_error()))?;
    file.sync_all().map_err(cannot)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(cannot)?;
    }
    // Nothing is removed unless the file on disk verifies, under the key the daemon signs with.
    let key = kmsd::audit::parse_public_key(&sealed.public_key)
        .ok_or_else(|| Failure("the daemon's public key is not an Ed25519 key".into()))?;
    let reread = std::fs::File::open(path).map_err(cannot)?;
    let report = archive::verify(std::io::BufReader::new(reread), Some(&key)).map_err(|e| {
        Failure(format!(
            "the archive {} does not verify, nothing was removed: {e}",
            path.display()
        ))
    })?;
    let removed = if keep {
        None
    } else {
        Some(
            kms.prune_events(sealed.last_sequence, &sealed.last_hash)
                .await?,
        )
    };
    if out.json {
        let doc = json!({
            "archive": path.display().to_string(),
            "first_sequence": sealed.first_sequence,
            "last_sequence": sealed.last_sequence,
            "last_hash": sealed.last_hash,
            "records": report.records,
            "public_key": sealed.public_key,
            "records_removed": removed.as_ref().map(|r| r.records_removed),
        });
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        return Ok(());
    }
    println!(
        "archived records {}..={} ({} records) to {}; it verifies",
        sealed.first_sequence,
        sealed.last_sequence,
        report.records,
        path.display()
    );
    println!(
        "last hash {} (the next record follows it)",
        sealed.last_hash
    );
    match removed {
        Some(r) => println!(
            "removed {} records from the database; the log now starts at {}",
            r.records_removed, r.first_sequence
        ),
        None => println!("kept the records in the database (--keep)"),
    }
    Ok(())
}

fn verify_archive(path: &std::path::Path, args: &VerifyArgs) -> Result<Verdict, Failure> {
    let key = match &args.public_key {
        Some(hex_key) => Some(kmsd::audit::parse_public_key(hex_key).ok_or_else(|| {
            Failure(format!(
                "{hex_key:?} is not a hex Ed25519 public key (64 hex characters)"
            ))
        })?),
        None => None,
    };
    let file = std::fs::File::open(path)
        .map_err(|e| Failure(format!("cannot open {}: {e}", path.display())))?;
    Ok(
        match kmsd::audit::archive::verify(std::io::BufReader::new(file), key.as_ref()) {
            Ok(r) => Verdict {
                ok: true,
                records: r.records,
                checkpoints: 1,
                head_seq: r.header.last_sequence,
                head_hash: r.header.last_hash,
                first_bad: 0,
                problem: if r.key_given {
                    String::new()
                } else {
                    "none; the signature was checked with the archive's own public key: give --public-key to check \
                 it came from your log"
                    .into()
                },
                public_key: r.header.public_key,
            },
            Err(problem) => Verdict {
                ok: false,
                records: 0,
                checkpoints: 0,
                head_seq: 0,
                head_hash: String::new(),
                first_bad: 0,
                problem,
                public_key: String::new(),
            },
        },
    )
}

/// Verifies a database file or an archive: no daemon is involved.
pub fn verify_offline(out: &Output, args: VerifyArgs) -> Result<(), Failure> {
    if let Some(path) = &args.archive {
        let verdict = verify_archive(path, &args)?;
        report(out, &verdict);
        return if verdict.ok {
            Ok(())
        } else {
            Err(Failure(format!(
                "the archive is NOT intact: {}",
                verdict.problem
            )))
        };
    }
    let Some(db) = &args.db else {
        return Err(Failure("give --db or --archive to verify offline".into()));
    };
    let verdict = offline(db, &args)?;
    conclude(out, &verdict)
}

async fn verify(kms: &Client, out: &Output, args: VerifyArgs) -> Result<(), Failure> {
    if args.public_key.is_some() && args.db.is_none() && args.archive.is_none() {
        return Err(Failure("--public-key goes with --db or --archive".into()));
    }
    if args.db.is_some() || args.archive.is_some() {
        return verify_offline(out, args);
    }
    let r = kms
        .verify_log(VerifyLogRequest {
            trusted_sequence: args.trusted_seq.unwrap_or(0),
            trusted_hash: args.trusted_hash.clone().unwrap_or_default(),
        })
        .await?;
    let verdict = Verdict {
        ok: r.ok,
        records: r.records_checked,
        checkpoints: r.checkpoints_checked,
        head_seq: r.head_sequence,
        head_hash: r.head_hash,
        first_bad: r.first_bad_sequence,
        problem: r.problem,
        public_key: r.public_key,
    };
    conclude(out, &verdict)
}

/// Reports a log's verdict; a failure if it is not intact.
fn conclude(out: &Output, verdict: &Verdict) -> Result<(), Failure> {
    report(out, verdict);
    if verdict.ok {
        Ok(())
    } else {
        Err(Failure(format!(
            "the audit log is NOT intact: first problem at sequence {}",
            verdict.first_bad
        )))
    }
}

fn report(out: &Output, v: &Verdict) {
    if out.json {
        let doc = json!({
            "ok": v.ok,
            "records_checked": v.records,
            "checkpoints_checked": v.checkpoints,
            "head_sequence": v.head_seq,
            "head_hash": v.head_hash,
            "first_bad_sequence": if v.ok { Value::Null } else { json!(v.first_bad) },
            "problem": empty_as_null(&v.problem),
            "public_key": v.public_key,
        });
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        return;
    }
    println!(
        "{:<20} {}",
        "Verdict:",
        if v.ok {
            "OK: the chain and every checkpoint verify"
        } else {
            "TAMPERED"
        }
    );
    println!("{:<20} {}", "Records checked:", v.records);
    println!("{:<20} {}", "Checkpoints checked:", v.checkpoints);
    println!("{:<20} {} {}", "Head:", v.head_seq, v.head_hash);
    println!("{:<20} {}", "Public key:", v.public_key);
    if !v.ok {
        println!("{:<20} {}", "First bad sequence:", v.first_bad);
        println!("{:<20} {}", "Problem:", v.problem);
    }
}

fn offline(db: &std::path::Path, args: &VerifyArgs) -> Result<Verdict, Failure> {
    use kmsd::audit::verify::{Trusted, verify};
    use kmsd::audit::{parse_public_key, public_key_of};
    use kmsd::storage::AuditReader;

    let reader =
        AuditReader::open(db).map_err(|e| Failure(format!("cannot open {}: {e}", db.display())))?;
    let key = match &args.public_key {
        Some(hex_key) => parse_public_key(hex_key).ok_or_else(|| {
            Failure(format!(
                "{hex_key:?} is not a hex Ed25519 public key (64 hex characters)"
            ))
        })?,
        None => {
            let path = args
                .root_key_file
                .clone()
                .unwrap_or_else(|| db.with_file_name("root.key"));
            let root = kmsd::server::read_root_key(&path).map_err(|e| Failure(e.to_string()))?;
            match public_key_of(&reader, &root) {
                Ok(key) => key,
                // A database that is not this root key's is itself the finding: report it as tampering.
                Err(reason) => {
                    return Ok(Verdict {
                        ok: false,
                        records: 0,
                        checkpoints: 0,
                        head_seq: 0,
                        head_hash: String::new(),
                        first_bad: 1,
                        problem: reason,
                        public_key: String::new(),
                    });
                }
            }
        }
    };
    let trusted = match (args.trusted_seq, &args.trusted_hash) {
        (Some(seq), Some(hash)) => Some(Trusted {
            seq,
            hash: hash.clone(),
        }),
        _ => None,
    };
    let r = verify(&reader, &key, trusted.as_ref())
        .map_err(|e| Failure(format!("cannot read {}: {e}", db.display())))?;
    Ok(Verdict {
        ok: r.ok(),
        records: r.records_checked,
        checkpoints: r.checkpoints_checked,
        head_seq: r.head_seq,
        head_hash: r.head_hash,
        first_bad: r.problem.as_ref().map(|p| p.seq).unwrap_or(0),
        problem: r.problem.map(|p| p.message).unwrap_or_default(),
        public_key: hex::encode(key.as_bytes()),
    })
}
