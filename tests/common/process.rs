//! Demo binaries as child processes: where `cargo test` puts them, starting
//! one on a free port after its `listening on` line, one raw HTTP/1.1 request,
//! and waiting for a child to exit within a bound. Only processes a test
//! started are ever killed, by their handle.
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Where `cargo test` puts the example binaries it builds.
pub fn examples_dir() -> std::path::PathBuf {
    std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
}

/// A fresh, empty directory of this test process's own.
pub fn fresh_dir() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "tsj-demo-run-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A command for `binary`, run in a fresh directory of its own: the demos
/// keep their revocations in their working directory.
pub fn command(binary: &Path) -> Command {
    let mut command = Command::new(binary);
    command.current_dir(fresh_dir());
    command
}

/// Runs the demo binary `name` to its end in the working directory `dir`
/// (on any free port, with `secret`): for a demo that must refuse to start.
pub fn refused_in(dir: &Path, name: &str, secret: &[u8]) -> std::process::Output {
    command(&examples_dir().join(name))
        .current_dir(dir)
        .env("PORT", "0")
        .env("JWT_SECRET", std::str::from_utf8(secret).unwrap())
        .output()
        .unwrap()
}

/// A port nobody listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits for `child` to exit within `within`; past it the child is killed
/// and reaped, and `None` is answered.
pub fn wait_for_exit(child: &mut Child, within: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Everything a child wrote to the pipe `from` (its stdout or stderr).
pub fn read_all(from: Option<impl Read>) -> String {
    let mut text = String::new();
    if let Some(mut from) = from {
        from.read_to_string(&mut text).unwrap();
    }
    text
}

/// Starts the demo binary `name` on a free port with `secret` and `env`,
/// after its `listening on` line.
pub fn start_demo(name: &str, secret: &[u8], env: &[(&str, &std::ffi::OsStr)]) -> (Child, u16) {
    start_demo_in(&fresh_dir(), name, secret, env)
}

/// [`start_demo`] in the working directory `dir`.
pub fn start_demo_in(
    dir: &Path,
    name: &str,
    secret: &[u8],
    env: &[(&str, &std::ffi::OsStr)],
) -> (Child, u16) {
    let binary = examples_dir().join(name);
    let port = free_port();
    let mut command = Command::new(&binary);
    command
        .current_dir(dir)
        .env("PORT", port.to_string())
        .env("JWT_SECRET", std::str::from_utf8(secret).unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("listening on"), "{name}: {line}");
    (child, port)
}

/// Ends a child this test started, and reaps it.
pub fn stop(mut child: Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

/// One request to a demo binary on `port`; the status and the body.
pub fn raw_http(port: u16, request: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Logs `user` in on a demo binary; the token.
pub fn login_over(port: u16, user: &str, password: &str) -> String {
    let body = format!(r#"{{"username":"{user}","password":"{password}"}}"#);
    let (status, reply) = raw_http(
        port,
        &format!(
            "POST /login HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        ),
    );
    assert_eq!(status, 200, "{reply}");
    let start = reply.find('{').unwrap();
    let end = reply.rfind('}').unwrap();
    let json: serde_json::Value = serde_json::from_str(&reply[start..=end]).unwrap();
    json["token"].as_str().unwrap().to_owned()
}

/// The status of `method path` with `token` as a bearer token.
pub fn authorized(port: u16, method: &str, path: &str, token: &str) -> u16 {
    raw_http(
        port,
        &format!(
            "{method} {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\nauthorization: Bearer {token}\r\ncontent-length: 0\r\n\r\n"
        ),
    )
    .0
}
