//! How a request to an AWS record service looks on the wire and what its answer says: the
//! service's records made from a batch's records (compressed one by one, or packed whole), the
//! PutRecordBatch / PutRecords body written in one pass, handed to the SDK in place of its own,
//! and the answer as an [`Attempt`].
//!
//! Guarantees: the body is the JSON the services read, sized exactly up front; a compressed
//! record grows by no more than the flow keeps room for; packing keeps records whole and in
//! order. Not done here: which records a request carries and what happens after the answer
//! ([`super::record`]).

use super::aws::describe_failure;
use crate::sinks::aws::settings::Compression;
use std::borrow::Cow;
use std::io::Write;

/// How one request went: per record, in request order, `None` when accepted or the error code
/// and message; or the whole call failed.
pub enum Attempt {
    Answered(Vec<Option<(String, String)>>),
    Failed { code: String, message: String },
}

/// A service's answer to a request: per record, in request order, its error code and message
/// when it failed.
pub fn answered<'a>(records: impl Iterator<Item = (Option<&'a str>, Option<&'a str>)>) -> Attempt {
    Attempt::Answered(records.map(|(code, message)| code.map(|c| (c.to_string(), message.unwrap_or_default().to_string()))).collect())
}

/// The JSON body of a PutRecordBatch (`name_member` `DeliveryStreamName`) or PutRecords
/// (`StreamName`) request, written in one pass from the records: each `Data` is base64 of the
/// record's bytes, followed by its `PartitionKey` when it has one. The SDK would build one
/// `Record` with a shared buffer per record, base64 each into a string of its own and copy it
/// again; this is the same body without the per-record work (see [`with_body`]).
pub fn request_body<'a>(name_member: &str, name: &str, records: impl Iterator<Item = (&'a [u8], Option<&'a str>)> + Clone) -> Vec<u8> {
    // the exact size up to escapes in names and keys: the body is never copied to grow
    // (`{"Data":""}` and a comma per record, `,"PartitionKey":""` per key)
    let (count, size) = records
        .clone()
        .fold((0, 0), |(n, size), (data, key)| (n + 1, size + 12 + data.len().div_ceil(3) * 4 + key.map_or(0, |k| k.len() + 18)));
    let mut out = Vec::with_capacity(20 + name_member.len() + name.len() + size - usize::from(count > 0));
    out.extend_from_slice(b"{\"");
    out.extend_from_slice(name_member.as_bytes());
    out.extend_from_slice(b"\":");
    json_str(&mut out, name);
    out.extend_from_slice(b",\"Records\":[");
    for (i, (data, key)) in records.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"Data\":\"");
        base64_simd::STANDARD.encode_append(data, &mut out);
        out.push(b'"');
        if let Some(key) = key {
            out.extend_from_slice(b",\"PartitionKey\":");
            json_str(&mut out, key);
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
    out
}

/// Appends `s` as a JSON string.
pub fn json_str(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(out, s).expect("writing a string to a Vec cannot fail");
}

/// Makes the SDK send `body` (from [`request_body`]) in place of the one it serialised from
/// the operation's input; the SDK still signs it (after this) and parses the answer.
/// The operation is built with an empty record list, so the SDK's own body costs nothing.
pub fn with_body(body: Vec<u8>) -> impl Fn(&mut aws_sdk_firehose::config::http::HttpRequest) + Send + Sync + 'static {
    let length = body.len().to_string();
    let body = aws_smithy_types::body::SdkBody::from(body);
    move |request| {
        *request.body_mut() = body.try_clone().expect("a body in memory can be cloned");
        request.headers_mut().insert("Content-Length", length.clone());
    }
}

/// A failed SDK call as an [`Attempt`] ([`describe_failure`]).
pub fn failed_call<E>(e: &E) -> Attempt
where
    E: aws_sdk_firehose::error::ProvideErrorMetadata + std::error::Error,
{
    let (code, message) = describe_failure(e);
    Attempt::Failed { code, message }
}

/// Groups consecutive records (by their sizes) so that each group's total stays within
/// `max_bytes`; a record larger than that is a group of its own.
pub fn pack_whole(sizes: &[usize], max_bytes: usize) -> Vec<std::ops::Range<usize>> {
    let mut out: Vec<std::ops::Range<usize>> = Vec::new();
    let mut bytes = 0;
    for (i, &size) in sizes.iter().enumerate() {
        match out.last_mut() {
            Some(g) if bytes + size <= max_bytes => {
                g.end = i + 1;
                bytes += size;
            }
            _ => {
                out.push(i..i + 1);
                bytes = size;
            }
        }
    }
    out
}

/// A record as it is sent: compressed when the flow asks for it.
pub fn encode_record(compression: Compression, record: &[u8]) -> Cow<'_, [u8]> {
    match compression {
        Compression::None => Cow::Borrowed(record),
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::with_capacity(record.len() / 4 + 64), flate2::Compression::default());
            e.write_all(record).expect("writing to a Vec cannot fail");
            Cow::Owned(e.finish().expect("writing to a Vec cannot fail"))
        }
        Compression::Zstd => Cow::Owned(zstd::bulk::compress(record, 3).expect("compressing a buffer in memory cannot fail")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_body_is_the_json_the_services_read() {
        use base64::Engine as _;
        let records: [(&[u8], Option<&str>); 3] = [(b"{\"a\":1}\n", Some("k\"1\\")), (&[0, 255, 10], Some("\u{e9}")), (b"", Some(""))];
        let body = request_body("StreamName", "logs\"x", records.iter().copied());
        let v: serde_json::Value = serde_json::from_slice(&body).expect("valid JSON");
        assert_eq!(v["StreamName"], "logs\"x");
        let sent = v["Records"].as_array().unwrap();
        assert_eq!(sent.len(), 3);
        for (entry, (data, key)) in sent.iter().zip(records) {
            let decoded = base64::engine::general_purpose::STANDARD.decode(entry["Data"].as_str().unwrap()).unwrap();
            assert_eq!(decoded, data);
            assert_eq!(entry["PartitionKey"].as_str(), key);
            assert_eq!(entry.as_object().unwrap().len(), 2);
        }
        let firehose = request_body("DeliveryStreamName", "s", [(&b"x"[..], None)].into_iter());
        assert_eq!(firehose, br#"{"DeliveryStreamName":"s","Records":[{"Data":"eA=="}]}"#);
        assert_eq!(firehose.capacity(), firehose.len(), "sized exactly, never grown");
        let kinesis = request_body("StreamName", "s", [(&b"abcd"[..], Some("k"))].into_iter());
        assert_eq!(kinesis, br#"{"StreamName":"s","Records":[{"Data":"YWJjZA==","PartitionKey":"k"}]}"#);
        assert_eq!(kinesis.capacity(), kinesis.len(), "sized exactly, never grown");
        assert_eq!(request_body("DeliveryStreamName", "s", std::iter::empty()), br#"{"DeliveryStreamName":"s","Records":[]}"#);
    }

    #[test]
    fn whole_records_are_packed_in_order_within_the_size() {
        assert_eq!(pack_whole(&[3, 3, 3, 10, 1, 1], 7), vec![0..2, 2..3, 3..4, 4..6]);
        assert_eq!(pack_whole(&[], 7), Vec::<std::ops::Range<usize>>::new());
    }

    #[test]
    fn compressed_records_decompress_to_the_original() {
        use std::io::Read;
        let record = b"{\"message\":\"hello hello hello hello hello\"}\n".repeat(20);
        assert_eq!(encode_record(Compression::None, &record), &record[..]);
        let gz = encode_record(Compression::Gzip, &record);
        assert!(gz.len() < record.len() / 4);
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut back).unwrap();
        assert_eq!(back, record);
        let zs = encode_record(Compression::Zstd, &record);
        assert!(zs.len() < record.len() / 4);
        assert_eq!(zstd::stream::decode_all(&zs[..]).unwrap(), record);
        // incompressible data grows by no more than the room the flow keeps for it
        let noise: Vec<u8> = (0..1_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        for c in [Compression::Gzip, Compression::Zstd] {
            assert!(encode_record(c, &noise).len() <= noise.len() + c.worst_case_growth(noise.len()));
        }
    }
}
