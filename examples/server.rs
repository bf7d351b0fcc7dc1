//! An HTTP service that receives the providers' webhooks and runs the
//! scheduler worker beside them, with the offline `rules` model, on
//! PostgreSQL when `DATABASE_URL` is set and on a SQLite file otherwise.
//! Several copies of it on one PostgreSQL database share the jobs and the outbox.
//!
//! Each verified webhook is parsed by its channel and every event goes to
//! `Engine::handle_event` for one fixed org. SIGINT or SIGTERM stops both
//! the HTTP server and the worker: the server completes the requests it has
//! already accepted, and the worker finishes the jobs and deliveries it claimed.
//!
//! ```text
//! cargo run --example server --features twilio,smtp,messenger
//! DATABASE_URL=postgres://kalify@127.0.0.1/kalify \
//!     cargo run --example server --features twilio,smtp,messenger,postgres
//! ```
//!
//! Environment:
//!
//! | variable | meaning |
//! |---|---|
//! | `KALIFY_LISTEN` | the address to listen on (default `127.0.0.1:8080`) |
//! | `KALIFY_PUBLIC_URL` | the external base URL the providers call, such as `https://kalify.example.com`; Twilio signs this URL plus the path and query (default `http://` + `KALIFY_LISTEN`) |
//! | `DATABASE_URL` | a PostgreSQL URL; when set, the service uses PostgreSQL instead of SQLite (needs the `postgres` feature) |
//! | `KALIFY_DB_SCHEMA` | the PostgreSQL schema of the tables (default: the URL's or role's `search_path`) |
//! | `KALIFY_DB` | the SQLite database path when `DATABASE_URL` is not set (default `kalify.db`) |
//! | `KALIFY_ORG_ID` | the org every event belongs to (default `01900000-0000-7000-8000-00000000beef`) |
//! | `TWILIO_ACCOUNT_SID`, `TWILIO_AUTH_TOKEN`, `TWILIO_FROM`, `TWILIO_MESSAGING_SERVICE_SID`, `TWILIO_STATUS_CALLBACK` | the Twilio SMS channel, as `TwilioSmsChannelBuilder::from_env` reads them |
//! | `KALIFY_TWILIO_AUTH_TOKEN` | the Twilio auth token; it replaces `TWILIO_AUTH_TOKEN` when set |
//! | `MESSENGER_PAGE_ACCESS_TOKEN`, `MESSENGER_APP_SECRET`, `MESSENGER_VERIFY_TOKEN`, `MESSENGER_PAGE_ID`, `MESSENGER_GRAPH_API_VERSION` | the Messenger channel, as `MessengerChannelBuilder::from_env` reads them |
//! | `KALIFY_META_APP_SECRET`, `KALIFY_META_VERIFY_TOKEN` | the Meta app secret and webhook verify token; they replace `MESSENGER_APP_SECRET` and `MESSENGER_VERIFY_TOKEN` when set |
//! | `KALIFY_SMTP_*`, `KALIFY_UNSUBSCRIBE_KEY`, `KALIFY_UNSUBSCRIBE_URL`, `KALIFY_UNSUBSCRIBE_MAILTO` | the SMTP e-mail channel, as `SmtpEmailChannelBuilder::from_env` reads them |
//! | `KALIFY_EMAIL_INBOUND_SECRET` | the secret that signs inbound e-mail (`X-Kalify-Signature`); `/webhooks/email` answers 503 without it |
//!
//! A channel whose configuration is missing or invalid is not mounted: its
//! routes answer 503 with the reason, and the other routes still work.
//!
//! Routes:
//!
//! | route | purpose |
//! |---|---|
//! | `POST /webhooks/twilio/sms` | Twilio's inbound-message webhook |
//! | `POST /webhooks/twilio/status` | Twilio's status callbacks |
//! | `GET /webhooks/messenger` | Meta's subscription handshake |
//! | `POST /webhooks/messenger` | Messenger webhooks |
//! | `POST /webhooks/email` | one raw RFC 5322 message per request |
//! | `GET /unsubscribe?token=…` | a confirmation form; it unsubscribes nobody |
//! | `POST /unsubscribe?token=…` | RFC 8058 one-click unsubscribe, at once |
//! | `GET /healthz` | 200 while the process runs |
//!
//! Responses: 403 for a missing or bad signature (nothing is written), 413
//! for a body over 1 MiB, 400 for a malformed request, and 202 for a
//! verified message from a sender the store does not know.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use kalify::ai::RulesModel;
use kalify::channels::email::verify_unsubscribe_token;
use kalify::channels::messenger::StoreLastInbound;
use kalify::channels::{
    MessengerChannel, MessengerChannelBuilder, SmtpEmailChannel, SmtpEmailChannelBuilder,
    TwilioSmsChannel, TwilioSmsChannelBuilder,
};
use kalify::contact::{ChannelKind, ContactPoint};
use kalify::engine::{Engine, WorkerOptions};
use kalify::ports::{Channel, InboundEvent, OptOutNotice, Store, WebhookRequest};
use kalify::store::SqliteStore;
use kalify::{Error, ErrorKind, OrgId, Secret};
use tokio::sync::watch;

/// The org of the quickstart, used when `KALIFY_ORG_ID` is not set.
const DEFAULT_ORG_ID: &str = "01900000-0000-7000-8000-00000000beef";

/// The largest request body accepted, in bytes. Larger bodies get 413.
///
/// NOTE: raw e-mails with attachments can exceed 1 MiB and are then rejected, although
/// the e-mail channel alone would accept up to 25 MiB.
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The body RFC 8058 requires in a one-click unsubscribe POST.
const ONE_CLICK_BODY: &str = "List-Unsubscribe=One-Click";

/// The state shared by every handler.
#[derive(Clone, Debug)]
struct AppState {
    engine: Engine,
    org: OrgId,
    /// The external base URL, without a trailing slash.
    public_url: String,
    twilio: Mounted<TwilioSmsChannel>,
    messenger: Mounted<MessengerChannel>,
    /// The e-mail channel, mounted only when inbound e-mail is signed.
    email_inbound: Mounted<SmtpEmailChannel>,
    /// The key of unsubscribe tokens and the e-mail provider name.
    unsubscribe: Result<(Secret, String), String>,
}

/// A channel, or the reason it is not configured.
type Mounted<T> = Result<Arc<T>, String>;

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("server: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let listen = env_or("KALIFY_LISTEN", "127.0.0.1:8080");
    let listen: SocketAddr = listen.parse().map_err(|_| {
        format!(
            "invalid KALIFY_LISTEN {listen:?}: expected an address and port such as 127.0.0.1:8080"
        )
    })?;
    let public_url = env_or("KALIFY_PUBLIC_URL", &format!("http://{listen}"))
        .trim_end_matches('/')
        .to_owned();
    let org_text = env_or("KALIFY_ORG_ID", DEFAULT_ORG_ID);
    let org: OrgId = org_text
        .parse()
        .map_err(|_| format!("invalid KALIFY_ORG_ID {org_text:?}: expected a UUID"))?;

    let (store, database) = open_store().await?;

    let twilio = build_twilio();
    let messenger = build_messenger(store.clone());
    let smtp = build_smtp();

    let mut builder = Engine::builder()
        .with_store(store)
        .with_model(Arc::new(RulesModel::default()));
    for channel in [
        mounted_channel(&twilio),
        mounted_channel(&messenger),
        mounted_channel(&smtp.0),
    ]
    .into_iter()
    .flatten()
    {
        builder = builder.with_channel(channel);
    }
    let engine = builder
        .build()
        .map_err(|error| format!("failed to build the engine: {error}"))?;

    for (name, channel) in [
        ("twilio", mounted_reason(&twilio)),
        ("messenger", mounted_reason(&messenger)),
        ("email", mounted_reason(&smtp.1)),
    ] {
        match channel {
            None => eprintln!("server: channel {name} mounted"),
            Some(reason) => eprintln!("server: channel {name} not mounted: {reason}"),
        }
    }

    let unsubscribe = match &smtp.0 {
        Ok(channel) => match std::env::var("KALIFY_UNSUBSCRIBE_KEY") {
            Ok(key) => Ok((Secret::new(key), channel.provider().to_owned())),
            Err(_) => Err("unsubscribe is not configured: set KALIFY_UNSUBSCRIBE_KEY".to_owned()),
        },
        Err(reason) => Err(reason.clone()),
    };
    let state = AppState {
        engine: engine.clone(),
        org,
        public_url,
        twilio,
        messenger,
        email_inbound: smtp.1,
        unsubscribe,
    };

    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/webhooks/twilio/sms", axum::routing::post(twilio_webhook))
        .route(
            "/webhooks/twilio/status",
            axum::routing::post(twilio_webhook),
        )
        .route(
            "/webhooks/messenger",
            get(messenger_subscribe).post(messenger_webhook),
        )
        .route("/webhooks/email", axum::routing::post(email_webhook))
        .route("/unsubscribe", get(unsubscribe_form).post(unsubscribe_now))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state);

    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|error| format!("failed to listen on {listen}: {error}"))?;
    eprintln!("server: listening on {listen}, org {org}, database {database}");

    let (stop_sender, stop_receiver) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        eprintln!("server: shutdown signal received; finishing in-flight requests and work");
        // Sending fails only once every receiver is dropped, when nothing waits for the signal any more.
        let _ = stop_sender.send(true);
    });

    let server = axum::serve(listener, app).with_graceful_shutdown(stopped(stop_receiver.clone()));
    let worker = engine.run_worker(WorkerOptions::default(), stopped(stop_receiver));
    let (served, worked) = tokio::join!(server.into_future(), worker);

    match worked {
        Ok(report) => eprintln!("server: worker stopped: {report:?}"),
        Err(error) => eprintln!("server: worker failed: {error}"),
    }
    served.map_err(|error| format!("HTTP server failed: {error}"))?;
    eprintln!("server: stopped");
    Ok(())
}

/// Opens the PostgreSQL store when `DATABASE_URL` is set, the SQLite file
/// of `KALIFY_DB` otherwise, and returns it with a description that contains no password.
async fn open_store() -> Result<(Arc<dyn Store>, String), String> {
    match env_optional("DATABASE_URL") {
        Some(url) => open_postgres(url).await,
        None => {
            let path = env_or("KALIFY_DB", "kalify.db");
            let store = SqliteStore::open(&path)
                .await
                .map_err(|error| format!("failed to open the database {path}: {error}"))?;
            Ok((Arc::new(store), format!("SQLite {path}")))
        }
    }
}

#[cfg(feature = "postgres")]
async fn open_postgres(url: String) -> Result<(Arc<dyn Store>, String), String> {
    let mut builder = kalify::store::PostgresStoreBuilder::new(Secret::new(url));
    if let Some(schema) = env_optional("KALIFY_DB_SCHEMA") {
        builder = builder.with_schema(schema);
    }
    // The store's errors and Display name the server but never the password.
    let store = builder
        .build()
        .await
        .map_err(|error| format!("failed to open the PostgreSQL database: {error}"))?;
    let description = store.to_string();
    Ok((Arc::new(store), description))
}

#[cfg(not(feature = "postgres"))]
async fn open_postgres(_url: String) -> Result<(Arc<dyn Store>, String), String> {
    Err("DATABASE_URL is set, but this build has no PostgreSQL support: rebuild with --features postgres, or unset DATABASE_URL to use SQLite".to_owned())
}

/// Returns the variable's value, or `default` when it is unset or blank.
fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|value| !value.trim().is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// Returns the variable's value when it is set and not blank.
fn env_optional(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .filter(|value| !value.trim().is_empty())
}

fn mounted_channel<T: Channel>(channel: &Mounted<T>) -> Option<Arc<dyn Channel>> {
    channel
        .as_ref()
        .ok()
        .map(|channel| channel.clone() as Arc<dyn Channel>)
}

fn mounted_reason<T>(channel: &Mounted<T>) -> Option<&str> {
    channel.as_ref().err().map(String::as_str)
}

/// Builds the Twilio channel from `from_env`, with `KALIFY_TWILIO_AUTH_TOKEN`
/// in place of `TWILIO_AUTH_TOKEN` when it is set.
fn build_twilio() -> Mounted<TwilioSmsChannel> {
    let builder = match (
        env_optional("TWILIO_ACCOUNT_SID"),
        env_optional("KALIFY_TWILIO_AUTH_TOKEN"),
    ) {
        (Some(account_sid), Some(auth_token)) => {
            let mut builder = TwilioSmsChannelBuilder::new(account_sid, Secret::new(auth_token));
            if let Some(from) = env_optional("TWILIO_FROM") {
                builder = builder.with_from(from);
            }
            if let Some(sid) = env_optional("TWILIO_MESSAGING_SERVICE_SID") {
                builder = builder.with_messaging_service_sid(sid);
            }
            if let Some(url) = env_optional("TWILIO_STATUS_CALLBACK") {
                builder = builder.with_status_callback(url);
            }
            builder
        }
        _ => {
            TwilioSmsChannelBuilder::from_env().map_err(|error| not_configured("Twilio", &error))?
        }
    };
    builder
        .build()
        .map(Arc::new)
        .map_err(|error| not_configured("Twilio", &error))
}

/// Builds the Messenger channel from `from_env`, with the `KALIFY_META_*`
/// secrets in place of `MESSENGER_APP_SECRET` and `MESSENGER_VERIFY_TOKEN`
/// when they are set. The store supplies each person's last message time,
/// so the 24-hour window survives restarts.
fn build_messenger(store: Arc<dyn Store>) -> Mounted<MessengerChannel> {
    let page_access_token = env_optional("MESSENGER_PAGE_ACCESS_TOKEN");
    let app_secret =
        env_optional("KALIFY_META_APP_SECRET").or_else(|| env_optional("MESSENGER_APP_SECRET"));
    let verify_token =
        env_optional("KALIFY_META_VERIFY_TOKEN").or_else(|| env_optional("MESSENGER_VERIFY_TOKEN"));
    let builder = match (page_access_token, app_secret, verify_token) {
        (Some(page_access_token), Some(app_secret), Some(verify_token)) => {
            let mut builder = MessengerChannelBuilder::new(
                Secret::new(page_access_token),
                Secret::new(app_secret),
                Secret::new(verify_token),
            );
            if let Some(page_id) = env_optional("MESSENGER_PAGE_ID") {
                builder = builder.with_page_id(page_id);
            }
            if let Some(version) = env_optional("MESSENGER_GRAPH_API_VERSION") {
                builder = builder.with_graph_api_version(version);
            }
            builder
        }
        // `from_env` returns the error that names the first missing variable.
        _ => MessengerChannelBuilder::from_env()
            .map_err(|error| not_configured("Messenger", &error))?,
    };
    builder
        .with_last_inbound_source(Arc::new(StoreLastInbound::new(store)))
        .build()
        .map(Arc::new)
        .map_err(|error| not_configured("Messenger", &error))
}

/// Builds the SMTP channel from `from_env`. Returns the channel for sending
/// and the same channel for inbound e-mail, which is mounted only when
/// `KALIFY_EMAIL_INBOUND_SECRET` is set, because without a secret the
/// channel accepts e-mail from any caller.
fn build_smtp() -> (Mounted<SmtpEmailChannel>, Mounted<SmtpEmailChannel>) {
    let inbound_secret = env_optional("KALIFY_EMAIL_INBOUND_SECRET");
    let built = SmtpEmailChannelBuilder::from_env()
        .map(|builder| match &inbound_secret {
            Some(secret) => builder.with_inbound_secret(Secret::new(secret.clone())),
            None => builder,
        })
        .and_then(SmtpEmailChannelBuilder::build)
        .map(Arc::new)
        .map_err(|error| not_configured("e-mail", &error));
    let inbound = match (&built, inbound_secret) {
        (Ok(channel), Some(_)) => Ok(channel.clone()),
        (Ok(_), None) => {
            Err("inbound e-mail is not configured: set KALIFY_EMAIL_INBOUND_SECRET".to_owned())
        }
        (Err(reason), _) => Err(reason.clone()),
    };
    (built, inbound)
}

fn not_configured(name: &str, error: &Error) -> String {
    format!("the {name} channel is not configured: {}", error.message())
}

/// Waits for SIGINT (Ctrl-C) or, on Unix, SIGTERM.
async fn wait_for_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            eprintln!("server: failed to listen for SIGINT: {error}");
            std::future::pending::<()>().await;
        }
    };

    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                eprintln!("server: failed to listen for SIGTERM: {error}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();

    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}

/// Completes once the shutdown flag is set or its sender is gone.
async fn stopped(mut receiver: watch::Receiver<bool>) {
    // `wait_for` fails only when the sender is dropped, which also means stop.
    let _ = receiver.wait_for(|stop| *stop).await;
}

/// Rebuilds the request as the provider sent it, with the URL the provider
/// signed: the public base URL plus the path and query.
fn webhook_request(
    state: &AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> WebhookRequest {
    let path_and_query = uri
        .path_and_query()
        .map_or_else(|| uri.path(), |value| value.as_str());
    let headers: BTreeMap<String, String> = headers
        .iter()
        .filter_map(|(name, value)| {
            Some((
                name.as_str().to_ascii_lowercase(),
                value.to_str().ok()?.to_owned(),
            ))
        })
        .collect();
    WebhookRequest {
        method: method.as_str().to_owned(),
        url: format!("{}{path_and_query}", state.public_url),
        headers,
        body: body.to_vec(),
    }
}

fn unavailable(reason: &str) -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")).into_response()
}

/// Maps an error of parsing or verifying a request to its response.
fn rejection(route: &str, error: &Error) -> Response {
    let status = match error.kind() {
        ErrorKind::Unauthenticated => StatusCode::FORBIDDEN,
        ErrorKind::InvalidInput | ErrorKind::Unsupported => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    eprintln!("server: {route}: request rejected with {status}: {error}");
    let message = match status {
        StatusCode::FORBIDDEN => "missing or invalid signature or token".to_owned(),
        StatusCode::BAD_REQUEST => format!("malformed request: {}", error.message()),
        _ => "internal error".to_owned(),
    };
    (status, format!("{message}\n")).into_response()
}

/// Verifies and parses the webhook with `channel`, then hands every event
/// to the engine. Returns the status to answer: 200 when every event was
/// handled, 202 when a verified event came from an unknown sender.
async fn dispatch(
    state: &AppState,
    route: &str,
    channel: &dyn Channel,
    request: &WebhookRequest,
) -> Result<StatusCode, Response> {
    let events = channel
        .parse_webhook(request)
        .map_err(|error| rejection(route, &error))?;
    let mut status = StatusCode::OK;
    for event in events {
        let summary = event_summary(&event);
        match state.engine.handle_event(state.org, event).await {
            Ok(outcome) => eprintln!("server: {route}: {summary} handled: {outcome:?}"),
            // NOTE: a message from an unknown sender is dropped after this log
            // line. Keeping it for review needs a store table that does not exist yet.
            Err(error) if error.kind() == ErrorKind::NotFound => {
                eprintln!("server: {route}: {summary} from an unknown sender, not stored: {error}");
                status = StatusCode::ACCEPTED;
            }
            Err(error) => {
                eprintln!("server: {route}: {summary} failed: {error}");
                // A 5xx makes the provider retry, and the store ignores a
                // message id it already holds, so a retry adds no duplicate.
                let status = if error.is_retryable() {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::INTERNAL_SERVER_ERROR
                };
                return Err((status, "failed to handle the event\n").into_response());
            }
        }
    }
    Ok(status)
}

/// Names an event for the log without its text or sender.
fn event_summary(event: &InboundEvent) -> String {
    match event {
        InboundEvent::Message(message) => format!(
            "message {}:{}",
            message.provider, message.provider_message_id
        ),
        InboundEvent::Status(update) => {
            format!("status {}:{}", update.provider, update.provider_message_id)
        }
        InboundEvent::Watermark(update) => format!("watermark {}", update.provider),
        InboundEvent::OptOut(notice) => format!("opt-out {} ({})", notice.provider, notice.reason),
        InboundEvent::Postback(postback) => format!("postback {}", postback.provider),
        InboundEvent::Bounce(bounce) => {
            format!("bounce {}:{}", bounce.provider, bounce.provider_message_id)
        }
        InboundEvent::AutoReply(reply) => format!(
            "auto-reply {}:{}",
            reply.provider, reply.provider_message_id
        ),
        _ => "event".to_owned(),
    }
}

/// Handles Twilio's inbound-message webhooks and status callbacks. Answers
/// with empty TwiML, so Twilio sends no reply of its own.
async fn twilio_webhook(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let channel = match &state.twilio {
        Ok(channel) => channel.clone(),
        Err(reason) => return unavailable(reason),
    };
    let request = webhook_request(&state, &method, &uri, &headers, body);
    match dispatch(&state, uri.path(), channel.as_ref(), &request).await {
        Ok(status) => (
            status,
            [(header::CONTENT_TYPE, HeaderValue::from_static("text/xml"))],
            "<Response/>",
        )
            .into_response(),
        Err(response) => response,
    }
}

/// Answers Meta's subscription handshake with `hub.challenge`.
async fn messenger_subscribe(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let channel = match &state.messenger {
        Ok(channel) => channel.clone(),
        Err(reason) => return unavailable(reason),
    };
    let request = webhook_request(&state, &method, &uri, &headers, Bytes::new());
    match channel.verify_subscription(&request) {
        Ok(challenge) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"))],
            challenge,
        )
            .into_response(),
        Err(error) => rejection(uri.path(), &error),
    }
}

async fn messenger_webhook(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let channel = match &state.messenger {
        Ok(channel) => channel.clone(),
        Err(reason) => return unavailable(reason),
    };
    let request = webhook_request(&state, &method, &uri, &headers, body);
    match dispatch(&state, uri.path(), channel.as_ref(), &request).await {
        Ok(status) => status.into_response(),
        Err(response) => response,
    }
}

/// Receives one raw RFC 5322 message, signed in `X-Kalify-Signature`.
async fn email_webhook(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let channel = match &state.email_inbound {
        Ok(channel) => channel.clone(),
        Err(reason) => return unavailable(reason),
    };
    let request = webhook_request(&state, &method, &uri, &headers, body);
    match dispatch(&state, uri.path(), channel.as_ref(), &request).await {
        Ok(status) => status.into_response(),
        Err(response) => response,
    }
}

/// Returns the `token` query parameter when it contains only base64url
/// characters, so that it can be echoed into HTML unescaped.
fn unsubscribe_token(query: &BTreeMap<String, String>) -> Option<&str> {
    let token = query.get("token")?;
    let well_formed = !token.is_empty()
        && token
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'='));
    well_formed.then_some(token.as_str())
}

fn malformed_token() -> Response {
    (
        StatusCode::BAD_REQUEST,
        "missing or malformed token parameter\n",
    )
        .into_response()
}

/// Shows a form that confirms the unsubscribe with a POST. A GET never
/// unsubscribes, because link scanners and mail previews follow links.
async fn unsubscribe_form(
    State(state): State<AppState>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    if let Err(reason) = &state.unsubscribe {
        return unavailable(reason);
    }
    let Some(token) = unsubscribe_token(&query) else {
        return malformed_token();
    };
    // The form posts to this same URL, token included, with the RFC 8058 body.
    Html(format!(
        "<!doctype html>\n<meta charset=\"utf-8\">\n<title>Unsubscribe</title>\n\
         <form method=\"post\" action=\"?token={token}\">\n\
         <input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">\n\
         <p>Stop receiving these e-mails?</p>\n<button type=\"submit\">Unsubscribe</button>\n</form>\n"
    ))
    .into_response()
}

/// Unsubscribes the token's address at once (RFC 8058 one-click). The body
/// must carry `List-Unsubscribe=One-Click`, as form data or as a multipart field.
async fn unsubscribe_now(
    State(state): State<AppState>,
    Query(query): Query<BTreeMap<String, String>>,
    body: Bytes,
) -> Response {
    let (key, provider) = match &state.unsubscribe {
        Ok(configured) => configured,
        Err(reason) => return unavailable(reason),
    };
    let Some(token) = unsubscribe_token(&query) else {
        return malformed_token();
    };
    let body = String::from_utf8_lossy(&body);
    let one_click = body.contains(ONE_CLICK_BODY)
        || (body.contains("name=\"List-Unsubscribe\"") && body.contains("One-Click"));
    if !one_click {
        return (
            StatusCode::BAD_REQUEST,
            format!("the body must contain {ONE_CLICK_BODY}\n"),
        )
            .into_response();
    }

    let (org, address) = match verify_unsubscribe_token(key, token) {
        Ok(verified) => verified,
        Err(error) => return rejection("/unsubscribe", &error),
    };
    if org != state.org {
        eprintln!(
            "server: /unsubscribe: token of org {org} rejected; this server serves org {}",
            state.org
        );
        return (
            StatusCode::FORBIDDEN,
            "the token belongs to another organisation\n",
        )
            .into_response();
    }

    let notice = OptOutNotice {
        channel: ChannelKind::Email,
        provider: provider.clone(),
        contact: ContactPoint::Email(address),
        reason: "list_unsubscribe_one_click".to_owned(),
        at: state.engine.clock().now(),
    };
    match state
        .engine
        .handle_event(org, InboundEvent::OptOut(notice))
        .await
    {
        Ok(_) => (StatusCode::OK, "You are unsubscribed.\n").into_response(),
        Err(error) => {
            eprintln!("server: /unsubscribe: failed to record the opt-out: {error}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "failed to unsubscribe; try again later\n",
            )
                .into_response()
        }
    }
}
