//! `ec2:DescribeTags` for ADDEC2METADATA's `tags`, as the Kinesis Agent gets them: the fallback
//! when the instance metadata tags endpoint is off (the EC2 default).
//!
//! Guarantees:
//! - one EC2 Query call per page, filtered on the instance's id, signed (SigV4, `aws-sigv4`) with
//!   the SDK's default credential chain, sent to the instance's region (or `AWS_ENDPOINT_URL_EC2`
//!   / `AWS_ENDPOINT_URL`) with the SDK's own HTTP connector: its TLS, the proxy the environment
//!   names, connect and read timeouts;
//! - the request body and the reading of the answer are pure functions ([`request_body`],
//!   [`parse_page`], [`parse_error`]), tested without a network;
//! - a failure (no `ec2:DescribeTags` permission, no network, an answer that is not the API's) is
//!   an error naming the code and the message; the caller leaves `tags` out, as the Kinesis Agent
//!   does.
//!
//! Not used: the `aws-sdk-ec2` crate. Its 1.2 million lines of generated code added 7.5 minutes
//! to a cold debug build on two cores (and more to the release build) for this one call.
//! Not done: FIPS and dual-stack endpoints; the profile file's `endpoint_url`.

use std::time::{Duration, SystemTime};

/// The EC2 API version the Query protocol names.
const API_VERSION: &str = "2016-11-15";
/// The most pages read (an instance has at most 50 tags: one page).
const MAX_PAGES: usize = 10;

/// One page of an answer: tags (key, value) and the token of the next page.
#[derive(Debug, PartialEq, Eq)]
pub struct Page {
    pub tags: Vec<(String, String)>,
    pub next_token: Option<String>,
}

/// The form body of a DescribeTags call for the instance's tags.
pub fn request_body(instance_id: &str, next_token: Option<&str>) -> String {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("Action", "DescribeTags")
        .append_pair("Version", API_VERSION)
        .append_pair("Filter.1.Name", "resource-id")
        .append_pair("Filter.1.Value.1", instance_id)
        .append_pair("MaxResults", "1000");
    if let Some(t) = next_token {
        form.append_pair("NextToken", t);
    }
    form.finish()
}

/// Reads a `DescribeTagsResponse` document.
pub fn parse_page(xml: &str) -> Result<Page, String> {
    use aws_smithy_xml::decode::{try_data, Document};
    let bad = |e: aws_smithy_xml::decode::XmlDecodeError| format!("the answer is not a DescribeTags response: {e}");
    let mut doc = Document::new(xml);
    let mut root = doc.root_element().map_err(bad)?;
    if !root.start_el().matches("DescribeTagsResponse") {
        return Err(format!("the answer is not a DescribeTags response (its root element is {:?})", root.start_el().local()));
    }
    let mut page = Page { tags: Vec::new(), next_token: None };
    while let Some(mut tag) = root.next_tag() {
        if tag.start_el().matches("nextToken") {
            page.next_token = Some(try_data(&mut tag).map_err(bad)?.into_owned()).filter(|t| !t.is_empty());
            continue;
        }
        if !tag.start_el().matches("tagSet") {
            continue;
        }
        while let Some(mut item) = tag.next_tag() {
            let (mut key, mut value) = (None, None);
            while let Some(mut field) = item.next_tag() {
                if field.start_el().matches("key") {
                    key = Some(try_data(&mut field).map_err(bad)?.into_owned());
                } else if field.start_el().matches("value") {
                    value = Some(try_data(&mut field).map_err(bad)?.into_owned());
                }
            }
            if let Some(k) = key {
                page.tags.push((k, value.unwrap_or_default()));
            }
        }
    }
    Ok(page)
}

/// The code and message of an EC2 error document (`<Response><Errors><Error>...`).
pub fn parse_error(xml: &str) -> Option<(String, String)> {
    use aws_smithy_xml::decode::{try_data, Document};
    let mut doc = Document::new(xml);
    let mut root = doc.root_element().ok()?;
    while let Some(mut errors) = root.next_tag() {
        if !errors.start_el().matches("Errors") {
            continue;
        }
        // the first error is the one to tell
        if let Some(mut error) = errors.next_tag() {
            let (mut code, mut message) = (String::new(), String::new());
            while let Some(mut field) = error.next_tag() {
                if field.start_el().matches("Code") {
                    code = try_data(&mut field).ok()?.into_owned();
                } else if field.start_el().matches("Message") {
                    message = try_data(&mut field).ok()?.into_owned();
                }
            }
            return Some((code, message));
        }
    }
    None
}

/// Where the call goes: `AWS_ENDPOINT_URL_EC2`, then `AWS_ENDPOINT_URL` (the SDK's variables),
/// else the region's EC2 endpoint.
pub fn endpoint(region: &str, env: impl Fn(&str) -> Option<String>) -> String {
    let set = |k: &str| env(k).filter(|v| !v.is_empty());
    set("AWS_ENDPOINT_URL_EC2").or_else(|| set("AWS_ENDPOINT_URL")).unwrap_or_else(|| {
        let suffix = if region.starts_with("cn-") { "amazonaws.com.cn" } else { "amazonaws.com" };
        format!("https://ec2.{region}.{suffix}")
    })
}

/// The instance's tags (key, value), read with `ec2:DescribeTags` in `region`.
pub async fn describe_tags(instance_id: &str, region: &str) -> Result<Vec<(String, String)>, String> {
    use aws_credential_types::provider::ProvideCredentials;
    use aws_smithy_runtime_api::client::http::HttpConnector;
    if instance_id.is_empty() || region.is_empty() {
        return Err("the instance identity document names no instance id or no region".into());
    }
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest()).region(aws_config::Region::new(region.to_string())).load().await;
    let provider = sdk.credentials_provider().ok_or("no AWS credentials provider")?;
    let credentials = provider.provide_credentials().await.map_err(|e| format!("no AWS credentials: {e}"))?;
    let identity = credentials.into();
    let settings = aws_smithy_runtime_api::client::http::HttpConnectorSettings::builder()
        .connect_timeout(Duration::from_secs(3))
        .read_timeout(Duration::from_secs(10))
        .build();
    let connector = aws_smithy_http_client::Connector::builder()
        .connector_settings(settings)
        .sleep_impl(aws_smithy_async::rt::sleep::TokioSleep::new())
        .proxy_config(aws_smithy_http_client::proxy::ProxyConfig::from_env())
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(aws_smithy_http_client::tls::rustls_provider::CryptoMode::AwsLc))
        .build();
    let url = endpoint(region, |k| std::env::var(k).ok());
    let mut tags = Vec::new();
    let mut next: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let body = request_body(instance_id, next.as_deref());
        let content_type = "application/x-www-form-urlencoded; charset=utf-8";
        let signable = aws_sigv4::http_request::SignableRequest::new(
            "POST",
            &url,
            [("content-type", content_type)].into_iter(),
            aws_sigv4::http_request::SignableBody::Bytes(body.as_bytes()),
        )
        .map_err(|e| format!("cannot sign a request to {url}: {e}"))?;
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(region)
            .name("ec2")
            .time(SystemTime::now())
            .settings(aws_sigv4::http_request::SigningSettings::default())
            .build()
            .map_err(|e| format!("cannot sign a request to {url}: {e}"))?
            .into();
        let (instructions, _) =
            aws_sigv4::http_request::sign(signable, &params).map_err(|e| format!("cannot sign a request to {url}: {e}"))?.into_parts();
        let mut request = http::Request::builder()
            .method("POST")
            .uri(&url)
            .header("content-type", content_type)
            .body(aws_smithy_types::body::SdkBody::from(body))
            .map_err(|e| format!("{url} is not a usable endpoint: {e}"))?;
        instructions.apply_to_request_http1x(&mut request);
        let request = request.try_into().map_err(|e| format!("{url} is not a usable endpoint: {e}"))?;
        let response = connector.call(request).await.map_err(|e| format!("DescribeTags at {url}: {e}"))?;
        let status = response.status().as_u16();
        let bytes = aws_smithy_types::byte_stream::ByteStream::new(response.into_body())
            .collect()
            .await
            .map_err(|e| format!("DescribeTags at {url}: reading the answer: {e}"))?
            .into_bytes();
        let text = String::from_utf8_lossy(&bytes);
        if status != 200 {
            return Err(match parse_error(&text) {
                Some((code, message)) => format!("DescribeTags at {url}: {code}: {message}"),
                None => format!("DescribeTags at {url}: HTTP {status}"),
            });
        }
        let page = parse_page(&text)?;
        tags.extend(page.tags);
        next = page.next_token;
        if next.is_none() {
            break;
        }
    }
    Ok(tags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_filters_on_the_instance_and_carries_the_next_token() {
        assert_eq!(
            request_body("i-0abc", None),
            "Action=DescribeTags&Version=2016-11-15&Filter.1.Name=resource-id&Filter.1.Value.1=i-0abc&MaxResults=1000"
        );
        assert!(request_body("i-0abc", Some("a+b/c=")).ends_with("&NextToken=a%2Bb%2Fc%3D"));
    }

    #[test]
    fn an_answer_gives_its_tags_unescaped_and_its_next_token() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<DescribeTagsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
    <requestId>7a62c49f-347e-4fc4-9331-6e8eEXAMPLE</requestId>
    <tagSet>
        <item><resourceId>i-0abc</resourceId><resourceType>instance</resourceType><key>Name</key><value>web &amp; api</value></item>
        <item><resourceId>i-0abc</resourceId><resourceType>instance</resourceType><key>Empty</key><value/></item>
    </tagSet>
    <nextToken>page-2</nextToken>
</DescribeTagsResponse>"#;
        let page = parse_page(xml).unwrap();
        assert_eq!(page.tags, [("Name".to_string(), "web & api".to_string()), ("Empty".to_string(), String::new())]);
        assert_eq!(page.next_token.as_deref(), Some("page-2"));
        let last = parse_page("<DescribeTagsResponse><tagSet/></DescribeTagsResponse>").unwrap();
        assert_eq!(last, Page { tags: Vec::new(), next_token: None });
    }

    #[test]
    fn an_error_document_gives_its_code_and_message_and_anything_else_is_refused() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>You are not authorized to perform this operation.</Message></Error></Errors><RequestID>1</RequestID></Response>"#;
        assert_eq!(parse_error(xml), Some(("UnauthorizedOperation".into(), "You are not authorized to perform this operation.".into())));
        assert!(parse_page(xml).unwrap_err().contains("root element is \"Response\""));
        assert!(parse_page("not xml").is_err());
        assert_eq!(parse_error("<html>proxy error</html>"), None);
    }

    #[test]
    fn the_endpoint_is_the_sdks_variable_or_the_regions() {
        let none = |_: &str| None;
        assert_eq!(endpoint("eu-west-1", none), "https://ec2.eu-west-1.amazonaws.com");
        assert_eq!(endpoint("cn-north-1", none), "https://ec2.cn-north-1.amazonaws.com.cn");
        let ec2 = |k: &str| (k == "AWS_ENDPOINT_URL_EC2").then(|| "http://127.0.0.1:5000".to_string());
        assert_eq!(endpoint("eu-west-1", ec2), "http://127.0.0.1:5000");
        let all = |k: &str| (k == "AWS_ENDPOINT_URL").then(|| "http://127.0.0.1:6000".to_string());
        assert_eq!(endpoint("eu-west-1", all), "http://127.0.0.1:6000");
    }
}
