//! What each command does: build its job from the arguments, run it, print the result.

use std::process::ExitCode;

use clap::Parser;
use lmdensity_cluster::slurm;
use lmdensity_cluster::{cell, status, CellOptions, Plan, SweepSpec};
use lmdensity_core::{progress, ResultsStore};
use lmdensity_eval::corpus;
use lmdensity_jobs::{
    curve_text, listing, report, Context, JobError, ReportJob, Result, Workspace,
};
use lmdensity_report::text::{self, MetricFilter};

use crate::cli::{Cli, Command, ModelArgs, PplArgs, ReportArgs, RunCellArgs, SlurmAction};

/// Parses arguments and runs the command.
pub fn run() -> Result<ExitCode> {
    let cli = Cli::parse();
    progress::set_quiet(cli.quiet);
    let ws = Workspace {
        results_dir: cli.results_dir.clone(),
        registry: cli.registry.clone(),
        verbose: cli.verbose,
    };
    match &cli.command {
        Command::Run(args) => {
            let runs = main_job(&args.model, &args.corpus, args.resume)
                .job()
                .run(&ws)?;
            println!("{}", text::runs_table(&runs, &MetricFilter::Headline));
        }
        Command::Ppl(args) => {
            let runs = args.job().run(&ws)?;
            println!("{}", text::runs_table(&runs, &MetricFilter::Headline));
        }
        Command::Eval(args) => {
            let outcome = args.job().run(&ws)?;
            print!("{}", listing::groups_text(&outcome.groups));
            println!(
                "{}",
                text::runs_table(&outcome.runs, &MetricFilter::Headline)
            );
        }
        Command::Bench(args) => {
            let records = args.job()?.run(&ws)?;
            print!("{}", lmdensity_bench::render(&records, args.output));
        }
        Command::Fit(args) => {
            let done = args.job().run(&ws)?;
            print_analysis(args.settings.json, &done, curve_text::fit_outcome_text)?;
        }
        Command::Density(args) => {
            let done = args.job().run(&ws)?;
            let confidence = args.settings.confidence;
            print_analysis(args.settings.json, &done, |o| o.text(confidence))?;
        }
        Command::Trend(args) => {
            let done = args.job().run(&ws)?;
            let confidence = args.settings.confidence;
            print_analysis(args.settings.json, &done, |o| o.text(confidence))?;
        }
        Command::Compare { run_a, run_b, json } => {
            let (a, b, c) = report::compare_runs(&ws, run_a, run_b)?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&c)?);
            } else {
                print!("{}", text::comparison_text(&a, &b, &c));
            }
        }
        Command::Convert(args) => {
            let done = args.job().run(&ws)?;
            let skipped = match done.skipped.is_empty() {
                true => String::new(),
                false => format!(
                    "; left out (no HF counterpart): {}",
                    done.skipped.join(", ")
                ),
            };
            println!(
                "{}: {} tensors, {:.1} MB, {} in {:.1} s{skipped}",
                done.path.display(),
                done.tensors,
                done.bytes as f64 / 1e6,
                done.label,
                done.seconds
            );
        }
        Command::Quantize(args) => {
            let done = args.job()?.run(&ws)?;
            println!(
                "{}: {}, {:.1} MB, {:.2} bits/weight, in {:.1} s",
                args.out.display(),
                done.label,
                done.bytes as f64 / 1e6,
                done.bits_per_weight,
                done.seconds
            );
        }
        Command::SweepQuant(args) => {
            let table = args.job()?.run(&ws)?;
            println!("{}", lmdensity_jobs::sweep::markdown(&table));
        }
        Command::Report(args) => report(&ws, args)?,
        Command::Fetch { ids } => print!("{}", listing::fetch(&ws, ids)?),
        Command::Models => println!("{}", listing::models_table(&ws.registry()?)),
        Command::Corpus { name, output } => {
            let corpus = corpus::load(name, &ws.fetcher())?;
            let text = corpus.joined();
            match output {
                Some(path) => {
                    std::fs::write(path, &text).with_context(|| path.display().to_string())?
                }
                None => std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes())?,
            }
            eprintln!("{}", listing::corpus_line(&corpus));
        }
        Command::Plan { spec, out } => {
            let plan = SweepSpec::load(spec)?.plan(&ws, spec)?;
            plan.save(out)?;
            print!("{}", plan.summary(out));
        }
        Command::RunCell(args) => return run_cells(&ws, args),
        Command::Slurm { action } => slurm_command(&ws, action)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `run-cell`: the chosen cells one after another; exit 2 when any failed (the rest still run).
fn run_cells(ws: &Workspace, args: &RunCellArgs) -> Result<ExitCode> {
    let plan = Plan::load(&args.plan)?;
    plan.check(ws, &args.plan)?;
    let options = CellOptions {
        threads: args.threads,
        fresh: args.fresh,
    };
    let mut failed = false;
    for index in cell::selection(&plan, args.index, args.shard.as_deref())? {
        match cell::run_cell(ws, &plan, &args.plan, index, &options) {
            Ok(outcome) => println!("{}", outcome.line()),
            Err(err) => {
                eprintln!("error: {}", JobError::from(err).chain());
                failed = true;
            }
        }
    }
    Ok(ExitCode::from(if failed { 2 } else { 0 }))
}

fn slurm_command(ws: &Workspace, action: &SlurmAction) -> Result<()> {
    match action {
        SlurmAction::Submit(a) => print!(
            "{}",
            slurm::submit_plan(ws, &a.plan, a.options(), a.dry_run)?
        ),
        SlurmAction::Status { plan, json } => {
            let cells = status::status(ws, &Plan::load(plan)?)?;
            match json {
                true => println!("{}", serde_json::to_string_pretty(&cells)?),
                false => print!("{}", status::status_text(&cells)),
            }
        }
    }
    Ok(())
}

/// `run`: PTB test perplexity in both modes, with every other setting at its default.
pub fn main_job(model: &ModelArgs, corpus: &str, resume: bool) -> PplArgs {
    PplArgs {
        model: model.clone(),
        corpus: corpus.into(),
        corpus_bytes: None,
        mode: lmdensity_jobs::Modes::Both,
        max_length: None,
        n_ctx: lmdensity_jobs::PerplexityJob::DEFAULT_N_CTX,
        resume,
        kld: crate::cli::KldArgs {
            save_kld_base: None,
            kld_base: None,
            kld_top_k: lmdensity_jobs::KldSpec::default().top_k,
        },
    }
}

fn report(ws: &Workspace, args: &ReportArgs) -> Result<()> {
    if args.html.is_some() || args.md.is_some() {
        let job = ReportJob {
            html: args.html.clone(),
            md: args.md.clone(),
            include: args.include.clone(),
        };
        job.run(ws)?;
        return Ok(());
    }
    let runs = ResultsStore::new(&ws.results_dir).runs()?;
    if runs.is_empty() {
        println!("no runs in {}", ws.results_dir.display());
        return Ok(());
    }
    let filter = match (args.all, args.metric.is_empty()) {
        (true, _) => MetricFilter::All,
        (false, false) => MetricFilter::Only(args.metric.clone()),
        (false, true) => MetricFilter::Headline,
    };
    println!("{}", text::runs_table(&runs, &filter));
    Ok(())
}

/// An analysis as its JSON (`--json`) or as the text `render` makes of its outcome.
fn print_analysis<T>(
    json: bool,
    done: &lmdensity_jobs::Analysis<T>,
    render: impl FnOnce(&T) -> String,
) -> Result<()> {
    match json {
        true => println!("{}", serde_json::to_string_pretty(&done.json)?),
        false => print!("{}", render(&done.outcome)),
    }
    Ok(())
}
