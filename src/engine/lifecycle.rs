//! How flows come and go while the engine runs: a reload (its plan is [`super::reload`]),
//! retiring a flow (send what it read, wait for its acknowledgements up to the shutdown timeout,
//! save its positions), restarting a flow whose sink worker died (with a backoff), and shutdown.
//!
//! Guarantees: a retiring flow reads nothing more and goes once everything it sent is
//! acknowledged, or at its deadline (what was not acknowledged is read again by its successor or
//! at the next start); shutdown flushes rotated-away files' last lines and commits positions.

use super::flow::{hold_flow, start_flow};
use super::{descriptors, reload, Engine, Event};
use crate::batch::pipeline::FlowStats;
use std::time::{Duration, Instant};

impl Engine {
    /// SIGHUP: loads the configuration again. Unchanged flows go on untouched; removed flows send
    /// what they read and go once it is acknowledged; changed flows do the same and then start
    /// again from their positions; new flows start. A configuration that does not load is
    /// refused and the running one kept. Settings that only apply at start are reported.
    pub(super) fn reload(&mut self) {
        let mut new = match crate::config::load(&self.cfg.path) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(
                    "SIGHUP: the configuration {} is refused; the running configuration is kept.\n{e}",
                    self.cfg.path.display()
                );
                return;
            }
        };
        for w in &new.warnings {
            tracing::warn!("{w}");
        }
        // the host's region was found at start (a flow without one is refused when it starts)
        new.aws.host_region = self.cfg.aws.host_region.clone();
        let running = self.flows.iter().enumerate().filter(|(_, f)| !f.retiring).map(|(i, f)| (i, &f.flow));
        let plan = reload::plan(&self.cfg, &new, running, &self.waiting_to_start);
        if !plan.at_restart.is_empty() {
            tracing::warn!("SIGHUP: changes to {} apply at the next restart", plan.at_restart.join(", "));
        }
        if plan.aws_changed {
            self.cfg.aws = new.aws.clone();
            tracing::info!("SIGHUP: the AWS settings changed (credentials included): the flows sending to AWS start again with them");
        }
        self.waiting_to_start.retain(|w| !plan.drop_waiting.contains(&w.id));
        self.waiting_to_start.extend(plan.start);
        for &fi in &plan.retire {
            self.retire(fi);
        }
        self.cfg.max_bytes_in_flight = new.max_bytes_in_flight;
        self.cfg.max_open_files = new.max_open_files;
        self.file_cap = descriptors::FileCap::new(new.max_open_files, self.file_cap.limit);
        if let Some(w) = self.file_cap.warning(new.max_open_files) {
            tracing::warn!("{w}");
        }
        self.metrics.open_files_limit.set(self.file_cap.cap as i64);
        self.cfg.idle_close_ms = new.idle_close_ms;
        self.cfg.status_period_secs = new.status_period_secs;
        self.cfg.shutdown_timeout_ms = new.shutdown_timeout_ms;
        self.cfg.flows = new.flows;
        self.waiting_to_hold = new.held.clone();
        self.cfg.held = new.held;
        self.metrics.set_held(self.cfg.held.iter().map(|h| (h.flow.id.clone(), h.reason())).collect());
        let reload::Plan { kept, added, changed, removed, .. } = plan;
        let held = self.cfg.held.len();
        tracing::info!("SIGHUP: configuration reloaded: {kept} flows unchanged, {added} started, {changed} changed (they restart once what they read is acknowledged), {removed} removed, {held} held back (not started)");
        self.start_waiting_flows();
    }

    /// Stops reading a flow: its partial records and batch are sent, its sink finishes.
    pub(super) fn retire(&mut self, fi: usize) {
        let deadline = Instant::now() + Duration::from_millis(self.cfg.shutdown_timeout_ms);
        let f = &mut self.flows[fi];
        f.retiring = true;
        f.retire_deadline = Some(deadline);
        self.with_pipe(fi, |tails, pipe, _, _| tails.flush_assemblers(pipe));
        let f = &mut self.flows[fi];
        f.out.send();
        f.out.sink = None;
        f.journals.iter_mut().for_each(|j| j.stop());
        tracing::info!(flow = %f.flow.id, "stopping this flow (reload): sending what it read");
    }

    /// A retiring flow goes once everything it sent is acknowledged.
    pub(super) fn retire_step(&mut self, fi: usize) {
        if self.retired.contains(&fi) {
            return;
        }
        let f = &self.flows[fi];
        let unacknowledged = f.out.waiting > 0 || f.tails.outstanding() > 0 || f.journals.iter().any(|j| j.outstanding() > 0);
        if unacknowledged && f.retire_deadline.is_none_or(|at| Instant::now() < at) {
            return;
        }
        let f = &mut self.flows[fi];
        if unacknowledged {
            tracing::warn!(
                flow = %f.flow.id,
                "{} bytes this flow sent were not acknowledged within the shutdown timeout ({} ms): it is stopped anyway, and what was not acknowledged is read again by the flow that replaces it (or at the next start)",
                f.out.in_flight,
                self.cfg.shutdown_timeout_ms
            );
            self.in_flight = self.in_flight.saturating_sub(f.out.in_flight);
            f.out.in_flight = 0;
            // a sink stalled for good may never return: its threads are left to end on their own
            f.sink_threads.clear();
        }
        self.report_abandoned(fi, "stopping this flow (reload)");
        let f = &mut self.flows[fi];
        f.tails.release(&mut self.store);
        for h in f.sink_threads.drain(..) {
            let _ = h.join();
        }
        let id = f.flow.id.clone();
        if !self.cfg.flows.iter().any(|n| n.id == id) {
            self.metrics.remove_flow(&id);
        }
        self.retired.insert(fi);
        self.commit();
        tracing::info!(flow = %id, "flow stopped; its positions are saved");
        self.start_waiting_flows();
    }

    /// A flow whose sink worker died is stopped at once and started again from its saved
    /// positions (what it sent and was not acknowledged is sent again), after a delay that
    /// doubles with each death in the last ten minutes (1 s up to 64 s).
    pub(super) fn sink_died(&mut self, d: crate::sinks::supervise::WorkerDied) {
        let Some(f) = self.flows.get(d.flow).filter(|f| !f.retiring) else { return };
        f.metrics.sink_restarts.inc();
        let id = f.flow.id.clone();
        let flow = f.flow.clone();
        let now = Instant::now();
        let deaths = self.sink_deaths.entry(id.clone()).or_default();
        deaths.retain(|t| now.duration_since(*t) < Duration::from_secs(600));
        deaths.push(now);
        let delay = Duration::from_secs(1 << (deaths.len() - 1).min(6));
        tracing::error!(flow = %id, "{}: the flow is started again from its saved positions in {} s (what it sent and was not acknowledged is sent again)", d.reason, delay.as_secs());
        self.retire(d.flow);
        self.flows[d.flow].retire_deadline = Some(now);
        self.restart_not_before.insert(id, now + delay);
        self.waiting_to_start.push(flow);
    }

    /// Starts the flows of a reload whose previous version (same id) has retired, and flows
    /// restarted after their sink died once their delay passed.
    pub(super) fn start_waiting_flows(&mut self) {
        // a flow that may take over the positions of a flow no longer configured waits until
        // that one has retired and saved them
        let unconfigured_retiring =
            self.flows.iter().enumerate().any(|(i, f)| f.retiring && !self.retired.contains(&i) && !self.cfg.is_configured(&f.flow.id));
        for held in std::mem::take(&mut self.waiting_to_hold) {
            let running = self.flows.iter().enumerate().any(|(i, f)| f.flow.id == held.flow.id && !self.retired.contains(&i));
            if running || unconfigured_retiring {
                self.waiting_to_hold.push(held);
                continue;
            }
            if let Err(e) = hold_flow(&self.cfg, &held, &mut self.store, &[]) {
                tracing::error!(flow = %held.flow.id, "cannot save the positions of this held flow: {e:#}");
            }
        }
        let waiting = std::mem::take(&mut self.waiting_to_start);
        let now = Instant::now();
        for flow in waiting {
            let busy = self.flows.iter().enumerate().any(|(i, f)| f.flow.id == flow.id && !self.retired.contains(&i));
            let busy = busy || unconfigured_retiring;
            let delayed = self.restart_not_before.get(&flow.id).is_some_and(|t| now < *t);
            if busy || delayed {
                self.waiting_to_start.push(flow);
                continue;
            }
            let index = self.flows.len();
            match start_flow(&self.cfg, &flow, index, &mut self.store, &[], &self.events_tx, &self.metrics, &self.ctx) {
                Ok(state) => {
                    tracing::info!(flow = %flow.id, "flow started (reload)");
                    self.flows.push(state);
                }
                Err(e) => tracing::error!(flow = %flow.id, "cannot start this flow: {e:#}"),
            }
        }
    }

    pub(super) fn shutdown(mut self) -> Result<Vec<FlowStats>, super::EngineError> {
        for fi in 0..self.flows.len() {
            // files rotated away get no more lines: what waits in them (a multi-line record, a
            // partial container line) goes now, unless the next start finds them again
            if self.flows[fi].retiring {
                continue; // already flushed when it retired, its sink closed
            }
            self.with_pipe(fi, |tails, pipe, _, _| tails.flush_orphans(pipe));
            self.flows[fi].out.send();
        }
        let deadline = Instant::now() + Duration::from_millis(self.cfg.shutdown_timeout_ms);
        while self.in_flight > 0 && !self.stop_now {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match self.events.recv_timeout(left) {
                Ok(Event::Delivered(d)) => self.delivered(d),
                Ok(Event::StopNow(why)) => {
                    tracing::warn!("{why} again: stopping without waiting for the rest of the acknowledgements");
                    self.stop_now = true;
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        if self.in_flight > 0 {
            let waiting: Vec<String> = self
                .flows
                .iter()
                .filter_map(|f| {
                    let records = f.tails.outstanding();
                    (records > 0).then(|| format!("{} ({records} pieces)", f.flow.id))
                })
                .collect();
            let when = if self.stop_now { "when the agent was stopped at once" } else { "within the shutdown timeout" };
            tracing::warn!(
                "{} bytes were not acknowledged {when}, of flows {}; they are read again at the next start",
                self.in_flight,
                waiting.join(", ")
            );
        }
        for fi in 0..self.flows.len() {
            if !self.retired.contains(&fi) {
                self.report_abandoned(fi, "stopping");
            }
        }
        for f in &mut self.flows {
            f.out.sink = None;
        }
        if let Err(e) = self.store.commit() {
            tracing::error!("{e}; the last positions could not be saved, so some records will be sent again at the next start");
        }
        let stats = self.flows.iter().map(|f| f.stats).collect();
        for f in &mut self.flows {
            if self.in_flight == 0 {
                for h in f.sink_threads.drain(..) {
                    let _ = h.join();
                }
            }
            tracing::info!(flow = %f.flow.id, "records handed to the sink {}, dropped {}, truncated {}, split {}, dead-lettered {}, processing errors {}, fields that did not parse {}, lines cut at max_line_bytes {}, bytes read {}", f.stats.records, f.stats.dropped, f.stats.truncated, f.stats.split, f.stats.dead_lettered, f.stats.processing_errors, f.stats.fields_unparsed, f.stats.runaway_lines, f.stats.bytes_read);
        }
        Ok(stats)
    }
}
