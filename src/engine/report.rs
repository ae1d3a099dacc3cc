//! The engine's figures for the metrics and the progress log.

use super::Engine;

impl Engine {
    /// Gives the metrics what changed in the engine's figures, and how far each flow lags.
    pub(super) fn publish_metrics(&mut self) {
        self.acked_since_publish = false;
        let m = &self.metrics;
        m.open_files.set(self.flows.iter().map(|f| f.tails.open_files()).sum::<usize>() as i64);
        m.files_waiting_for_descriptor.set(self.flows.iter().map(|f| f.tails.waiting_for_descriptor()).sum::<usize>() as i64);
        m.in_flight_bytes.set(self.in_flight as i64);
        m.line_buffer_bytes.set(self.held_total() as i64);
        for (fi, f) in self.flows.iter_mut().enumerate() {
            if self.retired.contains(&fi) {
                continue;
            }
            let fm = f.metrics.clone();
            let (s, p) = (f.stats, f.published);
            fm.records_parsed.inc_by(s.records - p.records);
            fm.bytes_read.inc_by(s.bytes_read - p.bytes_read);
            fm.records_dropped.inc_by(s.dropped - p.dropped);
            fm.records_truncated.inc_by(s.truncated - p.truncated);
            fm.records_split.inc_by(s.split - p.split);
            fm.processing_errors.inc_by(s.processing_errors - p.processing_errors);
            fm.processor_panics.inc_by(s.processor_panics - p.processor_panics);
            fm.fields_unparsed.inc_by(s.fields_unparsed - p.fields_unparsed);
            if let Some(meta) = f.tails.pod_metadata() {
                let (misses, errors, pods) = meta.take_counts();
                fm.kubernetes_misses.inc_by(misses);
                fm.kubernetes_errors.inc_by(errors);
                fm.kubernetes_pods.set(pods as i64);
            }
            fm.note_dead_letters(s.dead_lettered - p.dead_lettered);
            fm.consecutive_processing_errors.set(s.consecutive_processing_errors as i64);
            f.published = s;
            let files = f.tails.behind();
            let total: u64 = files.iter().map(|(_, b)| b).sum();
            fm.bytes_behind.set(total as i64);
            fm.files_behind.set(files.len() as i64);
            fm.checkpoint_age_seconds.set(if total > 0 { f.last_advance.elapsed().as_secs() as i64 } else { 0 });
            fm.set_files_behind(&files);
            if !f.journals.is_empty() {
                let mut status = Vec::new();
                for j in &mut f.journals {
                    let (read, gaps) = j.take_counts();
                    fm.journal_entries_read.inc_by(read);
                    fm.journal_gaps.inc_by(gaps);
                    status.push(j.status());
                }
                if let Some(t) = f.journals.iter().filter_map(|j| j.acked_realtime_us()).max() {
                    fm.journal_cursor_timestamp.set((t / 1_000_000) as i64);
                }
                fm.set_journals(status);
            }
            fm.set_stalled_since(f.out.waiting_since.map(|t| crate::ops::metrics::now_ms().saturating_sub(t.elapsed().as_millis() as u64)));
        }
    }

    /// One line per flow, as the Kinesis Agent's "Tailer Progress" lines.
    pub(super) fn log_progress(&mut self) {
        self.publish_metrics();
        for fm in self.metrics.flows() {
            tracing::info!(
                flow = %fm.id,
                "progress: {} records parsed ({} bytes), {} sent to {}, {} send errors, {} dead-lettered; {} bytes behind in {} files",
                fm.records_parsed.get(),
                fm.bytes_read.get(),
                fm.records_sent.get(),
                fm.destination,
                fm.record_send_errors.get(),
                fm.records_dead_lettered.get(),
                fm.bytes_behind.get(),
                fm.files_behind.get()
            );
        }
    }
}
