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
//! | `RUST_LOG` | the log filter, such as `debug` or `info,kalify::channel=debug` (default `info`); logs go to stderr |
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
//! | `KALIFY_SMTP_HOST`, `KALIFY_SMTP_PORT`, `KALIFY_SMTP_SECURITY` (`starttls` or `tls`), `KALIFY_SMTP_USERNAME`, `KALIFY_SMTP_PASSWORD`, `KALIFY_SMTP_FROM`, `KALIFY_SMTP_FROM_NAME`, `KALIFY_SMTP_TIMEOUT_SECS` | the SMTP e-mail channel, as `SmtpEmailChannelBuilder::from_env` reads them |
//! | `KALIFY_SMTP_CA_FILE` | the path of a PEM file of extra root certificates, for an SMTP relay with a private CA |
//! | `KALIFY_SMTP_PLAINTEXT_DANGEROUS` | `true` to send SMTP without TLS; accepted only when `KALIFY_SMTP_HOST` is `localhost`, in `127.0.0.0/8` or `::1` |
//! | `KALIFY_UNSUBSCRIBE_KEY`, `KALIFY_UNSUBSCRIBE_URL`, `KALIFY_UNSUBSCRIBE_MAILTO` | the key of unsubscribe tokens, the `https` URL of `/unsubscribe` as people reach it, and the `mailto` mailbox; the e-mail channel needs all three |
//! | `KALIFY_EMAIL_INBOUND_SECRET` | the secret that signs inbound e-mail (`X-Kalify-Signature`); without it `/webhooks/email` returns 503, while sending and `/unsubscribe` still work |
//!
//! A channel whose configuration is missing or invalid is not mounted: its
//! routes answer 503 with the reason, and the other routes still work. The
//! startup log names each channel, and for e-mail each part (sending,
//! inbound e-mail, unsubscribe), that is not mounted, with the reason.
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
//! | `GET /unsubscribe?token=…` | verifies the token and shows a confirmation form; it unsubscribes nobody |
//! | `POST /unsubscribe?token=…` | RFC 8058 one-click unsubscribe, at once |
//! | `GET /healthz` | 200 while the process runs |
//!
//! Webhook responses: 200 when every event was handled, 403 for a missing
//! or bad signature (nothing is written), 413 for a body over 1 MiB, 400
//! for a malformed request, and 503 or 500 when the store failed (503
//! asks the provider to retry). A verified message from a sender the store
//! does not know is stored for review: the engine creates a prospect for the
//! sender and hands the conversation to a team member, and the server
//! answers 200. An engine that still rejects such a message with `NotFound`
//! stores nothing, and the server answers 202.
//!
//! `/unsubscribe` answers people with short HTML pages in English and
//! French: 200 for the form and for a recorded unsubscribe, 400 for a
//! missing or malformed token or a POST without `List-Unsubscribe=One-Click`,
//! 403 for a token that fails verification or belongs to another org, and
//! 503 when unsubscribe is not configured. The URL to put in e-mails comes
//! from `kalify::channels::email::unsubscribe_token`; the e-mail channel
//! adds it to the `List-Unsubscribe` header of every marketing message.
//!
//! Logs: every rejected request (403, 413, 400) is logged at `warn` (403,
//! 413) or `info` (400) with the route, the status and the reason, without
//! the body, token, phone number or address. Provider message ids appear
//! only as a short hash (`provider_message`), because e-mail Message-IDs
//! contain the sender's domain, next to the stored message id when there is
//! one. Deliveries, retries and job failures are logged by the engine
//! under the `kalify::engine` and `kalify::channel` targets.
//!
//! On a quickstart database (`cargo run --example quickstart -- --db FILE`)
//! the worker sends the due follow-ups at once, because the quickstart's
//! dates are in the past. Start the server on a copy of such a database only
//! with channels that send to test endpoints, such as an SMTP server on
//! 127.0.0.1 with `KALIFY_SMTP_PLAINTEXT_DANGEROUS=true`, or with the
//! sending channels left unconfigured, so that the sample prospects get no
//! real messages.

use std::collections::BTreeMap;
use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
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
use kalify::contact::{ChannelKind, ContactPoint, EmailAddress};
use kalify::engine::{Engine, EventOutcome, WorkerOptions};
use kalify::ports::{Channel, InboundEvent, OptOutNotice, Store, WebhookRequest};
use kalify::store::SqliteStore;
use kalify::{Error, ErrorKind, OrgId, Secret};
use tokio::sync::watch;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

/// The org of the quickstart, used when `KALIFY_ORG_ID` is not set.
const DEFAULT_ORG_ID: &str = "01900000-0000-7000-8000-00000000beef";

/// The largest request body accepted, in bytes. Larger bodies get 413.
///
/// NOTE: raw e-mails with attachments can exceed 1 MiB and are then rejected, although
/// the e-mail channel alone would accept up to 25 MiB.
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The body RFC 8058 requires in a one-click unsubscribe POST.
const ONE_CLICK_BODY: &str = "List-Unsubscribe=One-Click";

const UNSUBSCRIBE_ROUTE: &str = "/unsubscribe";
const EMAIL_ROUTE: &str = "/webhooks/email";

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

/// The three parts of e-mail, which are mounted separately.
#[derive(Debug)]
struct EmailParts {
    /// The channel that sends, registered with the engine.
    sending: Mounted<SmtpEmailChannel>,
    /// The same channel behind `/webhooks/email`.
    inbound: Mounted<SmtpEmailChannel>,
    /// The key of unsubscribe tokens and the e-mail provider name, for `/unsubscribe`.
    unsubscribe: Result<(Secret, String), String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    install_subscriber();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = %error, "server failed to start or stopped with an error");
            ExitCode::FAILURE
        }
    }
}

/// Writes tracing events to stderr, filtered by `RUST_LOG` (default
/// `info`). Invalid directives are skipped with a message on stderr.
fn install_subscriber() {
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .from_env_lossy();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
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
    let email = build_email();

    let mut builder = Engine::builder()
        .with_store(store)
        .with_model(Arc::new(RulesModel::default()));
    for channel in [
        mounted_channel(&twilio),
        mounted_channel(&messenger),
        mounted_channel(&email.sending),
    ]
    .into_iter()
    .flatten()
    {
        builder = builder.with_channel(channel);
    }
    let engine = builder
        .build()
        .map_err(|error| format!("failed to build the engine: {error}"))?;

    log_channel("twilio", &twilio);
    log_channel("messenger", &messenger);
    log_email_parts(&email);

    let state = AppState {
        engine: engine.clone(),
        org,
        public_url,
        twilio,
        messenger,
        email_inbound: email.inbound,
        unsubscribe: email.unsubscribe,
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
        .route(EMAIL_ROUTE, axum::routing::post(email_webhook))
        .route(
            UNSUBSCRIBE_ROUTE,
            get(unsubscribe_form).post(unsubscribe_now),
        )
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state);

    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|error| format!("failed to listen on {listen}: {error}"))?;
    tracing::info!(listen = %listen, org_id = %org, database = %database, "server listening");

    let (stop_sender, stop_receiver) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown signal received; finishing in-flight requests and work");
        // Sending fails only once every receiver is dropped, when nothing waits for the signal any more.
        let _ = stop_sender.send(true);
    });

    let server = axum::serve(listener, app).with_graceful_shutdown(stopped(stop_receiver.clone()));
    let worker = engine.run_worker(WorkerOptions::default(), stopped(stop_receiver));
    let (served, worked) = tokio::join!(server.into_future(), worker);

    match worked {
        Ok(report) => tracing::info!(
            jobs_done = report.jobs_done,
            jobs_other = report.jobs_other,
            sent = report.sent,
            not_sent = report.not_sent,
            store_errors = report.store_errors,
            "worker stopped"
        ),
        Err(error) => tracing::error!(error = %error, "worker failed"),
    }
    served.map_err(|error| format!("HTTP server failed: {error}"))?;
    tracing::info!("server stopped");
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

fn log_channel<T>(name: &'static str, channel: &Mounted<T>) {
    match channel {
        Ok(_) => tracing::info!(channel = name, "channel mounted"),
        Err(reason) => tracing::warn!(
            channel = name,
            reason = %reason,
            "channel not mounted; its routes return 503"
        ),
    }
}

/// Logs which parts of e-mail are mounted. Inbound e-mail and unsubscribe
/// are reported only when sending is mounted, because they use its channel.
fn log_email_parts(email: &EmailParts) {
    if let Err(reason) = &email.sending {
        tracing::warn!(
            channel = "email",
            reason = %reason,
            "e-mail channel not mounted: no e-mail is sent, and /webhooks/email and /unsubscribe return 503"
        );
        return;
    }
    tracing::info!(channel = "email", "e-mail channel mounted for sending");
    match &email.inbound {
        Ok(_) => tracing::info!(route = EMAIL_ROUTE, "inbound e-mail mounted"),
        Err(reason) => tracing::warn!(
            route = EMAIL_ROUTE,
            reason = %reason,
            "inbound e-mail not mounted, so /webhooks/email returns 503; e-mail sending and /unsubscribe still work"
        ),
    }
    match &email.unsubscribe {
        Ok(_) => tracing::info!(route = UNSUBSCRIBE_ROUTE, "unsubscribe links mounted"),
        Err(reason) => tracing::warn!(
            route = UNSUBSCRIBE_ROUTE,
            reason = %reason,
            "unsubscribe links not mounted, so /unsubscribe returns 503"
        ),
    }
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

/// Builds the SMTP channel from `from_env`. The same channel sends, reads
/// `/webhooks/email` and keys `/unsubscribe`. Inbound e-mail is mounted
/// only when `KALIFY_EMAIL_INBOUND_SECRET` is set, because without a secret
/// the channel accepts e-mail from any caller.
fn build_email() -> EmailParts {
    let inbound_secret = env_optional("KALIFY_EMAIL_INBOUND_SECRET");
    let sending = SmtpEmailChannelBuilder::from_env()
        .map(|builder| match &inbound_secret {
            Some(secret) => builder.with_inbound_secret(Secret::new(secret.clone())),
            None => builder,
        })
        .and_then(SmtpEmailChannelBuilder::build)
        .map(Arc::new)
        .map_err(|error| not_configured("e-mail", &error));
    let inbound = match (&sending, inbound_secret) {
        (Ok(channel), Some(_)) => Ok(channel.clone()),
        (Ok(_), None) => Err(
            "inbound e-mail is off: set KALIFY_EMAIL_INBOUND_SECRET to accept signed messages"
                .to_owned(),
        ),
        (Err(reason), _) => Err(reason.clone()),
    };
    // `build` rejects a configuration without KALIFY_UNSUBSCRIBE_KEY, so a
    // built channel implies the key is set.
    let unsubscribe = match &sending {
        Ok(channel) => match env_optional("KALIFY_UNSUBSCRIBE_KEY") {
            Some(key) => Ok((Secret::new(key), channel.provider().to_owned())),
            None => Err("unsubscribe is off: set KALIFY_UNSUBSCRIBE_KEY".to_owned()),
        },
        Err(reason) => Err(reason.clone()),
    };
    EmailParts {
        sending,
        inbound,
        unsubscribe,
    }
}

fn not_configured(name: &str, error: &Error) -> String {
    format!("the {name} channel is not configured: {}", error.message())
}

/// Waits for SIGINT (Ctrl-C) or, on Unix, SIGTERM.
async fn wait_for_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %error, "failed to listen for SIGINT");
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
                tracing::error!(error = %error, "failed to listen for SIGTERM");
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

/// Logs a rejected request with its route, status and reason: 403, 413
/// and 503 (a route that is not mounted) at `warn`, other 4xx at `info`,
/// other 5xx at `error`. Callers pass a reason that contains no body,
/// token, phone number or address.
fn log_rejection(route: &str, status: StatusCode, reason: &str) {
    let code = status.as_u16();
    match status {
        StatusCode::FORBIDDEN | StatusCode::PAYLOAD_TOO_LARGE | StatusCode::SERVICE_UNAVAILABLE => {
            tracing::warn!(route, status = code, reason, "request rejected");
        }
        status if status.is_server_error() => {
            tracing::error!(route, status = code, reason, "request failed");
        }
        _ => tracing::info!(route, status = code, reason, "request rejected"),
    }
}

/// Returns the body, or logs the extractor's rejection: 413 for a body
/// over [`MAX_BODY_BYTES`], 400 for a body that could not be read.
fn read_body(route: &str, body: Result<Bytes, BytesRejection>) -> Result<Bytes, BytesRejection> {
    body.inspect_err(|rejection| {
        log_rejection(route, rejection.status(), &rejection.body_text());
    })
}

fn unavailable(route: &str, reason: &str) -> Response {
    log_rejection(route, StatusCode::SERVICE_UNAVAILABLE, reason);
    (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")).into_response()
}

/// Returns the status of an error of parsing or verifying a request.
fn rejection_status(error: &Error) -> StatusCode {
    match error.kind() {
        ErrorKind::Unauthenticated => StatusCode::FORBIDDEN,
        ErrorKind::InvalidInput | ErrorKind::Unsupported => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Logs an error of parsing or verifying a request and returns its response.
fn rejection(route: &str, error: &Error) -> Response {
    let status = rejection_status(error);
    // The message alone: the channels' messages name the failed check, and
    // the context could carry a provider message id.
    log_rejection(route, status, error.message());
    let message = match status {
        StatusCode::FORBIDDEN => "missing or invalid signature or token".to_owned(),
        StatusCode::BAD_REQUEST => format!("malformed request: {}", error.message()),
        _ => "internal error".to_owned(),
    };
    (status, format!("{message}\n")).into_response()
}

/// Verifies and parses the webhook with `channel`, then hands every event
/// to the engine. Returns the status to answer: 200 when every event was
/// handled, 202 when the engine rejected a verified message as from an
/// unknown sender.
async fn dispatch(
    state: &AppState,
    route: &str,
    channel: &dyn Channel,
    request: &WebhookRequest,
) -> Result<StatusCode, Response> {
    let events = channel
        .parse_webhook(request)
        .map_err(|error| rejection(route, &error))?;
    if events.is_empty() {
        tracing::debug!(route, "verified webhook without events");
    }
    let mut status = StatusCode::OK;
    for event in events {
        let summary = EventSummary::of(&event);
        match state.engine.handle_event(state.org, event).await {
            Ok(outcome) => log_outcome(route, &summary, &outcome),
            // NOTE: an engine that stores messages from unknown senders for
            // review returns a report instead, and the server returns 200. This arm
            // remains for an engine that still rejects them, and then the
            // message is lost.
            Err(error) if error.kind() == ErrorKind::NotFound => {
                tracing::warn!(
                    route,
                    event = summary.kind,
                    provider = %summary.provider,
                    provider_message = summary.provider_message.as_deref(),
                    reason = error.message(),
                    "message from an unknown sender not stored"
                );
                status = StatusCode::ACCEPTED;
            }
            Err(error) => {
                // A 5xx makes the provider retry, and the store ignores a
                // message id it already holds, so a retry adds no duplicate.
                let status = if error.is_retryable() {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::INTERNAL_SERVER_ERROR
                };
                tracing::error!(
                    route,
                    status = status.as_u16(),
                    event = summary.kind,
                    provider = %summary.provider,
                    provider_message = summary.provider_message.as_deref(),
                    error_kind = %error.kind(),
                    retryable = error.is_retryable(),
                    error = %LoggedError(&error),
                    "failed to handle the event"
                );
                return Err((status, "failed to handle the event\n").into_response());
            }
        }
    }
    Ok(status)
}

/// Logs what the engine did with one event. Delivery reports and other
/// ignored events are logged at `debug`, because providers send several
/// per message.
fn log_outcome(route: &str, summary: &EventSummary, outcome: &EventOutcome) {
    let provider_message = summary.provider_message.as_deref();
    match outcome {
        EventOutcome::Message(report) => tracing::info!(
            route,
            event = summary.kind,
            provider = %summary.provider,
            provider_message,
            message_id = report.message_id.map(display),
            prospect_id = %report.prospect_id,
            conversation_id = %report.conversation_id,
            duplicate = report.duplicate,
            state = %report.state,
            score = report.score,
            "message handled"
        ),
        EventOutcome::Suppressed {
            prospect_id,
            reason,
        } => tracing::info!(
            route,
            event = summary.kind,
            provider = %summary.provider,
            detail = summary.detail.as_deref(),
            prospect_id = prospect_id.map(display),
            reason = %reason,
            "contact point suppressed"
        ),
        EventOutcome::Ignored(reason) => tracing::debug!(
            route,
            event = summary.kind,
            provider = %summary.provider,
            provider_message,
            reason,
            "event ignored"
        ),
        other => tracing::info!(
            route,
            event = summary.kind,
            provider = %summary.provider,
            provider_message,
            outcome = ?other,
            "event handled"
        ),
    }
}

/// The fields of an event that logs may show: no text, sender or address,
/// and the provider message id only as [`short_hash`].
#[derive(Debug)]
struct EventSummary {
    kind: &'static str,
    provider: String,
    /// The short hash of the provider message id, when the event has one.
    provider_message: Option<String>,
    /// The opt-out reason or bounce status, when the event has one.
    detail: Option<String>,
}

impl EventSummary {
    fn of(event: &InboundEvent) -> EventSummary {
        let (kind, provider, provider_message_id, detail) = match event {
            InboundEvent::Message(message) => (
                "message",
                message.provider.as_str(),
                Some(message.provider_message_id.as_str()),
                None,
            ),
            InboundEvent::Status(update) => (
                "status",
                update.provider.as_str(),
                Some(update.provider_message_id.as_str()),
                None,
            ),
            InboundEvent::Watermark(update) => ("watermark", update.provider.as_str(), None, None),
            InboundEvent::OptOut(notice) => (
                "opt_out",
                notice.provider.as_str(),
                None,
                Some(notice.reason.clone()),
            ),
            InboundEvent::Postback(postback) => (
                "postback",
                postback.provider.as_str(),
                postback.provider_message_id.as_deref(),
                None,
            ),
            InboundEvent::Bounce(bounce) => (
                "bounce",
                bounce.provider.as_str(),
                Some(bounce.provider_message_id.as_str()),
                None,
            ),
            InboundEvent::AutoReply(reply) => (
                "auto_reply",
                reply.provider.as_str(),
                Some(reply.provider_message_id.as_str()),
                None,
            ),
            _ => ("other", "", None, None),
        };
        EventSummary {
            kind,
            provider: provider.to_owned(),
            provider_message: provider_message_id.map(short_hash),
            detail,
        }
    }
}

/// Returns 48 bits of a hash of `id` in hexadecimal. Log lines of one
/// provider message share it, and it does not show the id, whose e-mail
/// form contains the sender's domain.
///
/// NOTE: `DefaultHasher` may change between Rust releases, so a server
/// built with another toolchain logs other hashes for the same id.
fn short_hash(id: &str) -> String {
    let mut hasher = DefaultHasher::new();
    id.hash(&mut hasher);
    format!("{:012x}", hasher.finish() >> 16)
}

/// Formats an error as its `Display` does, with each `provider_message_id`
/// context value replaced by its [`short_hash`].
struct LoggedError<'a>(&'a Error);

impl fmt::Display for LoggedError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let error = self.0;
        if let Some(adapter) = error.adapter() {
            write!(f, "{adapter}: ")?;
        }
        if let Some(operation) = error.operation() {
            write!(f, "{operation}: ")?;
        }
        f.write_str(error.message())?;
        for (key, value) in error.context() {
            if *key == "provider_message_id" {
                write!(f, " [provider_message={}]", short_hash(value))?;
            } else {
                write!(f, " [{key}={value}]")?;
            }
        }
        Ok(())
    }
}

/// Handles Twilio's inbound-message webhooks and status callbacks. Answers
/// with empty TwiML, so Twilio sends no reply of its own.
async fn twilio_webhook(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let route = uri.path();
    let channel = match &state.twilio {
        Ok(channel) => channel.clone(),
        Err(reason) => return unavailable(route, reason),
    };
    let body = match read_body(route, body) {
        Ok(body) => body,
        Err(rejection) => return rejection.into_response(),
    };
    let request = webhook_request(&state, &method, &uri, &headers, body);
    match dispatch(&state, route, channel.as_ref(), &request).await {
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
    let route = uri.path();
    let channel = match &state.messenger {
        Ok(channel) => channel.clone(),
        Err(reason) => return unavailable(route, reason),
    };
    let request = webhook_request(&state, &method, &uri, &headers, Bytes::new());
    match channel.verify_subscription(&request) {
        Ok(challenge) => {
            tracing::info!(route, "Messenger subscription verified");
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"))],
                challenge,
            )
                .into_response()
        }
        Err(error) => rejection(route, &error),
    }
}

async fn messenger_webhook(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let route = uri.path();
    let channel = match &state.messenger {
        Ok(channel) => channel.clone(),
        Err(reason) => return unavailable(route, reason),
    };
    let body = match read_body(route, body) {
        Ok(body) => body,
        Err(rejection) => return rejection.into_response(),
    };
    let request = webhook_request(&state, &method, &uri, &headers, body);
    match dispatch(&state, route, channel.as_ref(), &request).await {
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
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let channel = match &state.email_inbound {
        Ok(channel) => channel.clone(),
        Err(reason) => return unavailable(EMAIL_ROUTE, reason),
    };
    let body = match read_body(EMAIL_ROUTE, body) {
        Ok(body) => body,
        Err(rejection) => return rejection.into_response(),
    };
    let request = webhook_request(&state, &method, &uri, &headers, body);
    match dispatch(&state, EMAIL_ROUTE, channel.as_ref(), &request).await {
        Ok(status) => status.into_response(),
        Err(response) => response,
    }
}

/// A page of `/unsubscribe` for people, in English and then in French.
/// The texts are HTML-safe: they contain no `<` or `&`.
#[derive(Debug)]
struct Page {
    title_en: &'static str,
    text_en: &'static str,
    title_fr: &'static str,
    text_fr: &'static str,
}

const CONFIRM_PAGE: Page = Page {
    title_en: "Unsubscribe",
    text_en: "Do you want to stop receiving these e-mails? Confirm with the button below.",
    title_fr: "Désabonnement",
    text_fr: "Voulez-vous ne plus recevoir ces e-mails ? Confirmez avec le bouton ci-dessous.",
};

const NOT_CONFIRMED_PAGE: Page = Page {
    title_en: "Please confirm",
    text_en: "Your request did not include the confirmation. Use the button below to unsubscribe.",
    title_fr: "Merci de confirmer",
    text_fr: "Votre demande ne contenait pas la confirmation. Utilisez le bouton ci-dessous pour vous désabonner.",
};

const DONE_PAGE: Page = Page {
    title_en: "You are unsubscribed",
    text_en: "You will no longer receive these e-mails.",
    title_fr: "Désabonnement enregistré",
    text_fr: "Vous ne recevrez plus ces e-mails.",
};

const INVALID_LINK_PAGE: Page = Page {
    title_en: "Invalid unsubscribe link",
    text_en: "This unsubscribe link is not valid: it may be incomplete or changed. Open the link in the e-mail again, or reply to the e-mail and ask to be unsubscribed.",
    title_fr: "Lien de désabonnement invalide",
    text_fr: "Ce lien de désabonnement n’est pas valide : il est peut-être incomplet ou modifié. Ouvrez de nouveau le lien de l’e-mail, ou répondez à l’e-mail pour demander votre désabonnement.",
};

const FAILED_PAGE: Page = Page {
    title_en: "Unsubscribe failed",
    text_en: "Your request could not be recorded. Please try again in a few minutes.",
    title_fr: "Échec du désabonnement",
    text_fr: "Votre demande n’a pas pu être enregistrée. Merci de réessayer dans quelques minutes.",
};

const UNAVAILABLE_PAGE: Page = Page {
    title_en: "Unsubscribe unavailable",
    text_en: "Unsubscribing is not available at the moment. Please try again later, or reply to the e-mail and ask to be unsubscribed.",
    title_fr: "Désabonnement indisponible",
    text_fr: "Le désabonnement n’est pas disponible pour le moment. Merci de réessayer plus tard, ou répondez à l’e-mail pour demander votre désabonnement.",
};

/// Renders `page` with `status`. With `form_token`, the page ends with a
/// form that posts the RFC 8058 body to this same URL, token included.
///
/// The response is not cached, and browsers send no `Referer` from it,
/// because the URL carries the token.
fn render_page(status: StatusCode, page: &Page, form_token: Option<&str>) -> Response {
    let Page {
        title_en,
        text_en,
        title_fr,
        text_fr,
    } = page;
    let form = form_token.map_or_else(String::new, |token| {
        format!(
            "<form method=\"post\" action=\"?token={token}\">\n\
             <input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">\n\
             <button type=\"submit\">Unsubscribe / Se désabonner</button>\n\
             </form>\n"
        )
    });
    let html = format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"robots\" content=\"noindex\">\n\
         <title>{title_en} / {title_fr}</title>\n</head>\n<body>\n\
         <h1>{title_en}</h1>\n<p>{text_en}</p>\n\
         <div lang=\"fr\">\n<h2>{title_fr}</h2>\n<p>{text_fr}</p>\n</div>\n\
         {form}</body>\n</html>\n"
    );
    (
        status,
        [
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
        ],
        Html(html),
    )
        .into_response()
}

/// Returns the `token` query parameter when it contains only base64url
/// characters, so that it can be echoed into HTML unescaped.
fn token_parameter(query: &BTreeMap<String, String>) -> Option<&str> {
    let token = query.get("token")?;
    let well_formed = !token.is_empty()
        && token
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'='));
    well_formed.then_some(token.as_str())
}

/// Checks the unsubscribe request's token: its characters, version and tag
/// under `key`, and that it belongs to this server's org. Returns the token
/// and its address, or logs the rejection and returns its status: 400 for
/// a missing or malformed token, 403 for one that fails the tag check or
/// belongs to another org.
fn verify_request_token<'q>(
    state: &AppState,
    key: &Secret,
    query: &'q Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> Result<(&'q str, EmailAddress), StatusCode> {
    let token = match query {
        Ok(Query(query)) => token_parameter(query),
        Err(_) => None,
    };
    let Some(token) = token else {
        log_rejection(
            UNSUBSCRIBE_ROUTE,
            StatusCode::BAD_REQUEST,
            "missing or malformed token parameter",
        );
        return Err(StatusCode::BAD_REQUEST);
    };
    let (org, address) = verify_unsubscribe_token(key, token).map_err(|error| {
        let status = rejection_status(&error);
        log_rejection(UNSUBSCRIBE_ROUTE, status, error.message());
        status
    })?;
    if org != state.org {
        tracing::warn!(
            route = UNSUBSCRIBE_ROUTE,
            status = StatusCode::FORBIDDEN.as_u16(),
            token_org_id = %org,
            org_id = %state.org,
            reason = "the token belongs to another org",
            "request rejected"
        );
        return Err(StatusCode::FORBIDDEN);
    }
    Ok((token, address))
}

/// Renders the page of a token that [`verify_request_token`] rejected.
fn token_rejected_page(status: StatusCode) -> Response {
    let page = if status.is_server_error() {
        &FAILED_PAGE
    } else {
        &INVALID_LINK_PAGE
    };
    render_page(status, page, None)
}

/// Returns the unsubscribe key and provider, or logs why unsubscribe is off.
fn unsubscribe_settings(state: &AppState) -> Option<&(Secret, String)> {
    if let Err(reason) = &state.unsubscribe {
        log_rejection(UNSUBSCRIBE_ROUTE, StatusCode::SERVICE_UNAVAILABLE, reason);
    }
    state.unsubscribe.as_ref().ok()
}

/// Verifies the token, then shows a form that confirms the unsubscribe
/// with a POST. A GET never unsubscribes, because link scanners and mail
/// previews follow links.
async fn unsubscribe_form(
    State(state): State<AppState>,
    query: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> Response {
    let Some((key, _)) = unsubscribe_settings(&state) else {
        return render_page(StatusCode::SERVICE_UNAVAILABLE, &UNAVAILABLE_PAGE, None);
    };
    match verify_request_token(&state, key, &query) {
        Ok((token, _)) => render_page(StatusCode::OK, &CONFIRM_PAGE, Some(token)),
        Err(status) => token_rejected_page(status),
    }
}

/// Unsubscribes the token's address at once (RFC 8058 one-click). The body
/// must carry `List-Unsubscribe=One-Click`, as form data or as a multipart
/// field; without it the response is 400 with the confirmation form.
async fn unsubscribe_now(
    State(state): State<AppState>,
    query: Result<Query<BTreeMap<String, String>>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Some((key, provider)) = unsubscribe_settings(&state) else {
        return render_page(StatusCode::SERVICE_UNAVAILABLE, &UNAVAILABLE_PAGE, None);
    };
    let body = match read_body(UNSUBSCRIBE_ROUTE, body) {
        Ok(body) => body,
        Err(rejection) => return rejection.into_response(),
    };
    let (token, address) = match verify_request_token(&state, key, &query) {
        Ok(verified) => verified,
        Err(status) => return token_rejected_page(status),
    };

    let body = String::from_utf8_lossy(&body);
    let one_click = body.contains(ONE_CLICK_BODY)
        || (body.contains("name=\"List-Unsubscribe\"") && body.contains("One-Click"));
    if !one_click {
        log_rejection(
            UNSUBSCRIBE_ROUTE,
            StatusCode::BAD_REQUEST,
            "the body does not contain List-Unsubscribe=One-Click",
        );
        return render_page(StatusCode::BAD_REQUEST, &NOT_CONFIRMED_PAGE, Some(token));
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
        .handle_event(state.org, InboundEvent::OptOut(notice))
        .await
    {
        Ok(outcome) => {
            let prospect_id = match &outcome {
                EventOutcome::Suppressed { prospect_id, .. } => *prospect_id,
                _ => None,
            };
            tracing::info!(
                route = UNSUBSCRIBE_ROUTE,
                prospect_id = prospect_id.map(display),
                "address unsubscribed"
            );
            render_page(StatusCode::OK, &DONE_PAGE, None)
        }
        Err(error) => {
            tracing::error!(
                route = UNSUBSCRIBE_ROUTE,
                error_kind = %error.kind(),
                error = %LoggedError(&error),
                "failed to record the opt-out"
            );
            render_page(StatusCode::INTERNAL_SERVER_ERROR, &FAILED_PAGE, None)
        }
    }
}
