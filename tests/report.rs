//! `lmdensity report --html/--md`: rendered from a fixture store of real curated runs (plus a
//! run without metrics, a partial run and a corrupt one), opened in real headless Chromium.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::*;

/// The figures every report has, in order.
const FIGURES: [&str; 9] = [
    "task-accuracy",
    "store-loss-error",
    "loss-error",
    "scaling",
    "density-trend",
    "throughput",
    "quality-frontier",
    "effective-params-frontier",
    "reliability",
];

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for entry in fs::read_dir(from).expect("read dir") {
        let path = entry.expect("entry").path();
        let target = to.join(path.file_name().expect("name"));
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            fs::copy(&path, &target).expect("copy");
        }
    }
}

/// A store with real curated runs of every kind and the curated law analyses, plus three bad
/// runs: one without metrics, one partial, one with a corrupt manifest.
fn fixture_store(root: &Path) -> PathBuf {
    let curated = repo_root().join("results/curated");
    let store = root.join("store");
    let pick = |dir: &str, prefix: &str| -> PathBuf {
        fs::read_dir(curated.join(dir))
            .expect("curated dir")
            .map(|e| e.expect("entry").path())
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.contains(prefix))
            })
            .unwrap_or_else(|| panic!("no {prefix} run in results/curated/{dir}"))
    };
    for (dir, prefix) in [
        ("ptb-test-harness", "smollm2-135m-instruct-ppl"),
        ("ptb-test-harness", "gemma-3-270m-ppl"),
        ("tasks-core", "smollm2-135m-instruct-task-arc_easy"),
        ("tasks-gemma-core", "gemma-3-270m-task-arc_easy"),
        ("tasks-gemma-core", "gemma-3-270m-task-copa"),
        ("bench/runs", "smollm2-135m-instruct-bench"),
        ("bench/runs", "gemma-3-270m-bench"),
    ] {
        let run = pick(dir, prefix);
        copy_dir(&run, &store.join(run.file_name().expect("name")));
    }
    copy_dir(&curated.join("laws/analyses"), &store.join("analyses"));
    copy_dir(
        &curated.join("sweep-quant/gemma-3-270m/runs/analyses"),
        &store.join("analyses"),
    );
    // A run stopped before its first metrics write: manifest only.
    let copa = pick("tasks-gemma-core", "gemma-3-270m-task-copa");
    let stopped = store.join("20261123T000000-gemma-3-270m-task-piqa-stopped");
    fs::create_dir_all(&stopped).expect("mkdir");
    let manifest = fs::read_to_string(copa.join("manifest.json")).expect("manifest");
    fs::write(
        stopped.join("manifest.json"),
        manifest.replace("copa", "piqa").replace(
            "20261122T222209-gemma-3-270m-task-piqa-6dd17ac7",
            "20261123T000000-gemma-3-270m-task-piqa-stopped",
        ),
    )
    .expect("write");
    // A partial run whose metrics lack the headline.
    let partial = store.join("20261123T000001-gemma-3-270m-task-sciq-partial");
    fs::create_dir_all(&partial).expect("mkdir");
    fs::write(
        partial.join("manifest.json"),
        manifest.replace("copa", "sciq"),
    )
    .expect("write");
    fs::write(
        partial.join("metrics.json"),
        r#"{"schema_version":1,"status":"partial","elapsed_s":12.0,"metrics":[{"name":"sciq/items","value":40.0,"unit":"items","how":"items scored so far"}]}"#,
    )
    .expect("write");
    // A corrupt manifest: reported in place, the rest still rendered.
    let corrupt = store.join("20261123T000002-broken");
    fs::create_dir_all(&corrupt).expect("mkdir");
    fs::write(
        corrupt.join("manifest.json"),
        "{\"schema_version\": 1, trunc",
    )
    .expect("write");
    store
}

/// What headless Chromium saw when it opened a page.
struct BrowserView {
    screenshot: PathBuf,
    dom: String,
    console: Vec<String>,
    /// URLs the page (not the browser's own background services) requested.
    page_requests: Vec<String>,
}

fn chromium() -> Command {
    let mut cmd = Command::new("chromium");
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
    ]);
    cmd
}

fn open_in_chromium(page: &Path, out: &Path) -> BrowserView {
    let url = format!("file://{}", page.display());
    let screenshot = out.join("screenshot.png");
    let netlog = out.join("netlog.json");
    let shot = chromium()
        .arg("--window-size=1280,2400")
        .arg(format!("--screenshot={}", screenshot.display()))
        .arg("--enable-logging=stderr")
        .arg("--v=0")
        .arg(format!("--log-net-log={}", netlog.display()))
        .arg(&url)
        .output()
        .expect(
            "run chromium (Debian package `chromium`; scripts/ensure-deps installs it): is it on PATH?",
        );
    assert!(shot.status.success(), "chromium: {}", stderr(&shot));
    let console = stderr(&shot)
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(str::to_string)
        .collect();
    let dom = chromium()
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .expect("run chromium --dump-dom");
    assert!(dom.status.success(), "chromium: {}", stderr(&dom));
    BrowserView {
        screenshot,
        dom: stdout(&dom),
        console,
        page_requests: page_requests(&netlog),
    }
}

/// URLs of requests the page started: URL_REQUEST_START_JOB events with an initiator
/// (Chromium's own background services have "not an origin"), other than file: and data:.
fn page_requests(netlog: &Path) -> Vec<String> {
    let text = fs::read_to_string(netlog).expect("net log");
    // Chromium may leave the final `]}` off when it exits; close it.
    let log: serde_json::Value = serde_json::from_str(&text)
        .or_else(|_| serde_json::from_str(&format!("{}]}}", text.trim_end().trim_end_matches(','))))
        .expect("net log parses");
    let start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
        .as_u64()
        .expect("event type");
    log["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["type"].as_u64() == Some(start_job))
        .filter(|e| e["params"]["initiator"].as_str() != Some("not an origin"))
        .filter_map(|e| e["params"]["url"].as_str())
        .filter(|u| !u.starts_with("file:") && !u.starts_with("data:"))
        .map(str::to_string)
        .collect()
}

/// Fraction of pixels that are not near-white, and the number of distinct colours.
fn ink(png_path: &Path) -> (f64, usize) {
    let decoder = png::Decoder::new(fs::File::open(png_path).expect("open png"));
    let mut reader = decoder.read_info().expect("png header");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("png frame");
    let channels = info.color_type.samples();
    let pixels = &buf[..info.buffer_size()];
    let mut colours = std::collections::HashSet::new();
    let mut inked = 0usize;
    let mut total = 0usize;
    for px in pixels.chunks(channels) {
        total += 1;
        let rgb = (px[0], px[1 % channels], px[2 % channels]);
        colours.insert(rgb);
        if rgb.0 < 235 || rgb.1 < 235 || rgb.2 < 235 {
            inked += 1;
        }
    }
    (inked as f64 / total as f64, colours.len())
}

#[test]
fn html_report_opens_in_chromium_with_every_plot_no_errors_no_network() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = fixture_store(dir.path());
    let html = dir.path().join("out/report.html");
    let md = dir.path().join("md");
    let out = lmdensity(
        dir.path(),
        &[
            "--results-dir",
            store.to_str().expect("utf8"),
            "report",
            "--html",
            html.to_str().expect("utf8"),
            "--md",
            md.to_str().expect("utf8"),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("20261123T000002-broken/manifest.json"),
        "the corrupt run is named: {}",
        stderr(&out)
    );
    let text = fs::read_to_string(&html).expect("html");
    // Problems reported in place, not fatal.
    assert!(text.contains("Not read:") && text.contains("20261123T000002-broken"));
    assert!(text.contains("no metrics written (stopped before its first unit finished)"));
    assert!(text.contains("partial (resumable)") && text.contains("headline metric missing"));
    // The refused fit: two models with PTB and tasks cannot fit three parameters.
    assert!(
        text.contains("Fit refused: gadre-error: 2 point(s) cannot determine 3 parameters"),
        "refused fit shown in place"
    );
    // Settings and hardware of each model.
    for needle in [
        "AMD EPYC",
        "Q4_K_M",
        "sha256",
        "corpus=ptb-test",
        "llama.cpp",
    ] {
        assert!(text.contains(needle), "{needle} missing from the report");
    }

    let view = open_in_chromium(&html, dir.path());
    assert!(
        view.console.is_empty(),
        "console messages: {:?}",
        view.console
    );
    assert!(
        view.page_requests.is_empty(),
        "the report fetched: {:?}",
        view.page_requests
    );
    let (ink_fraction, colours) = ink(&view.screenshot);
    assert!(
        ink_fraction > 0.03 && colours > 50,
        "screenshot looks blank: {ink_fraction:.3} inked, {colours} colours"
    );
    for id in FIGURES {
        assert!(
            view.dom.contains(&format!("data-figure=\"{id}\"")),
            "figure {id} missing from the rendered page"
        );
    }
    let drawn = view.dom.matches("class=\"plot\"").count();
    let missing = view.dom.matches("class=\"missing\"").count();
    assert_eq!((drawn, missing), (8, 1), "eight plots and the refused fit");
    assert_eq!(view.dom.matches("<svg").count(), 8);
    // Calibration recomputed from the task runs' samples.
    assert!(
        text.contains("ECE (10)") && text.contains("AUROC"),
        "calibration table"
    );

    // The Markdown report and its image files.
    let report_md = fs::read_to_string(md.join("report.md")).expect("report.md");
    for id in FIGURES.iter().filter(|id| **id != "store-loss-error") {
        assert!(
            report_md.contains(&format!("figures/{id}.png")),
            "{id} not linked"
        );
        let (ink_fraction, colours) = ink(&md.join(format!("figures/{id}.png")));
        assert!(
            ink_fraction > 0.02 && colours > 8,
            "{id}.png looks blank: {ink_fraction:.3}, {colours}"
        );
    }
    assert!(report_md.contains("**Not drawn:** Fit refused"));
}

#[test]
fn browser_check_catches_console_errors_and_network_fetches() {
    // The checks above must be able to fail: a page that logs and fetches is caught.
    let dir = tempfile::tempdir().expect("tempdir");
    let page = dir.path().join("bad.html");
    fs::write(
        &page,
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"></head><body><p>x</p>\
         <img src=\"http://127.0.0.1:9/x.png\"><script>console.error(\"boom\")</script></body></html>",
    )
    .expect("write");
    let view = open_in_chromium(&page, dir.path());
    assert!(
        view.console.iter().any(|l| l.contains("boom")),
        "{:?}",
        view.console
    );
    assert_eq!(
        view.page_requests,
        vec!["http://127.0.0.1:9/x.png".to_string()]
    );
    let (ink_fraction, _) = ink(&view.screenshot);
    assert!(ink_fraction < 0.01, "an almost empty page reads as blank");
}

#[test]
fn empty_store_report_says_so_in_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("empty");
    fs::create_dir_all(&store).expect("mkdir");
    let html = dir.path().join("r.html");
    let out = lmdensity(
        dir.path(),
        &[
            "--quiet",
            "--results-dir",
            store.to_str().expect("utf8"),
            "report",
            "--html",
            html.to_str().expect("utf8"),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = fs::read_to_string(&html).expect("html");
    assert!(text.contains("This results store has no runs yet."));
    assert!(text.contains("No analyses in this store"));
    assert_eq!(text.matches("class=\"missing\"").count(), FIGURES.len());
    assert!(!text.contains("<svg"));
}
