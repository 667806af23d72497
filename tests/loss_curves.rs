//! `fit curve` and `fit loss-curves` end to end: a real run's final loss predicted from its
//! start, and bad curves refused with exit code 2 and a message naming the file and the fault.

use std::path::{Path, PathBuf};

use crate::util::*;

/// One of Luo et al.'s curves, shipped in crates/laws/data/multipower-law.
fn curve(size: &str, name: &str) -> PathBuf {
    repo_root().join(format!(
        "crates/laws/data/multipower-law/csv_{size}/{name}.csv"
    ))
}

fn fails(cwd: &Path, args: &[&str], needles: &[&str]) {
    let out = lmdensity(cwd, args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "expected exit 2: {err}");
    for n in needles {
        assert!(err.contains(n), "stderr should mention `{n}`: {err}");
    }
    assert!(!err.contains("panicked"), "no panic: {err}");
}

#[test]
fn fit_curve_predicts_the_end_of_a_run_from_its_start() {
    // 25M, two-stage schedule: 3e-4 to step 8000, then 9e-5. Fitted up to step 11000 (the
    // drop and 3000 steps after it), predicted at the last logged step, 14144 (3.3901).
    let dir = tempfile::tempdir().expect("tempdir");
    let file = curve("25", "wsdcon_9");
    let out = lmdensity(
        dir.path(),
        &[
            "fit",
            "curve",
            file.to_str().expect("utf8"),
            "--fit-until",
            "11000",
            "--predict-to",
            "14144",
            "--bootstrap",
            "8",
            "--json",
            "--quiet",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    let predicted = json["predicted"].as_f64().expect("predicted");
    let measured = json["measured"].as_f64().expect("measured");
    assert_eq!(measured, 3.3901);
    // Measured: +0.08%; the tolerance is 0.5%.
    assert!(
        (predicted - measured).abs() < 0.005 * measured,
        "predicted {predicted}, measured {measured}"
    );
    let [lo, hi] = [0, 1].map(|i| json["interval"][i].as_f64().expect("interval"));
    assert!(lo < predicted && predicted < hi, "{lo} … {hi}");
    assert_eq!(json["fit_until"], 10944);
    assert_eq!(json["schedule"], "wsdcon_9 (rebuilt per step)");
    assert_eq!(json["fit"]["parameters"].as_array().map(Vec::len), Some(7));
    let saved = std::fs::read_dir(dir.path().join("results/analyses"))
        .expect("analyses")
        .count();
    assert_eq!(saved, 1);

    // Tissue et al.'s law, as text, on the file's own lr column.
    let out = lmdensity(
        dir.path(),
        &[
            "fit",
            "curve",
            file.to_str().expect("utf8"),
            "--law",
            "tissue",
            "--lr-schedule",
            "logged",
            "--fit-until",
            "11000",
            "--bootstrap",
            "8",
            "--quiet",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("Tissue et al. 2024 fitted to"), "{text}");
    assert!(text.contains("the file's lr column"), "{text}");
    assert!(text.contains("predicted loss at step 14144"), "{text}");
    assert!(text.contains("measured at step 14144: 3.3901"), "{text}");
}

#[test]
fn fit_curve_refuses_bad_curves_naming_the_file_and_the_fault() {
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        path.to_str().expect("utf8").to_string()
    };
    let repeated = write(
        "repeated.csv",
        "step,lr,loss\n100,3e-4,4.1\n200,3e-4,4.0\n200,3e-4,3.9\n",
    );
    fails(
        dir.path(),
        &["fit", "curve", &repeated],
        &[
            "repeated.csv",
            "row 4: step 200 does not come after step 200",
            "steps must increase",
        ],
    );
    let no_lr = write("no_lr.csv", "step,loss\n100,4.1\n200,4.0\n");
    fails(
        dir.path(),
        &["fit", "curve", &no_lr],
        &["no_lr.csv", "no column \"lr\"", "step,lr,loss"],
    );
    let short = write(
        "short.csv",
        "step,lr,loss\n100,3e-4,4.1\n200,3e-4,4.0\n300,3e-4,3.9\n400,3e-4,3.85\n",
    );
    fails(
        dir.path(),
        &["fit", "curve", &short],
        &["short.csv", "4 point(s) cannot determine 7 parameters"],
    );
    fails(
        dir.path(),
        &[
            "fit",
            "curve",
            &short,
            "--law",
            "tissue",
            "--fit-until",
            "250",
        ],
        &[
            "short.csv",
            "up to step 250",
            "2 point(s) cannot determine 4 parameters",
        ],
    );
    let file = curve("25", "wsdcon_9");
    fails(
        dir.path(),
        &[
            "fit",
            "curve",
            file.to_str().expect("utf8"),
            "--lr-schedule",
            "cosine_24000",
        ],
        &["wsdcon_9.csv", "is not schedule cosine_24000's"],
    );
    fails(
        dir.path(),
        &["fit", "loss-curves", "--data", "no-such-folder"],
        &["no-such-folder", "not a folder of loss curves"],
    );
    assert!(
        !dir.path().join("results/analyses").exists(),
        "nothing saved"
    );
}

#[test]
fn every_law_spelling_is_still_accepted() {
    let dir = tempfile::tempdir().expect("tempdir");
    for law in [
        "gadre-error",
        "gadre-overtraining",
        "chinchilla",
        "chinchilla-huber",
        "chinchilla-varpro",
        "densing-loss",
        "densing-performance",
    ] {
        let out = lmdensity(
            dir.path(),
            &[
                "fit",
                "csv",
                "missing.csv",
                "--law",
                law,
                "--x",
                "N",
                "--y",
                "L",
            ],
        );
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{law}: {err}");
        assert!(
            !err.contains("invalid value"),
            "{law} was refused by the parser: {err}"
        );
    }
    let out = lmdensity(
        dir.path(),
        &[
            "fit", "csv", "x.csv", "--law", "gadre", "--x", "N", "--y", "L",
        ],
    );
    let err = stderr(&out);
    assert!(err.contains("invalid value 'gadre'"), "{err}");
    assert!(
        err.contains("chinchilla-huber"),
        "the possible values are listed: {err}"
    );
}
