//! Runs the evaluation over the JSON Lines version of the labelled replies:
//! always for the rules model, and for a hosted model only on request.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use kalify_ai::RulesModel;
use kalify_ai::eval::{evaluate, read_jsonl};

fn set_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/labelled_replies.jsonl")
}

/// The rules were written while reading these replies, so the scores guard
/// against regressions; they do not estimate accuracy on unseen text.
#[tokio::test]
async fn rules_model_on_labelled_set() {
    let set = read_jsonl(&set_path()).unwrap();
    assert!(set.len() >= 80, "only {} labelled conversations", set.len());

    let report = evaluate(&RulesModel::new(), &set).await;
    println!("{report}");
    assert_eq!(report.failures, 0);
    assert_eq!(
        report.ungrounded_quotes, 0,
        "every quote comes from the messages"
    );
    for key in ["budget", "authority", "need", "timeline"] {
        let field = report.field(key).unwrap();
        assert!(
            field.precision() >= 0.9,
            "{key} precision {:.3}\n{report}",
            field.precision()
        );
        assert!(
            field.recall() >= 0.9,
            "{key} recall {:.3}\n{report}",
            field.recall()
        );
    }
    assert!(
        report.intent_accuracy() >= 0.9,
        "intent accuracy {:.3}\n{report}",
        report.intent_accuracy()
    );
    assert!(
        report.objection_accuracy() >= 0.9,
        "objection accuracy {:.3}\n{report}",
        report.objection_accuracy()
    );
    assert!(
        report.language_accuracy() >= 0.9,
        "language accuracy {:.3}\n{report}",
        report.language_accuracy()
    );
}

/// Sends the labelled set to the model named by `KALIFY_OPENAI_MODEL` at
/// `OPENAI_BASE_URL` (default OpenAI). It runs only with `OPENAI_API_KEY`
/// set and `KALIFY_LIVE_TESTS=1`, so that a key left in a shell never makes
/// `cargo test` send data to a third party or spend money.
#[cfg(feature = "openai")]
#[tokio::test]
async fn openai_model_on_labelled_set() {
    let live = std::env::var("KALIFY_LIVE_TESTS").is_ok_and(|value| value == "1");
    if std::env::var_os("OPENAI_API_KEY").is_none() || !live {
        println!("skipped: set OPENAI_API_KEY and KALIFY_LIVE_TESTS=1 to evaluate a hosted model");
        return;
    }
    let model = kalify_ai::openai::OpenAiModelBuilder::from_env()
        .build()
        .unwrap();
    let set = read_jsonl(&set_path()).unwrap();
    let report = evaluate(&model, &set).await;
    println!("{report}");
    println!("usage: {:?}", model.ledger().total());
    assert_eq!(
        report.ungrounded_quotes, 0,
        "the adapter drops facts whose quote is not in the messages"
    );
}
