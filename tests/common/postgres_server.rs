//! A throw-away PostgreSQL of the test's own: `initdb` into a temporary
//! directory (as the `postgres` user when the tests run as root, which
//! `initdb` refuses), a free port on 127.0.0.1, trust authentication,
//! stopped and removed at the end. Only the server this helper started is
//! ever stopped, through its own data directory.
#![allow(dead_code, unreachable_pub)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct Postgres {
    dir: PathBuf,
    bin: PathBuf,
    pub port: u16,
    as_postgres: bool,
    running: bool,
}

impl Postgres {
    /// A new cluster, started.
    pub fn start() -> Self {
        let bin = binaries();
        let as_postgres = running_as_root();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("tsj-pg-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut server = Self {
            dir,
            bin,
            port,
            as_postgres,
            running: false,
        };
        if as_postgres {
            run(Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&server.dir));
        }
        let data = server.data();
        let out = server.tool("initdb", |c| {
            c.arg("-D")
                .arg(&data)
                .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C"])
                .arg("--no-sync");
        });
        assert!(out.status.success(), "initdb: {}", text(&out));
        server.start_again();
        server
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// `postgres://postgres@127.0.0.1:{port}/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server again on the same directory and port.
    pub fn start_again(&mut self) {
        let (data, dir, port) = (self.data(), self.dir.clone(), self.port);
        let out = self.tool("pg_ctl", |c| {
            c.arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(dir.join("log"))
                .args(["-w", "-t", "60", "-o"])
                .arg(format!(
                    "-p {port} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200",
                    dir.display()
                ))
                .arg("start");
        });
        assert!(
            out.status.success(),
            "pg_ctl start: {}\n{}",
            text(&out),
            std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
        );
        self.running = true;
    }

    /// `pg_ctl stop -m immediate`: the server stops without a checkpoint,
    /// as in a crash; what was committed is recovered at the next start.
    pub fn stop_immediate(&mut self) {
        let data = self.data();
        let out = self.tool("pg_ctl", |c| {
            c.arg("-D")
                .arg(&data)
                .args(["-w", "-m", "immediate", "stop"]);
        });
        assert!(out.status.success(), "pg_ctl stop: {}", text(&out));
        self.running = false;
    }

    /// `psql` connected as the superuser, unaligned, stopping at the first
    /// error: add `-c <sql>`.
    pub fn psql_command(&self) -> Command {
        let mut command = Command::new(self.bin.join("psql"));
        command
            .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres"])
            .args(["-p", &self.port.to_string()])
            .args(["-AtX", "-v", "ON_ERROR_STOP=1"]);
        command
    }

    /// Runs `sql` with `psql` as the superuser; its output, unaligned.
    pub fn psql(&self, sql: &str) -> String {
        let out = self.psql_command().arg("-c").arg(sql).output().unwrap();
        assert!(out.status.success(), "psql {sql}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn tool(&self, name: &str, args: impl FnOnce(&mut Command)) -> Output {
        let path = self.bin.join(name);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        args(&mut command);
        command.current_dir(&self.dir).output().unwrap()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if self.running {
            let data = self.data();
            let _ = self.tool("pg_ctl", |c| {
                c.arg("-D")
                    .arg(&data)
                    .args(["-w", "-m", "immediate", "stop"]);
            });
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The newest `/usr/lib/postgresql/<version>/bin` (Debian's layout), else
/// the directory of `pg_ctl` on the `PATH`.
fn binaries() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return bin;
    }
    let out = Command::new("sh")
        .args(["-c", "command -v pg_ctl"])
        .output()
        .unwrap();
    let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        !path.is_empty(),
        "PostgreSQL is not installed (apt-get install postgresql)"
    );
    Path::new(&path).parent().unwrap().to_owned()
}

fn running_as_root() -> bool {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

fn run(command: &mut Command) {
    let out = command.output().unwrap();
    assert!(out.status.success(), "{command:?}: {}", text(&out));
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
