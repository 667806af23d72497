//! Listings printed by the commands: the model registry as a table, fetched files, a corpus'
//! summary, task groups' averages.

use lmdensity_eval::corpus::Corpus;
use lmdensity_hub::Registry;
use lmdensity_tasks::score::GroupScore;
use tabled::settings::Style;
use tabled::{Table, Tabled};

use crate::error::Result;
use crate::workspace::Workspace;

/// Group averages, one line each.
pub fn groups_text(groups: &[GroupScore]) -> String {
    groups
        .iter()
        .map(|g| {
            format!(
                "{:<24} acc {:.4} ± {:.4} (items-weighted, {} items in {} tasks); macro {:.4}\n",
                g.name, g.acc, g.acc_stderr, g.items, g.tasks, g.acc_macro
            )
        })
        .collect()
}

#[derive(Tabled)]
struct ModelRow {
    id: String,
    family: String,
    params: String,
    released: String,
    variant: String,
    format: String,
    quant: String,
    sources: String,
}

/// The registry's models as a markdown table (the default marked, sources summarised).
pub fn models_table(registry: &Registry) -> String {
    let rows: Vec<ModelRow> = registry
        .models
        .iter()
        .map(|m| ModelRow {
            id: match m.id == registry.default_model {
                true => format!("{} (default)", m.id),
                false => m.id.clone(),
            },
            family: m.family.clone(),
            params: format!("{:.1}M", m.params as f64 / 1e6),
            released: m.release_date.clone(),
            variant: m.variant.clone(),
            format: m.format.clone(),
            quant: m.quantization.clone(),
            sources: m
                .sources
                .iter()
                .map(|s| s.summary())
                .collect::<Vec<_>>()
                .join(" → "),
        })
        .collect();
    Table::new(rows).with(Style::markdown()).to_string()
}

/// Fetches and verifies registry models `ids`: a line per file (id, path, sha256, source).
pub fn fetch(ws: &Workspace, ids: &[String]) -> Result<String> {
    let registry = ws.registry()?;
    let fetcher = ws.fetcher();
    let mut out = String::new();
    for id in ids {
        let resolved = fetcher.resolve(registry.get(id)?, &registry.base_dir())?;
        for (path, sha) in resolved.paths.iter().zip(&resolved.sha256) {
            out.push_str(&format!(
                "{id}\t{}\tsha256:{sha}\t({})\n",
                path.display(),
                resolved.source
            ));
        }
    }
    Ok(out)
}

/// `name: N documents, B bytes, sha256 … (origin)` of a corpus as `corpus` writes it.
pub fn corpus_line(corpus: &Corpus) -> String {
    format!(
        "{}: {} documents, {} bytes, sha256 {} ({})",
        corpus.name,
        corpus.documents.len(),
        corpus.joined().len(),
        corpus.sha256,
        corpus.origin
    )
}
