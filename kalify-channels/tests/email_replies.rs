//! Visible-reply extraction against the reply corpus of github/email_reply_parser.
//!
//! The corpus is read at run time from `shared/fixtures/email-replies/`
//! beside the repository. Each body is wrapped in a minimal RFC 5322
//! message and read with `parse_email`, so the whole inbound path runs.
//!
//! The expectations describe the reference parser's fragments. They are
//! checked against the visible text this way:
//!
//! - `visible_reply_equals`, `visible_reply_contains` and
//!   `visible_reply_not_contains` are checked as written;
//! - a fragment that is neither quoted nor hidden must appear in the
//!   visible text (its `equals`, `contains` or `regex`);
//! - a hidden or quoted fragment must not appear. kalify drops quoted
//!   lines even between inline replies, where the reference parser keeps
//!   them, so quoted fragments count as hidden here;
//! - without `hidden` and `quoted` lists, fragments after the first are
//!   the trailing quote, as in every such case of the corpus;
//! - one fragment and no other check means the whole body is the reply;
//! - `max_seconds` bounds the parse time.

#![allow(
    clippy::panic,
    reason = "test helpers outside #[test] functions fail by panicking"
)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use kalify_channels::email::parse_email;
use regex::Regex;
use serde_json::Value;

fn fixtures_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/email-replies");
    if dir.join("expectations_email_reply_parser.json").is_file() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "the e-mail reply fixtures are missing at {}; CI must provide them",
        dir.display()
    );
    eprintln!(
        "skipped: the e-mail reply fixtures are missing at {}",
        dir.display()
    );
    None
}

fn wrap(body: &[u8]) -> Vec<u8> {
    let mut raw = b"From: Prospect <prospect@example.com>\r\nTo: sales@example.org\r\nSubject: Re: test\r\nMessage-ID: <fixture@example.com>\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n".to_vec();
    raw.extend_from_slice(body);
    raw
}

/// Returns the body with trailing white space removed from every line and
/// blank lines removed at the end, as the visible text is written.
fn whole_body(body: &str) -> String {
    let normalised = body.replace("\r\n", "\n");
    let lines: Vec<&str> = normalised.lines().map(str::trim_end).collect();
    lines.join("\n").trim_end().to_owned()
}

fn flag(case: &Value, list: &str, index: usize) -> Option<bool> {
    case.get(list)?.as_array()?.get(index)?.as_bool()
}

fn regex_of(pattern: &str) -> Regex {
    match Regex::new(&format!("(?m){pattern}")) {
        Ok(regex) => regex,
        Err(error) => panic!("the fixture regex {pattern:?} does not compile: {error}"),
    }
}

/// Returns the failed checks of one case.
fn check_case(
    name: &str,
    case: &Value,
    body: &str,
    visible: &str,
    elapsed: Duration,
) -> Vec<String> {
    let mut failures = Vec::new();
    let mut fail =
        |message: String| failures.push(format!("{name}: {message}\n  visible text: {visible:?}"));

    if let Some(expected) = case.get("visible_reply_equals").and_then(Value::as_str)
        && visible != expected
    {
        fail(format!("visible text differs from {expected:?}"));
    }
    if let Some(expected) = case.get("visible_reply_contains").and_then(Value::as_str)
        && !visible.contains(expected)
    {
        fail(format!("visible text lacks {expected:?}"));
    }
    if let Some(unexpected) = case
        .get("visible_reply_not_contains")
        .and_then(Value::as_str)
        && visible.contains(unexpected)
    {
        fail(format!("visible text shows {unexpected:?}"));
    }

    let checks = case
        .get("fragment_checks")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for check in &checks {
        let index = check.get("i").and_then(Value::as_u64).unwrap_or(0) as usize;
        let hidden = flag(case, "hidden", index).unwrap_or(index > 0);
        let quoted = flag(case, "quoted", index).unwrap_or(index > 0);
        let must_show = !hidden && !quoted;

        if let Some(text) = check.get("equals").and_then(Value::as_str) {
            let text = text.trim_end();
            if !text.trim().is_empty() && visible.contains(text) != must_show {
                fail(format!(
                    "fragment {index} ({text:?}) must {}be visible",
                    if must_show { "" } else { "not " }
                ));
            }
        }
        if let Some(text) = check.get("contains").and_then(Value::as_str)
            && visible.contains(text) != must_show
        {
            fail(format!(
                "fragment {index} containing {text:?} must {}be visible",
                if must_show { "" } else { "not " }
            ));
        }
        if let Some(pattern) = check.get("regex").and_then(Value::as_str)
            && regex_of(pattern).is_match(visible) != must_show
        {
            fail(format!(
                "fragment {index} matching {pattern:?} must {}be visible",
                if must_show { "" } else { "not " }
            ));
        }
    }

    let has_text_checks = [
        "visible_reply_equals",
        "visible_reply_contains",
        "visible_reply_not_contains",
        "fragment_checks",
    ]
    .iter()
    .any(|key| case.get(key).is_some());
    if case.get("fragment_count").and_then(Value::as_u64) == Some(1) && !has_text_checks {
        let expected = whole_body(body);
        if visible != expected {
            fail(format!(
                "a single-fragment body must be visible whole: {expected:?}"
            ));
        }
    }

    if let Some(limit) = case.get("max_seconds").and_then(Value::as_f64)
        && elapsed.as_secs_f64() > limit
    {
        fail(format!(
            "parsing took {elapsed:?}, over the {limit} s limit"
        ));
    }
    failures
}

#[test]
fn reply_parser_corpus_visible_text() {
    let Some(dir) = fixtures_dir() else {
        return;
    };
    let expectations: Value = match std::fs::read(dir.join("expectations_email_reply_parser.json"))
    {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(value) => value,
            Err(error) => panic!("the expectations file is not JSON: {error}"),
        },
        Err(error) => panic!("failed to read the expectations file: {error}"),
    };

    let mut total = 0;
    let mut failures = Vec::new();
    for (folder, cases) in expectations.as_object().into_iter().flatten() {
        if folder.starts_with('_') {
            continue;
        }
        let folder_path = dir.join(folder);
        if !folder_path.is_dir() {
            eprintln!("skipped: fixture folder {folder} is not present");
            continue;
        }
        for (file, case) in cases.as_object().into_iter().flatten() {
            let raw_body = match std::fs::read(folder_path.join(file)) {
                Ok(bytes) => bytes,
                Err(error) => {
                    failures.push(format!("{folder}/{file}: failed to read: {error}"));
                    continue;
                }
            };
            total += 1;

            let message = wrap(&raw_body);
            let started = Instant::now();
            let parsed = match parse_email(&message) {
                Ok(parsed) => parsed,
                Err(error) => {
                    failures.push(format!("{folder}/{file}: parse_email failed: {error}"));
                    continue;
                }
            };
            let elapsed = started.elapsed();

            let body = String::from_utf8_lossy(&raw_body);
            failures.extend(check_case(
                &format!("{folder}/{file}"),
                case,
                &body,
                &parsed.visible_text,
                elapsed,
            ));
        }
    }

    let failed_cases = {
        let mut names: Vec<&str> = failures
            .iter()
            .filter_map(|failure| failure.split(':').next())
            .collect();
        names.dedup();
        names.len()
    };
    eprintln!("{} of {total} fixture cases passed", total - failed_cases);
    assert!(total > 0, "no fixture case was run");
    assert!(
        failures.is_empty(),
        "{} failed checks:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
