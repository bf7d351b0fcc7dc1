//! Runs the quickstart on the sample data and checks where named prospects end.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/quickstart.rs"]
mod quickstart;

use quickstart::{Options, ProspectReport, Report};

async fn run_sample() -> (Report, String) {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        db: Some(dir.path().join("quickstart.db")),
        json: Some(dir.path().join("report.json")),
        ..Options::default()
    };
    let mut output = Vec::new();
    let report = quickstart::run(&options, &mut output).await.unwrap();
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("report.json")).unwrap()).unwrap();
    assert!(json["prospects"].is_array());
    assert!(json["summary"]["imported"].is_number());
    (report, String::from_utf8(output).unwrap())
}

fn prospect<'a>(report: &'a Report, name: &str) -> &'a ProspectReport {
    report
        .prospects
        .iter()
        .find(|prospect| prospect.name == name)
        .unwrap_or_else(|| panic!("{name} is not in the report"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_data_ends_in_expected_states() {
    let (report, output) = run_sample().await;

    let expectations = [
        ("Camille Martin", "qualified"),
        ("John Smith", "qualified"),
        ("Hugo Roux", "qualified"),
        ("Grace Lee", "qualified"),
        ("David Miller", "qualified"),
        ("Léa Garcia", "qualified"),
        ("Sophie Bernard", "qualifying"),
        ("Amandine Robin", "qualifying"),
        ("Julien Lefèvre", "opted_out"),
        ("Chloé Simon", "opted_out"),
        ("Maxime Dupont", "opted_out"),
        ("Pierre Fontaine", "opted_out"),
        ("Michael Brown", "opted_out"),
        ("Mathieu Vincent", "opted_out"),
        ("Thomas Dubois", "handed_off"),
        ("Aisha Khan", "handed_off"),
        ("Emily Johnson", "handed_off"),
        ("Nicolas Laurent", "disqualified"),
        ("Olivia Taylor", "disqualified"),
        ("Élodie Favre", "disqualified"),
        ("Baptiste Roussel", "disqualified"),
        ("Émilie Moreau", "closed"),
        ("Sofia Andersson", "closed"),
        ("Lucas Girard", "engaged"),
    ];
    for (name, state) in expectations {
        assert_eq!(
            prospect(&report, name).state,
            state,
            "state of {name}\n{output}"
        );
    }

    for name in ["Camille Martin", "John Smith", "Grace Lee"] {
        let score = prospect(&report, name).score.unwrap_or(0);
        assert!(
            score >= 70,
            "{name} scored {score}, expected the qualified band"
        );
    }
    let sophie = prospect(&report, "Sophie Bernard");
    let score = sophie.score.unwrap_or(0);
    assert!(
        (25..70).contains(&score),
        "Sophie Bernard scored {score}, expected the qualifying band"
    );
    assert!(
        sophie.missing.contains(&"timeline".to_owned()),
        "{:?}",
        sophie.missing
    );
    assert!(
        sophie.next_follow_up.is_some(),
        "a qualifying prospect waits for a follow-up"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_data_import_and_messages() {
    let (report, output) = run_sample().await;

    // Two rows have no usable contact point; one repeats a prospect.
    assert_eq!(report.summary["rejected"], 2, "{output}");
    // The reply from a sender nobody imported adds one prospect for review.
    assert_eq!(report.summary["imported"] + 1, report.prospects.len());
    assert!(report.prospects.len() >= 50);
    assert!(
        output.contains("line 59"),
        "the row without contact point is reported with its line\n{output}"
    );

    // Every prospect ends qualified, disqualified, opted out, handed off,
    // closed, or waiting for a follow-up.
    for prospect in &report.prospects {
        let settled = matches!(
            prospect.state.as_str(),
            "qualified" | "disqualified" | "opted_out" | "handed_off" | "closed"
        );
        assert!(
            settled || prospect.next_follow_up.is_some(),
            "{} is {} with no follow-up",
            prospect.name,
            prospect.state
        );
    }

    // Exactly one confirmation after two STOP messages in a row.
    let pierre = prospect(&report, "Pierre Fontaine");
    let after_stop: Vec<_> = pierre
        .messages
        .iter()
        .filter(|message| {
            message.direction == "outbound" && message.at.as_str() >= "2026-03-04T16:20:00Z"
        })
        .collect();
    assert_eq!(after_stop.len(), 1, "{:#?}", pierre.messages);

    // Facts carry the quote they come from.
    let camille = prospect(&report, "Camille Martin");
    let budget = &camille.facts["budget"];
    assert!(budget.quote.contains("20k€"), "{budget:?}");
    assert_eq!(camille.phone.as_deref(), Some("+33612345678"));

    // The unknown sender's message is kept for a member, and said so.
    assert!(
        output.contains("stored as a new prospect for a member to review"),
        "{output}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_replies_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let replies = dir.path().join("replies.csv");
    let mut bytes = b"at,from,channel,text\n".to_vec();
    bytes.extend_from_slice(b"yesterday,06 12 34 56 78,sms,hello\n");
    bytes.extend_from_slice(b"2026-03-02T10:00:00Z,06 12 34 56 78,whatsapp,hello\n");
    bytes.extend_from_slice(b"2026-03-02T10:00:00Z,06 12 34 56 78,sms,\n");
    bytes.extend_from_slice(b"2026-03-02T10:00:00Z,06 12 34 56 78,sms\n");
    bytes.extend_from_slice(
        b"2026-03-02T10:00:00Z,camille.martin@boulangeries-martin.fr,sms,hello\n",
    );
    bytes.extend_from_slice(b"2026-03-02T10:00:00Z,not a number,sms,hello\n");
    bytes.extend_from_slice(b"2026-03-02T10:00:00Z,06 12 34 56 78,sms,caf\xe9 \xff\n");
    bytes.extend_from_slice(
        "2026-03-02T10:05:00Z,CAMILLE.Martin@Boulangeries-Martin.fr,email,STOP\n".as_bytes(),
    );
    std::fs::write(&replies, bytes).unwrap();
    let options = Options {
        replies: Some(replies),
        db: Some(dir.path().join("q.db")),
        ..Options::default()
    };
    let mut output = Vec::new();
    let report = quickstart::run(&options, &mut output).await.unwrap();
    let output = String::from_utf8(output).unwrap();

    for expected in [
        "replies line 2: invalid time \"yesterday\"",
        "replies line 3: invalid channel \"whatsapp\"",
        "replies line 4: the text is empty",
        "replies line 5: the row has 3 fields but the header has 4",
        "replies line 6: channel sms does not match the sender",
        "replies line 7: invalid sender \"not a number\"",
        "replies line 8: unreadable row; save the file as UTF-8",
    ] {
        assert!(
            output.contains(expected),
            "missing {expected:?} in\n{output}"
        );
    }
    // The upper-case address still reaches the prospect, so the opt-out holds.
    assert_eq!(
        prospect(&report, "Camille Martin").state,
        "opted_out",
        "{output}"
    );
}

#[test]
fn help_and_bad_options() {
    assert!(matches!(
        quickstart::parse_args(["--help".to_owned()]),
        Ok(quickstart::Command::Help)
    ));
    let error =
        quickstart::parse_args(["--default-region".to_owned(), "XX".to_owned()]).unwrap_err();
    assert!(error.contains("\"XX\""), "{error}");
    let error = quickstart::parse_args(["--frobnicate".to_owned()]).unwrap_err();
    assert!(error.contains("--frobnicate"), "{error}");
    let Ok(quickstart::Command::Run(options)) =
        quickstart::parse_args(["--prospects".to_owned(), "x.csv".to_owned()])
    else {
        panic!("expected options");
    };
    assert!(
        options.replies.is_none(),
        "the sample replies belong to the sample prospects only"
    );
}
