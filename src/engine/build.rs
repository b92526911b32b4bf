//! Building an image recipe (`[container.build]`) with the engine's classic
//! builder (`POST /build`, which Docker 20.10 and Podman both serve), once per
//! content hash: the tag names the recipe, so a present tag is a finished
//! build.

use super::Engine;
use crate::support::{output, progress};
use anyhow::Result;
use bollard::errors::Error as ApiError;
use bollard::query_parameters::BuildImageOptions;
use futures_util::StreamExt;
use std::collections::{HashMap, VecDeque};

/// Build output lines kept for the error message: with `-q` they were not
/// shown, and the last ones usually say what went wrong.
const TAIL_LINES: usize = 8;
/// The failing step's output kept for the caller to read (the last lines
/// of it), so it can tell what kind of failure it was.
const STEP_LINES: usize = 400;
/// Longer lines are cut when shown: a step's command line can carry
/// hundreds of KiB of arguments.
const SHOWN_CHARS: usize = 1000;

/// A build the builder ran and a step of it failed (rather than the engine
/// refusing or going away).
#[derive(Debug)]
pub struct BuildFailed {
    /// What failed, and with `-q` the output's last lines.
    pub message: String,
    /// The failing step's output, its last lines, without colour codes.
    pub output: Vec<String>,
}

impl std::fmt::Display for BuildFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for BuildFailed {}

impl Engine {
    /// Builds the image `tag` from a build context (a tar archive with a
    /// Dockerfile starting `FROM base`), labelled with `labels`; its output
    /// goes to stderr as it comes. A step that fails is a [`BuildFailed`];
    /// a registry refusing `base` is a [`super::auth::LoginRefused`].
    pub async fn build(
        &self,
        tag: &str,
        labels: &[(String, String)],
        archive: Vec<u8>,
        base: &str,
    ) -> Result<()> {
        let options = BuildImageOptions {
            t: Some(tag.to_owned()),
            // The classic builder tags only a finished image; removing every
            // intermediate container, failed steps' too, leaves nothing half
            // made behind.
            rm: true,
            forcerm: true,
            labels: Some(labels.iter().cloned().collect::<HashMap<_, _>>()),
            ..Default::default()
        };
        let body = bollard::body_full(archive.into());
        // The base image's registry alone gets the user's login (the Docker
        // CLI sends every login it has; Docker and Podman both read this one),
        // and only when the builder will pull it: a broken credential helper
        // then fails no build that needs no login.
        let login = match self.image_exists(base).await? {
            true => super::auth::ImageLogin::none(base),
            false => super::auth::ImageLogin::find(base)?,
        };
        let mut stream = self
            .docker
            .build_image(options, login.registry_config(), Some(body));
        let mut lines = Lines {
            bar: progress::drawn().then(|| progress::StepBar::new(&format!("building `{tag}`"))),
            ..Default::default()
        };
        while let Some(item) = stream.next().await {
            // bollard turns the builder's `errorDetail` into a stream error.
            let failure = match item {
                Ok(info) => {
                    if let Some(text) = info.stream.or(info.status) {
                        lines.push(&text);
                    }
                    match info.error_detail {
                        Some(detail) => detail.message.unwrap_or_default(),
                        None => continue,
                    }
                }
                Err(ApiError::DockerStreamError { error }) => error,
                Err(err) => {
                    return Err(self
                        .explain(err)
                        .context(format!("building image `{tag}` failed")))
                }
            };
            lines.flush();
            lines.finish();
            // Before any step ran: the base image could not be pulled.
            if lines.steps <= 1 {
                if let Some(refused) = login.refused(base, &failure) {
                    return Err(refused.context(format!("building image `{tag}` failed")));
                }
            }
            return Err(BuildFailed {
                message: format!(
                    "building image `{tag}` failed: {}{}",
                    lines.failure(&failure),
                    lines.tail()
                ),
                output: lines.step_output.into(),
            }
            .into());
        }
        lines.flush();
        lines.finish();
        Ok(())
    }
}

/// The classic builder wraps a step's stderr in colour codes (`ESC[91m` ..
/// `ESC[0m`); they mean nothing in a log or an error message.
fn strip_colors(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: `ESC [`, parameters, one final letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn push_bounded(lines: &mut VecDeque<String>, line: String, max: usize) {
    if lines.len() == max {
        lines.pop_front();
    }
    lines.push_back(line);
}

/// `line`, cut after [`SHOWN_CHARS`] characters with a note of how much more
/// there was.
fn shortened(line: &str) -> String {
    match line.char_indices().nth(SHOWN_CHARS) {
        None => line.to_owned(),
        Some((end, _)) => format!(
            "{} ... ({} more characters)",
            &line[..end],
            line[end..].chars().count()
        ),
    }
}

/// `apt` from `Step 2/5 : RUN ["/bin/sh","-c","...","apt","jq"]` (Docker)
/// or `STEP 2/5: RUN [...]` (Podman).
fn run_step_name(line: &str) -> Option<String> {
    let (_, json) = line
        .split_once(" : RUN ")
        .or_else(|| line.split_once(": RUN "))?;
    let argv: Vec<String> = serde_json::from_str(json).ok()?;
    argv.get(3).cloned()
}

/// `(2, 5)` from `Step 2/5 : ...` (Docker) or `STEP 2/5: ...` (Podman).
fn step_numbers(line: &str) -> Option<(u64, u64)> {
    let rest = line
        .strip_prefix("Step ")
        .or_else(|| line.strip_prefix("STEP "))?;
    let (counts, _) = rest.split_once(':')?;
    let (number, total) = counts.trim().split_once('/')?;
    Some((number.parse().ok()?, total.parse().ok()?))
}

/// What a builder's step line says after its number: `FROM base`.
fn step_text(line: &str) -> String {
    line.split_once(':')
        .map_or(line, |(_, text)| text)
        .trim()
        .to_owned()
}

/// The build's output, cut into whole lines (the engine sends chunks) and
/// shown indented on stderr as it arrives.
#[derive(Default)]
struct Lines {
    partial: String,
    last: VecDeque<String>,
    /// What the running step printed so far (its last [`STEP_LINES`]).
    step_output: VecDeque<String>,
    /// The recipe step running now (`apt`, `pip`), from the builder's
    /// `Step i/n : RUN [...]` line: the script's `$0`.
    step: Option<String>,
    /// On a terminal: step N of M, and the last line.
    bar: Option<progress::StepBar>,
    /// How many steps began (`FROM` is the first).
    steps: usize,
}

impl Lines {
    fn push(&mut self, text: &str) {
        self.partial.push_str(text);
        while let Some(end) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=end).collect();
            self.emit(line.trim_end());
        }
    }

    fn flush(&mut self) {
        let rest = std::mem::take(&mut self.partial);
        self.emit(rest.trim_end());
    }

    fn emit(&mut self, line: &str) {
        let line = &strip_colors(line);
        if line.trim().is_empty() {
            return;
        }
        if line.starts_with("Step ") || line.starts_with("STEP ") {
            self.step = run_step_name(line);
            self.steps += 1;
            self.step_output.clear();
            if let (Some(bar), Some((number, total))) = (&self.bar, step_numbers(line)) {
                let name = self.step.clone().unwrap_or_else(|| step_text(line));
                bar.step(&format!("building: step {number}/{total}: {name}"));
            }
        } else {
            push_bounded(&mut self.step_output, line.to_owned(), STEP_LINES);
        }
        let line = shortened(line);
        match &self.bar {
            Some(bar) => bar.line(&format!("  {line}")),
            None => output::note(format!("  {line}")),
        }
        push_bounded(&mut self.last, line, TAIL_LINES);
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish();
        }
    }

    /// The engine's message names the failed command by its whole script;
    /// the recipe's step name says the same in a few words.
    fn failure(&self, message: &str) -> String {
        let message = message.trim();
        // Docker: "... returned a non-zero code: 100"; Podman: "... while
        // running runtime: exit status 100".
        let code = message
            .rsplit_once("returned a non-zero code: ")
            .or_else(|| message.rsplit_once("exit status "))
            .map(|(_, code)| code.trim());
        match (&self.step, code) {
            (Some(step), Some(code)) => {
                format!("the `[container.build] {step}` step exited with code {code}")
            }
            _ => shortened(message),
        }
    }

    /// The last lines, for the error message when `-q` kept them off the
    /// screen.
    fn tail(&self) -> String {
        if self.last.is_empty() || !output::quiet() {
            return String::new();
        }
        let lines: Vec<&str> = self.last.iter().map(String::as_str).collect();
        format!(
            "\n  last lines of its output:\n    {}",
            lines.join("\n    ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_cut_into_lines_without_colours() {
        let mut lines = Lines::default();
        lines.push("Step 1/2 : FROM x\n ---> ab");
        lines.push("c\n\u{1b}[91mE: Unable to locate package nope\n\u{1b}[0m");
        lines.flush();
        let got: Vec<&str> = lines.last.iter().map(String::as_str).collect();
        assert_eq!(
            got,
            [
                "Step 1/2 : FROM x",
                " ---> abc",
                "E: Unable to locate package nope"
            ]
        );
        assert!(lines.tail().is_empty(), "shown already");
    }

    #[test]
    fn step_lines_give_their_number_and_count() {
        assert_eq!(step_numbers("Step 2/5 : RUN [\"x\"]"), Some((2, 5)));
        assert_eq!(step_numbers("STEP 3/4: COPY a b"), Some((3, 4)));
        assert_eq!(step_numbers(" ---> abc"), None);
        assert_eq!(step_numbers("Step x/5 : FROM y"), None);
        assert_eq!(step_text("Step 1/5 : FROM base:1"), "FROM base:1");
    }

    #[test]
    fn a_failed_step_is_named_by_the_recipe_key() {
        let mut lines = Lines::default();
        lines.push("Step 2/4 : RUN [\"/bin/sh\",\"-c\",\"set -e\",\"apt\",\"jq\"]\n");
        let message = "The command '/bin/sh -c set -e apt jq' returned a non-zero code: 100";
        assert_eq!(
            lines.failure(message),
            "the `[container.build] apt` step exited with code 100"
        );
        lines.push("Step 3/4 : COPY [\"files/0\",\"/x\"]\n");
        assert_eq!(lines.failure("no such file"), "no such file");
    }

    #[test]
    fn podman_steps_and_failures_are_read_too() {
        let mut lines = Lines::default();
        lines.push("STEP 2/4: RUN [\"/bin/sh\",\"-c\",\"set -e\",\"apt\",\"jq\"]\n");
        assert_eq!(lines.step.as_deref(), Some("apt"));
        let message = "building at STEP \"RUN /bin/sh -c set -e apt jq\": while running runtime: exit status 100";
        assert_eq!(
            lines.failure(message),
            "the `[container.build] apt` step exited with code 100"
        );
    }

    #[test]
    fn long_lines_are_cut_when_shown() {
        let mut lines = Lines::default();
        let long = format!(
            "[\"/bin/sh\",\"-c\",\"x\",\"pip\",\"{}\",\"six\"]",
            "C".repeat(100_000)
        );
        lines.push(&format!("Step 2/3 : RUN {long}\n"));
        assert_eq!(
            lines.step.as_deref(),
            Some("pip"),
            "named from the whole line"
        );
        let shown = lines.last.back().unwrap();
        assert!(shown.starts_with("Step 2/3 : RUN [\"/bin/sh\""), "{shown}");
        assert!(shown.len() < SHOWN_CHARS + 100, "{}", shown.len());
        assert!(shown.ends_with(" more characters)"), "{shown}");
        assert_eq!(shortened("short"), "short");
        // Cut on a character, not inside one.
        let cut = shortened(&"é".repeat(SHOWN_CHARS + 5));
        assert_eq!(
            cut,
            format!("{} ... (5 more characters)", "é".repeat(SHOWN_CHARS))
        );
    }

    #[test]
    fn the_failing_steps_output_is_kept_whole_for_the_caller() {
        let mut lines = Lines::default();
        lines.push("Step 1/3 : RUN [\"/bin/sh\",\"-c\",\"x\",\"apt\",\"jq\"]\nGet:1 http://deb\n");
        lines.push("Step 2/3 : RUN [\"/bin/sh\",\"-c\",\"x\",\"pip\",\"six\"]\n");
        let long = format!("WARNING: {}", "x".repeat(2 * SHOWN_CHARS));
        lines.push(&format!(
            "{long}\n\u{1b}[91mERROR: No matching distribution\n\u{1b}[0m"
        ));
        for i in 0..STEP_LINES {
            lines.push(&format!("line {i}\n"));
        }
        lines.flush();
        let output = Vec::from(lines.step_output.clone());
        assert_eq!(output.len(), STEP_LINES, "its last lines");
        assert_eq!(output[0], "line 0", "only the running step's");
        lines.push("Step 3/3 : RUN [\"/bin/sh\",\"-c\",\"x\",\"pip\",\"six\"]\n");
        lines.push(&format!("{long}\n"));
        assert_eq!(Vec::from(lines.step_output.clone()), [long], "not cut");
    }
}
