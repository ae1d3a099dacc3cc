//! ADDEC2METADATA: the instance's identity (and optionally its tags) appended to each JSON record.
//!
//! Guarantees:
//! - the converter reads a snapshot and never does I/O; [`fetch`] (IMDSv2 through aws-config's
//!   client, with a token and short timeouts) fills it, and the engine refreshes it every TTL;
//! - with no snapshot (off EC2, IMDS unreachable) records pass through unchanged, as in the
//!   Kinesis Agent;
//! - a record that is not a JSON object makes the chain fall back to the raw bytes;
//! - keys are appended in the Kinesis Agent's order (privateIp, availabilityZone, instanceId,
//!   instanceType, accountId, amiId, region, metadataTimestamp, tags); an existing key keeps its
//!   place and takes the new value.
//!
//! Tags come from the IMDS tags endpoint when "instance metadata tags" is on for the instance,
//! else with `ec2:DescribeTags` as the Kinesis Agent gets them ([`super::describe_tags`]); when
//! neither answers, `tags` is left out (as in the Kinesis Agent) and a warning says why and how to
//! fix it.

use super::json::{write_value, JsonLayout};
use super::Step;
use serde_json::{Map, Value};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// One reading of the instance metadata, as the fields appended to records.
#[derive(Debug, Clone, PartialEq)]
pub struct Ec2Metadata {
    pub fields: Map<String, Value>,
}

/// A shared, refreshable snapshot.
#[derive(Clone, Default, Debug)]
pub struct Ec2MetadataHandle(Arc<RwLock<Option<Arc<Ec2Metadata>>>>);

impl Ec2MetadataHandle {
    pub fn set(&self, m: Option<Ec2Metadata>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = m.map(Arc::new);
    }

    pub fn get(&self) -> Option<Arc<Ec2Metadata>> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

pub(crate) fn add_ec2_metadata(input: &[u8], handle: Option<&Ec2MetadataHandle>, layout: JsonLayout, out: &mut Vec<u8>) -> Step {
    let Some(md) = handle.and_then(Ec2MetadataHandle::get) else {
        out.extend_from_slice(input);
        return Step::Ok;
    };
    let Ok(Value::Object(mut map)) = serde_json::from_slice::<Value>(input) else {
        return Step::Fail;
    };
    for (k, v) in &md.fields {
        map.insert(k.clone(), v.clone());
    }
    write_value(out, &Value::Object(map), layout, 0);
    out.push(b'\n');
    Step::Ok
}

/// Builds the appended fields from an instance identity document and tags.
pub fn metadata_from_identity(doc: &Value, tags: Option<Vec<(String, String)>>, at: time::OffsetDateTime) -> Ec2Metadata {
    let mut fields = Map::new();
    for (out_key, doc_key) in [
        ("privateIp", "privateIp"),
        ("availabilityZone", "availabilityZone"),
        ("instanceId", "instanceId"),
        ("instanceType", "instanceType"),
        ("accountId", "accountId"),
        ("amiId", "imageId"),
        ("region", "region"),
    ] {
        fields.insert(out_key.into(), doc.get(doc_key).cloned().unwrap_or(Value::Null));
    }
    let t = at.to_offset(time::UtcOffset::UTC);
    let ts = format!("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}+0000", t.year(), t.month() as u8, t.day(), t.hour(), t.minute(), t.second());
    fields.insert("metadataTimestamp".into(), Value::String(ts));
    if let Some(tags) = tags {
        let m: Map<String, Value> = tags.into_iter().map(|(k, v)| (k.to_lowercase(), Value::String(v))).collect();
        fields.insert("tags".into(), Value::Object(m));
    }
    Ec2Metadata { fields }
}

/// An IMDSv2 client with short timeouts (off EC2 it gives up within seconds). Honours
/// `AWS_EC2_METADATA_SERVICE_ENDPOINT`; an error when `AWS_EC2_METADATA_DISABLED` is true.
pub fn imds_client() -> Result<aws_config::imds::Client, String> {
    if std::env::var("AWS_EC2_METADATA_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true")) {
        return Err("instance metadata is disabled (AWS_EC2_METADATA_DISABLED=true)".into());
    }
    Ok(aws_config::imds::Client::builder()
        .connect_timeout(Duration::from_millis(500))
        .read_timeout(Duration::from_secs(2))
        .max_attempts(2)
        .build())
}

/// Reads the identity document (and tags when asked) over IMDSv2 ([`imds_client`]).
pub async fn fetch(with_tags: bool) -> Result<Ec2Metadata, String> {
    let client = imds_client()?;
    let doc = client.get("/latest/dynamic/instance-identity/document").await.map_err(|e| format!("instance metadata unavailable: {e}"))?;
    let doc: Value = serde_json::from_str(doc.as_ref()).map_err(|e| format!("instance identity document is not JSON: {e}"))?;
    let tags = if with_tags {
        match client.get("/latest/meta-data/tags/instance").await {
            Ok(keys) => {
                let mut tags = Vec::new();
                for key in keys.as_ref().lines().filter(|k| !k.is_empty()) {
                    if let Ok(v) = client.get(format!("/latest/meta-data/tags/instance/{key}")).await {
                        tags.push((key.to_string(), v.as_ref().to_string()));
                    }
                }
                Some(tags)
            }
            // instance metadata tags are off (the EC2 default): ask EC2, as the Kinesis Agent does
            Err(_) => {
                let field = |k: &str| doc.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
                let (id, region) = (field("instanceId"), field("region"));
                match super::describe_tags::describe_tags(&id, &region).await {
                    Ok(tags) => Some(tags),
                    Err(e) => {
                        tracing::warn!("ADDEC2METADATA: records go without `tags`: instance metadata tags are off and ec2:DescribeTags failed ({e}); allow ec2:DescribeTags to the instance's role, or turn instance metadata tags on");
                        None
                    }
                }
            }
        }
    } else {
        None
    };
    Ok(metadata_from_identity(&doc, tags, time::OffsetDateTime::now_utc()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle() -> Ec2MetadataHandle {
        let doc = serde_json::json!({"privateIp":"10.0.0.1","availabilityZone":"eu-west-1a","instanceId":"i-1","instanceType":"t3.micro","accountId":"1","imageId":"ami-1","region":"eu-west-1"});
        let h = Ec2MetadataHandle::default();
        h.set(Some(metadata_from_identity(
            &doc,
            Some(vec![("Name".into(), "web".into())]),
            time::macros::datetime!(2024-01-02 03:04:05 UTC),
        )));
        h
    }

    #[test]
    fn appends_in_agent_order_and_replaces_in_place() {
        let mut out = Vec::new();
        assert!(matches!(add_ec2_metadata(b"{\"region\":\"x\",\"a\":1}\n", Some(&handle()), JsonLayout::Compact, &mut out), Step::Ok));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"region\":\"eu-west-1\",\"a\":1,\"privateIp\":\"10.0.0.1\",\"availabilityZone\":\"eu-west-1a\",\"instanceId\":\"i-1\",\"instanceType\":\"t3.micro\",\"accountId\":\"1\",\"amiId\":\"ami-1\",\"metadataTimestamp\":\"2024-01-02T03:04:05+0000\",\"tags\":{\"name\":\"web\"}}\n"
        );
    }

    #[test]
    fn passes_through_off_ec2_and_fails_on_non_json() {
        let mut out = Vec::new();
        assert!(matches!(add_ec2_metadata(b"plain\n", Some(&Ec2MetadataHandle::default()), JsonLayout::Compact, &mut out), Step::Ok));
        assert_eq!(out, b"plain\n");
        assert!(matches!(add_ec2_metadata(b"plain\n", Some(&handle()), JsonLayout::Compact, &mut Vec::new()), Step::Fail));
        assert!(matches!(add_ec2_metadata(b"[1]\n", Some(&handle()), JsonLayout::Compact, &mut Vec::new()), Step::Fail));
    }
}
