//! Opens and clicks written together. Every hit that arrives while one
//! batch is being written waits for the next, and each batch is one write
//! transaction; a hit is answered only once the transaction holding it has
//! committed, so an answered hit is never lost (a crash loses only hits
//! not yet answered). Writes take turns (SQLite has one writer), and one
//! transaction per hit would cap the pixel at a few thousand a second;
//! under load, hundreds share one commit, and a run of opens of one
//! message is one update of its counts.
//!
//! Hits keep their order: a run of opens is written before the click that
//! came after it, and a run of clicks on one link of one message is one
//! update of its counts (each click still judged person or machine on its
//! own). A batch that fails is written again hit by hit, so one bad hit
//! never costs the others theirs.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use jiff::SignedDuration;
use tokio::sync::{mpsc, oneshot};

use super::Hit;
use crate::error::{Error, Result};
use crate::runtime::Runtime;

/// Hits written in one transaction at most.
const MAX_BATCH: usize = 512;
/// Hits waiting at most; more wait to be queued (back-pressure on the requests).
const QUEUE: usize = 8_192;
/// Turns the writer gives running requests to hand in their hits before
/// it writes a batch (see [`gather`]).
const GATHER_TURNS: usize = 4;

/// What a hit is.
#[derive(Clone, Copy, Debug)]
pub(super) enum Kind {
    Open,
    Click { link: u16, scanner: SignedDuration },
}

/// What writing a hit answered: for an open, whether the message exists;
/// for a click, where it leads.
#[derive(Debug)]
pub(super) enum Answer {
    Opened(bool),
    Clicked(Option<String>),
}

struct Pending {
    conversation: i64,
    kind: Kind,
    hit: Hit,
    reply: oneshot::Sender<Result<Answer>>,
}

/// The writer of each database (by URL), started on first use.
static WRITERS: LazyLock<Mutex<HashMap<String, mpsc::Sender<Pending>>>> = LazyLock::new(Mutex::default);

/// Writes one hit with whatever else is waiting, and answers once it is committed.
pub(super) async fn write(runtime: &Runtime, conversation: i64, kind: Kind, hit: &Hit) -> Result<Answer> {
    let options = runtime.pool().connect_options();
    let database = options.database_url.as_str();
    let (reply, answer) = oneshot::channel();
    let mut pending = Pending { conversation, kind, hit: *hit, reply };
    // A writer whose runtime ended (tests start one per test) is replaced once.
    for _ in 0..2 {
        let sender = {
            let mut writers = WRITERS.lock().unwrap_or_else(|p| p.into_inner());
            match writers.get(database) {
                Some(sender) => sender.clone(),
                None => {
                    let (sender, receiver) = mpsc::channel(QUEUE);
                    tokio::spawn(writer(runtime.clone(), receiver));
                    writers.insert(database.to_owned(), sender.clone());
                    sender
                }
            }
        };
        match sender.send(pending).await {
            Ok(()) => {
                return answer.await.unwrap_or_else(|_| Err(Error::Internal(anyhow::anyhow!("the hit writer stopped before answering"))));
            }
            Err(mpsc::error::SendError(back)) => {
                pending = back;
                let mut writers = WRITERS.lock().unwrap_or_else(|p| p.into_inner());
                if writers.get(database).is_some_and(|s| s.same_channel(&sender)) {
                    writers.remove(database);
                }
            }
        }
    }
    Err(Error::Internal(anyhow::anyhow!("no hit writer could be started")))
}

async fn writer(runtime: Runtime, mut queue: mpsc::Receiver<Pending>) {
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        gather(&mut queue, &mut batch).await;
        let answers = match write_batch(&runtime, &batch).await {
            Ok(answers) => answers.into_iter().map(Ok).collect(),
            Err(err) if batch.len() == 1 => vec![Err(err)],
            Err(err) => {
                tracing::warn!(error = %err, hits = batch.len(), "a batch of hits failed; writing them one by one");
                let mut answers = Vec::with_capacity(batch.len());
                for pending in &batch {
                    answers.push(write_batch(&runtime, std::slice::from_ref(pending)).await.map(|mut one| one.remove(0)));
                }
                answers
            }
        };
        for (pending, answer) in batch.into_iter().zip(answers) {
            let _ = pending.reply.send(answer); // a request gone meanwhile still had its hit written
        }
    }
}

/// Adds to `batch` the hits waiting, and then those that requests already
/// running hand in when given a turn: under load each commit (a few round
/// trips to SQLite's connection thread) serves more hits, and the write
/// turn is taken only once they are gathered, so it is held less of the
/// time; idle, one yield finds nothing and the batch goes as it is. (The
/// tracking bench under wrk, 64 connections: 22 hits per commit before, 36
/// after, and wrk's p99 from 72 ms to 3–12 ms, since the writer no longer
/// holds the turn long enough to trigger the write gate's breather.)
async fn gather(queue: &mut mpsc::Receiver<Pending>, batch: &mut Vec<Pending>) {
    for turn in 0..=GATHER_TURNS {
        let before = batch.len();
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let nothing_new = turn > 0 && batch.len() == before;
        if batch.len() >= MAX_BATCH || nothing_new || turn == GATHER_TURNS {
            return;
        }
        tokio::task::yield_now().await;
    }
}

/// One transaction: a run of opens a message at a time, a run of clicks
/// on one link of one message together, in order of arrival.
async fn write_batch(runtime: &Runtime, batch: &[Pending]) -> Result<Vec<Answer>> {
    let now = runtime.now();
    let mut tx = crate::db::begin_write(runtime.pool()).await?;
    let mut answers: Vec<Option<Answer>> = batch.iter().map(|_| None).collect();
    let mut events = 0;
    let mut at = 0;
    while at < batch.len() {
        match batch[at].kind {
            Kind::Click { link, scanner } => {
                let conversation = batch[at].conversation;
                let same = |p: &Pending| p.conversation == conversation && matches!(p.kind, Kind::Click { link: l, scanner: s } if l == link && s == scanner);
                let end = batch[at..].iter().position(|p| !same(p)).map_or(batch.len(), |n| at + n);
                let hits: Vec<&Hit> = batch[at..end].iter().map(|p| &p.hit).collect();
                let written = super::clicks_in(runtime, &mut tx, conversation, link, &hits, scanner, now).await?;
                events += written.events;
                for answer in &mut answers[at..end] {
                    *answer = Some(Answer::Clicked(written.answer.clone()));
                }
                at = end;
            }
            Kind::Open => {
                let end = batch[at..].iter().position(|p| !matches!(p.kind, Kind::Open)).map_or(batch.len(), |n| at + n);
                // Each message's opens of the run, in order of arrival.
                let mut of_message: Vec<(i64, Vec<usize>)> = Vec::new();
                for (i, pending) in batch.iter().enumerate().take(end).skip(at) {
                    match of_message.iter_mut().find(|(c, _)| *c == pending.conversation) {
                        Some((_, hits)) => hits.push(i),
                        None => of_message.push((pending.conversation, vec![i])),
                    }
                }
                for (conversation, indices) in of_message {
                    let hits: Vec<&Hit> = indices.iter().map(|&i| &batch[i].hit).collect();
                    let written = super::opens_in(runtime, &mut tx, conversation, &hits, now).await?;
                    events += written.events;
                    for i in indices {
                        answers[i] = Some(Answer::Opened(written.answer));
                    }
                }
                at = end;
            }
        }
    }
    tx.commit().await?;
    crate::ops::metrics::hits_committed(batch.len());
    if events > 0 {
        runtime.events_arrived();
    }
    Ok(answers.into_iter().map(|a| a.expect("every hit answered")).collect())
}
