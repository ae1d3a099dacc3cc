//! Environment values in the native configuration's strings: `${NAME}`, `${NAME:-default}` (the
//! default when the variable is unset or empty, as in a shell), and `$$` for a literal `$`.
//!
//! Guarantees: only string values are expanded, after the YAML is parsed, so a value cannot
//! change the configuration's structure; an unset variable without a default is an error naming
//! it; a `$` not followed by `{` or `$` stays as it is (a regex's `$` needs no escaping). Pure:
//! the environment is passed in.

/// `text` with its `${...}` replaced through `lookup`, or why it cannot be.
pub fn expand(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    if !text.contains('$') {
        return Ok(text.to_string());
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
            continue;
        }
        let Some(inner) = after.strip_prefix('{') else {
            out.push('$');
            rest = after;
            continue;
        };
        let Some(end) = inner.find('}') else {
            return Err(format!("{text:?} has a `${{` without its `}}` (write `$$` for a literal `$`)"));
        };
        let (name, default) = match inner[..end].split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (&inner[..end], None),
        };
        let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!("`${{{}}}`: {name:?} is not an environment variable name", &inner[..end]));
        }
        match (lookup(name).filter(|v| !v.is_empty()), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => {
                return Err(format!("the environment variable {name} is not set (write `${{{name}:-default}}` to give a default)"))
            }
        }
        rest = &inner[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "NODE_NAME" => Some("ip-10-0-1-7.ec2.internal".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn variables_defaults_and_escapes_expand() {
        assert_eq!(expand("node ${NODE_NAME}!", env).unwrap(), "node ip-10-0-1-7.ec2.internal!");
        assert_eq!(expand("${CLUSTER:-dev}-logs", env).unwrap(), "dev-logs");
        assert_eq!(expand("${EMPTY:-x}", env).unwrap(), "x", "empty counts as unset, as in a shell");
        assert_eq!(expand("${NODE_NAME:-x}", env).unwrap(), "ip-10-0-1-7.ec2.internal");
        assert_eq!(expand("cost $$5 and ^end$", env).unwrap(), "cost $5 and ^end$");
        assert_eq!(expand("no variables", env).unwrap(), "no variables");
    }

    #[test]
    fn an_unset_variable_without_default_and_a_broken_reference_are_errors() {
        let e = expand("x ${CLUSTER} y", env).unwrap_err();
        assert!(e.contains("CLUSTER is not set") && e.contains("${CLUSTER:-default}"), "{e}");
        assert!(expand("${NODE_NAME", env).unwrap_err().contains("without its `}`"));
        assert!(expand("${1X}", env).unwrap_err().contains("not an environment variable name"));
    }
}
