//! What a cycle is doing, for whoever watches: files and bytes done of the total. The parallel
//! steps count into atomics (no lock on the transfer path); on a terminal a thread redraws one
//! status line on stderr five times a second and clears it at the end. Without a terminal (the
//! journal) nothing is drawn: the cycle's summary line says it all.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{mpsc, Arc};
use std::time::Duration;

/// How often the status line is redrawn.
const REDRAW: Duration = Duration::from_millis(200);

#[derive(Debug, Default)]
pub struct Progress {
    files_total: AtomicU64,
    files_done: AtomicU64,
    bytes_total: AtomicU64,
    bytes_done: AtomicU64,
}

/// The counts at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub files_done: u64,
    pub files_total: u64,
    pub bytes_done: u64,
    pub bytes_total: u64,
}

impl Progress {
    pub fn new() -> Arc<Progress> {
        Arc::new(Progress::default())
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            files_done: self.files_done.load(Relaxed),
            files_total: self.files_total.load(Relaxed),
            bytes_done: self.bytes_done.load(Relaxed),
            bytes_total: self.bytes_total.load(Relaxed),
        }
    }

    /// A step that will move about `estimate` bytes: one more file of the total.
    pub fn meter(self: &Arc<Self>, estimate: u64) -> Meter {
        self.files_total.fetch_add(1, Relaxed);
        self.bytes_total.fetch_add(estimate, Relaxed);
        Meter {
            progress: Some(self.clone()),
            estimate,
            counted: Arc::default(),
        }
    }

    /// The bytes the finished steps moved.
    pub fn bytes_done(&self) -> u64 {
        self.bytes_done.load(Relaxed)
    }
}

/// One step's bytes, counted as they stream.
#[derive(Debug, Clone)]
pub struct Meter {
    progress: Option<Arc<Progress>>,
    estimate: u64,
    counted: Arc<AtomicU64>,
}

impl Meter {
    /// Counts nothing (a step that is not a file of the progress).
    pub fn none() -> Meter {
        Meter {
            progress: None,
            estimate: 0,
            counted: Arc::default(),
        }
    }

    pub fn add(&self, n: u64) {
        self.counted.fetch_add(n, Relaxed);
        if let Some(p) = &self.progress {
            p.bytes_done.fetch_add(n, Relaxed);
        }
    }

    fn take_back(&self, n: u64) {
        self.counted.fetch_sub(n, Relaxed);
        if let Some(p) = &self.progress {
            p.bytes_done.fetch_sub(n, Relaxed);
        }
    }

    /// One request's body, which a retry sends again.
    pub fn transfer(&self) -> Transfer {
        Transfer {
            meter: self.clone(),
            sent: Arc::default(),
        }
    }

    /// The step ended: its file is done, and the total takes the bytes it really moved in
    /// place of the estimate (none, when it failed), so done and total meet at the end.
    pub fn finish(&self, ok: bool) {
        let Some(p) = &self.progress else { return };
        if !ok {
            self.take_back(self.counted.load(Relaxed));
        }
        p.bytes_total.fetch_add(self.counted.load(Relaxed), Relaxed);
        p.bytes_total.fetch_sub(self.estimate, Relaxed);
        p.files_done.fetch_add(1, Relaxed);
    }
}

/// The bytes of one request body, counted into its step's [`Meter`].
#[derive(Debug, Clone)]
pub struct Transfer {
    meter: Meter,
    sent: Arc<AtomicU64>,
}

impl Transfer {
    pub fn add(&self, n: u64) {
        self.sent.fetch_add(n, Relaxed);
        self.meter.add(n);
    }

    /// The body is sent again from its start: what the last attempt counted is taken back.
    pub fn restart(&self) {
        self.meter.take_back(self.sent.swap(0, Relaxed));
    }
}

/// `3 of 12 files, 1.5 MiB of 20.0 MiB`.
pub fn line(s: &Snapshot) -> String {
    format!(
        "{} of {} files, {} of {}",
        s.files_done,
        s.files_total,
        bytes(s.bytes_done),
        bytes(s.bytes_total)
    )
}

/// Bytes for people: `512 B`, `1.5 KiB`, `20.0 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// A duration for people: `0.4 s`, `42.0 s`, `3m04s`.
pub fn duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs < 60 {
        format!("{:.1} s", d.as_secs_f64())
    } else {
        format!("{}m{:02}s", secs / 60, secs % 60)
    }
}

/// The status line on a terminal's stderr, redrawn until dropped; then cleared.
pub struct StatusLine {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StatusLine {
    /// `None` when stderr is not a terminal (the journal, a pipe): nothing is drawn there.
    pub fn start(progress: &Arc<Progress>) -> Option<StatusLine> {
        if !std::io::stderr().is_terminal() {
            return None;
        }
        let (stop, stopped) = mpsc::channel::<()>();
        let progress = progress.clone();
        let thread = std::thread::spawn(move || {
            let mut shown = Snapshot::default();
            loop {
                let last = stopped.recv_timeout(REDRAW) != Err(mpsc::RecvTimeoutError::Timeout);
                let now = progress.snapshot();
                if now.files_total > 0 && now != shown {
                    draw(&format!("sync: {}", line(&now)));
                    shown = now;
                }
                if last {
                    if shown.files_total > 0 {
                        draw("");
                    }
                    return;
                }
            }
        });
        Some(StatusLine {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

/// Rewrites the line in place: back to its start, the text, the rest of the old line erased.
fn draw(text: &str) {
    let mut e = std::io::stderr().lock();
    let _ = write!(e, "\r{text}\x1b[K");
    let _ = e.flush();
}

impl Drop for StatusLine {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(20 << 20), "20.0 MiB");
        assert_eq!(bytes(3 << 40), "3.0 TiB");
        assert_eq!(duration(Duration::from_millis(420)), "0.4 s");
        assert_eq!(duration(Duration::from_secs(184)), "3m04s");
        let s = Snapshot {
            files_done: 3,
            files_total: 12,
            bytes_done: 1536 << 10,
            bytes_total: 20 << 20,
        };
        assert_eq!(line(&s), "3 of 12 files, 1.5 MiB of 20.0 MiB");
    }

    #[test]
    fn done_meets_the_total() {
        let p = Progress::new();
        let small = p.meter(100); // moves more than listed (the file grew)
        let touched = p.meter(50); // moves nothing (same bytes)
        let failed = p.meter(70);
        let retried = p.meter(30);
        assert_eq!(
            (p.snapshot().files_total, p.snapshot().bytes_total),
            (4, 250)
        );
        small.add(120);
        failed.add(40);
        let t = retried.transfer();
        t.add(20);
        t.restart(); // sent again from the start
        t.add(30);
        assert_eq!(p.bytes_done(), 120 + 40 + 30);
        for (m, ok) in [
            (&small, true),
            (&touched, true),
            (&failed, false),
            (&retried, true),
        ] {
            m.finish(ok);
        }
        let end = p.snapshot();
        assert_eq!(end.files_done, end.files_total);
        assert_eq!(end.bytes_done, 150, "the failed step's bytes taken back");
        assert_eq!(end.bytes_total, end.bytes_done);
        Meter::none().finish(true);
        assert_eq!(p.snapshot(), end, "a step without a meter counts nothing");
    }
}
