//! End-to-end: the example binaries run as a user runs them (`PORT`, the
//! `listening on` line, environment variables), as child processes this
//! test starts and stops by their handle.

#[path = "common/process.rs"]
mod process;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::{Duration, Instant};

use process::{authorized, examples_dir, free_port, login_over, read_all, stop, wait_for_exit};

const SECRET: &[u8] = b"end-to-end test secret, at least 32 bytes";

/// Starts a demo binary with the test's secret.
fn start_demo(name: &str, env: &[(&str, &std::ffi::OsStr)]) -> (std::process::Child, u16) {
    process::start_demo(name, SECRET, env)
}

/// The example binaries, run as a user would: `PORT`, the `listening on` line,
/// `/health`, and a clear refusal of a short secret.
#[test]
fn example_binaries_start_and_answer() {
    let examples = examples_dir();
    for name in ["axum", "hyper", "tonic"] {
        let binary = examples.join(name);
        assert!(
            binary.exists(),
            "{} is missing: `cargo test` builds the examples",
            binary.display()
        );

        let short = process::command(&binary)
            .env("JWT_SECRET", "too short")
            .env("PORT", "0")
            .output()
            .unwrap();
        assert!(!short.status.success(), "{name} must refuse a short secret");
        assert!(
            String::from_utf8_lossy(&short.stderr).contains("at least 32 bytes"),
            "{name}"
        );

        if name != "tonic" {
            // Cluster mode with no Redis or PostgreSQL there, or both named:
            // a clear refusal, never a password from the URL.
            let redis = ("REDIS_URL", "redis://:hunter2@127.0.0.1:1/");
            let database = ("DATABASE_URL", "postgres://app:hunter2@127.0.0.1:1/app");
            for (env, says) in [
                (vec![redis], "REDIS_URL"),
                (vec![database], "DATABASE_URL"),
                (vec![redis, database], "both set"),
            ] {
                let mut child = process::command(&binary)
                    .envs(env)
                    .env("PORT", "0")
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap();
                let status = wait_for_exit(&mut child, Duration::from_secs(10)).unwrap_or_else(|| {
                    panic!(
                        "{name} with an unreachable {says} did not exit (a stale binary? `cargo test` builds the examples)"
                    )
                });
                let stderr = read_all(child.stderr.take());
                assert!(!status.success(), "{name}: {stderr}");
                assert!(stderr.contains(says), "{name}: {stderr}");
                assert!(!stderr.contains("hunter2"), "{name}: {stderr}");
            }
        }

        let port = free_port();
        let mut child = process::command(&binary)
            .env("PORT", port.to_string())
            .env_remove("JWT_SECRET")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(
            line.trim(),
            format!("listening on http://127.0.0.1:{port}"),
            "{name}"
        );
        let mut warning = String::new();
        BufReader::new(child.stderr.take().unwrap())
            .read_line(&mut warning)
            .unwrap();
        assert!(
            warning.contains("JWT_SECRET is not set"),
            "{name}: {warning}"
        );

        let deadline = Instant::now() + Duration::from_secs(10);
        let mut stream = loop {
            match TcpStream::connect(("127.0.0.1", port)) {
                Ok(stream) => break stream,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(error) => panic!("{name}: {error}"),
            }
        };
        if name != "tonic" {
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            stream
                .write_all(b"GET /health HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
                .unwrap();
            let mut response = String::new();
            stream.read_to_string(&mut response).unwrap();
            assert!(response.starts_with("HTTP/1.1 200"), "{name}: {response}");
            assert!(response.ends_with("ok"), "{name}: {response}");
        }
        stop(child);
    }
}

/// The HTTP example binaries with `JWT_PRIVATE_KEY`: the JWKS route answers,
/// and a key file that cannot be used is refused with a clear message.
#[test]
fn example_binaries_asymmetric_mode() {
    let examples = examples_dir();
    let keys = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/keys");
    for name in ["axum", "hyper"] {
        let binary = examples.join(name);
        for bad in ["rsa-private.pem", "no-such-file.pem"] {
            let refused = process::command(&binary)
                .env("JWT_PRIVATE_KEY", keys.join(bad))
                .env("PORT", "0")
                .output()
                .unwrap();
            assert!(!refused.status.success(), "{name} {bad}");
            assert!(
                String::from_utf8_lossy(&refused.stderr).contains("JWT_PRIVATE_KEY"),
                "{name} {bad}"
            );
        }
        let port = free_port();
        let mut child = process::command(&binary)
            .env("PORT", port.to_string())
            .env("JWT_PRIVATE_KEY", keys.join("ed25519-private.pem"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("listening on"), "{name}: {line}");
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
            .write_all(
                b"GET /.well-known/jwks.json HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n",
            )
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        stop(child);
        assert!(response.starts_with("HTTP/1.1 200"), "{name}: {response}");
        assert!(
            response
                .to_ascii_lowercase()
                .contains("cache-control: public, max-age=300"),
            "{name}: {response}"
        );
        assert!(response.contains(r#""kty":"OKP""#), "{name}: {response}");
        assert!(response.contains(r#""alg":"EdDSA""#), "{name}: {response}");
    }
}

/// The binaries read `REUSE_GRACE` and `MAX_SESSIONS`: a number turns the
/// mode on (the demo still keeps its contract), anything else stops it with
/// a clear error naming the variable.
#[test]
fn the_binaries_read_reuse_grace_and_max_sessions() {
    for name in ["axum", "hyper"] {
        let env = [
            ("REUSE_GRACE", "30".as_ref()),
            ("MAX_SESSIONS", "1".as_ref()),
            ("REVOCATION_PATH", "memory".as_ref()),
        ];
        let (child, port) = start_demo(name, &env);
        let alice = login_over(port, "alice", "wonderland");
        assert_eq!(authorized(port, "GET", "/me", &alice), 200, "{name}");
        // MAX_SESSIONS=1: a second login ends the first.
        let again = login_over(port, "alice", "wonderland");
        assert_eq!(authorized(port, "GET", "/me", &alice), 401, "{name}");
        assert_eq!(authorized(port, "GET", "/me", &again), 200, "{name}");
        stop(child);
        for (variable, value) in [("REUSE_GRACE", "soon"), ("MAX_SESSIONS", "none")] {
            let output = process::command(&examples_dir().join(name))
                .env("PORT", "0")
                .env("JWT_SECRET", std::str::from_utf8(SECRET).unwrap())
                .env("REVOCATION_PATH", "memory")
                .env(variable, value)
                .output()
                .unwrap();
            assert!(!output.status.success(), "{name}");
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(stderr.contains(variable), "{name}: {stderr}");
        }
    }
}

/// `REVOCATION_PATH`: a logout answered 204 survives `kill -9` and a restart
/// on the same file, and the restart logs nobody else out.
#[test]
fn a_logout_survives_kill_9_and_a_restart_with_revocation_path() {
    for name in ["axum", "hyper"] {
        let dir = std::env::temp_dir().join(format!("tsj-demo-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("revocations");
        let env = [("REVOCATION_PATH", path.as_os_str())];
        let (child, port) = start_demo(name, &env);
        let alice = login_over(port, "alice", "wonderland");
        let bob = login_over(port, "bob", "builder");
        assert_eq!(authorized(port, "GET", "/me", &alice), 200);
        assert_eq!(authorized(port, "POST", "/logout", &alice), 204, "{name}");
        assert_eq!(authorized(port, "GET", "/me", &alice), 401);
        // Killed right after the logout was answered.
        stop(child);
        let (child, port) = start_demo(name, &env);
        assert_eq!(
            authorized(port, "GET", "/me", &alice),
            401,
            "{name}: the logout was forgotten"
        );
        assert_eq!(
            authorized(port, "GET", "/me", &bob),
            200,
            "{name}: bob was logged out"
        );
        // The session registry survived too: bob's session is listed.
        let (status, listed) = process::raw_http(
            port,
            &format!(
                "GET /sessions HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\nauthorization: Bearer {bob}\r\n\r\n"
            ),
        );
        let bob_sid = {
            use base64::Engine as _;
            let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(bob.split('.').nth(1).unwrap())
                .unwrap();
            let claims: serde_json::Value = serde_json::from_slice(&claims).unwrap();
            claims["sid"].as_str().unwrap().to_owned()
        };
        assert_eq!(status, 200, "{name}: {listed}");
        assert!(
            listed.contains(&bob_sid),
            "{name}: the restart forgot bob's session: {listed}"
        );
        stop(child);
        // REVOCATION_PATH=memory: the demo forgets on restart.
        let memory = [("REVOCATION_PATH", std::ffi::OsStr::new("memory"))];
        let (child, port) = start_demo(name, &memory);
        assert_eq!(
            authorized(port, "GET", "/me", &alice),
            200,
            "in memory: forgotten"
        );
        stop(child);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Without `REVOCATION_PATH` the demos keep revocations in a SQLite file in
/// their working directory, named after the demo (so both run side by side):
/// a logout survives `kill -9` and a restart there. A damaged file, or one
/// another process holds, stops the demo with a clear message.
#[test]
fn by_default_a_logout_survives_kill_9_in_the_working_directory() {
    let dir = process::fresh_dir();
    for name in ["axum", "hyper"] {
        let (child, port) = process::start_demo_in(&dir, name, SECRET, &[]);
        let file = dir.join(format!("tower-sliding-jwt-{name}.sqlite3"));
        assert!(file.exists(), "{name}: no {}", file.display());
        // The other demo's file is locked by it while it runs: a second
        // instance of the same demo in the same directory stops.
        let locked = process::refused_in(&dir, name, SECRET);
        assert!(!locked.status.success(), "{name}: a second opener ran");
        let stderr = String::from_utf8_lossy(&locked.stderr);
        assert!(stderr.contains("another process"), "{name}: {stderr}");
        let alice = login_over(port, "alice", "wonderland");
        let bob = login_over(port, "bob", "builder");
        assert_eq!(authorized(port, "POST", "/logout", &alice), 204, "{name}");
        stop(child);
        let (child, port) = process::start_demo_in(&dir, name, SECRET, &[]);
        assert_eq!(
            authorized(port, "GET", "/me", &alice),
            401,
            "{name}: forgotten"
        );
        assert_eq!(
            authorized(port, "GET", "/me", &bob),
            200,
            "{name}: bob logged out"
        );
        stop(child);
    }
    // A damaged file: the demo refuses to start, naming it.
    let damaged = process::fresh_dir();
    std::fs::write(
        damaged.join("tower-sliding-jwt-axum.sqlite3"),
        vec![0x5Au8; 8192],
    )
    .unwrap();
    let output = process::refused_in(&damaged, "axum", SECRET);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("tower-sliding-jwt-axum.sqlite3"),
        "{stderr}"
    );
}

/// `cargo run --features jwks --example services`: an issuer, a verify-only
/// service on its JWKS and a client keeping one token fresh across both.
#[cfg(feature = "jwks")]
#[test]
fn the_several_services_example_runs() {
    let binary = examples_dir().join("services");
    let mut child = process::command(&binary)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_for_exit(&mut child, Duration::from_secs(60))
        .expect("the services example did not finish");
    let out = read_all(child.stdout.take());
    let err = read_all(child.stderr.take());
    assert!(status.success(), "{out}{err}");
    for line in [
        "orders service: 200",
        "renewal adopted by the client",
        "orders service with the renewed token: 200",
        "logout at the issuer: 204",
        "the issuer refused the token: session ended",
        "issuer /me after logout: 401; the client holds a token: false",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
}

/// `DPOP_NONCE=1`: the binaries demand their nonce (RFC 9449 §8) from an
/// outside client (`tests/outside/dpop_client.py`, PyJWT), at login and on
/// every request, and accept a retry carrying it. Skipped without Python
/// and PyJWT.
#[test]
fn the_binaries_demand_a_dpop_nonce_with_dpop_nonce_1() {
    let probe = std::process::Command::new("python3")
        .args(["-c", "import jwt, cryptography"])
        .output();
    if !probe.is_ok_and(|out| out.status.success()) {
        eprintln!("skipping: python3 with PyJWT and cryptography is not installed");
        return;
    }
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/outside/dpop_client.py");
    for name in ["axum", "hyper"] {
        let env = [
            ("DPOP_NONCE", "1".as_ref()),
            ("REVOCATION_PATH", "memory".as_ref()),
        ];
        let (child, port) = start_demo(name, &env);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let out = std::process::Command::new("python3")
            .arg(&script)
            .args([
                "nonce",
                &format!("http://127.0.0.1:{port}"),
                &now.to_string(),
                "-",
            ])
            .output()
            .unwrap();
        stop(child);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("nonce flow kept"),
            "{name}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
