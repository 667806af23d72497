//! Final answers of MATH problems, compared the way Minerva (Lewkowycz et al. 2022, appendix D)
//! and lm-eval's `minerva_math` compare them: the answer is cut out of the solution (the last
//! `\boxed{…}`, or the "Final Answer: The final answer is …" line the 4-shot prompt teaches)
//! and both sides are normalised (units and filler words removed, `\text{…}` and `\boxed{…}`
//! unwrapped, `\frac12` → `\frac{1}{2}`, thousands separators dropped) before string equality.
//!
//! Written here because no Rust crate implements this normalisation; it has to match the
//! reference implementation character for character, including its quirks (removing "ft" turns
//! `\left(` into `\le(`), since OLMo-eval's and lm-eval's stored answers went through it. The
//! test `minerva_normalisation_reproduces_olmo_evals_answers` checks this port against the 500
//! answers OLMo-eval stores for MATH-500.
//!
//! lm-eval then also accepts answers that sympy proves equal after parsing the LaTeX; no Rust
//! library parses LaTeX mathematics, so that step is left out (see the task's description).

use std::sync::LazyLock;

use regex::Regex;

/// Applied in order, before [`REMOVED_EXPRESSIONS`].
const SUBSTITUTIONS: [(&str, &str); 10] = [
    ("an ", ""),
    ("a ", ""),
    (".$", "$"),
    ("\\$", ""),
    ("\\ ", ""),
    (" ", ""),
    ("mbox", "text"),
    (",\\text{and}", ","),
    ("\\text{and}", ","),
    ("\\text{m}", "\\text{}"),
];

/// Units, filler words and spacing commands deleted wherever they occur.
const REMOVED_EXPRESSIONS: [&str; 43] = [
    "square",
    "ways",
    "integers",
    "dollars",
    "mph",
    "inches",
    "ft",
    "hours",
    "km",
    "units",
    "\\ldots",
    "sue",
    "points",
    "feet",
    "minutes",
    "digits",
    "cents",
    "degrees",
    "cm",
    "gm",
    "pounds",
    "meters",
    "meals",
    "edges",
    "students",
    "childrentickets",
    "multiples",
    "\\text{s}",
    "\\text{.}",
    "\\text{\ns}",
    "\\text{}^2",
    "\\text{}^3",
    "\\text{\n}",
    "\\text{}",
    "\\mathrm{th}",
    "^\\circ",
    "^{\\circ}",
    "\\;",
    ",\\!",
    "{,}",
    "\"",
    "\\dots",
    // Listed twice upstream ("\\text{}" again after the exponents); once is the same.
    "\\text{}",
];

/// A regex rewrite of the normalisation (Rust replacement syntax: `$$` is a literal `$`).
struct Rewrite {
    pattern: Regex,
    replacement: &'static str,
}

static REWRITES: LazyLock<Vec<Rewrite>> = LazyLock::new(|| {
    [
        // The maths between the first pair of dollar signs on each line.
        (r"(.*?)(\$)(.*?)(\$)(.*)", "$$${3}$$"),
        (r"(\\text\{)(.*?)(\})", "${2}"),
        (r"(\\textbf\{)(.*?)(\})", "${2}"),
        (r"(\\overline\{)(.*?)(\})", "${2}"),
        (r"(\\boxed\{)(.*)(\})", "${2}"),
        // Shorthand TeX: \fracab → \frac{a}{b}, \sqrta → \sqrt{a}.
        (r"(frac)([^{])(.)", "frac{${2}}{${3}}"),
        (r"(sqrt)([^{])", "sqrt{${2}}"),
    ]
    .into_iter()
    .map(|(pattern, replacement)| Rewrite {
        // The patterns are constants, checked by the unit tests.
        pattern: Regex::new(pattern).unwrap_or_else(|e| panic!("rewrite {pattern:?}: {e}")),
        replacement,
    })
    .collect()
});

/// Minerva's normalisation of a final answer: the text after the last `=`, substitutions and
/// removals, LaTeX wrappers unwrapped, shorthand fractions and roots braced, dollar signs
/// dropped, and commas dropped from a plain number.
pub fn normalize_final_answer(answer: &str) -> String {
    let mut answer = answer.rsplit('=').next().unwrap_or_default().to_string();
    for (before, after) in SUBSTITUTIONS {
        answer = answer.replace(before, after);
    }
    for expression in REMOVED_EXPRESSIONS {
        answer = answer.replace(expression, "");
    }
    for rewrite in REWRITES.iter() {
        answer = rewrite
            .pattern
            .replace_all(&answer, rewrite.replacement)
            .into_owned();
    }
    answer = answer.replace('$', "");
    let without_commas = answer.replace(',', "");
    if !without_commas.is_empty() && without_commas.chars().all(|c| c.is_ascii_digit()) {
        answer = without_commas;
    }
    answer
}

/// The last `\boxed{…}` (or `\fbox{…}`) of a solution with balanced braces, or the text after
/// the last `\boxed ` up to the next `$`; `None` when there is none.
pub fn last_boxed(solution: &str) -> Option<&str> {
    if let Some(at) = solution.rfind("\\boxed ") {
        let rest = &solution[at + "\\boxed ".len()..];
        return Some(rest.split('$').next().unwrap_or_default());
    }
    let start = solution
        .rfind("\\boxed")
        .or_else(|| solution.rfind("\\fbox"))?;
    let mut depth = 0usize;
    for (offset, c) in solution[start..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    let inner = &solution[start..start + offset];
                    return Some(match inner.find('{') {
                        Some(open) => &inner[open + 1..],
                        None => inner,
                    });
                }
            }
            _ => {}
        }
    }
    None
}

/// The reference answer of a MATH solution, as lm-eval's `minerva_math` builds it: the last
/// boxed expression, normalised.
pub fn reference_answer(solution: &str) -> Option<String> {
    last_boxed(solution).map(normalize_final_answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_unwraps_latex_and_drops_units_and_separators() {
        assert_eq!(normalize_final_answer(" $24$"), "24");
        assert_eq!(normalize_final_answer("$x = 1,000$"), "1000");
        assert_eq!(normalize_final_answer("\\frac12"), "\\frac{1}{2}");
        assert_eq!(normalize_final_answer("\\sqrt2"), "\\sqrt{2}");
        assert_eq!(normalize_final_answer("10 \\text{ inches}"), "10");
        assert_eq!(normalize_final_answer("90^\\circ"), "90");
        assert_eq!(normalize_final_answer("\\textbf{(C)}"), "(C)");
        // The reference implementation's quirk, kept: "ft" is removed from "\left".
        assert_eq!(
            normalize_final_answer("\\left( 3, \\frac{\\pi}{2} \\right)"),
            "\\le(3,\\frac{\\pi}{2}\\right)"
        );
        // Not a plain number: commas stay.
        assert_eq!(normalize_final_answer("(1, 2)"), "(1,2)");
    }

    #[test]
    fn the_last_balanced_box_is_the_answer() {
        let s = "so $\\boxed{1}$ or rather $\\boxed{\\frac{2}{3}}$.";
        assert_eq!(last_boxed(s), Some("\\frac{2}{3}"));
        assert_eq!(last_boxed("the answer is \\boxed 5$ done"), Some("5"));
        assert_eq!(last_boxed("no box"), None);
        assert_eq!(last_boxed("unclosed \\boxed{12"), None);
        assert_eq!(
            reference_answer("Thus $r = \\boxed{1,\\!000}$.").as_deref(),
            Some("1000")
        );
    }
}
