//! Progress bars and chatter for long steps, on stderr: shown only when stderr is a terminal and
//! `--quiet` was not given. Whether output is quiet is decided here, once per process.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

static QUIET: AtomicBool = AtomicBool::new(false);

/// Silences every bar made after this call and [`say`] (`--quiet`).
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// Whether bars and chatter are silenced.
pub fn is_quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// Writes a line of chatter ("resuming …", "saved …") to stderr unless quiet.
pub fn say(line: impl std::fmt::Display) {
    if !is_quiet() {
        eprintln!("{line}");
    }
}

/// Whether bars are drawn: not quiet, and the stream they draw on (stderr) is a terminal.
pub fn bars_visible(quiet: bool, stderr_is_terminal: bool) -> bool {
    !quiet && stderr_is_terminal
}

fn target() -> ProgressDrawTarget {
    if bars_visible(is_quiet(), std::io::stderr().is_terminal()) {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    }
}

/// A bar over `len` items named `unit`.
pub fn bar(len: u64, message: &str, unit: &str) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(Some(len), target());
    let template = format!(
        "{{msg}} [{{bar:30}}] {{human_pos}}/{{human_len}} {unit} ({{per_sec}}, eta {{eta}})"
    );
    if let Ok(style) = ProgressStyle::with_template(&template) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(message.to_string());
    pb
}

/// Runs `work` with a bar that it advances through `(done, total)` calls.
pub fn with_bar<T>(
    message: &str,
    unit: &str,
    work: impl FnOnce(&mut dyn FnMut(usize, usize)) -> T,
) -> T {
    let bar = bar(0, message, unit);
    let result = work(&mut |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    });
    bar.finish_and_clear();
    result
}

/// A bar over `len` bytes.
pub fn bytes_bar(len: u64, message: &str) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(Some(len), target());
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})",
    ) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(message.to_string());
    pb
}

/// A spinner for steps of unknown length.
pub fn spinner(message: &str) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(None, target());
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
        pb.set_style(style);
    }
    pb.set_message(message.to_string());
    pb.enable_steady_tick(std::time::Duration::from_millis(120));
    pb
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_follow_stderr_and_quiet() {
        assert!(bars_visible(false, true));
        assert!(!bars_visible(true, true), "--quiet hides them");
        assert!(
            !bars_visible(false, false),
            "no terminal on stderr: no bars"
        );
    }
}
