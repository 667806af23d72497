//! Arguments into jobs: every flag lands in a field of a job from `lmdensity_jobs`; nothing is
//! measured or checked against files here.

use lmdensity_bench::plan::{parse_bytes, SweepFlags};
use lmdensity_cluster::slurm::SbatchOptions;
use lmdensity_jobs as jobs;
use lmdensity_jobs::{JobError, ModelSpec, Result};

use crate::cli::{
    BenchArgs, ConvertArgs, DensityArgs, EvalArgs, FitArgs, FitSettings, FitTarget, KldArgs,
    ModelArgs, PplArgs, QuantizeArgs, ReferenceArgs, SubmitArgs, SweepArgs, TrendArgs,
};

impl ModelArgs {
    /// The model and engine settings.
    pub fn spec(&self) -> ModelSpec {
        ModelSpec {
            model: self.model.clone(),
            model_path: self.model_path.clone(),
            engine: self.backend,
            dtype: self.dtype,
            tokenizer: self.tokenizer.clone(),
            threads: self.threads,
            batch_size: self.batch_size,
            gpu_layers: self.gpu_layers,
            no_mmap: self.no_mmap,
        }
    }
}

impl KldArgs {
    fn spec(&self) -> jobs::KldSpec {
        jobs::KldSpec {
            save_base: self.save_kld_base.clone(),
            compare_with: self.kld_base.clone(),
            top_k: self.kld_top_k,
        }
    }
}

impl PplArgs {
    /// The perplexity job.
    pub fn job(&self) -> jobs::PerplexityJob {
        jobs::PerplexityJob {
            model: self.model.spec(),
            corpus: self.corpus.clone(),
            corpus_bytes: self.corpus_bytes,
            modes: self.mode,
            max_length: self.max_length,
            n_ctx: self.n_ctx,
            resume: self.resume,
            kld: self.kld.spec(),
        }
    }
}

impl EvalArgs {
    /// The task job.
    pub fn job(&self) -> jobs::TaskJob {
        jobs::TaskJob {
            model: self.model.spec(),
            tasks: self.tasks.clone(),
            limit: self.limit,
            num_fewshot: self.num_fewshot,
            seed: self.seed,
            scoring: self.scoring,
            tasks_file: self.tasks_file.clone(),
            resume: self.resume,
            lm_eval_json: self.lm_eval_json.clone(),
            chat: jobs::ChatOptions {
                apply: self.apply_chat_template,
                fewshot_as_multiturn: self.fewshot_as_multiturn,
                system_prompt: self.system_prompt.clone(),
            },
            parallel: self.parallel,
        }
    }
}

impl BenchArgs {
    /// The bench job; size lists that do not parse are refused naming the flag.
    pub fn job(&self) -> Result<jobs::BenchJob> {
        let sweep = SweepFlags {
            n_prompt: self.n_prompt.clone(),
            n_gen: self.n_gen.clone(),
            prompt_gen: self.prompt_gen.clone().unwrap_or_default(),
            n_depth: self.n_depth.clone(),
            batch_size: self.batch_size.clone(),
            ubatch_size: self.ubatch_size.clone(),
            threads: self.threads.clone().unwrap_or_default(),
            parallel: self.parallel.clone(),
        }
        .sweep()
        .map_err(JobError::Invalid)?;
        let memory_budget = self
            .memory_budget
            .as_deref()
            .map(|text| parse_bytes("--memory-budget", text).map_err(JobError::Invalid))
            .transpose()?;
        Ok(jobs::BenchJob {
            model: ModelSpec {
                model: self.model.clone(),
                model_path: self.model_path.clone(),
                engine: self.backend,
                tokenizer: self.tokenizer.clone(),
                gpu_layers: self.gpu_layers,
                no_mmap: self.no_mmap,
                ..ModelSpec::default()
            },
            sweep,
            repetitions: self.repetitions,
            warmup: self.warmup,
            seed: self.seed,
            roofline: !self.no_roofline,
            memory_budget,
        })
    }
}

impl SubmitArgs {
    /// The array's resources.
    pub fn options(&self) -> SbatchOptions {
        SbatchOptions {
            partition: self.partition.clone(),
            time: self.time.clone(),
            cpus_per_task: self.cpus_per_task,
            mem: self.mem.clone(),
            gres: self.gres.clone(),
            max_parallel: self.max_parallel,
        }
    }
}

impl SweepArgs {
    /// The quantization sweep; unknown type names are refused listing the known ones.
    pub fn job(&self) -> Result<jobs::SweepJob> {
        Ok(jobs::SweepJob {
            model: self.model.clone(),
            types: self
                .types
                .split(',')
                .filter(|t| !t.trim().is_empty())
                .map(jobs::sweep::parse_type)
                .collect::<Result<_>>()?,
            corpus: self.corpus.clone(),
            corpus_bytes: self.corpus_bytes,
            max_length: self.max_length,
            tasks: self.tasks.clone(),
            task_limit: self.task_limit,
            bench_repetitions: self.bench_repetitions,
            work_dir: self.work_dir.clone(),
            out: self.out.clone(),
            fresh: self.fresh,
        })
    }
}

impl QuantizeArgs {
    /// The quantize job.
    pub fn job(&self) -> Result<jobs::QuantizeJob> {
        Ok(jobs::QuantizeJob {
            input: self.input.clone(),
            out: self.out.clone(),
            kind: jobs::sweep::parse_type(&self.kind)?,
            threads: self.threads,
        })
    }
}

impl ConvertArgs {
    /// The convert job.
    pub fn job(&self) -> jobs::ConvertJob {
        jobs::ConvertJob {
            model: self.model.spec(),
            out: self.out.clone(),
            format: self.format,
        }
    }
}

impl FitSettings {
    fn settings(&self) -> jobs::FitSettings {
        jobs::FitSettings {
            bootstrap: self.bootstrap.unwrap_or(jobs::FitSettings::BOOTSTRAP),
            seed: self.seed,
            confidence: self.confidence,
        }
    }
}

impl FitArgs {
    /// The fit job.
    pub fn job(&self) -> jobs::FitJob {
        let target = match &self.target {
            FitTarget::Gadre {
                data,
                dataset,
                eval_set,
            } => jobs::FitTarget::Gadre {
                data: data.clone(),
                dataset: dataset.clone(),
                eval_set: eval_set.clone(),
            },
            FitTarget::Runs { law, x, y } => jobs::FitTarget::Runs {
                law: *law,
                x: x.clone(),
                y: y.clone(),
            },
            FitTarget::Csv {
                file,
                law,
                x,
                y,
                label,
            } => jobs::FitTarget::Csv {
                file: file.clone(),
                law: *law,
                x: x.clone(),
                y: y.clone(),
                label: label.clone(),
            },
            FitTarget::Curve {
                file,
                law,
                lr_schedule,
                fit_until,
                predict_to,
            } => jobs::FitTarget::Curve {
                file: file.clone(),
                law: *law,
                lr_schedule: lr_schedule.clone(),
                fit_until: *fit_until,
                predict_to: *predict_to,
            },
            FitTarget::LossCurves { data } => jobs::FitTarget::LossCurves { data: data.clone() },
        };
        let mut settings = self.settings.settings();
        if let (FitTarget::Curve { .. }, None) = (&self.target, self.settings.bootstrap) {
            settings.bootstrap = jobs::FitSettings::CURVE_BOOTSTRAP;
        }
        jobs::FitJob { target, settings }
    }
}

impl ReferenceArgs {
    fn spec(&self) -> jobs::ReferenceSpec {
        jobs::ReferenceSpec {
            table: self.table.clone(),
            d0: self.d0,
            min_tokens: self.min_tokens,
            max_extrapolation: self.max_extrapolation,
            protocol: self.protocol,
            family: self.family,
            score: self.reference_score,
        }
    }
}

impl DensityArgs {
    /// The density job.
    pub fn job(&self) -> jobs::DensityJob {
        jobs::DensityJob {
            models: self.models.clone(),
            scores: self.score.clone(),
            params: self.params,
            name: self.name.clone(),
            reference: self.reference.spec(),
            settings: self.settings.settings(),
            sweep: self.sweep.clone(),
        }
    }
}

impl TrendArgs {
    /// The trend job.
    pub fn job(&self) -> jobs::TrendJob {
        jobs::TrendJob {
            reference: self.reference.spec(),
            settings: self.settings.settings(),
        }
    }
}
