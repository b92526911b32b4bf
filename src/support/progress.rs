//! Progress that shows work, on a terminal: a bar per layer of a pull with an
//! overall line, a recipe build's step N of M, a setup step with its elapsed
//! time and last output line. Drawn on stderr with indicatif, and only on a
//! terminal and without `-q`: elsewhere (CI logs, pipes) callers print plain
//! lines, never an escape code.

use super::output;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal;
use std::time::Duration;

/// Whether progress is drawn: stderr is a terminal that can take it, and
/// notes are shown.
pub fn drawn() -> bool {
    !output::quiet()
        && std::io::stderr().is_terminal()
        && std::env::var_os("TERM").is_none_or(|t| t != "dumb")
}

/// How often a bar redraws: often enough to look alive, rarely enough to
/// cost nothing.
const TICK: Duration = Duration::from_millis(120);

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .expect("the templates here are valid")
        .progress_chars("=> ")
}

/// A pull, drawn: a bar per layer (bytes done of its total while it
/// downloads or extracts) under an overall line (layers finished, bytes).
pub struct PullBars {
    multi: MultiProgress,
    overall: ProgressBar,
    layers: BTreeMap<String, ProgressBar>,
    /// Bytes done and total of each layer, from its last report.
    bytes: BTreeMap<String, (u64, u64)>,
    finished: BTreeSet<String>,
}

impl PullBars {
    pub fn new(image: &str) -> PullBars {
        PullBars::drawn_on(image, ProgressDrawTarget::stderr())
    }

    fn drawn_on(image: &str, target: ProgressDrawTarget) -> PullBars {
        let multi = MultiProgress::with_draw_target(target);
        let overall = multi.add(ProgressBar::new_spinner());
        overall.set_style(style("{spinner} pulling {prefix} [{elapsed}] {wide_msg}"));
        overall.set_prefix(image.to_owned());
        overall.enable_steady_tick(TICK);
        PullBars {
            multi,
            overall,
            layers: BTreeMap::new(),
            bytes: BTreeMap::new(),
            finished: BTreeSet::new(),
        }
    }

    /// What the engine said of layer `id`: its status and, while it moves
    /// bytes, how many of how many.
    pub fn layer(&mut self, id: &str, status: &str, progress: Option<(u64, u64)>) {
        // The tag's own line (`Pulling from REPO`) is not a layer.
        if status.starts_with("Pulling from ") {
            return;
        }
        let bar = self.layers.entry(id.to_owned()).or_insert_with(|| {
            let bar = self.multi.insert_before(&self.overall, ProgressBar::new(0));
            bar.set_style(style("  {prefix} {wide_msg}"));
            bar.set_prefix(id.to_owned());
            bar
        });
        match progress {
            Some((done, total)) if total > 0 => {
                bar.set_style(style(
                    "  {prefix} {msg:<12} [{bar:30}] {bytes:>10} / {total_bytes}",
                ));
                bar.set_length(total);
                bar.set_position(done.min(total));
                self.bytes.insert(id.to_owned(), (done.min(total), total));
            }
            _ => bar.set_style(style("  {prefix} {wide_msg}")),
        }
        bar.set_message(status.to_owned());
        if is_layer_done(status) {
            self.finished.insert(id.to_owned());
            if let Some((_, total)) = self.bytes.get(id).copied() {
                self.bytes.insert(id.to_owned(), (total, total));
            }
        }
        self.overall.set_message(self.summary());
    }

    fn summary(&self) -> String {
        if self.layers.is_empty() {
            return "every layer was here already".to_owned();
        }
        let (done, total) = self
            .bytes
            .values()
            .fold((0, 0), |(d, t), (done, total)| (d + done, t + total));
        format!(
            "{} of {} layers, {} of {}",
            self.finished.len(),
            self.layers.len(),
            super::units::bytes(done),
            super::units::bytes(total)
        )
    }

    /// Takes the bars away; the caller says how it ended.
    pub fn finish(self) -> String {
        let summary = self.summary();
        for bar in self.layers.values() {
            bar.finish_and_clear();
        }
        self.overall.finish_and_clear();
        let _ = self.multi.clear();
        summary
    }
}

/// A layer is finished when it was pulled and unpacked, or was there already.
pub fn is_layer_done(status: &str) -> bool {
    matches!(status, "Pull complete" | "Already exists") || status.starts_with("Copying blob")
}

/// A run of steps, drawn: a spinner line with the step (its number of how
/// many), the elapsed time and the last line of output; the output's lines
/// themselves go above it, as plain lines would.
#[derive(Clone)]
pub struct StepBar {
    bar: ProgressBar,
}

impl StepBar {
    pub fn new(label: &str) -> StepBar {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(style("{spinner} {prefix} [{elapsed}] {wide_msg}"));
        bar.set_prefix(label.to_owned());
        bar.enable_steady_tick(TICK);
        StepBar { bar }
    }

    /// A step began; `label` says which (`setup step 2/3: make`).
    pub fn step(&self, label: &str) {
        self.bar.reset_elapsed();
        self.bar.set_prefix(first_line(label));
        self.bar.set_message("");
    }

    /// A line shown above the bar.
    pub fn println(&self, line: &str) {
        self.bar.println(line);
    }

    /// A line of output: shown above the bar, and the bar's last line.
    pub fn line(&self, line: &str) {
        self.bar.println(line);
        self.bar.set_message(line.trim().to_owned());
    }

    pub fn finish(self) {
        self.bar.finish_and_clear();
    }
}

/// A transfer of a known size, drawn: bytes done of the total, the rate and
/// what is left.
pub struct ByteBar {
    bar: ProgressBar,
}

impl ByteBar {
    pub fn new(what: &str, size: u64) -> ByteBar {
        let bar = ProgressBar::with_draw_target(Some(size), ProgressDrawTarget::stderr());
        bar.set_style(style(
            "  {prefix} [{bar:30}] {bytes:>10} / {total_bytes} {bytes_per_sec} {eta}",
        ));
        bar.set_prefix(what.to_owned());
        ByteBar { bar }
    }

    pub fn advance(&self, bytes: u64) {
        self.bar.inc(bytes);
    }

    pub fn finish(self) {
        self.bar.finish_and_clear();
    }
}

/// A step's label on one line: a script's first line, cut.
fn first_line(name: &str) -> String {
    let line = name.lines().next().unwrap_or_default();
    match line.char_indices().nth(72) {
        Some((end, _)) => format!("{}...", &line[..end]),
        None if name.lines().nth(1).is_some() => format!("{line} ..."),
        None => line.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_finish_when_pulled_or_present() {
        assert!(is_layer_done("Pull complete"));
        assert!(is_layer_done("Already exists"));
        assert!(!is_layer_done("Downloading"));
        assert!(!is_layer_done("Download complete"));
    }

    #[test]
    fn the_overall_line_counts_layers_and_bytes() {
        let mut bars = PullBars::drawn_on("x", ProgressDrawTarget::hidden());
        bars.layer("1", "Pulling from devinst-test/busybox", None);
        assert_eq!(bars.summary(), "every layer was here already");
        let mut bars = PullBars::drawn_on("x", ProgressDrawTarget::hidden());
        bars.layer("a", "Pulling fs layer", None);
        bars.layer("a", "Downloading", Some((512, 2048)));
        bars.layer("b", "Already exists", None);
        assert_eq!(bars.summary(), "1 of 2 layers, 512 B of 2.0 KiB");
        bars.layer("a", "Pull complete", None);
        assert_eq!(bars.finish(), "2 of 2 layers, 2.0 KiB of 2.0 KiB");
    }

    #[test]
    fn step_names_fit_one_line() {
        assert_eq!(first_line("pip install -e ."), "pip install -e .");
        assert_eq!(first_line("set -e\nmake"), "set -e ...");
        assert_eq!(
            first_line(&"x".repeat(80)),
            format!("{}...", "x".repeat(72))
        );
    }
}
