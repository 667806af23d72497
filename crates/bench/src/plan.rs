//! What to measure: llama-bench's tests (`pp512`, `tg128`, `pp512+tg128`, `@ d1024`) expanded
//! from lists of sizes, and the checks that refuse impossible plans before anything loads.

use serde::{Deserialize, Serialize};

/// One measurement: a prompt of `n_prompt` tokens and/or `n_gen` generated tokens per
/// sequence, after `n_depth` tokens already in the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BenchTest {
    /// Prompt tokens processed per sequence (0: none).
    pub n_prompt: u32,
    /// Tokens generated per sequence, one decode call each (0: none).
    pub n_gen: u32,
    /// Tokens in the cache before the timed part (not timed).
    pub n_depth: u32,
    /// Tokens per decode call in prompt processing.
    pub n_batch: u32,
    /// Tokens per physical batch.
    pub n_ubatch: u32,
    /// CPU threads.
    pub threads: u32,
    /// Sequences processed together.
    pub n_seq: u32,
}

impl BenchTest {
    /// llama-bench's test name (`pp512`, `tg128`, `pp512+tg128`, `pp512 @ d1024`), with
    /// ` ×N` when N sequences run together.
    pub fn name(&self) -> String {
        let mut name = match (self.n_prompt, self.n_gen) {
            (p, 0) => format!("pp{p}"),
            (0, g) => format!("tg{g}"),
            (p, g) => format!("pp{p}+tg{g}"),
        };
        if self.n_depth > 0 {
            name.push_str(&format!(" @ d{}", self.n_depth));
        }
        if self.n_seq > 1 {
            name.push_str(&format!(" ×{}", self.n_seq));
        }
        name
    }

    /// KV cells each sequence needs: depth + prompt + generated tokens (llama-bench's n_ctx).
    pub fn n_ctx(&self) -> u64 {
        u64::from(self.n_depth) + u64::from(self.n_prompt) + u64::from(self.n_gen)
    }

    /// Tokens processed in one timed repetition, all sequences together.
    pub fn timed_tokens(&self) -> u64 {
        (u64::from(self.n_prompt) + u64::from(self.n_gen)) * u64::from(self.n_seq)
    }
}

/// Lists of sizes to sweep; every combination becomes tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sweep {
    /// Prompt lengths of the prompt-processing tests (empty: none).
    pub n_prompt: Vec<u32>,
    /// Lengths of the generation tests (empty: none).
    pub n_gen: Vec<u32>,
    /// (prompt, generated) pairs of combined tests.
    pub prompt_gen: Vec<(u32, u32)>,
    /// Cache depths before the timed part.
    pub n_depth: Vec<u32>,
    /// Decode-call sizes.
    pub n_batch: Vec<u32>,
    /// Physical batch sizes.
    pub n_ubatch: Vec<u32>,
    /// Thread counts.
    pub threads: Vec<u32>,
    /// Sequences processed together.
    pub n_seq: Vec<u32>,
}

impl Default for Sweep {
    /// llama-bench's defaults: pp512 and tg128 at depth 0, batch 2048, ubatch 512, all CPUs.
    fn default() -> Self {
        Sweep {
            n_prompt: vec![512],
            n_gen: vec![128],
            prompt_gen: Vec::new(),
            n_depth: vec![0],
            n_batch: vec![2048],
            n_ubatch: vec![512],
            threads: vec![logical_cpus() as u32],
            n_seq: vec![1],
        }
    }
}

/// A sweep as llama-bench's flags write it: comma lists of sizes (`512,1024`, `none` for no
/// tests of a kind) and `;`-separated PROMPT,GEN pairs. The command line and sweep plans both
/// give their sizes this way.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SweepFlags {
    /// Prompt lengths (`-p`).
    pub n_prompt: String,
    /// Generation lengths (`-n`).
    pub n_gen: String,
    /// PROMPT,GEN pairs (`--pg`).
    pub prompt_gen: String,
    /// Cache depths (`-d`).
    pub n_depth: String,
    /// Tokens per decode call (`-b`).
    pub batch_size: String,
    /// Tokens per physical batch (`-ub`).
    pub ubatch_size: String,
    /// Thread counts (empty: every logical CPU).
    pub threads: String,
    /// Sequences processed together.
    pub parallel: String,
}

impl Default for SweepFlags {
    /// llama-bench's defaults (pp512, tg128, depth 0, batch 2048, ubatch 512, one sequence).
    fn default() -> Self {
        SweepFlags {
            n_prompt: "512".into(),
            n_gen: "128".into(),
            prompt_gen: String::new(),
            n_depth: "0".into(),
            batch_size: "2048".into(),
            ubatch_size: "512".into(),
            threads: String::new(),
            parallel: "1".into(),
        }
    }
}

impl SweepFlags {
    /// The sweep; a list that does not parse is refused naming its flag.
    pub fn sweep(&self) -> Result<Sweep, String> {
        Ok(Sweep {
            n_prompt: parse_sizes("--n-prompt", &self.n_prompt)?,
            n_gen: parse_sizes("--n-gen", &self.n_gen)?,
            prompt_gen: parse_pairs(&self.prompt_gen)?,
            n_depth: parse_sizes("--n-depth", &self.n_depth)?,
            n_batch: parse_sizes("--batch-size", &self.batch_size)?,
            n_ubatch: parse_sizes("--ubatch-size", &self.ubatch_size)?,
            threads: match self.threads.trim() {
                "" => vec![logical_cpus() as u32],
                list => parse_sizes("--threads", list)?,
            },
            n_seq: parse_sizes("--parallel", &self.parallel)?,
        })
    }
}

/// Logical CPUs this process may use.
pub fn logical_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A plan that cannot run, with the flag to change.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    /// Nothing to measure.
    #[error("nothing to measure: give prompt lengths (--n-prompt), generation lengths (--n-gen) or pairs (--pg)")]
    Empty,
    /// A size of zero where at least one is needed.
    #[error("{flag}: {value} is not allowed; sizes are whole numbers ≥ 1")]
    Zero {
        /// The flag.
        flag: &'static str,
        /// The value given.
        value: u32,
    },
    /// More threads than logical CPUs.
    #[error("--threads {threads}: this machine has {cpus} logical CPUs; more threads than CPUs only measures contention")]
    TooManyThreads {
        /// Requested threads.
        threads: u32,
        /// Logical CPUs.
        cpus: usize,
    },
    /// A test needs a longer context than the model was trained for.
    #[error("{test}: needs a context of {needed} tokens (depth + prompt + generated), the model's is {n_ctx_train}")]
    ContextTooLong {
        /// Test name.
        test: String,
        /// Cells needed.
        needed: u64,
        /// The model's training context.
        n_ctx_train: u64,
    },
}

impl Sweep {
    /// Every test of the sweep, in llama-bench's order (per setting: prompt tests, then
    /// generation tests, then combined tests).
    pub fn tests(&self) -> Vec<BenchTest> {
        let mut tests = Vec::new();
        for &threads in &self.threads {
            for &n_batch in &self.n_batch {
                for &n_ubatch in &self.n_ubatch {
                    for &n_seq in &self.n_seq {
                        for &n_depth in &self.n_depth {
                            let test = |n_prompt, n_gen| BenchTest {
                                n_prompt,
                                n_gen,
                                n_depth,
                                n_batch,
                                n_ubatch,
                                threads,
                                n_seq,
                            };
                            tests.extend(self.n_prompt.iter().map(|&p| test(p, 0)));
                            tests.extend(self.n_gen.iter().map(|&g| test(0, g)));
                            tests.extend(self.prompt_gen.iter().map(|&(p, g)| test(p, g)));
                        }
                    }
                }
            }
        }
        tests
    }

    /// Checks sizes and thread counts, and every test against the model's context.
    pub fn validate(&self, cpus: usize, n_ctx_train: u64) -> Result<Vec<BenchTest>, PlanError> {
        let positive: [(&'static str, &[u32]); 6] = [
            ("--n-prompt", &self.n_prompt),
            ("--n-gen", &self.n_gen),
            ("--batch-size", &self.n_batch),
            ("--ubatch-size", &self.n_ubatch),
            ("--threads", &self.threads),
            ("--parallel", &self.n_seq),
        ];
        for (flag, values) in positive {
            if let Some(&value) = values.iter().find(|&&v| v == 0) {
                return Err(PlanError::Zero { flag, value });
            }
        }
        if let Some(&(p, g)) = self.prompt_gen.iter().find(|&&(p, g)| p == 0 || g == 0) {
            return Err(PlanError::Zero {
                flag: "--pg",
                value: p.min(g),
            });
        }
        if let Some(&threads) = self.threads.iter().find(|&&t| t as usize > cpus) {
            return Err(PlanError::TooManyThreads { threads, cpus });
        }
        let tests = self.tests();
        if tests.is_empty() {
            return Err(PlanError::Empty);
        }
        if let Some(test) = tests.iter().find(|t| t.n_ctx() > n_ctx_train) {
            return Err(PlanError::ContextTooLong {
                test: test.name(),
                needed: test.n_ctx(),
                n_ctx_train,
            });
        }
        Ok(tests)
    }
}

/// Parses a comma-separated list of whole numbers (`512,1024`), naming the flag on error.
pub fn parse_sizes(flag: &str, text: &str) -> Result<Vec<u32>, String> {
    if text.trim().is_empty() || text.trim() == "none" {
        return Ok(Vec::new());
    }
    text.split(',')
        .map(|part| {
            let part = part.trim();
            part.parse::<u32>().map_err(|_| {
                format!("{flag}: {part:?} is not a whole number ≥ 0 (a list looks like 128,512)")
            })
        })
        .collect()
}

/// Parses a size such as `8G`, `512M`, `100k` or `12345` into bytes (binary units), naming
/// the flag on error.
pub fn parse_bytes(flag: &str, text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (digits, unit) = t.split_at(t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len()));
    let shift = match unit.to_ascii_uppercase().trim_end_matches(['B', 'I']) {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(format!("{flag} {text:?}: unknown unit (use K, M, G or T)")),
    };
    let value: f64 = digits
        .trim()
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite() && *v > 0.0)
        .ok_or_else(|| format!("{flag} {text:?}: not a positive size such as 8G"))?;
    Ok((value * (1u64 << shift) as f64) as u64)
}

/// Parses `--pg` pairs: `512,128` or several as `512,128;1024,256`.
pub fn parse_pairs(text: &str) -> Result<Vec<(u32, u32)>, String> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    text.split(';')
        .map(|pair| match parse_sizes("--pg", pair)?.as_slice() {
            [p, g] => Ok((*p, *g)),
            _ => Err(format!(
                "--pg: {pair:?} is not a PROMPT,GEN pair (e.g. 512,128; several: 512,128;1024,256)"
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_parse_with_binary_units() {
        assert_eq!(parse_bytes("--memory-budget", "8G").expect("8G"), 8 << 30);
        assert_eq!(
            parse_bytes("--memory-budget", "512MiB").expect("MiB"),
            512 << 20
        );
        assert_eq!(parse_bytes("--memory-budget", "1.5k").expect("k"), 1536);
        assert_eq!(parse_bytes("--memory-budget", "100").expect("bytes"), 100);
        assert!(parse_bytes("--memory-budget", "-1G").is_err());
        assert!(parse_bytes("--memory-budget", "8X").is_err());
    }

    #[test]
    fn names_follow_llama_bench() {
        let t = BenchTest {
            n_prompt: 512,
            n_gen: 0,
            n_depth: 0,
            n_batch: 2048,
            n_ubatch: 512,
            threads: 2,
            n_seq: 1,
        };
        assert_eq!(t.name(), "pp512");
        assert_eq!(
            BenchTest {
                n_prompt: 0,
                n_gen: 128,
                ..t
            }
            .name(),
            "tg128"
        );
        assert_eq!(
            BenchTest {
                n_gen: 128,
                n_depth: 1024,
                ..t
            }
            .name(),
            "pp512+tg128 @ d1024"
        );
        assert_eq!(BenchTest { n_seq: 4, ..t }.name(), "pp512 ×4");
        assert_eq!(
            BenchTest {
                n_gen: 128,
                n_depth: 1024,
                ..t
            }
            .n_ctx(),
            1664
        );
    }

    #[test]
    fn sweep_expands_every_combination_in_order() {
        let sweep = Sweep {
            n_prompt: vec![128, 512],
            n_gen: vec![32],
            prompt_gen: vec![(64, 16)],
            n_depth: vec![0, 256],
            threads: vec![1, 2],
            ..Sweep::default()
        };
        let tests = sweep.tests();
        assert_eq!(tests.len(), 2 * 2 * 4);
        let names: Vec<String> = tests.iter().take(4).map(BenchTest::name).collect();
        assert_eq!(names, ["pp128", "pp512", "tg32", "pp64+tg16"]);
        assert_eq!(tests[4].name(), "pp128 @ d256");
        assert_eq!(tests[8].threads, 2);
    }

    #[test]
    fn bad_plans_are_refused_with_the_flag() {
        let sweep = Sweep {
            threads: vec![2],
            ..Sweep::default()
        };
        assert!(sweep.validate(2, 8192).is_ok());
        let zero = Sweep {
            n_gen: vec![0],
            ..sweep.clone()
        };
        assert_eq!(
            zero.validate(2, 8192),
            Err(PlanError::Zero {
                flag: "--n-gen",
                value: 0
            })
        );
        let threads = Sweep {
            threads: vec![3],
            ..sweep.clone()
        };
        assert!(matches!(
            threads.validate(2, 8192),
            Err(PlanError::TooManyThreads {
                threads: 3,
                cpus: 2
            })
        ));
        let long = Sweep {
            n_depth: vec![8000],
            ..sweep.clone()
        };
        let err = long.validate(2, 8192).expect_err("8512 > 8192");
        assert!(err
            .to_string()
            .contains("pp512 @ d8000: needs a context of 8512"));
        let empty = Sweep {
            n_prompt: vec![],
            n_gen: vec![],
            ..sweep
        };
        assert_eq!(empty.validate(2, 8192), Err(PlanError::Empty));
    }

    #[test]
    fn lists_parse_and_negative_numbers_are_refused() {
        assert_eq!(parse_sizes("-p", "128, 512"), Ok(vec![128, 512]));
        assert_eq!(parse_sizes("-p", "none"), Ok(vec![]));
        let err = parse_sizes("--n-prompt", "-5").expect_err("negative");
        assert!(err.contains("--n-prompt") && err.contains("-5"));
        assert_eq!(parse_pairs("512,128;64,16"), Ok(vec![(512, 128), (64, 16)]));
        assert!(parse_pairs("512").is_err());
    }
}
