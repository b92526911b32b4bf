//! Waiting for a condition instead of sleeping for a guess: poll it with a
//! deadline, and read a child's output while it runs. A loaded machine only
//! makes these slower, never wrong; a condition that never comes fails the
//! test with what was seen.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a condition a test waits for may take: generous, for a loaded
/// machine; only a condition that never comes takes this long.
pub const WAIT_LIMIT: Duration = Duration::from_secs(60);

/// Calls `probe` until it gives a value, every 50 ms, for at most
/// [`WAIT_LIMIT`]; then fails the test naming `what`.
#[track_caller]
pub fn wait_until<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT_LIMIT;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        if Instant::now() > deadline {
            panic!("gave up waiting for {what} after {WAIT_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A child whose stdout and stderr are read as it runs, readable at any time.
pub struct Streaming {
    pub child: Child,
    out: Arc<Mutex<Vec<u8>>>,
    err: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
}

impl Streaming {
    pub fn spawn(cmd: &mut Command) -> Streaming {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (out, out_reader) = collect(child.stdout.take().unwrap());
        let (err, err_reader) = collect(child.stderr.take().unwrap());
        Streaming {
            child,
            out,
            err,
            readers: vec![out_reader, err_reader],
        }
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.err.lock().unwrap()).into_owned()
    }

    /// Waits until stdout contains `needle`.
    #[track_caller]
    pub fn wait_for_stdout(&mut self, needle: &str) {
        self.wait_for(needle, Streaming::stdout);
    }

    /// Waits until stderr contains `needle`.
    #[track_caller]
    pub fn wait_for_stderr(&mut self, needle: &str) {
        self.wait_for(needle, Streaming::stderr);
    }

    #[track_caller]
    fn wait_for(&mut self, needle: &str, text: fn(&Streaming) -> String) {
        let deadline = Instant::now() + WAIT_LIMIT;
        while !text(self).contains(needle) {
            let ended = self.child.try_wait().unwrap();
            if ended.is_some() || Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "waited for {needle:?} in vain ({})\n--- stdout\n{}\n--- stderr\n{}",
                    ended.map_or("still running".to_owned(), |s| s.to_string()),
                    self.stdout(),
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` (a name such as `INT`) to the child.
    pub fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -{signal}");
    }

    /// Waits for the child to end (killing it and failing after
    /// [`WAIT_LIMIT`]) and returns its status, stdout and stderr.
    #[track_caller]
    pub fn finish(mut self) -> (ExitStatus, String, String) {
        let deadline = Instant::now() + WAIT_LIMIT;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "the command did not end within {WAIT_LIMIT:?}\n--- stdout\n{}\n--- stderr\n{}",
                    self.stdout(),
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        for reader in self.readers.drain(..) {
            reader.join().unwrap();
        }
        (status, self.stdout(), self.stderr())
    }
}

fn collect(mut pipe: impl Read + Send + 'static) -> (Arc<Mutex<Vec<u8>>>, JoinHandle<()>) {
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let sink = buffer.clone();
    let reader = std::thread::spawn(move || {
        let mut chunk = [0u8; 16 * 1024];
        while let Ok(n) = pipe.read(&mut chunk) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&chunk[..n]);
        }
    });
    (buffer, reader)
}
