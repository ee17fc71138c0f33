//! Trying again what may pass later: one backoff policy and one loop for every HTTP client
//! vmctx has (the IMDS and OpenStack metadata client, S3, OneGate). Each client decides what is
//! worth another try; this decides when, and when to stop.

use std::future::Future;
use std::time::{Duration, Instant};

/// At most `tries` tries; the pause before the second is `first`, then doubled up to
/// `max_pause`; with a deadline, no pause that would end past it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub tries: u32,
    pub first: Duration,
    pub max_pause: Duration,
}

impl Backoff {
    /// Doubling pauses without a cap of their own (the tries bound them).
    pub fn doubling(tries: u32, first: Duration) -> Backoff {
        Backoff {
            tries,
            first,
            max_pause: Duration::MAX,
        }
    }

    /// The pause after `failed` failed tries (1 for the first failure), or `None` when no try
    /// is left or the deadline leaves no room for the pause.
    pub fn pause(&self, failed: u32, deadline: Option<Instant>) -> Option<Duration> {
        if failed >= self.tries {
            return None;
        }
        let pause = self
            .first
            .saturating_mul(2u32.saturating_pow(failed.saturating_sub(1).min(31)))
            .min(self.max_pause);
        match deadline {
            Some(d) if d.saturating_duration_since(Instant::now()) <= pause => None,
            _ => Some(pause),
        }
    }
}

/// What one try ended with; a failure worth another try may say less (`E`) than a final one
/// (`F`).
#[derive(Debug)]
pub enum Try<T, E, F = E> {
    Done(T),
    /// Worth another try (a connect error, a timeout, a 5xx, a 429, …).
    Again(E),
    /// Final: trying again would not help.
    Fail(F),
}

/// Why [`run`] gave up.
#[derive(Debug, PartialEq, Eq)]
pub enum GaveUp<E, F = E> {
    /// A try failed for good.
    Failed(F),
    /// Every try (`tries` of them), or the time, ran out; `last` is the last try's error.
    Exhausted { last: E, tries: u32 },
}

/// Calls `attempt` (with the try's number, from 1) until it is done or fails for good, pausing
/// between tries as `policy` says, never past `deadline`.
pub async fn run<T, E, F, A, Fut>(
    policy: &Backoff,
    deadline: Option<Instant>,
    mut attempt: A,
) -> Result<T, GaveUp<E, F>>
where
    A: FnMut(u32) -> Fut,
    Fut: Future<Output = Try<T, E, F>>,
{
    let mut n = 1;
    loop {
        match attempt(n).await {
            Try::Done(v) => return Ok(v),
            Try::Fail(e) => return Err(GaveUp::Failed(e)),
            Try::Again(e) => match policy.pause(n, deadline) {
                Some(p) => {
                    tracing::debug!("try {n} failed; trying again in {} ms", p.as_millis());
                    tokio::time::sleep(p).await;
                    n += 1;
                }
                None => return Err(GaveUp::Exhausted { last: e, tries: n }),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_up_to_the_cap_and_stop_after_the_tries() {
        let b = Backoff {
            tries: 4,
            first: Duration::from_millis(100),
            max_pause: Duration::from_millis(250),
        };
        let ms = |n| b.pause(n, None).map(|p| p.as_millis());
        assert_eq!(
            (ms(1), ms(2), ms(3), ms(4)),
            (Some(100), Some(200), Some(250), None)
        );
        let far = Some(Instant::now() + Duration::from_secs(60));
        assert_eq!(b.pause(1, far), Some(Duration::from_millis(100)));
        let near = Some(Instant::now() + Duration::from_millis(50));
        assert_eq!(
            b.pause(1, near),
            None,
            "a pause past the deadline is not taken"
        );
    }

    #[tokio::test]
    async fn retries_what_may_pass_and_stops_on_what_cannot() {
        let quick = Backoff::doubling(3, Duration::from_millis(1));
        let mut seen = Vec::new();
        let r: Result<u32, GaveUp<&str>> = run(&quick, None, |n| {
            seen.push(n);
            async move {
                if n < 3 {
                    Try::Again("busy")
                } else {
                    Try::Done(n)
                }
            }
        })
        .await;
        assert_eq!((r, seen), (Ok(3), vec![1, 2, 3]));

        let r: Result<(), GaveUp<&str>> = run(&quick, None, |_| async { Try::Again("busy") }).await;
        assert_eq!(
            r,
            Err(GaveUp::Exhausted {
                last: "busy",
                tries: 3
            })
        );
        let mut calls = 0;
        let r: Result<(), GaveUp<&str>> = run(&quick, None, |_| {
            calls += 1;
            async { Try::Fail("403") }
        })
        .await;
        assert_eq!((r, calls), (Err(GaveUp::Failed("403")), 1));
    }
}
