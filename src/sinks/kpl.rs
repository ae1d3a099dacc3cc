//! KPL aggregation: many user records packed into one Kinesis record in the Kinesis Producer
//! Library's aggregated format, which every KPL-aware consumer (the KCL, Lambda's Kinesis event
//! source with the de-aggregation modules, `aws-kinesis-agg`) unpacks.
//!
//! The format: the magic bytes `F3 89 9A C2`, a protobuf `AggregatedRecord` (a table of partition
//! keys, and user records each pointing into it), then the MD5 digest of the protobuf bytes.
//!
//! Guarantees: aggregates never exceed the size asked for; user records keep their order and
//! their own partition keys (de-aggregation gives each one back); a record too large to share an
//! aggregate, or alone in one, is sent as a plain record, as the KPL does. Not done: explicit hash
//! keys and tags (never needed by the agent).

use md5::{Digest, Md5};
use prost::encoding::encoded_len_varint;
use prost::Message;

pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];
/// What an aggregate adds around its protobuf: the magic bytes and the digest.
pub const OVERHEAD_BYTES: usize = MAGIC.len() + 16;
/// The KPL's default largest aggregate.
pub const DEFAULT_AGGREGATE_BYTES: usize = 51_200;

#[derive(Clone, PartialEq, Message)]
struct AggregatedRecord {
    #[prost(string, repeated, tag = "1")]
    partition_key_table: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    explicit_hash_key_table: Vec<String>,
    #[prost(message, repeated, tag = "3")]
    records: Vec<UserRecord>,
}

#[derive(Clone, PartialEq, Message)]
struct UserRecord {
    #[prost(uint64, required, tag = "1")]
    partition_key_index: u64,
    #[prost(uint64, optional, tag = "2")]
    explicit_hash_key_index: Option<u64>,
    #[prost(bytes = "vec", required, tag = "3")]
    data: Vec<u8>,
}

/// One Kinesis record to send: an aggregate or a plain record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packed {
    pub partition_key: String,
    pub data: Vec<u8>,
    /// Indexes of the user records it carries (consecutive, in order).
    pub members: std::ops::Range<usize>,
}

/// Where user records' partition keys come from.
pub enum Keys<'a> {
    /// Each record has its own key (deterministic, field, constant).
    PerRecord(&'a [String]),
    /// Any key will do (random keys): one fresh key per aggregate keeps the key table small.
    PerAggregate(&'a mut dyn FnMut() -> String),
    /// Each record has its own key and records of one key must stay on one shard, in order
    /// (field keys): an aggregate holds consecutive records of one key only.
    Grouped(&'a [String]),
}

fn field_len(len: usize) -> usize {
    1 + encoded_len_varint(len as u64) + len
}

/// Packs `records` into aggregates of at most `max_bytes` bytes each, in order.
pub fn aggregate(records: &[&[u8]], mut keys: Keys<'_>, max_bytes: usize) -> Vec<Packed> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < records.len() {
        let mut table: Vec<String> = Vec::new();
        let mut members: Vec<(usize, u64)> = Vec::new();
        let mut size = OVERHEAD_BYTES;
        let aggregate_key = match &mut keys {
            Keys::PerAggregate(next) => Some(next()),
            Keys::PerRecord(_) | Keys::Grouped(_) => None,
        };
        while i < records.len() {
            let key = match (&keys, &aggregate_key) {
                (Keys::PerRecord(k) | Keys::Grouped(k), _) => k[i].as_str(),
                (_, Some(k)) => k.as_str(),
                _ => unreachable!("a per-aggregate key was drawn"),
            };
            if matches!(keys, Keys::Grouped(_)) && table.first().is_some_and(|first| first != key) {
                break; // the aggregate goes to its first key's shard: only that key's records
            }
            let (index, key_cost) = match table.iter().position(|k| k == key) {
                Some(p) => (p, 0),
                None => (table.len(), field_len(key.len())),
            };
            let inner = 1 + encoded_len_varint(index as u64) + field_len(records[i].len());
            let cost = key_cost + field_len(inner);
            if size + cost > max_bytes {
                // full; or, when it is the first, too large to share an aggregate: it goes alone
                break;
            }
            if key_cost > 0 {
                table.push(key.to_string());
            }
            members.push((i, index as u64));
            size += cost;
            i += 1;
        }
        match members.len() {
            0 => {
                let key = aggregate_key.unwrap_or_else(|| match &keys {
                    Keys::PerRecord(k) | Keys::Grouped(k) => k[i].clone(),
                    Keys::PerAggregate(_) => unreachable!(),
                });
                out.push(Packed { partition_key: key, data: records[i].to_vec(), members: i..i + 1 });
                i += 1;
            }
            1 => {
                let (m, _) = members[0];
                out.push(Packed { partition_key: table.swap_remove(0), data: records[m].to_vec(), members: m..m + 1 });
            }
            _ => {
                let message = AggregatedRecord {
                    partition_key_table: table,
                    explicit_hash_key_table: Vec::new(),
                    records: members
                        .iter()
                        .map(|&(m, k)| UserRecord { partition_key_index: k, explicit_hash_key_index: None, data: records[m].to_vec() })
                        .collect(),
                };
                let mut data = Vec::with_capacity(size);
                data.extend_from_slice(&MAGIC);
                message.encode(&mut data).expect("a Vec grows as needed");
                let digest = Md5::digest(&data[MAGIC.len()..]);
                data.extend_from_slice(&digest);
                debug_assert_eq!(data.len(), size);
                let partition_key = message.partition_key_table[0].clone();
                out.push(Packed { partition_key, data, members: members[0].0..members[members.len() - 1].0 + 1 });
            }
        }
    }
    out
}

/// Unpacks a Kinesis record into (partition key, data) pairs: an aggregate gives its user
/// records, anything else is itself. The unit tests' reader.
#[cfg(test)]
pub fn deaggregate(partition_key: &str, data: &[u8]) -> Result<Vec<(String, Vec<u8>)>, String> {
    let plain = || Ok(vec![(partition_key.to_string(), data.to_vec())]);
    if data.len() < OVERHEAD_BYTES || data[..4] != MAGIC {
        return plain();
    }
    let (body, digest) = data[4..].split_at(data.len() - OVERHEAD_BYTES);
    if Md5::digest(body).as_slice() != digest {
        return plain();
    }
    let message = AggregatedRecord::decode(body).map_err(|e| format!("not a valid aggregate: {e}"))?;
    message
        .records
        .into_iter()
        .map(|r| {
            let key = message.partition_key_table.get(r.partition_key_index as usize).ok_or("partition key index out of range")?;
            Ok((key.clone(), r.data))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn an_aggregate_is_magic_protobuf_and_digest() {
        let records: Vec<&[u8]> = vec![b"a", b"bb"];
        let keys = vec!["k1".to_string(), "k2".to_string()];
        let out = aggregate(&records, Keys::PerRecord(&keys), 1000);
        assert_eq!(out.len(), 1);
        let data = &out[0].data;
        assert_eq!(data[..4], MAGIC);
        // table "k1","k2"; records {1:0, 3:"a"}, {1:1, 3:"bb"} — the zero index is written (proto2 required)
        let body = [0x0a, 2, b'k', b'1', 0x0a, 2, b'k', b'2', 0x1a, 5, 0x08, 0, 0x1a, 1, b'a', 0x1a, 6, 0x08, 1, 0x1a, 2, b'b', b'b'];
        assert_eq!(&data[4..data.len() - 16], &body);
        assert_eq!(&data[data.len() - 16..], Md5::digest(body).as_slice());
        assert_eq!(out[0].partition_key, "k1");
    }

    #[test]
    fn records_too_large_to_share_go_alone_and_plain() {
        let big = vec![b'x'; 200];
        let records: Vec<&[u8]> = vec![b"a", &big, b"b", b"c"];
        let mut n = 0;
        let mut next = || {
            n += 1;
            format!("r{n}")
        };
        let out = aggregate(&records, Keys::PerAggregate(&mut next), 100);
        let members: Vec<_> = out.iter().map(|p| p.members.clone()).collect();
        assert_eq!(members, vec![0..1, 1..2, 2..4]);
        assert_eq!(out[0].data, b"a", "alone in its aggregate: plain");
        assert_eq!(out[1].data, big);
        assert_eq!(out[2].data[..4], MAGIC);
    }

    #[test]
    fn grouped_keys_keep_each_aggregate_to_one_key() {
        let records: Vec<&[u8]> = vec![b"a1", b"a2", b"b1", b"a3"];
        let keys: Vec<String> = ["a", "a", "b", "a"].map(String::from).to_vec();
        let out = aggregate(&records, Keys::Grouped(&keys), 1000);
        let got: Vec<(&str, std::ops::Range<usize>)> = out.iter().map(|p| (p.partition_key.as_str(), p.members.clone())).collect();
        assert_eq!(got, vec![("a", 0..2), ("b", 2..3), ("a", 3..4)]);
        for p in &out {
            assert!(deaggregate(&p.partition_key, &p.data).unwrap().iter().all(|(k, _)| *k == p.partition_key));
        }
    }

    proptest! {
        #[test]
        fn aggregates_respect_the_size_and_give_every_record_back_in_order(
            records in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 1..60),
            key_choice in prop::collection::vec(0usize..4, 60),
            max in 64usize..2000,
        ) {
            let refs: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
            let keys: Vec<String> = (0..records.len()).map(|i| format!("key-{}", key_choice[i])).collect();
            let out = aggregate(&refs, Keys::PerRecord(&keys), max);
            let mut back = Vec::new();
            let mut members = Vec::new();
            for p in &out {
                prop_assert!(p.data.len() <= max || p.members.len() == 1, "{} > {max}", p.data.len());
                back.extend(deaggregate(&p.partition_key, &p.data).unwrap());
                members.extend(p.members.clone());
            }
            prop_assert_eq!(members, (0..records.len()).collect::<Vec<_>>());
            let expected: Vec<(String, Vec<u8>)> = keys.into_iter().zip(records).collect();
            prop_assert_eq!(back, expected);
        }
    }
}
