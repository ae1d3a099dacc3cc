//! The rotation table of ARCHITECTURE.md, rule by rule, and the regressions the model found.

use super::model::{Model, Op};
use super::*;

#[test]
fn a_renamed_file_is_read_on_under_its_new_name_and_the_new_file_from_its_start() {
    let fs = MemFs::default();
    let old = write(&fs, CURRENT, "a\nb\n");
    let mut agent = Agent::with_flow(&fs, flow_with(GRACE_MS, true, ""), MemStore::default(), Instant::now());
    assert_eq!(agent.pass(), ["a", "b"]);
    fs.rename(Path::new(CURRENT), Path::new(ROTATED));
    fs.append(old, b"c\n");
    write(&fs, CURRENT, "d\n");
    let mut got = agent.pass();
    got.sort();
    assert_eq!(got, ["c", "d"]);
    assert_eq!(agent.tails.open_files(), 2);
}

#[test]
fn a_rotated_away_file_is_followed_for_growth_and_let_go_only_after_the_grace_period() {
    let fs = MemFs::default();
    let old = write(&fs, CURRENT, "a\n");
    let mut agent = Agent::with_flow(&fs, flow_with(10_000, false, ""), MemStore::default(), Instant::now());
    assert_eq!(agent.pass(), ["a"]);
    // renamed out of the glob; the writer goes on writing to it for a while
    fs.rename(Path::new(CURRENT), Path::new(ROTATED));
    fs.append(old, b"b\n");
    agent.advance(1_000);
    assert_eq!(agent.pass(), ["b"], "the last look at a file that went");
    fs.append(old, b"late\nunterminated");
    agent.advance(8_000);
    assert_eq!(agent.pass(), ["late"], "growth after it went is found by the scan");
    agent.advance(9_000);
    assert!(agent.pass().is_empty(), "its unterminated last line waits for the grace period of quiet");
    agent.advance(1_100);
    assert_eq!(agent.pass(), ["unterminated"]);
    agent.advance(100);
    agent.pass();
    assert_eq!(agent.tails.open_files(), 0, "let go once acknowledged");
}

#[test]
fn a_deleted_file_is_read_to_its_end_through_its_descriptor() {
    let fs = MemFs::default();
    let ino = write(&fs, CURRENT, "a\n");
    let mut agent = Agent::with_flow(&fs, flow_with(2_000, false, ""), MemStore::default(), Instant::now());
    assert_eq!(agent.pass(), ["a"]);
    fs.append(ino, b"b\nc");
    fs.unlink(Path::new(CURRENT));
    assert_eq!(agent.pass(), ["b"]);
    agent.advance(2_100);
    assert_eq!(agent.pass(), ["c"], "deleted: no second scan needed, only the grace period");
    agent.pass();
    assert_eq!(agent.tails.open_files(), 0);
}

#[test]
fn a_copytruncate_copy_continues_at_the_offset_and_the_truncated_file_starts_over() {
    copytruncate_after_a_read(false);
}

/// A file read, then (after being put to rest when `at_rest`) written, copied and truncated:
/// the copy continues at the offset, the truncated file starts over.
fn copytruncate_after_a_read(at_rest: bool) {
    let fs = MemFs::default();
    let ino = write(&fs, CURRENT, "1\n2\n3\n");
    let mut agent = Agent::with_flow(&fs, flow_with(GRACE_MS, true, ""), MemStore::default(), Instant::now());
    assert_eq!(agent.pass(), ["1", "2", "3"]);
    if at_rest {
        agent.ack(usize::MAX, false);
        put_to_rest(&mut agent, &fs);
    }
    // written after the last read, copied, then truncated; the application writes on
    fs.append(ino, b"4\n");
    let copy = fs.create(Path::new(ROTATED));
    fs.append(copy, b"1\n2\n3\n4\n");
    fs.truncate(ino);
    fs.append(ino, b"5\n");
    let mut got = agent.pass();
    got.extend(agent.pass());
    got.sort();
    assert_eq!(got, ["4", "5"], "nothing read twice, nothing lost");
}

#[test]
fn a_copy_holding_no_more_than_was_read_is_sealed_and_never_read() {
    copy_holding_no_more_than_was_read(false);
}

#[test]
fn a_copy_shorter_than_what_a_file_put_to_rest_read_after_it_is_sealed_and_never_read() {
    // its fingerprint grew after the copy was made: the hash alone cannot say the copy is its
    // start, so its first bytes are kept for a while at rest
    copy_holding_no_more_than_was_read(true);
}

#[test]
fn a_file_at_rest_keeps_its_first_bytes_only_for_a_while_after_its_fingerprint_grew() {
    let fs = MemFs::default();
    let ino = write(&fs, CURRENT, "1\n");
    let mut agent = Agent::with_flow(&fs, flow_with(GRACE_MS, true, ""), MemStore::default(), Instant::now());
    assert_eq!(agent.pass(), ["1"]);
    agent.ack(usize::MAX, false);
    put_to_rest(&mut agent, &fs);
    let kept = |agent: &Agent| agent.tails.resting.values().next().map(|r| r.head.is_some());
    assert_eq!(kept(&agent), Some(false), "opened whole: nothing grew");
    fs.append(ino, b"2\n");
    assert_eq!(agent.pass(), ["2"]);
    agent.ack(usize::MAX, false);
    put_to_rest(&mut agent, &fs);
    assert_eq!(kept(&agent), Some(true), "its fingerprint grew");
    agent.advance(super::super::resting::HEAD_KEPT_AT_REST.as_millis() as u64 - 1_000);
    agent.scan();
    assert_eq!(kept(&agent), Some(true));
    agent.advance(2_000);
    agent.scan();
    assert_eq!(kept(&agent), Some(false), "dropped by the first scan after the while");
}

/// A file read, copied, written and read again (and put to rest when `at_rest`), then
/// truncated: the copy holds nothing that was not read.
fn copy_holding_no_more_than_was_read(at_rest: bool) {
    let fs = MemFs::default();
    let ino = write(&fs, CURRENT, "1\n2\n");
    let mut agent = Agent::with_flow(&fs, flow_with(GRACE_MS, true, ""), MemStore::default(), Instant::now());
    assert_eq!(agent.pass(), ["1", "2"]);
    // logrotate copied before line 3 was written; line 3 was read from the original
    let copy = fs.create(Path::new(ROTATED));
    fs.append(copy, b"1\n2\n");
    fs.append(ino, b"3\n");
    assert_eq!(agent.pass(), ["3"]);
    if at_rest {
        agent.ack(usize::MAX, false);
        put_to_rest(&mut agent, &fs);
    }
    fs.truncate(ino);
    let mut got = agent.pass();
    got.extend(agent.pass());
    assert!(got.is_empty(), "{got:?}");
    agent.advance(COPY_WAIT.as_millis() as u64 + GRACE_MS + 1_000);
    let got = agent.pass();
    assert!(got.is_empty(), "{got:?}");
}

#[test]
fn a_new_file_that_only_shares_a_banner_is_tailed_at_once() {
    let fs = MemFs::default();
    write(&fs, CURRENT, "=== service v1 ===\n1\n2\n");
    let mut agent = Agent::with_flow(&fs, flow_with(GRACE_MS, true, ""), MemStore::default(), Instant::now());
    assert_eq!(agent.pass().len(), 3);
    write(&fs, ROTATED, "=== service v1 ===\nx\n");
    assert_eq!(agent.pass(), ["=== service v1 ===", "x"]);
}

#[test]
fn a_new_file_that_matches_a_tailed_one_waits_for_a_truncation_at_most_the_copy_wait() {
    new_file_like_a_followed_one(false);
}

/// A new file with the first bytes of a followed one (put to rest first when `at_rest`) waits
/// for a truncation, then is tailed as a file of its own.
fn new_file_like_a_followed_one(at_rest: bool) {
    let fs = MemFs::default();
    write(&fs, CURRENT, "1\n2\n");
    let mut agent = Agent::with_flow(&fs, flow_with(GRACE_MS, true, ""), MemStore::default(), Instant::now());
    assert_eq!(agent.pass().len(), 2);
    if at_rest {
        agent.ack(usize::MAX, false);
        put_to_rest(&mut agent, &fs);
    }
    // a copy is being made, and no truncation follows
    write(&fs, ROTATED, "1\n2\n");
    assert!(agent.pass().is_empty());
    agent.advance(COPY_WAIT.as_millis() as u64 - 100);
    assert!(agent.pass().is_empty(), "still possibly a copy");
    agent.advance(200);
    assert_eq!(agent.pass(), ["1", "2"], "tailed as a file of its own once the wait is over");
}

#[test]
fn a_file_truncated_in_place_starts_over_and_its_old_state_goes_after_the_copy_wait() {
    let fs = MemFs::default();
    let ino = write(&fs, CURRENT, "1\n2\nhalf");
    let mut agent = Agent::with_flow(&fs, flow_with(GRACE_MS, false, ""), MemStore::default(), Instant::now());
    assert_eq!(agent.pass(), ["1", "2"]);
    fs.truncate(ino);
    fs.append(ino, b"3\n");
    assert_eq!(agent.pass(), ["3"]);
    agent.advance(COPY_WAIT.as_millis() as u64 + 100);
    assert_eq!(agent.pass(), ["half"], "no copy came: what was read of the old content is sent");
    agent.pass();
    assert_eq!(agent.tails.tails.len(), 1, "the old state is gone once acknowledged");
}

/// Starts an agent on one file holding `first`, stops it once every line is delivered, applies
/// `meanwhile` to the file, starts it again: what the second agent delivers.
fn across_a_restart(first: &str, meanwhile: impl FnOnce(&MemFs, u64)) -> Vec<String> {
    let fs = MemFs::default();
    let ino = write(&fs, CURRENT, first);
    let mut agent = Agent::with_flow(&fs, flow_with(GRACE_MS, false, ""), MemStore::default(), Instant::now());
    assert_eq!(agent.pass().len(), first.lines().count());
    let store = std::mem::take(&mut agent.store);
    drop(agent);
    meanwhile(&fs, ino);
    let mut agent = Agent::with_flow(&fs, flow_with(GRACE_MS, false, ""), store, Instant::now());
    agent.pass()
}

#[test]
fn a_file_replaced_while_stopped_is_read_from_its_start() {
    // rewritten in place, longer than the checkpoint
    let got = across_a_restart("first content\n", |fs, ino| {
        fs.truncate(ino);
        fs.append(ino, b"second content, longer\n");
    });
    assert_eq!(got, ["second content, longer"]);
}

#[test]
fn lines_written_before_a_rotation_out_of_the_glob_while_stopped_are_read_from_the_new_name() {
    let mut got = across_a_restart("1\n2\n", |fs, ino| {
        fs.append(ino, b"3\n");
        fs.rename(Path::new(CURRENT), Path::new(ROTATED));
        write(fs, CURRENT, "4\n");
    });
    got.sort();
    assert_eq!(got, ["3", "4"]);
}

#[test]
fn a_file_out_of_the_glob_that_only_shares_the_inode_number_is_not_read() {
    let got = across_a_restart("1\n2\n", |fs, ino| {
        fs.rename(Path::new(CURRENT), Path::new(ROTATED));
        fs.truncate(ino);
        fs.append(ino, b"another file's content\n");
        write(fs, CURRENT, "4\n");
    });
    assert_eq!(got, ["4"]);
}

#[test]
fn a_file_still_at_its_path_that_the_flow_no_longer_covers_is_not_read_after_a_restart() {
    let fs = MemFs::default();
    write(&fs, CURRENT, "a\n");
    let rotated = write(&fs, ROTATED, "1\n2\n");
    let mut agent = Agent::with_flow(&fs, flow_with(GRACE_MS, true, ""), MemStore::default(), Instant::now());
    assert_eq!(agent.pass().len(), 3);
    let store = std::mem::take(&mut agent.store);
    drop(agent);
    fs.append(rotated, b"3\n");
    // the flow now reads app.log only: app.log.1, still where it was, is not its file any more
    let mut agent = Agent::with_flow(&fs, flow_with(GRACE_MS, false, ""), store, Instant::now());
    assert!(agent.pass().is_empty());
    assert_eq!(agent.tails.open_files(), 1);
}

#[test]
fn a_restart_resumes_at_the_checkpoint() {
    assert_eq!(across_a_restart("1\n2\n", |fs, ino| fs.append(ino, b"3\n")), ["3"]);
}

#[test]
fn the_first_start_at_end_of_file_skips_what_is_there_but_not_later_files() {
    let fs = MemFs::default();
    write(&fs, CURRENT, "old\npartial");
    let flow = flow_with(GRACE_MS, true, "    initial_position: end_of_file\n");
    let mut agent = Agent::with_flow(&fs, flow, MemStore::default(), Instant::now());
    assert!(agent.pass().is_empty());
    write(&fs, CURRENT, " line\n");
    write(&fs, ROTATED, "new file\n");
    let mut got = agent.pass();
    got.sort();
    assert_eq!(got, ["new file", "partial line"]);
}

/// Regression: a file copied and truncated while the budget held its reads, then deleted, had
/// its copy read from the start (the truncation was seen only by a read, after the copy had
/// been taken for a file of its own): every line came twice.
#[test]
fn a_truncation_is_seen_by_the_scan_even_while_the_budget_holds_the_reads() {
    let ops = [Op::Write { lines: 2, partial: false }, Op::Scan, Op::Write { lines: 2, partial: false }, Op::CopyTruncate, Op::Delete];
    replay(&ops, 256, true);
}

/// Regression: a file truncated and written past the old offset while the budget held its
/// reads had the old content's acknowledgements staged as a checkpoint in the new content.
#[test]
fn no_checkpoint_is_staged_in_a_file_rewritten_since_it_was_read() {
    let fs = MemFs::default();
    let ino = write(&fs, CURRENT, "old line one\nold line two\n");
    let mut agent = Agent::with_flow(&fs, flow_with(GRACE_MS, false, ""), MemStore::default(), Instant::now());
    agent.scan();
    agent.step();
    assert_eq!(agent.pipe.pending.len(), 2);
    // truncated and rewritten, longer, before the acknowledgements come
    fs.truncate(ino);
    fs.append(ino, b"new content that is longer than the old\n");
    agent.store.staged.clear();
    agent.ack(usize::MAX, false);
    assert!(agent.store.staged.is_empty(), "staged {:?}", agent.store.staged.iter().map(|r| r.offset).collect::<Vec<_>>());
    let mut got = agent.pass();
    got.extend(agent.pass());
    assert_eq!(got, ["new content that is longer than the old"]);
}

/// Replays `ops` on a model with `budget` and checks every line.
fn replay(ops: &[Op], budget: u64, rotated: bool) {
    let mut m = Model::new(budget, rotated, usize::MAX);
    for op in ops {
        m.apply(op);
    }
    m.drain();
    m.verify(ops).unwrap();
}

/// Regression: the room empty line buffers keep (up to 64 KiB each, from an earlier partial
/// line) counted against the budget; enough of it stopped every read for good, with nothing in
/// flight to free it.
#[test]
fn room_kept_by_empty_line_buffers_does_not_stop_reading() {
    let ops = [
        Op::Write { lines: 4, partial: true },
        Op::Scan,
        Op::Rename,
        Op::Write { lines: 2, partial: false },
        Op::Write { lines: 2, partial: true },
        Op::Scan,
        Op::Ack { n: 4, reverse: false },
        Op::Write { lines: 1, partial: false },
        Op::Write { lines: 1, partial: false },
    ];
    replay(&ops, 256, true);
}

/// Regression: a file truncated and written again past the old offset while the budget held its
/// reads, then deleted, had its copytruncate copy read from the start.
#[test]
fn a_file_truncated_and_rewritten_while_reads_wait_is_known_truncated_at_the_scan() {
    let ops = [
        Op::Write { lines: 4, partial: false },
        Op::Scan,
        Op::CopyTruncate,
        Op::Write { lines: 2, partial: false },
        Op::Write { lines: 3, partial: false },
        Op::Delete,
        Op::Write { lines: 1, partial: false },
        Op::Truncate,
    ];
    replay(&ops, 256, true);
}

#[test]
fn a_deleted_file_tells_what_it_holds_and_letting_it_go_loses_only_what_was_not_read() {
    let fs = MemFs::default();
    let ino = write(&fs, CURRENT, "a\n");
    let mut agent = Agent::with_flow(&fs, flow_with(60_000, false, ""), MemStore::default(), Instant::now());
    assert_eq!(agent.pass(), ["a"]);
    // "b" and "c" read and in flight; "d", "e" and an unfinished "f" not read
    fs.append(ino, b"b\nc\n");
    agent.scan();
    agent.step();
    fs.append(ino, b"d\ne\nf");
    assert!(agent.tails.deleted().is_empty(), "a followed file is not deleted");
    fs.unlink(Path::new(CURRENT));
    agent.scan();
    let d = agent.tails.deleted();
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!((d[0].acknowledged, d[0].unread_from, d[0].len, d[0].let_go), (2, 6, 11, false));
    assert_eq!((d[0].behind(), d[0].unread()), (9, 5));
    assert_eq!(agent.tails.lines_between(d[0].tail, d[0].acknowledged, d[0].len), (5, true), "b c d e f");
    let behind = |agent: &Agent| agent.tails.behind().iter().map(|(_, b)| b).sum::<u64>();
    let lost = agent.tails.let_go(d[0].tail).expect("let go");
    assert_eq!((lost.from, lost.to, lost.lines, lost.exact), (6, 11, 3, true), "d e f");
    assert_eq!(behind(&agent), 4, "what was lost is no longer behind");
    assert_eq!(agent.tails.let_go(d[0].tail), None, "once");
    // what was read still ships; nothing after the cut is read
    let d = agent.tails.deleted();
    assert_eq!((d[0].len, d[0].behind(), d[0].unread(), d[0].let_go), (6, 4, 0, true));
    agent.step();
    let delivered: Vec<String> = agent.ack(usize::MAX, false).into_iter().map(|b| String::from_utf8_lossy(&b).into_owned()).collect();
    assert_eq!(delivered, ["b", "c"]);
    agent.step();
    assert!(agent.tails.deleted().is_empty());
    assert_eq!(agent.tails.open_files(), 0, "gone once acknowledged");
    assert!(!fs.is_open(ino));
}

#[test]
fn a_file_let_go_with_a_multi_line_record_in_progress_sends_it_at_its_flush_time_before_it_goes() {
    let fs = MemFs::default();
    let flow = flow_with(60_000, false, "    multiline: {start_pattern: '^[A-Z]', flush_timeout_ms: 500}\n");
    let ino = write(&fs, CURRENT, "A one\n  at x\n");
    let mut agent = Agent::with_flow(&fs, flow, MemStore::default(), Instant::now());
    // "A one" is held by the assembler until a start line or the flush time
    assert!(agent.pass().is_empty());
    fs.append(ino, b"B unread\n");
    fs.unlink(Path::new(CURRENT));
    agent.scan();
    let d = agent.tails.deleted();
    assert_eq!(d.len(), 1, "{d:?}");
    agent.tails.let_go(d[0].tail).expect("let go");
    assert!(agent.pass().is_empty());
    assert_eq!(agent.tails.open_files(), 1, "kept while its record is in progress");
    agent.advance(600);
    assert_eq!(agent.pass(), ["A one\n  at x"], "what was read ships");
    agent.pass();
    assert_eq!(agent.tails.open_files(), 0);
}

#[test]
fn a_scan_that_found_nothing_changed_keeps_every_file_and_ages_the_rotated_ones() {
    let fs = MemFs::default();
    let old = write(&fs, CURRENT, "a\n");
    let mut agent = Agent::with_flow(&fs, flow_with(2_000, false, ""), MemStore::default(), Instant::now());
    assert_eq!(agent.pass(), ["a"]);
    let unchanged = |agent: &mut Agent| {
        let scan = Scan { unchanged: true, ..Default::default() };
        agent.tails.on_scan(agent.now, &scan, &mut agent.store);
        agent.step();
        agent.ack(usize::MAX, false).into_iter().map(|b| String::from_utf8_lossy(&b).into_owned()).collect::<Vec<_>>()
    };
    // an unchanged scan finds no file, and loses none
    fs.append(old, b"b\n");
    agent.notify(old);
    assert_eq!(unchanged(&mut agent), ["b"]);
    assert_eq!(agent.tails.known_files(), 1);
    // rotated away: the full scan sees it go; unchanged scans count as scans that miss it
    fs.rename(Path::new(CURRENT), Path::new(ROTATED));
    fs.append(old, b"late\n");
    assert_eq!(agent.pass(), ["late"]);
    fs.append(old, b"later\n");
    assert_eq!(unchanged(&mut agent), ["later"], "its growth is looked for through its descriptor");
    agent.advance(2_100);
    unchanged(&mut agent);
    agent.advance(100);
    unchanged(&mut agent);
    assert_eq!(agent.tails.known_files(), 0, "let go after the grace period, with no full scan");
    // a new empty file waiting to say more is looked at again by an unchanged scan
    let new = write(&fs, CURRENT, "");
    agent.pass();
    fs.append(new, b"first\n");
    assert_eq!(unchanged(&mut agent), ["first"]);
}

#[test]
fn beyond_its_descriptors_a_file_with_data_waits_for_its_turn_and_is_read_then() {
    let fs = MemFs::default();
    write(&fs, CURRENT, "current\n");
    write(&fs, ROTATED, "rotated\n");
    let mut agent = Agent::with_flow(&fs, flow_with(2_000, true, ""), MemStore::default(), Instant::now());
    // two descriptors: one to hold a file, one for the file opened for a moment
    agent.tails.set_file_limit(2);
    agent.scan();
    assert_eq!((agent.tails.open_files(), agent.tails.waiting_for_descriptor()), (1, 1));
    agent.step();
    let mut got = agent.ack(usize::MAX, false);
    got.sort();
    assert_eq!(got, [b"current".to_vec(), b"rotated".to_vec()], "the file read to its end is closed for the one waiting");
    assert_eq!((agent.tails.open_files(), agent.tails.waiting_for_descriptor()), (1, 0));
    assert_eq!(fs.open_count(), 1);
}

#[test]
fn a_file_renamed_out_of_the_glob_and_written_before_a_scan_is_not_closed_idle_with_what_it_holds_unread() {
    // regression: the write is notified under a name the flow does not cover, so nothing marked
    // the file; closed as idle, it lost what it held once its last name went
    let fs = MemFs::default();
    let ino = write(&fs, CURRENT, "one\n");
    let mut agent = Agent::with_flow(&fs, flow_with(GRACE_MS, false, ""), MemStore::default(), Instant::now());
    assert_eq!(agent.pass(), ["one"]);
    fs.rename(Path::new(CURRENT), Path::new(ROTATED));
    fs.append(ino, b"two\n");
    agent.notify(ino);
    agent.step();
    fs.unlink(Path::new(ROTATED));
    agent.tails.close_idle(agent.now, Duration::ZERO);
    assert!(fs.is_open(ino), "kept open: it holds a line not read");
    assert_eq!(agent.pass(), ["two"]);
}

#[test]
fn a_file_at_rest_keeps_only_its_position_and_wakes_for_growth_a_rename_and_a_truncation() {
    let fs = MemFs::default();
    let ino = write(&fs, CURRENT, "a\n");
    let mut agent = Agent::with_flow(&fs, flow_with(2_000, true, ""), MemStore::default(), Instant::now());
    let acked =
        |agent: &mut Agent| agent.ack(usize::MAX, false).into_iter().map(|b| String::from_utf8_lossy(&b).into_owned()).collect::<Vec<_>>();
    assert_eq!(agent.pass(), ["a"]);
    let rest = |agent: &mut Agent| {
        agent.tails.close_idle(agent.now, Duration::ZERO);
        assert_eq!((agent.tails.resting_files(), agent.tails.open_files(), agent.tails.known_files()), (1, 0, 1), "at rest");
        assert_eq!(fs.open_count(), 0);
    };
    rest(&mut agent);
    // a notification: read on from where it rested, with no scan
    fs.append(ino, b"b\n");
    agent.notify(ino);
    assert_eq!(agent.tails.waiting_for_descriptor(), 1);
    agent.step();
    assert_eq!(acked(&mut agent), ["b"]);
    // growth a scan sees is behind while it waits for its turn
    rest(&mut agent);
    fs.append(ino, b"cc\n");
    agent.scan();
    assert_eq!(agent.tails.behind(), [(CURRENT.to_string(), 3)]);
    agent.step();
    assert_eq!(acked(&mut agent), ["cc"]);
    assert!(agent.tails.behind().is_empty());
    // renamed (the glob matches both names): followed under its new name, whose notifications
    // are its own
    rest(&mut agent);
    fs.rename(Path::new(CURRENT), Path::new(ROTATED));
    agent.scan();
    agent.step();
    assert_eq!(agent.tails.resting_files(), 1, "a rename alone gives nothing to read");
    fs.append(ino, b"d\n");
    assert!(agent.tails.changed(Path::new(ROTATED)));
    agent.step();
    assert_eq!(acked(&mut agent), ["d"]);
    // truncated and written again while at rest: read from its start
    rest(&mut agent);
    fs.truncate(ino);
    fs.append(ino, b"new\n");
    assert_eq!(agent.pass(), ["new"]);
    // what it kept was its position: nothing was read twice, and its checkpoint is where it is
    assert_eq!(agent.store.rows[&key(ino)].offset, 4);
}

#[test]
fn a_file_at_rest_is_small() {
    // identity, position, path, link target: no buffers, and its first bytes (up to 256) only
    // for a while after its fingerprint grew (120 bytes take the same allocation as 112)
    assert!(std::mem::size_of::<super::super::resting::Resting>() <= 120, "{}", std::mem::size_of::<super::super::resting::Resting>());
}

/// Puts every file of `agent` to rest: its first bytes are then known by their hash only.
fn put_to_rest(agent: &mut Agent, fs: &MemFs) {
    agent.tails.close_idle(agent.now, Duration::ZERO);
    assert_eq!(agent.tails.resting_files(), agent.tails.known_files(), "all at rest");
    assert_eq!(fs.open_count(), 0);
}

#[test]
fn a_copytruncate_copy_of_a_file_at_rest_continues_at_the_offset_and_the_truncated_file_starts_over() {
    // at rest, the file's first bytes are known by their hash only
    copytruncate_after_a_read(true);
}

#[test]
fn a_new_file_that_starts_with_all_of_a_resting_files_first_bytes_waits_for_a_truncation() {
    // at rest, the file's first bytes are known by their hash only
    new_file_like_a_followed_one(true);
}

#[test]
fn a_file_put_to_rest_with_pieces_in_flight_moves_its_checkpoint_as_they_are_acknowledged() {
    let fs = MemFs::default();
    let ino = write(&fs, CURRENT, "a\nb\n");
    let mut agent = Agent::with_flow(&fs, flow_with(2_000, false, ""), MemStore::default(), Instant::now());
    agent.scan();
    agent.step();
    // read to its end and closed (to make room for another, say) before any acknowledgement
    agent.tails.close(1);
    assert_eq!((agent.tails.resting_files(), agent.tails.outstanding()), (1, 2));
    assert_eq!(agent.tails.behind(), [(CURRENT.to_string(), 4)]);
    assert_eq!(agent.ack(1, false), [b"a".to_vec()]);
    assert_eq!(agent.store.rows[&key(ino)].offset, 2, "staged through a descriptor opened for the moment");
    assert_eq!(agent.tails.behind(), [(CURRENT.to_string(), 2)]);
    assert_eq!(agent.ack(1, false), [b"b".to_vec()]);
    assert_eq!(agent.store.rows[&key(ino)].offset, 4);
    assert_eq!(agent.tails.outstanding(), 0);
    assert!(agent.tails.behind().is_empty());
    assert_eq!(fs.open_count(), 0);
    // and it reads on from there
    fs.append(ino, b"c\n");
    agent.notify(ino);
    agent.step();
    assert_eq!(agent.ack(usize::MAX, false), [b"c".to_vec()]);
}
