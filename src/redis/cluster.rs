//! A Redis Cluster's shape: its masters and their slots, read from
//! `CLUSTER NODES` (bounded), and the marker key that lands on each master.

use std::time::Duration;

use redis::Value;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};

use super::{bounded, invalid};
use crate::revoke::StoreError;

/// A master of a Redis Cluster: its node id, address and slot ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Master {
    pub(super) id: String,
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) slots: Vec<(u16, u16)>,
}

impl Master {
    /// A key `{prefix}marker{N}` whose hash tag puts it on this master (on
    /// the first slot it serves): one marker per shard, so a shard that
    /// restarts empty is noticed.
    pub(super) fn marker_key(&self, prefix: &str) -> Option<String> {
        let (first, _) = self.slots.first()?;
        let tag = slot_tags().get(usize::from(*first))?;
        Some(format!("{prefix}marker{{{tag}}}"))
    }

    pub(super) fn route(&self) -> SingleNodeRoutingInfo {
        SingleNodeRoutingInfo::ByAddress {
            host: self.host.clone(),
            port: self.port,
        }
    }
}

/// For every slot, the smallest number whose decimal digits hash to it:
/// computed once (about 160 000 CRCs), then a marker key costs a look-up.
fn slot_tags() -> &'static [u32] {
    static TAGS: std::sync::OnceLock<Vec<u32>> = std::sync::OnceLock::new();
    TAGS.get_or_init(|| {
        let mut tags = vec![u32::MAX; 16384];
        let mut missing = tags.len();
        let mut n = 0u32;
        while missing > 0 {
            let slot = usize::from(key_slot(n.to_string().as_bytes()));
            if tags[slot] == u32::MAX {
                tags[slot] = n;
                missing -= 1;
            }
            n += 1;
        }
        tags
    })
}

/// The cluster slot of a key without a hash tag: CRC16 (XMODEM) mod 16384,
/// as Redis computes it.
fn key_slot(key: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in key {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

/// The masters of the cluster, from `CLUSTER NODES` (bounded: at most
/// 1 MiB of answer and 1000 nodes are read).
pub(super) async fn masters(
    connection: &mut ClusterConnection,
    timeout: Duration,
) -> Result<Vec<Master>, StoreError> {
    let nodes = bounded(
        timeout,
        connection.route_command(
            redis::cmd("CLUSTER").arg("NODES").clone(),
            RoutingInfo::SingleNode(SingleNodeRoutingInfo::RandomPrimary),
        ),
    )
    .await?;
    let text = match nodes {
        Value::BulkString(bytes) if bytes.len() <= 1024 * 1024 => {
            String::from_utf8_lossy(&bytes).into_owned()
        }
        Value::VerbatimString { text, .. } if text.len() <= 1024 * 1024 => text,
        _ => return Err(invalid("CLUSTER NODES answered something unexpected")),
    };
    Ok(parse_nodes(&text))
}

/// Whether the masters' slot ranges cover all 16 384 slots.
pub(super) fn covers_every_slot(masters: &[Master]) -> bool {
    let mut covered = vec![false; 16384];
    for master in masters {
        for &(start, end) in &master.slots {
            for slot in start..=end.min(16383) {
                covered[usize::from(slot)] = true;
            }
        }
    }
    covered.iter().all(|&slot| slot)
}

/// The live masters holding slots in a `CLUSTER NODES` answer.
fn parse_nodes(text: &str) -> Vec<Master> {
    let mut masters = Vec::new();
    for line in text.lines().take(1000) {
        let fields: Vec<&str> = line.split(' ').collect();
        let [id, address, flags, _, _, _, _, state, slots @ ..] = fields.as_slice() else {
            continue;
        };
        let flags: Vec<&str> = flags.split(',').collect();
        if !flags.contains(&"master") || flags.contains(&"fail") || *state != "connected" {
            continue;
        }
        // `host:port@cport[,hostname]`
        let address = address.split(['@', ',']).next().unwrap_or_default();
        let Some((host, port)) = address.rsplit_once(':') else {
            continue;
        };
        let Ok(port) = port.parse() else { continue };
        let slots: Vec<(u16, u16)> = slots
            .iter()
            .filter(|range| !range.starts_with('['))
            .filter_map(|range| match range.split_once('-') {
                Some((start, end)) => Some((start.parse().ok()?, end.parse().ok()?)),
                None => range.parse().ok().map(|slot| (slot, slot)),
            })
            .collect();
        if slots.is_empty() {
            continue;
        }
        masters.push(Master {
            id: (*id).to_owned(),
            host: host.to_owned(),
            port,
            slots,
        });
    }
    masters.sort_by(|a, b| a.id.cmp(&b.id));
    masters
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_nodes_are_read_defensively() {
        let text = "\
07c3 127.0.0.1:30004@40004 replica e7d1 0 0 4 connected
67ed 127.0.0.1:30002@40002 master - 0 0 2 connected 5461-10922
292f 127.0.0.1:30003@40003,host.example master - 0 0 3 connected 10923-16383 [93-<-abcd]
e7d1 127.0.0.1:30001@40001 myself,master - 0 0 1 connected 0-5460
dead 127.0.0.1:30009@40009 master,fail - 0 0 9 disconnected 1-2
garbage line
";
        let masters = parse_nodes(text);
        assert_eq!(masters.len(), 3);
        assert!(covers_every_slot(&masters));
        assert!(!covers_every_slot(&masters[1..]));
        assert_eq!(masters[0].id, "292f");
        assert_eq!(masters[0].port, 30003);
        assert_eq!(masters[0].slots, vec![(10923, 16383)]);
        // Redis's own test vector (the cluster specification), and the slot
        // of a well-known key.
        assert_eq!(key_slot(b"123456789"), 0x31C3);
        assert_eq!(key_slot(b"foo"), 12182);
        for master in &masters {
            let key = master.marker_key("tsj:").unwrap();
            let tag = key.split_once('{').unwrap().1.trim_end_matches('}');
            let slot = key_slot(tag.as_bytes());
            assert!(master.slots.iter().any(|(a, b)| (*a..=*b).contains(&slot)));
        }
    }
}
