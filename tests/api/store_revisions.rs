//! The store contract of SPEC §6, against every SQL backend (SQLite always, MySQL when
//! `CHAT_TEST_MYSQL_URL` is set): revisions given and assigned, the changes feed, pages in both
//! directions, deletions that never come back, and the purge of deleted chats in bounded steps.

use chat_system::domain::event::{self, Applied, Event, AT_APPLY};
use chat_system::domain::{self, Change, Page, Token};

use crate::store::{message, stores};

fn application(token: &Token) -> Event {
    Event::ApplicationCreated(event::ApplicationCreated {
        token: token.clone(),
        name: "revisions".into(),
        at: domain::now(),
    })
}

fn chat(token: &Token, number: u64) -> Event {
    Event::ChatCreated(event::ChatCreated {
        token: token.clone(),
        number,
        at: domain::now(),
    })
}

fn edit(token: &Token, chat: u64, number: u64, body: &str, revision: u64) -> Event {
    Event::MessageEdited(event::MessageEdited {
        token: token.clone(),
        chat,
        number,
        body: body.into(),
        at: domain::now(),
        revision,
    })
}

fn delete(token: &Token, chat: u64, number: u64, revision: u64) -> Event {
    Event::MessageDeleted(event::MessageDeleted {
        token: token.clone(),
        chat,
        number,
        at: domain::now(),
        revision,
    })
}

fn created_at_apply(token: &Token, chat: u64, number: u64, body: &str) -> Event {
    Event::MessageCreated(event::MessageCreated {
        token: token.clone(),
        chat,
        number,
        body: body.into(),
        at: domain::now(),
        revision: AT_APPLY,
    })
}

fn revisions(changes: &[Change]) -> Vec<(u64, u64)> {
    changes.iter().map(|c| (c.number(), c.revision())).collect()
}

#[tokio::test]
async fn revisions_assigned_at_apply_rise_by_one_per_change_in_order() {
    for (name, store, _dir) in stores().await {
        let token = Token::generate();
        store
            .apply(&[application(&token), chat(&token, 1)])
            .await
            .expect("apply");
        let outcomes = store
            .apply(&[
                created_at_apply(&token, 1, 1, "one"),
                created_at_apply(&token, 1, 2, "two"),
                edit(&token, 1, 1, "one, edited", AT_APPLY),
                delete(&token, 1, 2, AT_APPLY),
                created_at_apply(&token, 1, 3, "three"),
            ])
            .await
            .expect("apply");
        let answered: Vec<Option<u64>> = outcomes
            .iter()
            .map(|o| match o {
                Applied::Message(m) => Some(m.revision),
                _ => None,
            })
            .collect();
        assert_eq!(
            answered,
            vec![Some(1), Some(2), Some(3), None, Some(5)],
            "{name}"
        );
        assert!(
            matches!(&outcomes[3], Applied::MessageDeleted(t) if t.revision == 4),
            "{name}: {:?}",
            outcomes[3]
        );
        let stored = store.chat(&token, 1).await.expect("read").expect("chat");
        assert_eq!(stored.revision, 5, "{name}");
        assert_eq!(stored.messages_count, 2, "{name}");
        // An edit or deletion of what is not there changes nothing, revision included.
        let missing = store
            .apply(&[
                edit(&token, 1, 9, "x", AT_APPLY),
                delete(&token, 1, 2, AT_APPLY),
            ])
            .await
            .expect("apply");
        assert_eq!(
            missing,
            vec![Applied::NotFound, Applied::NotFound],
            "{name}"
        );
        let stored = store.chat(&token, 1).await.expect("read").expect("chat");
        assert_eq!(
            stored.revision, 5,
            "{name}: nothing changed, nothing counted"
        );
    }
}

#[tokio::test]
async fn the_feed_lists_changes_after_a_revision_once_each_with_tombstones() {
    for (name, store, _dir) in stores().await {
        let token = Token::generate();
        store
            .apply(&[
                application(&token),
                chat(&token, 1),
                message(&token, 1, 1, "one"),
                message(&token, 1, 2, "two"),
                message(&token, 1, 3, "three"),
                edit(&token, 1, 1, "one, again", 4),
                delete(&token, 1, 2, 5),
            ])
            .await
            .expect("apply");
        let all = store
            .changes(&token, 1, 0, 100)
            .await
            .expect("read")
            .expect("chat");
        assert_eq!(revisions(&all), vec![(3, 3), (1, 4), (2, 5)], "{name}");
        match &all[2] {
            Change::Deleted(tombstone) => assert!(tombstone.deleted, "{name}"),
            other => panic!("{name}: expected a tombstone, got {other:?}"),
        }
        match &all[1] {
            Change::Message(m) => assert_eq!(m.body, "one, again", "{name}"),
            other => panic!("{name}: expected a message, got {other:?}"),
        }
        let after = store
            .changes(&token, 1, 4, 100)
            .await
            .expect("read")
            .expect("chat");
        assert_eq!(revisions(&after), vec![(2, 5)], "{name}");
        // `reindex` exports what a search may find: not the deleted message.
        let exported: Vec<u64> = store
            .export_messages(0, 100_000)
            .await
            .expect("export")
            .into_iter()
            .filter(|m| m.token == token.as_str())
            .map(|m| m.number)
            .collect();
        assert_eq!(exported, vec![1, 3], "{name}: reindex skips the deleted");
        let bounded = store
            .changes(&token, 1, 0, 2)
            .await
            .expect("read")
            .expect("chat");
        assert_eq!(bounded.len(), 2, "{name}");
        assert!(store
            .changes(&token, 7, 0, 10)
            .await
            .expect("read")
            .is_none());
    }
}

#[tokio::test]
async fn given_revisions_make_replays_and_late_edits_change_nothing() {
    for (name, store, _dir) in stores().await {
        let token = Token::generate();
        let batch = vec![
            application(&token),
            chat(&token, 1),
            message(&token, 1, 1, "one"),
            edit(&token, 1, 1, "the later edit", 3),
            // Reached the store after the edit of revision 3: the higher revision wins.
            edit(&token, 1, 1, "the earlier edit", 2),
        ];
        store.apply(&batch).await.expect("apply");
        store.apply(&batch).await.expect("replay");
        let stored = store
            .message(&token, 1, 1)
            .await
            .expect("read")
            .expect("message");
        assert_eq!(
            (stored.body.as_str(), stored.revision),
            ("the later edit", 3),
            "{name}"
        );
        let chat = store.chat(&token, 1).await.expect("read").expect("chat");
        assert_eq!(chat.revision, 3, "{name}: a replay raised nothing");
        // A deletion always wins, and a replayed creation does not bring the message back.
        store
            .apply(&[delete(&token, 1, 1, 4), message(&token, 1, 1, "one")])
            .await
            .expect("apply");
        assert!(store.message(&token, 1, 1).await.expect("read").is_none());
        let chat = store.chat(&token, 1).await.expect("read").expect("chat");
        assert_eq!((chat.revision, chat.messages_count), (4, 0), "{name}");
    }
}

#[tokio::test]
async fn pages_run_both_ways_between_bounds_and_skip_the_deleted() {
    for (name, store, _dir) in stores().await {
        let token = Token::generate();
        let mut batch = vec![application(&token), chat(&token, 1)];
        batch.extend((1..=10).map(|n| message(&token, 1, n, "m")));
        batch.push(delete(&token, 1, 7, 11));
        store.apply(&batch).await.expect("apply");
        let numbers = |page: Page| {
            let store = store.clone();
            let token = token.clone();
            async move {
                store
                    .messages(&token, 1, page)
                    .await
                    .expect("read")
                    .expect("chat")
                    .iter()
                    .map(|m| m.number)
                    .collect::<Vec<_>>()
            }
        };
        let latest = Page {
            descending: true,
            ..Page::first(0, 0, 3)
        };
        assert_eq!(numbers(latest).await, vec![10, 9, 8], "{name}");
        let older = Page {
            before: 8,
            ..latest
        };
        assert_eq!(numbers(older).await, vec![6, 5, 4], "{name}: 7 is deleted");
        let between = Page {
            after: 2,
            before: 6,
            ..Page::first(0, 0, 10)
        };
        assert_eq!(numbers(between).await, vec![3, 4, 5], "{name}");
        let between_desc = Page {
            descending: true,
            ..between
        };
        assert_eq!(numbers(between_desc).await, vec![5, 4, 3], "{name}");
    }
}

#[tokio::test]
async fn deleted_chats_and_applications_stay_deleted_and_are_purged_in_steps() {
    for (name, store, _dir) in stores().await {
        let token = Token::generate();
        let mut batch = vec![application(&token), chat(&token, 1), chat(&token, 2)];
        batch.extend((1..=25).map(|n| message(&token, 1, n, "doomed")));
        batch.push(message(&token, 2, 1, "kept"));
        store.apply(&batch).await.expect("apply");
        let deleted = store
            .apply(&[Event::ChatDeleted(event::ChatDeleted {
                token: token.clone(),
                number: 1,
                at: domain::now(),
            })])
            .await
            .expect("apply");
        assert_eq!(deleted, vec![Applied::Deleted], "{name}");
        assert!(store.chat(&token, 1).await.expect("read").is_none());
        assert!(store.message(&token, 1, 3).await.expect("read").is_none());
        assert!(store
            .messages(&token, 1, Page::first(0, 0, 10))
            .await
            .expect("read")
            .is_none());
        // A late message event does not bring the chat back; its number stays taken.
        let late = store
            .apply(&[message(&token, 1, 26, "late")])
            .await
            .expect("apply");
        assert_eq!(late, vec![Applied::NotFound], "{name}");
        assert!(store.chat(&token, 1).await.expect("read").is_none());
        assert_eq!(
            store.last_chat_number(&token).await.expect("read"),
            Some(2),
            "{name}"
        );
        let application_row = store.application(&token).await.expect("read").expect("app");
        assert_eq!(application_row.chats_count, 1, "{name}");
        // Purged in steps of at most the limit; other chats untouched.
        let mut steps = 0;
        let mut erased = 0;
        loop {
            let done = store.purge(10).await.expect("purge");
            if done == 0 {
                break;
            }
            assert!(done <= 10, "{name}: a step erases at most its limit");
            erased += done;
            steps += 1;
            assert!(steps < 100, "{name}: the purge ends");
        }
        assert!(steps >= 3, "{name}: 25 messages in steps of 10");
        assert!(erased >= 25, "{name}");
        let kept = store
            .message(&token, 2, 1)
            .await
            .expect("read")
            .expect("kept");
        assert_eq!(kept.body, "kept", "{name}");
        // The application goes with everything under it.
        let gone = store
            .apply(&[Event::ApplicationDeleted(event::ApplicationDeleted {
                token: token.clone(),
                at: domain::now(),
            })])
            .await
            .expect("apply");
        assert_eq!(gone, vec![Applied::Deleted], "{name}");
        assert!(store.application(&token).await.expect("read").is_none());
        assert!(store.chat(&token, 2).await.expect("read").is_none());
        assert!(store
            .last_chat_number(&token)
            .await
            .expect("read")
            .is_none());
        let again = store.apply(&[chat(&token, 3)]).await.expect("apply");
        assert_eq!(again, vec![Applied::NotFound], "{name}");
        let counters = store.counters().await.expect("counters");
        assert!(
            !counters
                .applications
                .iter()
                .any(|(t, _)| t == token.as_str()),
            "{name}: a deleted application gets no counter after a Redis reset"
        );
        let report = store.sync_counts().await.expect("sync");
        assert_eq!(report.chats_fixed, 0, "{name}: counts were exact");
    }
}
