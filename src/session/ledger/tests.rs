use super::*;

fn replies(e: &mut Ledger, tags: &[u8]) -> (Vec<u8>, Vec<Undo>) {
    let mut out = Vec::new();
    let mut undo = Vec::new();
    for &t in tags {
        e.due(&mut out, &mut undo);
        match e.received(t, &mut undo) {
            Action::Forward => out.push(t),
            Action::Drop => {}
            Action::Replace(_) => out.push(b'!'),
            Action::Rename(..) => out.push(b'R'),
        }
    }
    e.due(&mut out, &mut undo);
    // Only the tags, for readable assertions.
    out.retain(|&b| b != 0 && b != 4);
    (out, undo)
}

#[test]
fn a_plain_run_lines_up_with_the_entries_after_it() {
    let mut e = Ledger::default();
    for kind in [Kind::Parse, Kind::Bind, Kind::Execute, Kind::Sync] {
        e.sent(kind, Fate::Forward, None);
    }
    e.sent(Kind::Parse, Fate::Swallow, Some(Undo::ServerForget(7)));
    e.sent(Kind::Sync, Fate::Forward, None);
    assert!(e.replies_owed());
    let (out, undo) = replies(&mut e, b"12DCZ1Z");
    assert_eq!(out, b"12DCZZ");
    assert!(undo.is_empty());
    assert!(e.is_empty());
}

#[test]
fn an_error_in_the_plain_run_skips_to_its_sync() {
    let mut e = Ledger::default();
    for kind in [Kind::Parse, Kind::Bind, Kind::Execute, Kind::Sync] {
        e.sent(kind, Fate::Forward, None);
    }
    e.emit(b'3', None);
    let (out, _) = replies(&mut e, b"EZ");
    assert_eq!(out, b"EZ3");
    assert!(e.is_empty());
}

#[test]
fn a_plain_run_longer_than_its_room_goes_on_in_the_queue() {
    let mut e = Ledger::default();
    for _ in 0..PLAIN_MAX + 3 {
        e.sent(Kind::Sync, Fate::Forward, None);
    }
    e.emit(b'1', None);
    let zs = vec![b'Z'; PLAIN_MAX + 3];
    let (out, _) = replies(&mut e, &zs);
    assert_eq!(out.len(), PLAIN_MAX + 4);
    assert_eq!(out.last(), Some(&b'1'));
    assert!(e.is_empty());
}

#[test]
fn abandoning_a_plain_run_undoes_what_follows_it() {
    let mut e = Ledger::default();
    e.sent(Kind::Sync, Fate::Forward, None);
    e.sent(Kind::Parse, Fate::Swallow, Some(Undo::ServerForget(9)));
    assert_eq!(e.abandon(), vec![Undo::ServerForget(9)]);
    assert!(e.is_empty());
}

#[test]
fn injected_parse_reply_is_dropped_and_emitted_replies_keep_their_place() {
    let mut e = Ledger::default();
    // Client: Parse(cached) Bind Execute Sync; pgswitch: emit '1',
    // then Parse(missing, swallowed) ahead of the Bind.
    e.emit(b'1', None);
    e.sent(Kind::Parse, Fate::Swallow, Some(Undo::ServerForget(7)));
    e.sent(Kind::Bind, Fate::Forward, None);
    e.sent(Kind::Execute, Fate::Forward, None);
    e.sent(Kind::Sync, Fate::Forward, None);
    let (out, undo) = replies(&mut e, b"12DDCZ");
    assert_eq!(out, b"12DDCZ");
    assert!(undo.is_empty());
    assert!(e.is_empty());
}

#[test]
fn an_error_skips_to_the_sync_and_undoes_what_was_skipped() {
    let mut e = Ledger::default();
    e.sent(Kind::Bind, Fate::Forward, None);
    e.sent(Kind::Execute, Fate::Forward, None);
    e.emit(b'3', Some(Undo::ClientForget(b"a"[..].into())));
    e.sent(Kind::Parse, Fate::Forward, Some(Undo::ServerForget(1)));
    e.sent(Kind::Sync, Fate::Forward, None);
    let (out, undo) = replies(&mut e, b"2EZ");
    assert_eq!(out, b"2EZ", "no CloseComplete after the error");
    assert_eq!(
        undo,
        vec![Undo::ClientForget(b"a"[..].into()), Undo::ServerForget(1)]
    );
}

#[test]
fn a_failed_injected_parse_reaches_the_client_and_is_undone() {
    let mut e = Ledger::default();
    e.sent(Kind::Parse, Fate::Swallow, Some(Undo::ServerForget(9)));
    e.sent(Kind::Bind, Fate::Forward, None);
    e.sent(Kind::Sync, Fate::Forward, None);
    let (out, undo) = replies(&mut e, b"EZ");
    assert_eq!(out, b"EZ");
    assert_eq!(undo, vec![Undo::ServerForget(9)]);
}

#[test]
fn refused_message_gets_its_replacement_error() {
    let mut e = Ledger::default();
    e.sent(Kind::Bind, Fate::Replace(b"E..."[..].into()), None);
    e.sent(Kind::Sync, Fate::Forward, None);
    let (out, _) = replies(&mut e, b"EZ");
    assert_eq!(out, b"!Z");
}

#[test]
fn errors_of_named_messages_are_renamed_and_failed_queries_undone() {
    use crate::prepared::statement::tests::stmt;
    let mut e = Ledger::default();
    let name: Arc<[u8]> = b"mine"[..].into();
    e.sent(Kind::Bind, Fate::Named(name, stmt("SELECT 1").hash), None);
    e.sent(Kind::Sync, Fate::Forward, None);
    let (out, _) = replies(&mut e, b"EZ");
    assert_eq!(out, b"RZ");
    // A Query that fails gives back what it would have done.
    let undo = Undo::ClientForget(b"x"[..].into());
    e.sent(Kind::Sync, Fate::Forward, Some(undo.clone()));
    let (out, undone) = replies(&mut e, b"EZ");
    assert_eq!((out, undone), (b"EZ".to_vec(), vec![undo.clone()]));
    e.sent(Kind::Sync, Fate::Forward, Some(undo));
    let (_, undone) = replies(&mut e, b"CZ");
    assert!(undone.is_empty(), "a Query that worked keeps its effect");
    // Added ahead of a message that fails the same way: all dropped.
    e.sent(Kind::Parse, Fate::Silent, None);
    e.sent(Kind::Sync, Fate::Silent, None);
    e.sent(Kind::Sync, Fate::Forward, None);
    let (out, _) = replies(&mut e, b"EZEZ");
    assert_eq!(out, b"EZ");
}

#[test]
fn emitted_reply_with_nothing_owed_is_due_at_once() {
    let mut e = Ledger::default();
    e.emit(b'1', None);
    let mut out = Vec::new();
    e.due(&mut out, &mut Vec::new());
    assert_eq!(out, [b'1', 0, 0, 0, 4]);
    assert!(e.is_empty());
}

#[test]
fn describe_statement_and_async_messages() {
    let mut e = Ledger::default();
    e.sent(Kind::DescribeStatement, Fate::Forward, None);
    e.emit(b'3', None);
    e.sent(Kind::Sync, Fate::Forward, None);
    let (out, _) = replies(&mut e, b"tNTSZ");
    assert_eq!(out, b"tNT3SZ");
}

#[test]
fn sync_before_copy_data_is_ignored_like_the_server_does() {
    let mut e = Ledger::default();
    // tokio-postgres: Bind Execute Sync, then data, CopyDone, Sync.
    e.sent(Kind::Bind, Fate::Forward, None);
    e.sent(Kind::Execute, Fate::Forward, None);
    e.sent(Kind::Sync, Fate::Forward, None);
    let (out, _) = replies(&mut e, b"2G");
    assert_eq!(out, b"2G");
    e.client(b'c');
    e.sent(Kind::Sync, Fate::Forward, None);
    e.emit(b'3', None);
    let (out, _) = replies(&mut e, b"CZ");
    assert_eq!(out, b"CZ3");
    assert!(e.is_empty());
}

#[test]
fn a_sync_after_a_copy_query_is_ignored_too() {
    // A Query that starts COPY FROM STDIN, a Sync pipelined behind it
    // (ignored by the server in copy-in mode), then the data.
    let mut e = Ledger::default();
    e.sent(Kind::Sync, Fate::Forward, None); // the Query
    e.sent(Kind::Sync, Fate::Forward, None);
    let (out, _) = replies(&mut e, b"G");
    assert_eq!(out, b"G");
    e.client(b'c');
    e.emit(b'3', None);
    let (out, _) = replies(&mut e, b"CZ");
    assert_eq!(out, b"CZ3");
    assert!(e.is_empty());
}

#[test]
fn errors_inside_a_query_do_not_skip() {
    let mut e = Ledger::default();
    e.sent(Kind::Sync, Fate::Forward, None);
    e.emit(b'1', None);
    let (out, undo) = replies(&mut e, b"EZ");
    assert_eq!(out, b"EZ1");
    assert!(undo.is_empty());
}

/// The client sends `tags`, each passed on as it is.
fn send(l: &mut Ledger, tags: &[u8]) {
    for &t in tags {
        l.sent_as_is(t, None);
        l.client(t);
    }
}

/// The server replies with `tags`.
fn recv(l: &mut Ledger, tags: &[u8]) {
    for &t in tags {
        l.received(t, &mut Vec::new());
    }
}

#[test]
fn a_simple_query_is_owed_until_its_ready_for_query() {
    let mut l = Ledger::default();
    send(&mut l, b"Q");
    assert!(!l.quiet());
    recv(&mut l, b"TD");
    assert!(!l.quiet());
    recv(&mut l, b"CZ");
    assert!(l.quiet());
}

#[test]
fn a_pipeline_needs_every_sync_answered() {
    let mut l = Ledger::default();
    send(&mut l, b"PBESBES");
    assert_eq!(l.owed(), 2);
    recv(&mut l, b"12CZ2");
    assert!(!l.quiet());
    recv(&mut l, b"CZ");
    assert!(l.quiet());
    send(&mut l, b"PBEH");
    recv(&mut l, b"12C");
    assert!(!l.quiet(), "Flush without Sync keeps the connection");
    assert!(l.unsynced());
}

#[test]
fn an_extended_copy_writes_off_the_sync_sent_ahead_of_its_data() {
    // tokio-postgres: Bind, Execute, Sync, [CopyInResponse], data,
    // CopyDone, Sync.
    let mut l = Ledger::default();
    send(&mut l, b"BES");
    recv(&mut l, b"2G");
    assert!(!l.quiet(), "in copy-in mode");
    assert_eq!(l.owed(), 0);
    send(&mut l, b"ddcS");
    assert!(!l.quiet());
    recv(&mut l, b"CZ");
    assert!(l.quiet());
    assert!(!l.unsure());
}

#[test]
fn a_simple_copy_ends_at_its_ready_for_query() {
    let mut l = Ledger::default();
    send(&mut l, b"Q");
    recv(&mut l, b"G");
    send(&mut l, b"dHdc");
    assert!(!l.quiet());
    recv(&mut l, b"CZ");
    assert!(
        l.quiet(),
        "a Flush in copy-in mode is ignored, and holds nothing"
    );
}

#[test]
fn an_error_ends_copy_in() {
    // Simple COPY: the error and ReadyForQuery end it; the client's
    // CopyDone that follows is dropped by the server.
    let mut l = Ledger::default();
    send(&mut l, b"Q");
    recv(&mut l, b"GEZ");
    assert!(l.quiet());
    send(&mut l, b"c");
    assert!(l.quiet());
    // A Sync sent after the error is answered.
    let mut l = Ledger::default();
    send(&mut l, b"Q");
    recv(&mut l, b"GE");
    send(&mut l, b"SQ");
    for _ in 0..2 {
        recv(&mut l, b"Z");
        assert!(!l.quiet(), "the last Query is still owed");
    }
    recv(&mut l, b"Z");
    assert!(l.quiet());
}

#[test]
fn a_failed_copy_makes_its_written_off_syncs_unsure() {
    // Extended COPY, everything sent at once; the COPY fails right
    // after CopyInResponse, before reading anything (a BEFORE
    // STATEMENT trigger): the first Sync is answered after all.
    let mut l = Ledger::default();
    send(&mut l, b"BESdcS");
    recv(&mut l, b"2GE");
    assert!(l.unsure());
    for t in *b"ZZ" {
        recv(&mut l, &[t]);
        assert!(!l.quiet());
    }
    // A COPY that completes read its written-off Sync in copy-in mode.
    let mut l = Ledger::default();
    send(&mut l, b"BES");
    recv(&mut l, b"2G");
    send(&mut l, b"dcS");
    recv(&mut l, b"CZ");
    assert!(l.quiet());
    assert!(!l.unsure());
}

#[test]
fn a_request_in_copy_in_mode_keeps_the_connection_for_good() {
    // Whether the server answers a Sync there depends on whether the
    // data before it failed the COPY, which pgswitch cannot know; any
    // other request fails the COPY without a reply of its own.
    for request in [&b"S"[..], b"Q", b"PBE"] {
        let mut l = Ledger::default();
        send(&mut l, b"Q");
        recv(&mut l, b"G");
        send(&mut l, b"d");
        send(&mut l, request);
        send(&mut l, b"c");
        assert!(l.unsure(), "{request:?}");
        recv(&mut l, b"EZ");
        assert!(!l.quiet());
        send(&mut l, b"Q");
        recv(&mut l, b"ZZ");
        assert!(!l.quiet(), "never quiet again");
    }
}

#[test]
fn a_copy_sent_whole_before_its_copy_in_response_owes_the_last_sync() {
    let mut l = Ledger::default();
    send(&mut l, b"BESdcS");
    recv(&mut l, b"2G");
    assert!(!l.quiet());
    assert_eq!(l.owed(), 1);
    recv(&mut l, b"CZ");
    assert!(l.quiet());
}

#[test]
fn a_deep_pipeline_gives_its_room_back_once_answered() {
    let mut l = Ledger::default();
    for _ in 0..1000 {
        send(&mut l, b"Q");
    }
    assert!(l.queue.capacity() >= 1000 - PLAIN_MAX);
    for _ in 0..1000 {
        recv(&mut l, b"CZ");
    }
    assert!(l.quiet() && l.is_empty());
    assert!(l.queue.capacity() <= QUEUE_KEPT);
}

#[test]
fn abandoning_empties_the_ledger() {
    let mut l = Ledger::default();
    send(&mut l, b"QPB");
    l.abandon();
    assert!(l.quiet() && l.is_empty());
}

#[test]
fn kinds_of_messages_sent_as_they_are() {
    assert_eq!(
        Kind::of(b'D', Some(b"Sname\0")),
        Some(Kind::DescribeStatement)
    );
    assert_eq!(Kind::of(b'D', Some(b"P\0")), Some(Kind::DescribePortal));
    assert_eq!(Kind::of(b'D', None), Some(Kind::DescribePortal));
    assert_eq!(Kind::of(b'F', None), Some(Kind::Sync));
    for tag in *b"dcfHX" {
        assert_eq!(Kind::of(tag, None), None);
    }
}
