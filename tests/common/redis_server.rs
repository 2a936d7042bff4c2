//! A `redis-server` of the test's own on loopback, on a free port, without
//! persistence: killed, it comes back empty.
#![allow(dead_code, unreachable_pub)]

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Server {
    node: Node,
    pub port: u16,
}

impl Server {
    pub fn start() -> Self {
        Self::on(free_port())
    }

    pub fn on(port: u16) -> Self {
        let node = Node::spawn(port, memory_only(port), std::env::temp_dir());
        Self { node, port }
    }

    pub fn url(&self) -> String {
        self.node.url()
    }

    pub fn stop(&mut self) {
        self.node.kill();
    }

    /// Commands the server has executed so far, `INFO` itself excluded
    /// (from `INFO commandstats`).
    pub async fn commands(&self) -> u64 {
        let client = redis::Client::open(self.url()).unwrap();
        let mut connection = client.get_multiplexed_async_connection().await.unwrap();
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut connection)
            .await
            .unwrap();
        count_commands(&info)
    }
}

/// Sums the `calls=` of every `cmdstat_*` line but `INFO`'s and `HELLO`'s
/// and `CLIENT`'s (what a new connection sends).
pub fn count_commands(info: &str) -> u64 {
    info.lines()
        .filter_map(|line| line.strip_prefix("cmdstat_"))
        .filter(|line| {
            !line.starts_with("info:")
                && !line.starts_with("hello:")
                && !line.starts_with("client|")
        })
        .filter_map(|line| {
            let calls = line.split_once("calls=")?.1;
            calls.split(',').next()?.parse::<u64>().ok()
        })
        .sum()
}

/// A free loopback port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "a redis process did not start on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A `redis-server` on `port` of loopback that keeps nothing on disk.
fn memory_only(port: u16) -> Vec<String> {
    [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// A temporary directory of this test process.
fn scratch(name: &str) -> std::path::PathBuf {
    let dir =
        std::env::temp_dir().join(format!("tsj-{name}-{}-{}", std::process::id(), free_port()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One `redis-server` process with its own arguments, restartable.
pub struct Node {
    child: Option<Child>,
    pub port: u16,
    args: Vec<String>,
    dir: std::path::PathBuf,
}

impl Node {
    fn spawn(port: u16, args: Vec<String>, dir: std::path::PathBuf) -> Self {
        let mut node = Self {
            child: None,
            port,
            args,
            dir,
        };
        node.start();
        node
    }

    /// Starts the process again, with the same arguments and directory.
    pub fn start(&mut self) {
        let child = Command::new("redis-server")
            .args(&self.args)
            .current_dir(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is needed for these tests (apt-get install redis-server)");
        self.child = Some(child);
        wait_for_port(self.port);
    }

    /// Kills the process (`kill -9` of our own child), losing its memory.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            let status = Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status()
                .unwrap();
            assert!(status.success());
        }
    }

    /// Stops the process (`SIGSTOP` to our own child): it answers nothing
    /// and replicates nothing until [`resume`](Self::resume).
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    pub fn resume(&self) {
        self.signal("-CONT");
    }
}

/// Whether `key` exists on the server at `url`.
pub async fn exists_at(url: &str, key: &str) -> bool {
    matches!(
        query_at(url, redis::cmd("EXISTS").arg(key)).await,
        Ok(redis::Value::Int(1))
    )
}

impl Drop for Node {
    fn drop(&mut self) {
        self.resume();
        self.kill();
    }
}

/// Commands executed by the server at `url` (as [`Server::commands`]).
pub async fn commands_at(url: &str) -> u64 {
    let client = redis::Client::open(url).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut connection)
        .await
        .unwrap();
    count_commands(&info)
}

/// Calls of the commands a store sends (reads, writes, scans, scripts,
/// transactions) executed by the server at `url`: not `PING`, `INFO`,
/// `PUBLISH` or replication, which Sentinels and replicas send on their own.
pub async fn store_commands_at(url: &str) -> u64 {
    const STORE: &[&str] = &[
        "get", "set", "getrange", "strlen", "scan", "mget", "eval", "evalsha", "exists", "wait",
        "del", "multi", "exec",
    ];
    let info: String = match query_at(url, redis::cmd("INFO").arg("commandstats")).await {
        Ok(value) => redis::from_redis_value(value).unwrap(),
        Err(error) => panic!("INFO commandstats: {error}"),
    };
    info.lines()
        .filter_map(|line| line.strip_prefix("cmdstat_"))
        .filter_map(|line| {
            let (name, rest) = line.split_once(':')?;
            if !STORE.contains(&name) {
                return None;
            }
            rest.split_once("calls=")?
                .1
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

/// `127.0.0.1:p1,127.0.0.1:p2,...` for `nodes`.
fn hosts(nodes: &[Node]) -> String {
    let hosts: Vec<String> = nodes
        .iter()
        .map(|node| format!("127.0.0.1:{}", node.port))
        .collect();
    hosts.join(",")
}

/// Whether an `INFO`-like answer contains `text`.
fn info_contains(reply: redis::RedisResult<redis::Value>, text: &str) -> bool {
    match reply {
        Ok(redis::Value::BulkString(info)) => String::from_utf8_lossy(&info).contains(text),
        Ok(redis::Value::VerbatimString { text: info, .. }) => info.contains(text),
        _ => false,
    }
}

pub async fn query_at(url: &str, command: &redis::Cmd) -> redis::RedisResult<redis::Value> {
    let client = redis::Client::open(url)?;
    let mut connection = client.get_multiplexed_async_connection().await?;
    command.query_async(&mut connection).await
}

/// A Redis Cluster of `masters` masters and no replicas on loopback, without
/// persistence: a master killed and restarted keeps its `nodes.conf` (its
/// place in the cluster) and comes back empty.
pub struct RedisCluster {
    pub nodes: Vec<Node>,
    dir: std::path::PathBuf,
}

impl RedisCluster {
    pub async fn start(masters: usize) -> Self {
        let dir = scratch("cluster");
        let nodes: Vec<Node> = (0..masters)
            .map(|i| {
                let port = free_port();
                let node_dir = dir.join(i.to_string());
                std::fs::create_dir_all(&node_dir).unwrap();
                let mut args = memory_only(port);
                args.extend(
                    [
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        "1000",
                    ]
                    .map(str::to_owned),
                );
                Node::spawn(port, args, node_dir)
            })
            .collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port))
            .collect();
        let status = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli is needed for these tests");
        assert!(status.success(), "redis-cli --cluster create failed");
        let cluster = Self { nodes, dir };
        cluster.wait_until_ok().await;
        cluster
    }

    /// Waits until every node says `cluster_state:ok`.
    pub async fn wait_until_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut ok = true;
            for node in &self.nodes {
                let info = query_at(&node.url(), redis::cmd("CLUSTER").arg("INFO")).await;
                ok &= info_contains(info, "cluster_state:ok");
            }
            if ok {
                return;
            }
            assert!(Instant::now() < deadline, "the cluster did not become ok");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("redis-cluster://{}", hosts(&self.nodes))
    }

    /// Commands executed by every node.
    pub async fn commands(&self) -> u64 {
        let mut total = 0;
        for node in &self.nodes {
            total += commands_at(&node.url()).await;
        }
        total
    }

    /// Whether `key` exists, asked of the node that holds it.
    pub async fn exists(&self, key: &str) -> bool {
        let client = redis::cluster::ClusterClient::new(vec![self.nodes[0].url()]).unwrap();
        let mut connection = client.get_async_connection().await.unwrap();
        let found: i64 = redis::cmd("EXISTS")
            .arg(key)
            .query_async(&mut connection)
            .await
            .unwrap();
        found == 1
    }

    /// The index of the node that holds `key`'s slot.
    pub async fn node_of(&self, key: &str) -> usize {
        let reply = query_at(
            &self.nodes[0].url(),
            redis::cmd("CLUSTER").arg("KEYSLOT").arg(key),
        )
        .await
        .unwrap();
        let redis::Value::Int(slot) = reply else {
            panic!("CLUSTER KEYSLOT answered {reply:?}")
        };
        let reply = query_at(&self.nodes[0].url(), redis::cmd("CLUSTER").arg("SLOTS"))
            .await
            .unwrap();
        let ranges: Vec<(i64, i64, (String, i64))> =
            redis::from_redis_value(redis::Value::Array(match reply {
                redis::Value::Array(ranges) => ranges
                    .into_iter()
                    .map(|range| match range {
                        redis::Value::Array(mut parts) => {
                            parts.truncate(3);
                            let node = match parts.pop().unwrap() {
                                redis::Value::Array(mut node) => {
                                    node.truncate(2);
                                    redis::Value::Array(node)
                                }
                                other => other,
                            };
                            parts.push(node);
                            redis::Value::Array(parts)
                        }
                        other => other,
                    })
                    .collect(),
                other => panic!("CLUSTER SLOTS answered {other:?}"),
            }))
            .unwrap();
        let (_, _, (_, port)) = ranges
            .into_iter()
            .find(|(start, end, _)| (*start..=*end).contains(&slot))
            .unwrap();
        self.nodes
            .iter()
            .position(|node| i64::from(node.port) == port)
            .unwrap()
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A master, one replica and three Sentinels (`down-after-milliseconds`
/// 1000) on loopback, without persistence.
pub struct Sentinels {
    pub master: Node,
    pub replica: Node,
    pub sentinels: Vec<Node>,
    dir: std::path::PathBuf,
}

pub const SERVICE: &str = "tsjmaster";

impl Sentinels {
    pub async fn start() -> Self {
        let dir = scratch("sentinel");
        let base = |port: u16| {
            let mut args = memory_only(port);
            args.extend(["--repl-timeout", "1"].map(str::to_owned));
            args
        };
        let master_port = free_port();
        let master = Node::spawn(master_port, base(master_port), dir.clone());
        let replica_port = free_port();
        let mut args = base(replica_port);
        args.extend([
            "--replicaof".to_owned(),
            "127.0.0.1".to_owned(),
            master_port.to_string(),
        ]);
        let replica = Node::spawn(replica_port, args, dir.clone());
        let sentinels = (0..3)
            .map(|i| {
                let port = free_port();
                let conf = dir.join(format!("sentinel-{i}.conf"));
                std::fs::write(
                    &conf,
                    format!(
                        "port {port}\nbind 127.0.0.1\n\
                         sentinel monitor {SERVICE} 127.0.0.1 {master_port} 2\n\
                         sentinel down-after-milliseconds {SERVICE} 1000\n\
                         sentinel failover-timeout {SERVICE} 4000\n\
                         sentinel parallel-syncs {SERVICE} 1\n"
                    ),
                )
                .unwrap();
                let args = vec![conf.display().to_string(), "--sentinel".to_owned()];
                Node::spawn(port, args, dir.clone())
            })
            .collect();
        let setup = Self {
            master,
            replica,
            sentinels,
            dir,
        };
        setup.wait_until_replicated().await;
        setup
    }

    /// Waits until the replica is in sync with the master.
    pub async fn wait_until_replicated(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let info = query_at(&self.replica.url(), redis::cmd("INFO").arg("replication")).await;
            if info_contains(info, "master_link_status:up") {
                return;
            }
            assert!(Instant::now() < deadline, "the replica did not sync");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("redis-sentinel://{}/{SERVICE}", hosts(&self.sentinels))
    }

    /// The port of the master the Sentinels name now.
    pub async fn master_port(&self) -> Option<u16> {
        let reply = query_at(
            &self.sentinels[0].url(),
            redis::cmd("SENTINEL")
                .arg("get-master-addr-by-name")
                .arg(SERVICE),
        )
        .await
        .ok()?;
        let (_, port): (String, String) = redis::from_redis_value(reply).ok()?;
        port.parse().ok()
    }
}

impl Drop for Sentinels {
    fn drop(&mut self) {
        for node in self.sentinels.iter_mut() {
            node.kill();
        }
        self.master.kill();
        self.replica.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
