//! A flow's files as the metrics show them: every file and its bytes behind for `/status` and
//! `top`, and a `file_bytes_behind` series for the files most behind only.
//!
//! Guarantees: at most `http.per_file_series` series per flow, only for files with bytes
//! behind, so the series stay bounded however many files there are; setting them is linear in
//! the number of files. Not here: the flow's totals (`bytes_behind`, `files_behind`).

use super::{FileLabels, FlowMetrics};
use std::collections::HashSet;
use std::sync::atomic::Ordering;

impl FlowMetrics {
    /// At most `n` files have a `file_bytes_behind` series (`http.per_file_series`).
    pub fn set_file_series_max(&self, n: usize) {
        self.file_series_max.store(n, Ordering::Relaxed);
    }

    /// Sets the per-file bytes behind. Only the files most behind have a series, at most
    /// `file_series_max` of them, and only while something of them is behind: the number of
    /// series stays bounded however many files there are (the flow's total is
    /// `bytes_behind`). Linear in the number of files.
    pub fn set_files_behind(&self, files: &[(String, u64)]) {
        let max = self.file_series_max.load(Ordering::Relaxed);
        let mut behind: Vec<&(String, u64)> = files.iter().filter(|(_, b)| *b > 0).collect();
        if behind.len() > max {
            if max > 0 {
                behind.select_nth_unstable_by(max - 1, |a, b| b.1.cmp(&a.1));
            }
            behind.truncate(max);
        }
        if let Ok(mut series) = self.file_series.lock() {
            let keep: HashSet<&str> = behind.iter().map(|(p, _)| p.as_str()).collect();
            series.retain(|old| {
                let stays = keep.contains(old.as_str());
                if !stays {
                    self.file_bytes_behind.remove(&FileLabels { flow: self.id.clone(), file: old.clone() });
                }
                stays
            });
            for (p, n) in behind {
                self.file_bytes_behind.get_or_create(&FileLabels { flow: self.id.clone(), file: p.clone() }).set(*n as i64);
                if !series.contains(p) {
                    series.insert(p.clone());
                }
            }
        }
        if let Ok(mut known) = self.files.lock() {
            *known = files.to_vec();
        }
    }

    /// The files of the flow and their bytes behind, as last set.
    pub fn files_behind_list(&self) -> Vec<(String, u64)> {
        self.files.lock().map(|f| f.clone()).unwrap_or_default()
    }
}
