//! Embeds Gadre et al.'s released run files (`data/gadre-scaling/exp_data`) in the library, so
//! an installed binary reproduces their fits without the source tree.
use std::fmt::Write;
use std::path::Path;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/gadre-scaling/exp_data");
    let models = root.join("models");
    println!("cargo:rerun-if-changed={}", models.display());
    println!("cargo:rerun-if-changed={}", root.join("evals").display());
    let mut stems: Vec<String> = std::fs::read_dir(&models)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
                .collect()
        })
        .unwrap_or_default();
    stems.sort();
    let mut out = String::from("/// (run name, run file, evaluation file) of every shipped run.\npub(crate) const SHIPPED_GADRE_FILES: &[(&str, &str, Option<&str>)] = &[\n");
    for stem in &stems {
        let run = models.join(format!("{stem}.json"));
        let eval = root
            .join("evals")
            .join(format!("evaluation_{stem}_heavy.json"));
        let eval = if eval.is_file() {
            format!("Some(include_str!({:?}))", eval.display().to_string())
        } else {
            "None".into()
        };
        let _ = writeln!(
            out,
            "    ({stem:?}, include_str!({:?}), {eval}),",
            run.display().to_string()
        );
    }
    out.push_str("];\n");
    let dest = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("gadre_files.rs");
    std::fs::write(dest, out).expect("writing gadre_files.rs");
}
