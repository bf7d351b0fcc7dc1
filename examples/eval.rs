//! Measures a language model on a labelled set of conversations.
//!
//! It prints precision and recall per fact key, the accuracy of intent,
//! objection and language, and the conversations with a wrong field. The
//! set format is described in `kalify_ai::eval`.
//!
//! ```text
//! cargo run --example eval -- [--set FILE] [--model rules|openai]
//!
//!   --set FILE       a JSON Lines set (default kalify-ai/tests/data/labelled_replies.jsonl)
//!   --model NAME     rules (default), or openai with the `openai` feature,
//!                    configured by OPENAI_API_KEY, OPENAI_BASE_URL and KALIFY_OPENAI_MODEL
//! ```
//!
//! With `--model openai` every conversation of the set is sent to the
//! configured server.

use std::path::PathBuf;
use std::process::ExitCode;

use kalify::ai::RulesModel;
use kalify::ai::eval::{evaluate, read_jsonl};

#[tokio::main]
async fn main() -> ExitCode {
    let mut set = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/kalify-ai/tests/data/labelled_replies.jsonl"
    ));
    let mut model = "rules".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--set", Some(value)) => set = PathBuf::from(value),
            ("--model", Some(value)) => model = value,
            _ => {
                eprintln!("usage: eval [--set FILE] [--model rules|openai]");
                return ExitCode::from(2);
            }
        }
    }

    let conversations = match read_jsonl(&set) {
        Ok(conversations) => conversations,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    let report = match model.as_str() {
        "rules" => evaluate(&RulesModel::new(), &conversations).await,
        "openai" => match openai_report(&conversations).await {
            Ok(report) => report,
            Err(code) => return code,
        },
        other => {
            eprintln!("unknown model {other:?}; use rules or openai");
            return ExitCode::from(2);
        }
    };
    print!("{report}");
    ExitCode::SUCCESS
}

#[cfg(feature = "openai")]
async fn openai_report(
    conversations: &[kalify::ai::eval::LabelledConversation],
) -> Result<kalify::ai::eval::EvalReport, ExitCode> {
    if std::env::var_os("OPENAI_API_KEY").is_none() {
        eprintln!(
            "set OPENAI_API_KEY (and optionally OPENAI_BASE_URL and KALIFY_OPENAI_MODEL) to evaluate a hosted model"
        );
        return Err(ExitCode::from(2));
    }
    let model = kalify::ai::openai::OpenAiModelBuilder::from_env()
        .build()
        .map_err(|error| {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        })?;
    let report = evaluate(&model, conversations).await;
    let usage = model.ledger().total();
    eprintln!(
        "usage: {} calls, {} prompt and {} completion tokens, estimated {:.4} USD",
        usage.calls, usage.prompt_tokens, usage.completion_tokens, usage.cost_usd
    );
    Ok(report)
}

#[cfg(not(feature = "openai"))]
async fn openai_report(
    _conversations: &[kalify::ai::eval::LabelledConversation],
) -> Result<kalify::ai::eval::EvalReport, ExitCode> {
    eprintln!("this build has no openai model; run with --features openai");
    Err(ExitCode::from(2))
}
