//! Micro-batching: concurrent callers' small requests answered together.
//!
//! A worker runs hundreds of jobs at once, and each needs a few small things from the database
//! (its rows, a limiter decision). Asked one by one, each costs a round trip and a statement of
//! its own, and under load those, not the work, are the ceiling (`make bench-publish`). A
//! [`Batcher`] queues the requests; `lanes` tasks each take whatever is waiting (up to
//! `max_batch`) and hand it to one function that answers all of it with a statement or two. An
//! idle batcher adds no delay: a lone request is a batch of one, sent at once. Under load a
//! batch holds what arrived while the previous ones were in flight.
//!
//! The function answers each request in order. If it fails, every request of that batch gets the
//! error; callers decide whether to retry (the group committer in [`crate::events`] is the
//! writing counterpart, with per-request conflicts).

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{Mutex, mpsc, oneshot};

/// Why a batched request got no answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BatchError {
    /// The batch function failed; the message says why.
    #[error("{0}")]
    Failed(Arc<str>),
    /// The batch function answered fewer requests than it was given.
    #[error("the batch answered {answered} of {asked} requests")]
    Incomplete { asked: usize, answered: usize },
    /// The batcher's tasks are gone (the runtime is shutting down).
    #[error("the batcher has stopped")]
    Stopped,
}

struct Pending<Request, Answer> {
    request: Request,
    reply: oneshot::Sender<Result<Answer, BatchError>>,
}

/// A handle to the batching tasks. Cheap to clone.
pub struct Batcher<Request, Answer> {
    sender: mpsc::Sender<Pending<Request, Answer>>,
}

impl<Request, Answer> Clone for Batcher<Request, Answer> {
    fn clone(&self) -> Self {
        Self { sender: self.sender.clone() }
    }
}

impl<Request: Send + 'static, Answer: Send + 'static> Batcher<Request, Answer> {
    /// Starts `lanes` tasks, each answering up to `max_batch` requests per call of `answer`.
    pub fn spawn<F, Fut>(lanes: usize, max_batch: usize, answer: F) -> Self
    where
        F: Fn(Vec<Request>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<Vec<Answer>>> + Send + 'static,
    {
        let (lanes, max_batch) = (lanes.max(1), max_batch.max(1));
        let (sender, receiver) = mpsc::channel(lanes * max_batch * 2);
        let receiver = Arc::new(Mutex::new(receiver));
        let answer = Arc::new(answer);
        for _ in 0..lanes {
            tokio::spawn(run_lane(receiver.clone(), answer.clone(), max_batch));
        }
        Self { sender }
    }

    /// Queues `request` and waits for its batch's answer.
    pub async fn call(&self, request: Request) -> Result<Answer, BatchError> {
        let (reply, answered) = oneshot::channel();
        self.sender.send(Pending { request, reply }).await.map_err(|_| BatchError::Stopped)?;
        answered.await.map_err(|_| BatchError::Stopped)?
    }
}

async fn run_lane<Request, Answer, F, Fut>(
    receiver: Arc<Mutex<mpsc::Receiver<Pending<Request, Answer>>>>,
    answer: Arc<F>,
    max_batch: usize,
) where
    F: Fn(Vec<Request>) -> Fut,
    Fut: Future<Output = anyhow::Result<Vec<Answer>>>,
{
    loop {
        let mut batch = Vec::with_capacity(max_batch);
        {
            // One lane waits for the first request at a time; the others wait for the lock.
            let mut receiver = receiver.lock().await;
            let Some(first) = receiver.recv().await else { return };
            batch.push(first);
            while batch.len() < max_batch {
                match receiver.try_recv() {
                    Ok(pending) => batch.push(pending),
                    Err(_) => break,
                }
            }
        }
        let (requests, replies): (Vec<Request>, Vec<_>) =
            batch.into_iter().map(|pending| (pending.request, pending.reply)).unzip();
        let asked = requests.len();
        match answer(requests).await {
            Ok(answers) if answers.len() == asked => {
                for (reply, answer) in replies.into_iter().zip(answers) {
                    let _ = reply.send(Ok(answer));
                }
            }
            Ok(answers) => {
                let error = BatchError::Incomplete { asked, answered: answers.len() };
                replies.into_iter().for_each(|reply| drop(reply.send(Err(error.clone()))));
            }
            Err(error) => {
                let error = BatchError::Failed(format!("{error:#}").into());
                replies.into_iter().for_each(|reply| drop(reply.send(Err(error.clone()))));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn concurrent_requests_share_batches_and_each_gets_its_own_answer() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let doubler = Batcher::spawn(1, 64, move |numbers: Vec<u32>| {
            counted.fetch_add(1, Ordering::Relaxed);
            async move {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                Ok(numbers.into_iter().map(|n| n * 2).collect())
            }
        });
        let answers = futures::future::join_all((0..200u32).map(|n| {
            let doubler = doubler.clone();
            async move { doubler.call(n).await }
        }))
        .await;
        for (n, answer) in (0..200u32).zip(answers) {
            assert_eq!(answer.ok(), Some(n * 2));
        }
        assert!(calls.load(Ordering::Relaxed) < 200, "200 requests took {} batches", calls.load(Ordering::Relaxed));
    }

    #[tokio::test]
    async fn a_failed_batch_fails_each_of_its_requests_and_an_incomplete_one_is_caught() {
        let failing = Batcher::spawn(2, 8, |_: Vec<u32>| async {
            anyhow::bail!("the database is down") as anyhow::Result<Vec<u32>>
        });
        assert!(
            matches!(failing.call(1).await, Err(BatchError::Failed(message)) if &*message == "the database is down")
        );
        let short = Batcher::spawn(1, 8, |_: Vec<u32>| async { Ok(Vec::<u32>::new()) });
        assert!(matches!(short.call(1).await, Err(BatchError::Incomplete { asked: 1, answered: 0 })));
    }
}
