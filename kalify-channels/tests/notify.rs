//! The notifiers against servers on the loopback interface: the webhook
//! notifier against a wiremock server, and the e-mail notifier against an
//! SMTP server built on the `mailin` state machine.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers outside #[test] functions fail by panicking"
)]

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use kalify_channels::email::SmtpConfig;
use kalify_channels::notify::{
    DEFAULT_TOLERANCE, EmailNotifier, SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookNotifier,
    verify_signature,
};
use kalify_core::contact::EmailAddress;
use kalify_core::conversation::NotificationKind;
use kalify_core::ports::{
    ManualClock, MockStore, Notification, Notifier, NotifyRetry, RetryingNotifier,
};
use kalify_core::testkit::fakes;
use kalify_core::{ConversationId, MemberId, ProspectId};
use kalify_core::{Error, ErrorKind, Retry, Secret};
use mailin::{Handler, Response, SessionBuilder};
use serde_json::Value;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const SECRET: &str = "webhook-signing-secret-0123456789abcdef";
/// A stand-in for the token that Slack and Teams URLs carry in their path.
const URL_TOKEN: &str = "XyZ9tokenInThePath7Q";
const HOOK_PATH: &str = "/services/T0001/B0001/XyZ9tokenInThePath7Q";

// ---------------------------------------------------------------------------
// Webhook notifier.

fn sample() -> Notification {
    let mut notification =
        Notification::new(fakes::org(), NotificationKind::HotLead, ProspectId::new());
    notification.conversation_id = Some(ConversationId::new());
    notification.member = Some(MemberId::new());
    notification.score = Some(82);
    notification.note = Some("call back Tuesday 10:00".into());
    notification.due_at = Some(fakes::time(60 * 24));
    notification
}

fn webhook_for(server: &MockServer) -> WebhookNotifier {
    WebhookNotifier::builder(
        Secret::new(format!("{}{HOOK_PATH}", server.uri())),
        Secret::new(SECRET),
    )
    .with_request_timeout(Duration::from_secs(5))
    .with_clock(Arc::new(ManualClock::new(fakes::time(0))))
    .build()
    .unwrap()
}

async fn answering(template: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(HOOK_PATH))
        .respond_with(template)
        .mount(&server)
        .await;
    server
}

async fn only_request(server: &MockServer) -> Request {
    let mut requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1, "requests received");
    requests.remove(0)
}

fn header(request: &Request, name: &str) -> String {
    request
        .headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
        .to_owned()
}

/// Asserts that neither the webhook token nor the signing secret shows in `error`.
fn assert_redacted(error: &Error) {
    for text in [error.to_string(), format!("{error:?}")] {
        assert!(!text.contains(URL_TOKEN), "the URL path leaked: {text}");
        assert!(!text.contains("/services/"), "the URL path leaked: {text}");
        assert!(!text.contains(SECRET), "the secret leaked: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_body_has_text_and_event() {
    let server = answering(ResponseTemplate::new(200).set_body_string("ok")).await;
    let notification = sample();

    webhook_for(&server).notify(&notification).await.unwrap();

    let request = only_request(&server).await;
    assert_eq!(header(&request, "content-type"), "application/json");
    let body: Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(body["text"], notification.text());
    let event = &body["kalify"];
    assert_eq!(event["kind"], "hot_lead");
    assert_eq!(event["org_id"], notification.org_id.to_string());
    assert_eq!(event["prospect_id"], notification.prospect_id.to_string());
    assert_eq!(
        event["conversation_id"],
        notification.conversation_id.unwrap().to_string()
    );
    assert_eq!(event["member_id"], notification.member.unwrap().to_string());
    assert_eq!(event["score"], 82);
    assert_eq!(event["note"], "call back Tuesday 10:00");
    let due_at: chrono::DateTime<chrono::Utc> = event["due_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(due_at, fakes::time(60 * 24));
    let sent_at: chrono::DateTime<chrono::Utc> =
        event["sent_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(sent_at, fakes::time(0));
    assert_eq!(
        header(&request, TIMESTAMP_HEADER),
        fakes::time(0).timestamp().to_string()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_absent_fields_are_null() {
    let server = answering(ResponseTemplate::new(202)).await;
    let notification =
        Notification::new(fakes::org(), NotificationKind::OptedOut, ProspectId::new());

    webhook_for(&server).notify(&notification).await.unwrap();

    let body: Value = serde_json::from_slice(&only_request(&server).await.body).unwrap();
    for field in ["conversation_id", "member_id", "score", "due_at", "note"] {
        assert_eq!(body["kalify"][field], Value::Null, "{field}");
    }
    assert_eq!(body["kalify"]["kind"], "opted_out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_text_escapes_slack_markup() {
    let server = answering(ResponseTemplate::new(200)).await;
    let mut notification = sample();
    notification.note = Some("<!channel> budget > 5k & <https://example.com|link>".into());

    webhook_for(&server).notify(&notification).await.unwrap();

    let body: Value = serde_json::from_slice(&only_request(&server).await.body).unwrap();
    let text = body["text"].as_str().unwrap();
    assert!(
        text.ends_with("&lt;!channel&gt; budget &gt; 5k &amp; &lt;https://example.com|link&gt;"),
        "{text}"
    );
    assert_eq!(
        body["kalify"]["note"],
        "<!channel> budget > 5k & <https://example.com|link>"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_signature_verifies() {
    let server = answering(ResponseTemplate::new(200)).await;
    webhook_for(&server).notify(&sample()).await.unwrap();

    let request = only_request(&server).await;
    let timestamp = header(&request, TIMESTAMP_HEADER);
    let signature = header(&request, SIGNATURE_HEADER);
    let secret = Secret::new(SECRET);
    let now = fakes::time(1);

    assert!(signature.starts_with("v1="), "{signature}");
    verify_signature(
        &secret,
        &timestamp,
        &request.body,
        &signature,
        now,
        DEFAULT_TOLERANCE,
    )
    .unwrap();

    let wrong_secret = Secret::new("another-secret-of-thirty-two-bytes!!");
    let error = verify_signature(
        &wrong_secret,
        &timestamp,
        &request.body,
        &signature,
        now,
        DEFAULT_TOLERANCE,
    )
    .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unauthenticated);

    let mut tampered = request.body.clone();
    let score_at = tampered
        .windows(4)
        .position(|window| window == b"\":82")
        .unwrap();
    tampered[score_at + 2] = b'9';
    let error = verify_signature(
        &secret,
        &timestamp,
        &tampered,
        &signature,
        now,
        DEFAULT_TOLERANCE,
    )
    .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unauthenticated);

    let other_time = (fakes::time(0).timestamp() + 1).to_string();
    let error = verify_signature(
        &secret,
        &other_time,
        &request.body,
        &signature,
        now,
        DEFAULT_TOLERANCE,
    )
    .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unauthenticated);

    let much_later = fakes::time(10);
    let error = verify_signature(
        &secret,
        &timestamp,
        &request.body,
        &signature,
        much_later,
        DEFAULT_TOLERANCE,
    )
    .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unauthenticated);
    assert!(error.message().contains("replay"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_429_carries_retry_after() {
    let server = answering(ResponseTemplate::new(429).insert_header("Retry-After", "7")).await;

    let error = webhook_for(&server).notify(&sample()).await.unwrap_err();

    assert_eq!(error.kind(), ErrorKind::RateLimited);
    assert!(error.is_retryable());
    assert_eq!(error.retry_after(), Some(Duration::from_secs(7)));
    assert_redacted(&error);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_5xx_is_retryable() {
    for status in [500, 502, 503] {
        let server = answering(ResponseTemplate::new(status)).await;

        let error = webhook_for(&server).notify(&sample()).await.unwrap_err();

        assert_eq!(error.kind(), ErrorKind::Unavailable, "{status}");
        assert_eq!(error.retry(), Retry::Temporary, "{status}");
        assert_redacted(&error);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_4xx_is_permanent() {
    let cases = [
        (400, ErrorKind::InvalidInput),
        (403, ErrorKind::PermissionDenied),
        (404, ErrorKind::NotFound),
        (410, ErrorKind::NotFound),
    ];
    for (status, kind) in cases {
        let server =
            answering(ResponseTemplate::new(status).set_body_string("channel_not_found")).await;

        let error = webhook_for(&server).notify(&sample()).await.unwrap_err();

        assert_eq!(error.kind(), kind, "{status}");
        assert_eq!(error.retry(), Retry::Permanent, "{status}");
        assert_redacted(&error);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_connection_refused_is_retryable() {
    let address = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let notifier = WebhookNotifier::builder(
        Secret::new(format!("http://{address}{HOOK_PATH}")),
        Secret::new(SECRET),
    )
    .build()
    .unwrap();

    let error = notifier.notify(&sample()).await.unwrap_err();

    assert_eq!(error.kind(), ErrorKind::Unavailable);
    assert!(error.is_retryable());
    assert_redacted(&error);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_timeout_is_retryable() {
    let server = answering(ResponseTemplate::new(200).set_delay(Duration::from_secs(3))).await;
    let notifier = WebhookNotifier::builder(
        Secret::new(format!("{}{HOOK_PATH}", server.uri())),
        Secret::new(SECRET),
    )
    .with_request_timeout(Duration::from_millis(300))
    .build()
    .unwrap();

    let error = notifier.notify(&sample()).await.unwrap_err();

    assert_eq!(error.kind(), ErrorKind::Timeout);
    assert!(error.is_retryable());
    assert_redacted(&error);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_debug_hides_url_and_secret() {
    let server = answering(ResponseTemplate::new(200)).await;
    let notifier = webhook_for(&server);

    let text = format!("{notifier:?}");

    assert!(text.contains("127.0.0.1"), "{text}");
    assert!(!text.contains(URL_TOKEN), "{text}");
    assert!(!text.contains(SECRET), "{text}");
    let builder = WebhookNotifier::builder(
        Secret::new(format!("{}{HOOK_PATH}", server.uri())),
        Secret::new(SECRET),
    );
    let text = format!("{builder:?}");
    assert!(!text.contains(URL_TOKEN), "{text}");
    assert!(!text.contains(SECRET), "{text}");
}

#[test]
fn webhook_plain_http_off_loopback_rejected() {
    let url = format!("http://hooks.example.com{HOOK_PATH}?token={URL_TOKEN}");

    let error = WebhookNotifier::builder(Secret::new(url), Secret::new(SECRET))
        .build()
        .unwrap_err();

    assert_eq!(error.kind(), ErrorKind::ConfigInvalid);
    assert!(
        error.message().contains("http://hooks.example.com"),
        "{error}"
    );
    assert!(error.message().contains("https"), "{error}");
    assert_redacted(&error);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retrying_webhook_delivers_after_503() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(HOOK_PATH))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .with_priority(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(HOOK_PATH))
        .respond_with(ResponseTemplate::new(200))
        .with_priority(2)
        .expect(1)
        .mount(&server)
        .await;
    let retry = NotifyRetry::default()
        .with_attempts(3)
        .with_first_backoff(Duration::from_millis(20));
    let notifier = RetryingNotifier::new(Arc::new(webhook_for(&server)), retry);

    notifier.notify(&sample()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), notifier.idle())
        .await
        .unwrap();

    assert_eq!(notifier.in_flight(), 0);
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
    server.verify().await;
}

// ---------------------------------------------------------------------------
// The loopback SMTP server: plaintext, no AUTH, recording what it accepts.

#[derive(Clone, Debug)]
struct Received {
    to: Vec<String>,
    data: String,
}

impl Received {
    /// Returns the value of header `name`, unfolded, from the raw message.
    fn header(&self, name: &str) -> Option<String> {
        let head = self
            .data
            .split("\r\n\r\n")
            .next()
            .unwrap_or("")
            .replace("\r\n ", " ")
            .replace("\r\n\t", " ");
        let prefix = format!("{}:", name.to_ascii_lowercase());
        head.split("\r\n")
            .find(|line| line.to_ascii_lowercase().starts_with(&prefix))
            .map(|line| line[prefix.len()..].trim().to_owned())
    }
}

#[derive(Debug, Default)]
struct ServerState {
    /// The reply to every RCPT TO, instead of 250.
    reject_recipient: Option<(u16, &'static str)>,
    received: Vec<Received>,
}

struct SmtpTestServer {
    address: SocketAddr,
    state: Arc<Mutex<ServerState>>,
    stop: Arc<AtomicBool>,
}

impl SmtpTestServer {
    fn start() -> SmtpTestServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(ServerState::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (thread_state, thread_stop) = (state.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if thread_stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let state = thread_state.clone();
                std::thread::spawn(move || serve(stream, state));
            }
        });
        SmtpTestServer {
            address,
            state,
            stop,
        }
    }

    fn reject_recipients(&self, code: u16, text: &'static str) {
        self.lock().reject_recipient = Some((code, text));
    }

    fn received(&self) -> Vec<Received> {
        self.lock().received.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ServerState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for SmtpTestServer {
    fn drop(&mut self) {
        // Wake the accept loop so that it reads the flag and ends.
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.address, Duration::from_millis(200));
    }
}

fn serve(stream: TcpStream, state: Arc<Mutex<ServerState>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let peer = stream
        .peer_addr()
        .map(|a| a.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let mut session = SessionBuilder::new("kalify-test-smtp").build(
        peer,
        Recorder {
            state,
            current: None,
        },
    );
    let mut reader = BufReader::new(stream);
    let write = |reader: &mut BufReader<TcpStream>, response: &Response| {
        response.write_to(reader.get_mut()).is_ok() && reader.get_mut().flush().is_ok()
    };
    if !write(&mut reader, &session.greeting()) {
        return;
    }
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let response = session.process(&line);
        match response.action {
            mailin::Action::Reply | mailin::Action::UpgradeTls => {
                if !write(&mut reader, &response) {
                    return;
                }
            }
            mailin::Action::Close => {
                write(&mut reader, &response);
                return;
            }
            mailin::Action::NoReply => {}
        }
    }
}

struct Recorder {
    state: Arc<Mutex<ServerState>>,
    current: Option<Received>,
}

impl Handler for Recorder {
    fn mail(&mut self, _ip: IpAddr, _domain: &str, _from: &str) -> Response {
        self.current = Some(Received {
            to: Vec::new(),
            data: String::new(),
        });
        mailin::response::OK
    }

    fn rcpt(&mut self, to: &str) -> Response {
        let rejection = self
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .reject_recipient;
        if let Some((code, text)) = rejection {
            return Response::custom(code, text.to_owned());
        }
        if let Some(current) = &mut self.current {
            current.to.push(to.to_owned());
        }
        mailin::response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if let Some(current) = &mut self.current {
            current.data.push_str(&String::from_utf8_lossy(buf));
        }
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        if let Some(message) = self.current.take() {
            self.state
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .received
                .push(message);
        }
        mailin::response::OK
    }
}

// ---------------------------------------------------------------------------
// E-mail notifier.

const FALLBACK: &str = "sales-team@kalify.example";

fn smtp_config(server: &SmtpTestServer) -> SmtpConfig {
    let mut config = SmtpConfig::default();
    config.host = server.address.ip().to_string();
    config.port = Some(server.address.port());
    config.from_address = "notifications@kalify.example".into();
    config.from_name = Some("Kalify".into());
    config.timeout = Duration::from_secs(5);
    config
}

fn email_notifier(server: &SmtpTestServer, store: Option<MockStore>) -> EmailNotifier {
    let mut builder =
        EmailNotifier::builder(smtp_config(server), EmailAddress::parse(FALLBACK).unwrap())
            .with_plaintext_dangerous();
    if let Some(store) = store {
        builder = builder.with_members(Arc::new(store));
    }
    builder.build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_goes_to_member_with_summary_subject() {
    let server = SmtpTestServer::start();
    let mut notification = sample();
    let mut member = fakes::member(notification.org_id);
    member.id = notification.member.unwrap();
    let member_address = member.email.as_str().to_owned();
    let (org, member_id) = (notification.org_id, member.id);
    let mut store = MockStore::new();
    store
        .expect_get_member()
        .withf(move |asked_org, asked_id| *asked_org == org && *asked_id == member_id)
        .times(1)
        .returning(move |_, _| Ok(member.clone()));
    notification.kind = NotificationKind::HandoffRequested;

    email_notifier(&server, Some(store))
        .notify(&notification)
        .await
        .unwrap();

    let received = server.received();
    assert_eq!(received.len(), 1);
    let message = &received[0];
    assert_eq!(message.to, vec![member_address]);
    assert_eq!(
        message.header("Subject").as_deref(),
        Some("A prospect asks for a person")
    );
    assert!(
        message
            .header("From")
            .unwrap()
            .contains("notifications@kalify.example")
    );
    assert!(
        message.data.contains(&notification.prospect_id.to_string()),
        "{}",
        message.data
    );
    assert!(
        message.data.contains("call back Tuesday 10:00"),
        "{}",
        message.data
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_without_member_goes_to_fallback() {
    let server = SmtpTestServer::start();
    let mut store = MockStore::new();
    store.expect_get_member().never();
    let notification =
        Notification::new(fakes::org(), NotificationKind::OptedOut, ProspectId::new());

    email_notifier(&server, Some(store))
        .notify(&notification)
        .await
        .unwrap();

    let received = server.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].to, vec![FALLBACK.to_owned()]);
    assert_eq!(
        received[0].header("Subject").as_deref(),
        Some("A prospect opted out")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_unknown_member_goes_to_fallback() {
    let server = SmtpTestServer::start();
    let mut store = MockStore::new();
    store
        .expect_get_member()
        .returning(|_, _| Err(Error::not_found("member not found")));

    email_notifier(&server, Some(store))
        .notify(&sample())
        .await
        .unwrap();

    assert_eq!(server.received()[0].to, vec![FALLBACK.to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_without_store_goes_to_fallback() {
    let server = SmtpTestServer::start();

    email_notifier(&server, None)
        .notify(&sample())
        .await
        .unwrap();

    assert_eq!(server.received()[0].to, vec![FALLBACK.to_owned()]);
    assert_eq!(
        server.received()[0].header("Subject").as_deref(),
        Some("A prospect is qualified")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_store_failure_is_returned() {
    let server = SmtpTestServer::start();
    let mut store = MockStore::new();
    store
        .expect_get_member()
        .returning(|_, _| Err(Error::new(ErrorKind::Unavailable, "database is down")));

    let error = email_notifier(&server, Some(store))
        .notify(&sample())
        .await
        .unwrap_err();

    assert_eq!(error.kind(), ErrorKind::Unavailable);
    assert!(error.is_retryable());
    assert!(server.received().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_smtp_4xx_retryable_5xx_permanent() {
    let cases = [
        (451, ErrorKind::Unavailable, Retry::Temporary),
        (452, ErrorKind::Unavailable, Retry::Temporary),
        (550, ErrorKind::InvalidInput, Retry::Permanent),
        (554, ErrorKind::ContentRejected, Retry::Permanent),
    ];
    for (code, kind, retry) in cases {
        let server = SmtpTestServer::start();
        server.reject_recipients(code, "sales-team@kalify.example rejected");

        let error = email_notifier(&server, None)
            .notify(&sample())
            .await
            .unwrap_err();

        assert_eq!(error.kind(), kind, "{code}: {error}");
        assert_eq!(error.retry(), retry, "{code}");
        assert!(
            error
                .context()
                .iter()
                .any(|(key, value)| *key == "smtp_code" && *value == code.to_string()),
            "{code}: {error:?}"
        );
        assert!(
            !format!("{error} {error:?}").contains(FALLBACK),
            "{code}: the address leaked: {error:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_connection_refused_is_retryable() {
    let address = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut config = SmtpConfig::default();
    config.host = "127.0.0.1".into();
    config.port = Some(address.port());
    config.from_address = "notifications@kalify.example".into();
    config.timeout = Duration::from_secs(2);
    let notifier = EmailNotifier::builder(config, EmailAddress::parse(FALLBACK).unwrap())
        .with_plaintext_dangerous()
        .build()
        .unwrap();

    let error = notifier.notify(&sample()).await.unwrap_err();

    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
    assert!(error.is_retryable());
}
