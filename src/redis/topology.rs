//! The three deployments a [`RedisStore`](super::RedisStore) talks to — one
//! node, a Redis Cluster, or the master named by Sentinels — behind one
//! command connection and one way to find a node to subscribe on.

use std::fmt;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::sentinel::{Sentinel, SentinelNodeConnectionInfo};
use redis::{Cmd, ConnectionAddr, IntoConnectionInfo, Pipeline, RedisFuture, Value};

use super::{bounded, invalid, unavailable};
use crate::revoke::StoreError;

/// Where the store's Redis is, parsed from its URL.
pub(super) enum Topology {
    /// `redis://`, `rediss://`, `unix://`: one node.
    Single(redis::Client),
    /// `redis-cluster://h1:p1,h2:p2`: any reachable nodes of a cluster.
    Cluster {
        client: ClusterClient,
        /// One client per node of the URL, to subscribe on.
        nodes: Vec<redis::Client>,
        /// `rediss` or `redis`, and the credentials, for discovered nodes.
        scheme: &'static str,
        userinfo: String,
    },
    /// `redis-sentinel://h1:p1,h2:p2/<service>`: the master those Sentinels name.
    Sentinel {
        sentinel: tokio::sync::Mutex<Sentinel>,
        service: String,
        node: SentinelNodeConnectionInfo,
    },
}

impl fmt::Debug for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the URL: it may carry a password.
        f.write_str(self.name())
    }
}

/// `userinfo@host:port,host:port/rest` split into the credentials (with
/// their `@`, or empty), the hosts and what follows the first `/`.
fn split_hosts(rest: &str) -> (&str, Vec<&str>, &str) {
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hosts) = match authority.rfind('@') {
        Some(at) => authority.split_at(at + 1),
        None => ("", authority),
    };
    let hosts = hosts.split(',').filter(|host| !host.is_empty()).collect();
    (userinfo, hosts, path)
}

impl Topology {
    pub(super) fn parse(url: &str, timeout: Duration) -> Result<Self, StoreError> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| invalid("the Redis URL has no scheme"))?;
        match scheme {
            "redis-cluster" | "rediss-cluster" => {
                let node_scheme = if scheme == "rediss-cluster" {
                    "rediss"
                } else {
                    "redis"
                };
                let (userinfo, hosts, path) = split_hosts(rest);
                if hosts.is_empty() || !path.is_empty() {
                    return Err(invalid(
                        "a Redis Cluster URL is redis-cluster://[user:password@]host:port,host:port",
                    ));
                }
                let urls: Vec<String> = hosts
                    .iter()
                    .map(|host| format!("{node_scheme}://{userinfo}{host}/"))
                    .collect();
                let nodes = urls
                    .iter()
                    .map(|url| redis::Client::open(url.as_str()))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(unavailable)?;
                let client = ClusterClientBuilder::new(urls)
                    .connection_timeout(timeout)
                    .response_timeout(timeout)
                    .retries(2)
                    .build()
                    .map_err(unavailable)?;
                Ok(Self::Cluster {
                    client,
                    nodes,
                    scheme: node_scheme,
                    userinfo: userinfo.to_owned(),
                })
            }
            "redis-sentinel" | "rediss-sentinel" => {
                let tls = scheme == "rediss-sentinel";
                let (userinfo, hosts, path) = split_hosts(rest);
                let service = path.trim_end_matches('/');
                if hosts.is_empty() || service.is_empty() || service.contains('/') {
                    return Err(invalid(
                        "a Sentinel URL is redis-sentinel://[user:password@]host:port,host:port/<service-name>",
                    ));
                }
                let sentinels: Vec<String> = hosts
                    .iter()
                    .map(|host| format!("{}://{host}/", if tls { "rediss" } else { "redis" }))
                    .collect();
                let sentinel = Sentinel::build(sentinels).map_err(unavailable)?;
                // The credentials are the master's (and its replicas').
                let master = format!("redis://{userinfo}localhost/")
                    .into_connection_info()
                    .map_err(unavailable)?;
                let mut node = SentinelNodeConnectionInfo::default()
                    .set_redis_connection_info(master.redis_settings().clone());
                if tls {
                    node = node.set_tls_mode(redis::TlsMode::Secure);
                }
                Ok(Self::Sentinel {
                    sentinel: tokio::sync::Mutex::new(sentinel),
                    service: service.to_owned(),
                    node,
                })
            }
            _ => Ok(Self::Single(redis::Client::open(url).map_err(unavailable)?)),
        }
    }

    pub(super) fn name(&self) -> &'static str {
        match self {
            Self::Single(_) => "single node",
            Self::Cluster { .. } => "Redis Cluster",
            Self::Sentinel { .. } => "Sentinel",
        }
    }

    pub(super) fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster { .. })
    }

    pub(super) fn is_sentinel(&self) -> bool {
        matches!(self, Self::Sentinel { .. })
    }

    /// The command connection: a connection manager on the node (or on the
    /// master Sentinels name now, with its address), or a cluster connection.
    pub(super) async fn connect(
        &self,
        timeout: Duration,
    ) -> Result<(Commands, Option<String>), StoreError> {
        let manager = |client: redis::Client| async move {
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout))
                .set_number_of_retries(1);
            bounded(timeout, client.get_connection_manager_with_config(config)).await
        };
        match self {
            Self::Single(client) => Ok((Commands::Single(manager(client.clone()).await?), None)),
            Self::Cluster { client, .. } => {
                let connection = bounded(timeout, client.get_async_connection()).await?;
                Ok((Commands::Cluster(connection), None))
            }
            Self::Sentinel { .. } => {
                let (client, address) = self.master(timeout).await?;
                Ok((Commands::Single(manager(client).await?), Some(address)))
            }
        }
    }

    /// The master the Sentinels name now, checked to consider itself master,
    /// and its address.
    pub(super) async fn master(
        &self,
        timeout: Duration,
    ) -> Result<(redis::Client, String), StoreError> {
        let Self::Sentinel {
            sentinel,
            service,
            node,
        } = self
        else {
            return Err(invalid("not a Sentinel deployment"));
        };
        let mut sentinel = sentinel.lock().await;
        let client = bounded(timeout, sentinel.async_master_for(service, Some(node))).await?;
        let address = match client.get_connection_info().addr() {
            ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
                format!("{host}:{port}")
            }
            other => format!("{other}"),
        };
        Ok((client, address))
    }

    /// A node to subscribe on, for the `attempt`-th try: the node itself,
    /// the master Sentinels name now (with its address), or the cluster's
    /// nodes in turn (classic pub/sub reaches every node of a cluster), the
    /// nodes of the URL first, then the masters `known` of the cluster.
    pub(super) async fn subscriber(
        &self,
        attempt: usize,
        known: &[(String, u16)],
        timeout: Duration,
    ) -> Result<(redis::Client, Option<String>), StoreError> {
        match self {
            Self::Single(client) => Ok((client.clone(), None)),
            Self::Cluster {
                nodes,
                scheme,
                userinfo,
                ..
            } => {
                let index = attempt % (nodes.len() + known.len());
                match nodes.get(index) {
                    Some(client) => Ok((client.clone(), None)),
                    None => {
                        let (host, port) = &known[index - nodes.len()];
                        let url = format!("{scheme}://{userinfo}{host}:{port}/");
                        Ok((redis::Client::open(url).map_err(unavailable)?, None))
                    }
                }
            }
            Self::Sentinel { .. } => {
                let (client, address) = self.master(timeout).await?;
                Ok((client, Some(address)))
            }
        }
    }
}

/// The command connection of a [`Topology`].
#[derive(Clone)]
pub(super) enum Commands {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl redis::aio::ConnectionLike for Commands {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(connection) => connection.req_packed_command(cmd),
            Self::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(connection) => connection.req_packed_commands(cmd, offset, count),
            Self::Cluster(connection) => connection.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(connection) => connection.get_db(),
            Self::Cluster(connection) => connection.get_db(),
        }
    }
}

/// The cluster connection, sending every pipeline to the master of one
/// key's slot: for a pipeline on that key whose other commands have no key
/// (`PUBLISH` reaches every node of a cluster from any).
struct OnKey<'a> {
    connection: &'a mut ClusterConnection,
    route: SingleNodeRoutingInfo,
}

impl redis::aio::ConnectionLike for OnKey<'_> {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        self.connection.req_packed_command(cmd)
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let route = self.route.clone();
        Box::pin(
            self.connection
                .route_pipeline(cmd.clone(), offset, count, route),
        )
    }

    fn get_db(&self) -> i64 {
        0
    }
}

impl Commands {
    /// Runs `pipeline`, whose commands are about `key` or about no key, on
    /// the node that holds `key`.
    pub(super) async fn query_on_key<T: redis::FromRedisValue>(
        &mut self,
        pipeline: &Pipeline,
        key: &str,
    ) -> redis::RedisResult<T> {
        match self {
            Self::Cluster(connection) => {
                let route =
                    SingleNodeRoutingInfo::SpecificNode(Route::with_key(key, SlotAddr::Master));
                pipeline.query_async(&mut OnKey { connection, route }).await
            }
            single => pipeline.query_async(single).await,
        }
    }

    /// Runs `command` on the node at `route` (a cluster's master), or where
    /// the connection sends it.
    pub(super) async fn run_command(
        &mut self,
        command: Cmd,
        route: Option<&SingleNodeRoutingInfo>,
    ) -> redis::RedisResult<Value> {
        match (self, route) {
            (Self::Cluster(connection), Some(route)) => {
                let routing = RoutingInfo::SingleNode(route.clone());
                connection.route_command(command, routing).await
            }
            (connection, _) => command.query_async(connection).await,
        }
    }

    /// Runs `pipeline` on the node at `route`, or where the connection sends it.
    pub(super) async fn run_pipeline(
        &mut self,
        pipeline: Pipeline,
        route: Option<&SingleNodeRoutingInfo>,
    ) -> redis::RedisResult<Vec<Value>> {
        match (self, route) {
            (Self::Cluster(connection), Some(route)) => {
                let count = pipeline.len();
                connection
                    .route_pipeline(pipeline, 0, count, route.clone())
                    .await
            }
            (connection, _) => pipeline.query_async(connection).await,
        }
    }
}

/// `WAIT replicas timeout` on the node that holds `key`: the number of
/// replicas that acknowledged the writes before it.
pub(super) fn wait_command(replicas: u32, timeout: Duration) -> Cmd {
    redis::cmd("WAIT")
        .arg(replicas)
        .arg(
            u64::try_from(timeout.as_millis())
                .unwrap_or(u64::MAX)
                .max(1),
        )
        .clone()
}

/// The route of a command about `key` on a cluster: the master of its slot.
pub(super) fn route_of(key: &str) -> RoutingInfo {
    RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::with_key(
        key,
        SlotAddr::Master,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_of_every_topology() {
        let timeout = Duration::from_secs(1);
        assert!(matches!(
            Topology::parse("redis://127.0.0.1:6379/", timeout),
            Ok(Topology::Single(_))
        ));
        match Topology::parse(
            "redis-cluster://user:pw@127.0.0.1:7000,127.0.0.1:7001",
            timeout,
        ) {
            Ok(Topology::Cluster {
                nodes, userinfo, ..
            }) => {
                assert_eq!(nodes.len(), 2);
                assert_eq!(userinfo, "user:pw@");
                assert_eq!(
                    nodes[1].get_connection_info().redis_settings().password(),
                    Some("pw")
                );
            }
            other => panic!("{other:?}"),
        }
        match Topology::parse("redis-sentinel://:pw@h1:26379,h2:26379/mymaster", timeout) {
            Ok(Topology::Sentinel { service, .. }) => assert_eq!(service, "mymaster"),
            other => panic!("{other:?}"),
        }
        for bad in [
            "redis-cluster://",
            "redis-cluster://h:1/db",
            "redis-sentinel://h:1",
            "redis-sentinel://h:1/",
            "redis-sentinel:///name",
            "no scheme",
        ] {
            assert!(Topology::parse(bad, timeout).is_err(), "{bad}");
        }
    }
}
