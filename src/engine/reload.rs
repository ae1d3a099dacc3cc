//! What a reload changes, decided from the running configuration and the new one, compared by
//! value (a rotated secret key, which never prints, is a change too).
//!
//! Guarantees: an unchanged flow is kept; a changed flow (or one sending to AWS when the AWS
//! settings changed) is retired and started again once retired; a removed flow is retired; a new
//! flow is started; settings that apply only at start are named. Not done here: carrying it out
//! (the engine).

use crate::config::{Config, Flow};

#[derive(Debug, Default, PartialEq)]
pub(super) struct Plan {
    /// Running flows (by index) to stop: they send what they read and go once it is acknowledged.
    pub retire: Vec<usize>,
    /// Flows to start, once a running flow of the same id has retired.
    pub start: Vec<Flow>,
    /// Flows waiting to start (by id) that the new configuration changes, holds back or removes:
    /// they do not start as they were (a changed one is in `start`).
    pub drop_waiting: Vec<String>,
    /// What changed that applies only at the next start.
    pub at_restart: Vec<&'static str>,
    pub aws_changed: bool,
    pub kept: usize,
    pub changed: usize,
    pub removed: usize,
    pub added: usize,
}

/// The plan for going from `old` to `new`, with these flows `running` (index and flow) and these
/// `waiting` to start.
pub(super) fn plan<'a>(old: &Config, new: &Config, running: impl IntoIterator<Item = (usize, &'a Flow)>, waiting: &[Flow]) -> Plan {
    let mut p = Plan::default();
    if new.checkpoint_file != old.checkpoint_file {
        p.at_restart.push("the checkpoint file");
    }
    // the flows sending to AWS start again with new AWS settings; CloudWatch keeps its client
    p.aws_changed = new.aws != old.aws;
    if p.aws_changed && old.cloudwatch.emit_metrics {
        p.at_restart.push("the AWS settings of CloudWatch");
    }
    if new.cloudwatch != old.cloudwatch {
        p.at_restart.push("CloudWatch");
    }
    if new.http != old.http {
        p.at_restart.push("the HTTP endpoint");
    }
    let mut still_running = Vec::new();
    for (fi, f) in running {
        match new.flows.iter().find(|n| n.id == f.id) {
            Some(n) if n == f && !(p.aws_changed && n.destination.aws().is_some()) => {
                p.kept += 1;
                still_running.push(&f.id);
            }
            Some(n) => {
                p.changed += 1;
                p.start.push(n.clone());
                p.retire.push(fi);
            }
            None => {
                p.removed += 1;
                p.retire.push(fi);
            }
        }
    }
    p.drop_waiting = waiting.iter().filter(|w| !new.flows.contains(w)).map(|w| w.id.clone()).collect();
    for n in &new.flows {
        let still_waiting = waiting.iter().any(|w| w == n);
        let known = still_running.contains(&&n.id) || still_waiting || p.start.iter().any(|w| w.id == n.id);
        if !known {
            p.added += 1;
            p.start.push(n.clone());
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(flows: &str, top: &str) -> Config {
        let yaml = format!("checkpoint_file: /var/lib/logferry/cp.db\n{top}flows:\n{flows}");
        crate::config::native::load(Path::new("/etc/logferry/logferry.yaml"), &yaml).expect("loads")
    }

    const A: &str = "  - {id: a, path: /var/log/a.log, sink: {type: stdout}}\n";
    const B: &str = "  - {id: b, path: /var/log/b.log, sink: {type: stdout}}\n";
    const B2: &str = "  - {id: b, path: /var/log/b2.log, sink: {type: stdout}}\n";
    const K: &str = "  - {id: k, path: /var/log/k.log, sink: {type: firehose, stream: logs}}\n";

    fn ids(flows: &[Flow]) -> Vec<&str> {
        flows.iter().map(|f| f.id.as_str()).collect()
    }

    #[test]
    fn unchanged_flows_are_kept_changed_ones_restart_removed_ones_stop_and_new_ones_start() {
        let old = config(&[A, B, K].concat(), "");
        let new = config(&[A, B2, "  - {id: c, path: /var/log/c.log, sink: {type: stdout}}\n"].concat(), "");
        let p = plan(&old, &new, old.flows.iter().enumerate(), &[]);
        assert_eq!((p.kept, p.changed, p.removed, p.added), (1, 1, 1, 1));
        assert_eq!(p.retire, [1, 2]);
        assert_eq!(ids(&p.start), ["b", "c"]);
        assert!(p.at_restart.is_empty() && !p.aws_changed);
    }

    #[test]
    fn a_rotated_secret_key_restarts_only_the_flows_sending_to_aws() {
        let old = config(&[A, K].concat(), "aws: {access_key_id: AKIAOLD, secret_access_key: old-secret}\n");
        let new = config(&[A, K].concat(), "aws: {access_key_id: AKIAOLD, secret_access_key: new-secret}\n");
        assert_eq!(format!("{:?}", old.aws), format!("{:?}", new.aws), "the secret never prints");
        let p = plan(&old, &new, old.flows.iter().enumerate(), &[]);
        assert!(p.aws_changed);
        assert_eq!(p.retire, [1]);
        assert_eq!(ids(&p.start), ["k"]);
    }

    #[test]
    fn settings_read_only_at_start_are_named_and_a_flow_waiting_to_start_is_not_started_twice() {
        let old = config(A, "");
        let new = config(&[A, B].concat(), "http: {listen: '127.0.0.1:9999'}\n");
        let waiting = [new.flows[1].clone()];
        let p = plan(&old, &new, old.flows.iter().enumerate(), &waiting);
        assert_eq!(p.at_restart, ["the HTTP endpoint"]);
        assert!(p.start.is_empty(), "b already waits");
        assert!(p.drop_waiting.is_empty());
        assert_eq!(p.kept, 1);
    }

    #[test]
    fn a_flow_waiting_to_start_that_the_reload_changes_or_removes_does_not_start_as_it_was() {
        let old = config(A, "");
        let waiting = [config(B, "").flows[0].clone()];
        let changed = config(&[A, B2].concat(), "");
        let p = plan(&old, &changed, old.flows.iter().enumerate(), &waiting);
        assert_eq!(p.drop_waiting, ["b"]);
        assert_eq!(p.start, [changed.flows[1].clone()], "the new version starts instead");
        let removed = config(A, "");
        let p = plan(&old, &removed, old.flows.iter().enumerate(), &waiting);
        assert_eq!(p.drop_waiting, ["b"]);
        assert!(p.start.is_empty());
    }
}
