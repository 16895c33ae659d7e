//! The embedded sink: group commit without a queue.
//!
//! One writer task owns the write path. It waits for an event, takes every other event already
//! waiting (up to [`WRITER_MAX_BATCH`]), applies them all in one `store.apply` transaction (one fsync),
//! then answers each request. While it commits, new requests queue up and form the next batch,
//! so the batch size follows the load and a lone request is never delayed by a timer.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};

use super::{EventSink, Publisher};
use crate::domain::event::{Applied, Event};
use crate::error::BackendError;
use crate::metrics::Metrics;
use crate::store::Store;

/// Most events in one transaction: bounds the time a batch holds the write lock.
pub const WRITER_MAX_BATCH: usize = 2048;
/// Requests that may wait for the writer before senders are made to wait too (back-pressure).
const QUEUE: usize = 16 * 1024;

type Reply = oneshot::Sender<Result<Applied, BackendError>>;

enum Command {
    Write(Event, Reply),
    Stop(oneshot::Sender<()>),
}

pub struct DirectSink {
    commands: mpsc::Sender<Command>,
}

impl DirectSink {
    /// Starts the writer task on the current runtime; it tells `publisher` of every change it
    /// committed (the live streams), in commit order.
    pub fn start(store: Arc<dyn Store>, metrics: Metrics, publisher: Arc<dyn Publisher>) -> Self {
        let (commands, receiver) = mpsc::channel(QUEUE);
        tokio::spawn(run_writer(store, metrics, publisher, receiver));
        Self { commands }
    }
}

#[async_trait]
impl EventSink for DirectSink {
    async fn send(&self, event: Event) -> Result<Applied, BackendError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || BackendError::Unavailable("the writer has stopped".into());
        self.commands
            .send(Command::Write(event, reply))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    async fn flush_and_stop(&self) {
        let (done, stopped) = oneshot::channel();
        if self.commands.send(Command::Stop(done)).await.is_ok() {
            let _ = stopped.await;
        }
    }
}

async fn run_writer(
    store: Arc<dyn Store>,
    metrics: Metrics,
    publisher: Arc<dyn Publisher>,
    mut receiver: mpsc::Receiver<Command>,
) {
    let mut commands = Vec::with_capacity(WRITER_MAX_BATCH);
    let mut events = Vec::with_capacity(WRITER_MAX_BATCH);
    let mut replies = Vec::with_capacity(WRITER_MAX_BATCH);
    loop {
        if receiver.recv_many(&mut commands, WRITER_MAX_BATCH).await == 0 {
            return;
        }
        let mut stop = None;
        for command in commands.drain(..) {
            match command {
                Command::Write(event, reply) if stop.is_none() => {
                    events.push(event);
                    replies.push(reply);
                }
                // Requests behind a stop are dropped unanswered: their senders see "stopped".
                Command::Write(..) => {}
                Command::Stop(done) => stop = stop.or(Some(done)),
            }
        }
        if !events.is_empty() {
            metrics.observe_write_batch(events.len());
            match store.apply(&events).await {
                Ok(outcomes) => {
                    debug_assert_eq!(outcomes.len(), replies.len());
                    publisher.publish(&events, &outcomes).await;
                    for (reply, outcome) in replies.drain(..).zip(outcomes) {
                        let _ = reply.send(Ok(outcome));
                    }
                }
                Err(err) => {
                    tracing::error!(error = %err, batch = events.len(), "write batch failed");
                    let unavailable = matches!(err, BackendError::Unavailable(_));
                    for reply in replies.drain(..) {
                        let answer = if unavailable {
                            BackendError::Unavailable("storage unavailable".into())
                        } else {
                            BackendError::Other(anyhow::anyhow!("write batch failed"))
                        };
                        let _ = reply.send(Err(answer));
                    }
                }
            }
            events.clear();
        }
        if let Some(done) = stop {
            receiver.close();
            let _ = done.send(());
            return;
        }
    }
}
