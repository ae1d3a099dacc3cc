//! The one sink worker loop: it takes a flow's batches, hands them to the flow's [`Sink`], writes
//! the records the destination rejected for good to the dead-letter file, and only then
//! acknowledges each batch.
//!
//! Guarantees: this is the only code that builds [`Delivered`]; a batch is acknowledged only
//! after its sink returned it delivered and its rejected records are durable in the dead-letter
//! file (a failed write is retried with backoff: the records wait in the log files). Batches
//! already waiting are handed over while the sink wants more ([`Sink::wants_more`]: a group
//! commit for the local sinks, a queue that fills every request for the AWS ones). Not done
//! here: retrying a delivery (each sink retries until its records are durable) and restarting a
//! worker that died ([`super::supervise`]).

use super::aws::{jitter, ErrorLog};
use super::{deadletter, Rejected, Sink};
use crate::batch::{Batch, Delivered};
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Where a worker's batches come from.
pub trait BatchSource {
    /// The next batch, waiting for it; `None` once the flow closed its channel.
    fn next_batch(&mut self) -> Option<Batch>;
    /// A batch already waiting, if any.
    fn try_next_batch(&mut self) -> Option<Batch>;
}

impl BatchSource for Receiver<Batch> {
    fn next_batch(&mut self) -> Option<Batch> {
        self.recv().ok()
    }

    fn try_next_batch(&mut self) -> Option<Batch> {
        self.try_recv().ok()
    }
}

/// The batches of one flow, shared by its sink workers: each takes the next batch waiting.
#[derive(Clone)]
pub struct SharedBatches(pub Arc<Mutex<Receiver<Batch>>>);

impl SharedBatches {
    pub fn new(batches: Receiver<Batch>) -> Self {
        SharedBatches(Arc::new(Mutex::new(batches)))
    }

    /// Whether the flow still holds the sending side (a worker that returns while it does died).
    pub fn still_open(&self) -> bool {
        self.0.lock().is_ok_and(|r| !matches!(r.try_recv(), Err(mpsc::TryRecvError::Disconnected)))
    }
}

impl BatchSource for SharedBatches {
    fn next_batch(&mut self) -> Option<Batch> {
        self.0.lock().ok()?.recv().ok()
    }

    fn try_next_batch(&mut self) -> Option<Batch> {
        self.0.lock().ok()?.try_recv().ok()
    }
}

/// Where a flow's rejected records go.
#[derive(Debug, Clone)]
pub struct DeadLetters {
    pub path: PathBuf,
    /// The file's cap (it is rotated once past it).
    pub max_bytes: u64,
    /// The destination as the letters name it.
    pub destination: String,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

/// Feeds `sink` the batches of flow `flow` (index) until its channel closes and the sink
/// delivered every batch it took: it takes the batches waiting while the sink wants more, lets
/// it work, and acknowledges each batch it returns.
pub fn run(
    sink: &mut impl Sink,
    batches: &mut impl BatchSource,
    flow: usize,
    flow_id: &str,
    dead: Option<&DeadLetters>,
    delivered: impl Fn(Delivered),
) {
    let mut errors = ErrorLog::default();
    loop {
        if sink.is_idle() {
            match batches.next_batch() {
                Some(b) => sink.take(b),
                None => return,
            }
        }
        while sink.wants_more() {
            match batches.try_next_batch() {
                Some(b) => sink.take(b),
                None => break,
            }
        }
        for (batch, rejected) in sink.progress() {
            if !rejected.is_empty() {
                write_dead_letters(dead, flow_id, &batch, &rejected, &mut errors, |d| sink.pause(d));
            }
            delivered(Delivered { flow, acks: batch.acks, budget_bytes: batch.budget_bytes, dead_lettered: rejected.len() as u64 });
        }
    }
}

/// Writes `rejected` to the dead-letter file, retrying until it is durable.
/// `pause` waits between attempts (the sink's own wait: its requests in flight go on).
fn write_dead_letters(
    dead: Option<&DeadLetters>,
    flow_id: &str,
    batch: &Batch,
    rejected: &[Rejected],
    errors: &mut ErrorLog,
    mut pause: impl FnMut(Duration),
) {
    let Some(d) = dead else {
        tracing::error!(flow = %flow_id, "{} records were rejected by a destination that has no dead-letter file; they are counted as dead-lettered", rejected.len());
        return;
    };
    let mut backoff = d.initial_backoff;
    loop {
        match deadletter::write(&d.path, d.max_bytes, flow_id, &d.destination, batch, rejected) {
            Ok(written) => {
                if written.rotated {
                    let older = deadletter::rotated_path(&d.path);
                    tracing::error!(flow = %flow_id, "the dead-letter file {} reached its cap of {} bytes: it is now {} and a new one starts (the letters in an older {} are gone)", d.path.display(), d.max_bytes, older.display(), older.display());
                }
                if errors.due("dead-letter").is_some() {
                    tracing::error!(flow = %flow_id, "{} records rejected as invalid were written to the dead-letter file {} (further ones are written without this message for a minute)", rejected.len(), d.path.display());
                }
                return;
            }
            Err(e) => {
                if errors.due("dead-letter-write").is_some() {
                    tracing::error!(flow = %flow_id, "cannot write the dead-letter file {}: {e}; retrying, the records wait in the log files", d.path.display());
                }
                pause(jitter(backoff));
                backoff = (backoff * 2).min(d.max_backoff);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::AckRef;
    use crate::sinks::{GroupSink, Grouped};
    use std::path::Path;

    /// Takes each group, rejects the second record of every batch.
    struct RejectSecond {
        groups: Vec<usize>,
        group_bytes: usize,
    }

    impl GroupSink for RejectSecond {
        fn deliver(&mut self, group: &[Batch]) -> Vec<Vec<Rejected>> {
            self.groups.push(group.len());
            group
                .iter()
                .map(|b| {
                    (1..b.len().min(2)).map(|i| Rejected { record: i, code: "ValidationException".into(), message: "no".into() }).collect()
                })
                .collect()
        }

        fn group_bytes(&self) -> usize {
            self.group_bytes
        }
    }

    fn batch(tail: u64, records: &[&str]) -> Batch {
        let mut b = Batch::default();
        for (i, r) in records.iter().enumerate() {
            b.data.extend_from_slice(r.as_bytes());
            b.commit_record(AckRef { tail, seq: i as u64 }, r.len() as u64, Path::new("/var/log/app.log"), i as u64 * 10);
        }
        b
    }

    #[test]
    fn rejected_records_are_dead_lettered_before_their_batch_is_acknowledged_and_waiting_batches_go_together() {
        let d = tempfile::tempdir().unwrap();
        let dead = DeadLetters {
            path: d.path().join("dead.jsonl"),
            max_bytes: 1 << 20,
            destination: "DeliveryStream:logs".into(),
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(1),
        };
        let (tx, mut rx) = mpsc::channel();
        for t in 0..3 {
            tx.send(batch(t, &["a", "b", "c"])).unwrap();
        }
        drop(tx);
        let mut sink = Grouped::new(RejectSecond { groups: Vec::new(), group_bytes: 1 << 20 });
        let acks = std::cell::RefCell::new(Vec::<Delivered>::new());
        let path = dead.path.clone();
        run(&mut sink, &mut rx, 7, "web", Some(&dead), |d| {
            // the letters are durable before the acknowledgement
            let letters = std::fs::read_to_string(&path).unwrap();
            assert_eq!(letters.lines().count(), acks.borrow().len() + 1);
            acks.borrow_mut().push(d);
        });
        assert_eq!(sink.inner().groups, [3], "the waiting batches were one delivery");
        let acks = acks.into_inner();
        assert_eq!(acks.len(), 3);
        assert!(acks.iter().all(|d| d.flow == 7 && d.dead_lettered == 1 && d.acks.len() == 3 && d.budget_bytes == 3));
    }

    #[test]
    fn a_sink_without_groups_gets_one_batch_at_a_time() {
        let (tx, mut rx) = mpsc::channel();
        tx.send(batch(0, &["a"])).unwrap();
        tx.send(batch(1, &["b"])).unwrap();
        drop(tx);
        let mut sink = Grouped::new(RejectSecond { groups: Vec::new(), group_bytes: 0 });
        let n = std::cell::Cell::new(0);
        run(&mut sink, &mut rx, 0, "f", None, |_| n.set(n.get() + 1));
        assert_eq!(sink.inner().groups, [1, 1]);
        assert_eq!(n.get(), 2);
    }
}
