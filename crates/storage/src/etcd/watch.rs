//! A watch that survives etcd restarts and leader changes.
//!
//! Each [`crate::Store::watch`] is one etcd watch (its own gRPC stream,
//! always with `prev_kv`) pumped by a background task into a bounded channel.
//! The task remembers `next`, the lowest revision not yet delivered. When
//! the stream fails or ends, it reconnects with backoff and asks etcd for
//! events from `next`, so nothing is lost and nothing is repeated (events
//! below `next` are also dropped defensively). If `next` was compacted in the
//! meantime, etcd cancels the new watch with the compacted revision and the
//! stream yields [`Error::Compacted`] and ends; the same happens when the
//! first start revision is already compacted.
//!
//! The channel holds [`CHANNEL_CAPACITY`] responses. A slow consumer makes
//! the task wait, which stops reading the gRPC stream; HTTP/2 flow control
//! then holds the events back in etcd, which is built to queue them for slow
//! watchers. Memory here stays bounded.
//!
//! If etcd stays unreachable for the reconnect budget, the stream yields
//! [`Error::Unavailable`] and ends, so the consumer can report it and
//! restart from its own last revision rather than wait forever.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{EventType, WatchOptions};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

use super::Inner;
use super::failure::Failure;
use super::kv::key_value_ref;
use crate::{Error, Event, EventKind, Result, Revision, WatchRequest, WatchResponse, WatchStream};

/// Watch responses buffered between the pump task and the consumer.
pub(super) const CHANNEL_CAPACITY: usize = 64;

type Sender = mpsc::Sender<Result<WatchResponse>>;

/// Starts the watch: the first connection is made before returning, so an
/// unreachable etcd is an error here rather than a stream that never speaks.
pub(super) async fn start(inner: Arc<Inner>, req: WatchRequest) -> Result<WatchStream> {
    let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
    let mut watcher = Watcher {
        // etcd reads a start revision <= 0 as "from now"; so do we, learning
        // the actual start from the created response (resuming "from now"
        // after a reconnect would skip events).
        next: req.start_revision.filter(|r| *r > 0),
        inner,
        req,
        tx,
    };
    let deadline = Instant::now() + watcher.inner.retry.timeout;
    let mut attempt = 0;
    let stream = loop {
        attempt += 1;
        match watcher.open().await {
            Ok(stream) => break stream,
            Err(f) => {
                let pause = watcher.inner.retry.backoff(attempt);
                if !f.is_transient() || Instant::now() + pause > deadline {
                    return Err(f.into_error("watch"));
                }
                tokio::time::sleep(pause).await;
            }
        }
    };
    tokio::spawn(watcher.run(stream));
    Ok(Box::pin(ReceiverStream::new(rx)))
}

struct Watcher {
    inner: Arc<Inner>,
    req: WatchRequest,
    /// The lowest revision not yet delivered; `None` until etcd has told us
    /// the revision a watch "from now" starts after.
    next: Option<Revision>,
    tx: Sender,
}

/// What to do after one etcd watch response.
enum Step {
    Continue,
    Reconnect(String),
    /// The consumer is gone, or a final error was sent.
    End,
}

impl Watcher {
    async fn run(mut self, mut stream: etcd_client::WatchStream) {
        loop {
            let reason = match self.pump(&mut stream).await {
                Some(reason) => reason,
                None => return,
            };
            // Dropping the old stream cancels it on the server, if alive.
            drop(stream);
            stream = match self.reconnect(reason).await {
                Some(s) => s,
                None => return,
            };
        }
    }

    /// Forwards responses until the stream breaks (returns why) or the
    /// watch is over (returns `None`).
    async fn pump(&mut self, stream: &mut etcd_client::WatchStream) -> Option<String> {
        loop {
            let message = tokio::select! {
                _ = self.tx.closed() => return None,
                m = stream.message() => m,
            };
            let resp = match message {
                Ok(Some(resp)) => resp,
                Ok(None) => return Some("etcd closed the watch stream".into()),
                Err(e) => return Some(e.to_string()),
            };
            match self.handle(resp).await {
                Step::Continue => {}
                Step::Reconnect(reason) => return Some(reason),
                Step::End => return None,
            }
        }
    }

    async fn handle(&mut self, resp: etcd_client::WatchResponse) -> Step {
        if resp.canceled() {
            // etcd 3.4 leaves `cancel_reason` empty for compaction: the
            // number is the signal.
            let compact_revision = resp.compact_revision();
            if compact_revision > 0 {
                self.inner.compaction.note(compact_revision);
                return self.finish(Error::Compacted { compact_revision }).await;
            }
            let reason = resp.cancel_reason();
            if reason.contains("permission denied") {
                return self
                    .finish(Error::InvalidArgument(format!("watch: {reason}")))
                    .await;
            }
            return Step::Reconnect(format!("etcd cancelled the watch: {reason}"));
        }
        let header = resp.header().map(|h| h.revision());
        if resp.created() {
            if self.next.is_none() {
                match header {
                    // A watch "from now" delivers revisions after this one.
                    Some(r) => self.next = Some(r + 1),
                    None => return Step::Reconnect("watch created without a header".into()),
                }
            }
            return Step::Continue;
        }
        if resp.events().is_empty() {
            return match header {
                Some(revision) if self.req.progress_notify => {
                    self.send(Ok(WatchResponse::Progress { revision })).await
                }
                _ => Step::Continue,
            };
        }
        let next = self.next.unwrap_or(0);
        let mut events = Vec::with_capacity(resp.events().len());
        for e in resp.events() {
            match event(e) {
                Ok(ev) if ev.revision() >= next => events.push(ev),
                Ok(_) => {} // already delivered before a reconnect
                Err(e) => return self.finish(e).await,
            }
        }
        let Some(last) = events.last().map(Event::revision) else {
            return Step::Continue;
        };
        let step = self.send(Ok(WatchResponse::Events(events))).await;
        self.next = Some(last + 1);
        step
    }

    /// Opens an etcd watch from `next` and waits for etcd to confirm it.
    async fn open(&mut self) -> std::result::Result<etcd_client::WatchStream, Failure> {
        let mut options = WatchOptions::new()
            .with_range(self.req.end.to_vec())
            .with_prev_key();
        if self.req.progress_notify {
            options = options.with_progress_notify();
        }
        if let Some(next) = self.next {
            options = options.with_start_revision(next);
        }
        let retry = &self.inner.retry;
        let mut client = self.inner.watch.clone();
        let mut stream = retry
            .once(
                "watch",
                client.watch(self.req.start.to_vec(), Some(options)),
            )
            .await?;
        // etcd answers a create with `created` first; anything after it
        // (events, or a compaction cancel) is handled by the pump.
        match retry.once("watch", stream.message()).await? {
            Some(resp) if resp.created() => match self.handle(resp).await {
                Step::Continue => Ok(stream),
                Step::Reconnect(message) => Err(Failure::Transient {
                    outcome: super::failure::Outcome::NotApplied,
                    message,
                    source: None,
                }),
                Step::End => Err(Failure::Rejected("watch ended at creation".into())),
            },
            _ => Err(Failure::Transient {
                outcome: super::failure::Outcome::NotApplied,
                message: "etcd did not confirm the watch".into(),
                source: None,
            }),
        }
    }

    /// Reconnects with backoff until it works, the consumer leaves, or the
    /// budget runs out.
    async fn reconnect(&mut self, reason: String) -> Option<etcd_client::WatchStream> {
        tracing::info!(%reason, next = ?self.next, "etcd watch interrupted; reconnecting");
        let started = Instant::now();
        let budget = self.inner.watch_reconnect_budget;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let pause = self
                .inner
                .retry
                .backoff(attempt)
                .min(Duration::from_secs(1));
            tokio::select! {
                _ = self.tx.closed() => return None,
                _ = tokio::time::sleep(pause) => {}
            }
            match self.open().await {
                Ok(stream) => {
                    tracing::info!(next = ?self.next, attempt, "etcd watch resumed");
                    return Some(stream);
                }
                Err(f) if started.elapsed() < budget => {
                    tracing::debug!(attempt, failure = ?f, "etcd watch reconnect failed");
                }
                Err(f) => {
                    let error = Error::Unavailable {
                        message: format!(
                            "watch: etcd unreachable for {:?} ({reason}; last: {})",
                            started.elapsed(),
                            f.into_error("reconnect")
                        ),
                        retry_after: Some(Duration::from_secs(1)),
                        source: None,
                    };
                    self.finish(error).await;
                    return None;
                }
            }
        }
    }

    async fn send(&mut self, item: Result<WatchResponse>) -> Step {
        match self.tx.send(item).await {
            Ok(()) => Step::Continue,
            Err(_) => Step::End,
        }
    }

    /// Sends the final error item; the stream ends after it.
    async fn finish(&mut self, error: Error) -> Step {
        let _ = self.tx.send(Err(error)).await;
        Step::End
    }
}

fn event(e: &etcd_client::Event) -> Result<Event> {
    let kind = match e.event_type() {
        EventType::Put => EventKind::Put,
        EventType::Delete => EventKind::Delete,
    };
    let kv = e
        .kv()
        .map(key_value_ref)
        .ok_or_else(|| Error::Corrupted("etcd watch event without a key".into()))?;
    Ok(Event {
        kind,
        kv,
        prev_kv: e.prev_kv().map(key_value_ref),
    })
}
