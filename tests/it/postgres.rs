//! A real PostgreSQL server for the tests that need one (issue 14's backend): one instance per test binary,
//! started on first use from the server package's own binaries, listening only on a Unix socket in a temporary
//! directory, and a fresh database for each test.
//!
//! The binaries are found in `TEST_POSTGRES_BIN`, else in Debian's `/usr/lib/postgresql/<version>/bin`. Where
//! there are none, [`database`] says so on stderr and returns `None`, and the test returns early, unless
//! `TEST_POSTGRES_REQUIRED` is set (as `.ci/run` sets it), which makes a missing server a failure: CI never skips
//! these tests. `initdb` refuses to run as root, so as root the cluster is made and run as the `postgres` user.
//! The server stops when the test binary exits (a watcher process follows the binary's pid).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The variable that makes a missing PostgreSQL a failure instead of a skip. (Not `KMSD_*`: the daemons the tests
/// start refuse variables they do not read.)
const REQUIRE: &str = "TEST_POSTGRES_REQUIRED";

/// A running server: its Unix socket directory (its superuser is `kmsd`).
pub struct Server {
    socket_dir: PathBuf,
    bin: PathBuf,
    data: PathBuf,
    options: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
    /// Outlives this process by design: it stops the server once the process is gone.
    _watcher: std::process::Child,
}

/// A database made for one test.
pub struct Database {
    pub name: String,
    socket_dir: PathBuf,
}

impl Database {
    /// A `tokio-postgres` configuration string for this database.
    pub fn config(&self) -> String {
        format!(
            "host={} user=kmsd dbname={}",
            self.socket_dir.display(),
            self.name
        )
    }

    /// The same database as another role (every role is trusted on the test server's socket).
    pub fn config_as(&self, user: &str) -> String {
        format!(
            "host={} user={user} dbname={}",
            self.socket_dir.display(),
            self.name
        )
    }

    /// The database as kmsd's `database_url` names it.
    pub fn url(&self) -> kmsd::storage::DatabaseUrl {
        kmsd::storage::DatabaseUrl::parse(&self.config()).expect("the test database's URL parses")
    }

    /// A connection, its driver spawned on the current runtime.
    pub async fn connect(&self) -> tokio_postgres::Client {
        connect(&self.config()).await
    }
}

/// A connection to `config` (a connection string), its driver spawned on the current runtime.
pub async fn connect(config: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(config, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to the test PostgreSQL ({config}): {e}"));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// The server package's binaries, if this machine has them.
fn binaries() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("TEST_POSTGRES_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("initdb").is_file() && bin.join("pg_ctl").is_file())
        .collect();
    found.sort();
    found.pop()
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Runs a server binary, as the `postgres` user when this process is root.
fn run(bin: &Path, program: &str, args: &[&str]) {
    let program = bin.join(program);
    let mut command = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&program);
        c
    } else {
        Command::new(&program)
    };
    let out = command
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    assert!(
        out.status.success(),
        "{} {args:?} failed: {}{}",
        program.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn start() -> Option<Server> {
    let Some(bin) = binaries() else {
        assert!(
            std::env::var_os(REQUIRE).is_none(),
            "{REQUIRE} is set but no PostgreSQL server binaries were found (install Debian's postgresql package, \
             or set TEST_POSTGRES_BIN)"
        );
        eprintln!(
            "SKIPPED: no PostgreSQL server binaries (initdb, pg_ctl) under /usr/lib/postgresql or TEST_POSTGRES_BIN; the \
             PostgreSQL tests did not run"
        );
        return None;
    };
    let server = Server::prepare(bin);
    run(
        &server.bin,
        "initdb",
        &[
            "-D",
            server.data.to_str().expect("utf-8 temp path"),
            "-U",
            "kmsd",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
        ],
    );
    server.start();
    Some(server)
}

impl Server {
    /// Directories for a server (owned by `postgres` when this process is root), and the watcher that stops it and
    /// removes them when the test binary exits.
    fn prepare(bin: PathBuf) -> Server {
        let dir = tempfile::Builder::new()
            .prefix("kmsd-pg-")
            .tempdir()
            .expect("temp dir");
        let data = dir.path().join("data");
        let socket_dir = dir.path().join("socket");
        std::fs::create_dir(&socket_dir).expect("socket dir");
        if is_root() {
            // The cluster belongs to `postgres`, which must be able to write both directories.
            let postgres = Command::new("id")
                .args(["-u", "postgres"])
                .output()
                .expect("id -u postgres");
            let uid: u32 = String::from_utf8_lossy(&postgres.stdout)
                .trim()
                .parse()
                .expect("the postgres user exists");
            for path in [dir.path(), socket_dir.as_path()] {
                std::os::unix::fs::chown(path, Some(uid), None).expect("chown to postgres");
            }
        }
        let options = format!(
            "-c listen_addresses='' -k {} -c fsync=off -c max_connections=200",
            socket_dir.display()
        );
        let log = dir.path().join("postgres.log");
        // Stops the server when this test binary exits, however it exits, and removes its files. The watcher runs
        // as this process's user, so that it may signal this process; only `pg_ctl` runs as `postgres`.
        let as_postgres = if is_root() {
            "runuser -u postgres -- "
        } else {
            ""
        };
        let stop = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
             {as_postgres}{pg_ctl} -D {data} -m immediate stop >/dev/null 2>&1; rm -rf {dir}",
            pid = std::process::id(),
            pg_ctl = bin.join("pg_ctl").display(),
            data = data.display(),
            dir = dir.path().display(),
        );
        let watcher = Command::new("sh")
            .args(["-c", &stop])
            .spawn()
            .expect("start the server's watcher");
        Server {
            socket_dir,
            bin,
            data,
            options,
            log,
            _dir: dir,
            _watcher: watcher,
        }
    }

    /// A streaming standby of this server (`pg_basebackup -R -X stream`), started: it replays the primary's WAL
    /// and takes no writes until promoted.
    pub fn standby(&self) -> Server {
        let standby = Server::prepare(self.bin.clone());
        run(
            &self.bin,
            "pg_basebackup",
            &[
                "-h",
                self.socket_dir.to_str().expect("utf-8 temp path"),
                "-U",
                "kmsd",
                "-D",
                standby.data.to_str().expect("utf-8 temp path"),
                "-R",
                "-X",
                "stream",
                "--no-sync",
                // Not a spread checkpoint: that would wait minutes.
                "--checkpoint=fast",
            ],
        );
        // The base backup's settings name the primary's connection; the standby listens on its own socket.
        standby.start();
        standby
    }

    /// Makes a standby the primary.
    pub fn promote(&self) {
        run(
            &self.bin,
            "pg_ctl",
            &[
                "-D",
                self.data.to_str().expect("utf-8 temp path"),
                "-w",
                "promote",
            ],
        );
    }

    /// Restarts the server listening on 127.0.0.1 as well, with TLS from `cert` and `key` (PEM); returns the port.
    pub fn serve_tls(&mut self, cert: &str, key: &str) -> u16 {
        let dir = self
            .data
            .parent()
            .expect("the data directory's parent")
            .to_owned();
        let (cert_path, key_path) = (dir.join("server.crt"), dir.join("server.key"));
        std::fs::write(&cert_path, cert).unwrap();
        std::fs::write(&key_path, key).unwrap();
        std::fs::set_permissions(
            &key_path,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        if is_root() {
            let uid = std::fs::metadata(&dir)
                .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
                .unwrap();
            for path in [&cert_path, &key_path] {
                std::os::unix::fs::chown(path, Some(uid), None).expect("chown to postgres");
            }
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        self.stop();
        self.options = format!(
            "-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=off -c max_connections=200 -c ssl=on \
             -c ssl_cert_file={} -c ssl_key_file={}",
            self.socket_dir.display(),
            cert_path.display(),
            key_path.display()
        );
        self.start();
        port
    }

    /// The socket directory: the host part of a connection string.
    pub fn host(&self) -> &Path {
        &self.socket_dir
    }

    /// Runs `sql` in the `postgres` database as the superuser.
    pub async fn execute(&self, sql: &str) {
        connect(&format!(
            "host={} user=kmsd dbname=postgres",
            self.socket_dir.display()
        ))
        .await
        .batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Starts the (stopped) server and waits until it accepts connections.
    pub fn start(&self) {
        run(
            &self.bin,
            "pg_ctl",
            &[
                "-D",
                self.data.to_str().expect("utf-8 temp path"),
                "-o",
                &self.options,
                "-l",
                self.log.to_str().expect("utf-8 temp path"),
                "-w",
                "start",
            ],
        );
    }

    /// Stops the server at once, as a crash or a lost network would: connections break mid-conversation.
    pub fn stop(&self) {
        run(
            &self.bin,
            "pg_ctl",
            &[
                "-D",
                self.data.to_str().expect("utf-8 temp path"),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }

    /// A fresh, empty database on this server.
    pub async fn database(&self) -> Database {
        let name = format!(
            "t{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let admin = connect(&format!(
            "host={} user=kmsd dbname=postgres",
            self.socket_dir.display()
        ))
        .await;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create the test database");
        Database {
            name,
            socket_dir: self.socket_dir.clone(),
        }
    }
}

/// A server of the test's own, for tests that stop it; `None` (after saying so) where PostgreSQL is missing.
pub fn private_server() -> Option<Server> {
    start()
}

static SERVER: OnceLock<Option<Server>> = OnceLock::new();
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A fresh, empty database on the test binary's server, or `None` (after saying so) where PostgreSQL is missing.
pub async fn database() -> Option<Database> {
    let server = SERVER.get_or_init(start).as_ref()?;
    Some(server.database().await)
}

#[tokio::test(flavor = "multi_thread")]
async fn each_test_gets_a_fresh_database_on_a_real_server() {
    let (Some(a), Some(b)) = (database().await, database().await) else {
        return;
    };
    assert_ne!(a.name, b.name);
    let a = a.connect().await;
    let b = b.connect().await;
    a.batch_execute("CREATE TABLE t (n int); INSERT INTO t VALUES (1), (2)")
        .await
        .unwrap();
    let row = a.query_one("SELECT count(*) FROM t", &[]).await.unwrap();
    assert_eq!(row.get::<_, i64>(0), 2);
    // The other test's database does not have the table.
    let missing = b
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap_err();
    assert_eq!(
        missing.as_db_error().map(|e| e.code().code()),
        Some("42P01"),
        "{missing}"
    );
    let version = a.query_one("SHOW server_version_num", &[]).await.unwrap();
    let version: String = version.get(0);
    assert!(version.parse::<u32>().unwrap() >= 150000, "{version}");
}
