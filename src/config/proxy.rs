//! The proxy a Kinesis Agent host was given: its service reads `/etc/sysconfig/aws-kinesis-agent`,
//! where `JVM_ARGS` carries Java's `-Dhttps.proxyHost`, `-Dhttps.proxyPort` and
//! `-Dhttp.nonProxyHosts`. [`from_jvm_args`] turns them into the `HTTPS_PROXY` and `NO_PROXY`
//! the AWS SDK reads, and [`no_proxy_with_metadata`] keeps instance metadata off any proxy.
//!
//! Guarantees: pure functions of the strings given; a proxy already set in the environment wins
//! (the caller decides). Not done here: changing the environment (the binary does, at start,
//! before any client exists), proxy credentials (Java has no standard property for them).

/// What `JVM_ARGS` says about a proxy for HTTPS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JvmProxy {
    /// `http://HOST:PORT`, for `HTTPS_PROXY`.
    pub https_proxy: String,
    /// `-Dhttp.nonProxyHosts` as `NO_PROXY` rules (`a|*.b` becomes `a,.b`).
    pub no_proxy: Option<String>,
}

/// The HTTPS proxy `JVM_ARGS` names, if any (`-Dhttps.proxyHost`, with `-Dhttps.proxyPort`,
/// 443 by default as in Java).
pub fn from_jvm_args(jvm_args: &str) -> Option<JvmProxy> {
    let mut host = None;
    let mut port = None;
    let mut non_proxy = None;
    for arg in jvm_args.split_whitespace() {
        let arg = arg.trim_matches(|c| c == '"' || c == '\'');
        let Some((key, value)) = arg.strip_prefix("-D").and_then(|kv| kv.split_once('=')) else { continue };
        let value = value.trim_matches(|c| c == '"' || c == '\'');
        match key {
            "https.proxyHost" if !value.is_empty() => host = Some(value.to_string()),
            "https.proxyPort" => port = value.parse::<u16>().ok(),
            "http.nonProxyHosts" if !value.is_empty() => {
                let rules: Vec<String> =
                    value.split('|').filter(|h| !h.is_empty()).map(|h| h.strip_prefix('*').unwrap_or(h).to_string()).collect();
                non_proxy = Some(rules.join(","));
            }
            _ => {}
        }
    }
    let host = host?;
    let host = if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host };
    Some(JvmProxy { https_proxy: format!("http://{host}:{}", port.unwrap_or(443)), no_proxy: non_proxy })
}

/// The instance metadata service's addresses: never reached through a proxy.
pub const METADATA_HOSTS: [&str; 2] = ["169.254.169.254", "fd00:ec2::254"];

/// `NO_PROXY` rules with the instance metadata addresses added when missing.
pub fn no_proxy_with_metadata(no_proxy: Option<&str>) -> String {
    let mut rules: Vec<String> =
        no_proxy.unwrap_or_default().split(',').map(str::trim).filter(|r| !r.is_empty()).map(String::from).collect();
    for host in METADATA_HOSTS {
        if !rules.iter().any(|r| r == host) {
            rules.push(host.to_string());
        }
    }
    rules.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_proxy_properties_become_the_sdks_environment() {
        let args =
            "-Xmx512m -Dhttps.proxyHost=proxy.corp.example -Dhttps.proxyPort=3128 -Dhttp.nonProxyHosts=\"localhost|*.internal|10.0.0.1\"";
        assert_eq!(
            from_jvm_args(args),
            Some(JvmProxy { https_proxy: "http://proxy.corp.example:3128".into(), no_proxy: Some("localhost,.internal,10.0.0.1".into()) })
        );
        // Java's default port for https.proxyPort; an IPv6 host in brackets
        assert_eq!(from_jvm_args("-Dhttps.proxyHost=10.1.2.3").unwrap().https_proxy, "http://10.1.2.3:443");
        assert_eq!(from_jvm_args("-Dhttps.proxyHost=fd00::1 -Dhttps.proxyPort=8080").unwrap().https_proxy, "http://[fd00::1]:8080");
        // an HTTP-only proxy does not carry HTTPS in Java either; nothing else is a proxy
        assert_eq!(from_jvm_args("-Dhttp.proxyHost=p -Dhttp.proxyPort=80"), None);
        assert_eq!(from_jvm_args("-Xms64m -Dfoo=bar"), None);
        assert_eq!(from_jvm_args(""), None);
    }

    #[test]
    fn instance_metadata_never_goes_through_the_proxy() {
        assert_eq!(no_proxy_with_metadata(None), "169.254.169.254,fd00:ec2::254");
        assert_eq!(no_proxy_with_metadata(Some("localhost, .internal")), "localhost,.internal,169.254.169.254,fd00:ec2::254");
        assert_eq!(no_proxy_with_metadata(Some("169.254.169.254")), "169.254.169.254,fd00:ec2::254");
    }
}
