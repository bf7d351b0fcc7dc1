//! The SMTP e-mail channel against a real SMTP server on the loopback interface.
//!
//! The server is the `mailin` SMTP state machine (command parsing, replies,
//! AUTH PLAIN and LOGIN, DATA with dot-unstuffing) driven over blocking
//! sockets on 127.0.0.1 with an ephemeral port. It records every accepted
//! message and can be set to reject recipients or data with a chosen reply.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers outside #[test] functions fail by panicking"
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use kalify_channels::SmtpEmailChannel;
use kalify_channels::email::{
    EmailKind, SIGNATURE_HEADER, SmtpSecurity, parse_email, sign_inbound, verify_unsubscribe_token,
};
use kalify_core::contact::{ChannelKind, ContactPoint, EmailAddress};
use kalify_core::conversation::SendPurpose;
use kalify_core::gate::{Gate, SendPermit};
use kalify_core::ports::{Channel, InboundEvent, WebhookRequest};
use kalify_core::prospect::{Consent, ConsentBasis};
use kalify_core::testkit::channel_suite::{self, CapturedLogs, ChannelHarness};
use kalify_core::testkit::fakes::{self, time};
use kalify_core::{ErrorKind, Retry, Secret};
use mailin::{AuthMechanism, Handler, Response, Session, SessionBuilder};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};

const PASSWORD: &str = "smtp-pa55word-do-not-leak";
const UNSUBSCRIBE_KEY: &str = "unsubscribe-key-of-more-than-32-bytes-0123456789";
const INBOUND_SECRET: &str = "inbound-signing-secret-abc123";
const FROM: &str = "sales@kalify.example";

// ---------------------------------------------------------------------------
// The loopback SMTP server.

/// The replies the server sends.
#[derive(Clone, Debug, Default)]
enum Behaviour {
    #[default]
    Accept,
    RejectRecipient(u16, &'static str),
    RejectData(u16, &'static str),
}

#[derive(Clone, Debug)]
struct Received {
    from: String,
    to: Vec<String>,
    data: Vec<u8>,
}

impl Received {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }

    /// Returns the value of header `name`, unfolded, from the raw message.
    fn header(&self, name: &str) -> Option<String> {
        let text = self.text();
        let head = text
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
    behaviour: Behaviour,
    received: Vec<Received>,
    auth: Vec<(&'static str, String, String)>,
}

#[derive(Clone, Default)]
struct ServerOptions {
    mechanisms: Vec<AuthMechanism>,
    credentials: Option<(String, String)>,
    tls: ServerTls,
}

/// The server's TLS: none, offered through STARTTLS, or from the first byte.
#[derive(Clone, Default)]
enum ServerTls {
    #[default]
    None,
    StartTls(Arc<ServerConfig>),
    Implicit(Arc<ServerConfig>),
}

/// Returns a TLS server configuration with a new self-signed certificate
/// for 127.0.0.1, and that certificate in PEM.
// rustls 0.23.48 deprecates its ring provider for lacking post-quantum key
// exchange. lettre is built with ring here, and the test server uses the
// same provider so that the tests do not build aws-lc.
#[allow(deprecated)]
fn self_signed_tls() -> (Arc<ServerConfig>, String) {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![certified.cert.der().clone()], key)
            .unwrap();
    (Arc::new(config), certified.cert.pem())
}

struct SmtpTestServer {
    address: SocketAddr,
    state: Arc<Mutex<ServerState>>,
    stop: Arc<AtomicBool>,
}

impl SmtpTestServer {
    fn start() -> SmtpTestServer {
        SmtpTestServer::start_with(ServerOptions::default())
    }

    fn start_with(options: ServerOptions) -> SmtpTestServer {
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
                let (state, options) = (thread_state.clone(), options.clone());
                std::thread::spawn(move || serve_connection(stream, state, options));
            }
        });
        SmtpTestServer {
            address,
            state,
            stop,
        }
    }

    fn set(&self, behaviour: Behaviour) {
        self.lock().behaviour = behaviour;
    }

    fn received(&self) -> Vec<Received> {
        self.lock().received.clone()
    }

    fn auth(&self) -> Vec<(&'static str, String, String)> {
        self.lock().auth.clone()
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

fn serve_connection(stream: TcpStream, state: Arc<Mutex<ServerState>>, options: ServerOptions) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let peer = stream
        .peer_addr()
        .map(|a| a.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]));

    let mut builder = SessionBuilder::new("kalify-test-smtp");
    for mechanism in &options.mechanisms {
        builder.enable_auth(mechanism.clone());
    }
    if matches!(options.tls, ServerTls::StartTls(_)) {
        builder.enable_start_tls();
    } else if !options.mechanisms.is_empty() {
        // mailin offers AUTH only after STARTTLS unless configured otherwise; on
        // implicit TLS it cannot see the encryption.
        builder.insecure_enable_plaintext_auth();
    }
    let handler = RecordingHandler {
        state,
        credentials: options.credentials,
        current: None,
    };
    let mut session = builder.build(peer, handler);

    match options.tls {
        ServerTls::None => {
            let mut reader = BufReader::new(stream);
            if greet(&mut session, &mut reader) {
                converse(&mut session, &mut reader);
            }
        }
        ServerTls::Implicit(config) => {
            let Ok(connection) = ServerConnection::new(config) else {
                return;
            };
            let mut reader = BufReader::new(StreamOwned::new(connection, stream));
            if greet(&mut session, &mut reader) {
                converse(&mut session, &mut reader);
            }
        }
        ServerTls::StartTls(config) => {
            let mut reader = BufReader::new(stream);
            if !greet(&mut session, &mut reader)
                || converse(&mut session, &mut reader) != Outcome::UpgradeTls
            {
                return;
            }
            // The client sends its TLS hello only after the 220 reply, so
            // the reader contains no buffered bytes here.
            let stream = reader.into_inner();
            let Ok(connection) = ServerConnection::new(config) else {
                return;
            };
            session.tls_active();
            let mut reader = BufReader::new(StreamOwned::new(connection, stream));
            converse(&mut session, &mut reader);
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Closed,
    UpgradeTls,
}

fn greet<S: Read + Write>(
    session: &mut Session<RecordingHandler>,
    reader: &mut BufReader<S>,
) -> bool {
    reply(reader.get_mut(), &session.greeting())
}

fn reply(writer: &mut impl Write, response: &Response) -> bool {
    response.write_to(writer).is_ok() && writer.flush().is_ok()
}

/// Runs SMTP commands until the client disconnects or sends STARTTLS.
fn converse<S: Read + Write>(
    session: &mut Session<RecordingHandler>,
    reader: &mut BufReader<S>,
) -> Outcome {
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return Outcome::Closed,
            Ok(_) => {}
        }
        let response = session.process(&line);
        match response.action {
            mailin::Action::Reply => {
                if !reply(reader.get_mut(), &response) {
                    return Outcome::Closed;
                }
            }
            mailin::Action::Close => {
                reply(reader.get_mut(), &response);
                return Outcome::Closed;
            }
            mailin::Action::NoReply => {}
            mailin::Action::UpgradeTls => {
                return if reply(reader.get_mut(), &response) {
                    Outcome::UpgradeTls
                } else {
                    Outcome::Closed
                };
            }
        }
    }
}

struct RecordingHandler {
    state: Arc<Mutex<ServerState>>,
    credentials: Option<(String, String)>,
    current: Option<Received>,
}

impl RecordingHandler {
    fn behaviour(&self) -> Behaviour {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .behaviour
            .clone()
    }

    fn check(&mut self, mechanism: &'static str, user: &str, password: &str) -> Response {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state
            .auth
            .push((mechanism, user.to_owned(), password.to_owned()));
        match &self.credentials {
            Some((expected_user, expected_password))
                if user == expected_user && password == expected_password =>
            {
                mailin::response::AUTH_OK
            }
            _ => mailin::response::INVALID_CREDENTIALS,
        }
    }
}

impl Handler for RecordingHandler {
    fn mail(&mut self, _ip: IpAddr, _domain: &str, from: &str) -> Response {
        self.current = Some(Received {
            from: from.to_owned(),
            to: Vec::new(),
            data: Vec::new(),
        });
        mailin::response::OK
    }

    fn rcpt(&mut self, to: &str) -> Response {
        if let Behaviour::RejectRecipient(code, text) = self.behaviour() {
            return Response::custom(code, text.to_owned());
        }
        if let Some(current) = &mut self.current {
            current.to.push(to.to_owned());
        }
        mailin::response::OK
    }

    // mailin leaves the DATA state only after a successful reply to the
    // final dot, so data is refused at the DATA command, which real servers
    // also do.
    fn data_start(
        &mut self,
        _domain: &str,
        _from: &str,
        _is8bit: bool,
        _to: &[String],
    ) -> Response {
        if let Behaviour::RejectData(code, text) = self.behaviour() {
            self.current = None;
            return Response::custom(code, text.to_owned());
        }
        mailin::response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if let Some(current) = &mut self.current {
            current.data.extend_from_slice(buf);
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

    fn auth_plain(
        &mut self,
        _authorization_id: &str,
        authentication_id: &str,
        password: &str,
    ) -> Response {
        self.check("PLAIN", authentication_id, password)
    }

    fn auth_login(&mut self, username: &str, password: &str) -> Response {
        self.check("LOGIN", username, password)
    }
}

// ---------------------------------------------------------------------------
// Channel and permits.

fn builder_for(address: SocketAddr) -> kalify_channels::SmtpEmailChannelBuilder {
    SmtpEmailChannel::builder()
        .with_host(address.ip().to_string())
        .with_port(address.port())
        .with_plaintext_dangerous()
        .with_from(FROM, "Kalify Sales")
        .with_timeout(Duration::from_secs(5))
        .with_unsubscribe(
            Secret::new(UNSUBSCRIBE_KEY),
            "https://kalify.example/unsubscribe",
            "unsubscribe@kalify.example",
        )
        .with_inbound_secret(Secret::new(INBOUND_SECRET))
}

fn channel_for(server: &SmtpTestServer) -> SmtpEmailChannel {
    builder_for(server.address).build().unwrap()
}

const TEXT: &str = "Bonjour Camille, ici Léa : quel est votre budget ? 😀";

/// Builds a permit to send [`TEXT`] to a new prospect's address, through the gate.
fn permit(purpose: SendPurpose, key: &str) -> SendPermit {
    let org = fakes::org();
    let mut prospect = fakes::prospect(org);
    prospect.consents.push(Consent {
        channel: ChannelKind::Email,
        basis: ConsentBasis::Consent,
        collected_at: time(-60),
        source: "test".into(),
        wording_version: None,
        withdrawn_at: None,
    });
    let conversation = fakes::conversation(&prospect, None);
    let mut message = fakes::outbound(&conversation, time(10));
    message.text = TEXT.to_owned();
    message.subject = Some("Votre projet à Lyon".into());
    let to = ContactPoint::Email(prospect.email.clone().unwrap());
    let mut entry = fakes::outbox_entry(&message, to);
    entry.purpose = purpose;
    entry.idempotency_key = key.to_owned();
    Gate::default()
        .check(&prospect, entry, false, time(10))
        .unwrap()
}

fn recipient_of(permit: &SendPermit) -> EmailAddress {
    match &permit.entry().to {
        ContactPoint::Email(email) => email.clone(),
        other => panic!("not an e-mail recipient: {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Sending.

#[tokio::test]
async fn send_delivers_headers_and_body() {
    let server = SmtpTestServer::start();
    let channel = channel_for(&server);
    let permit = permit(SendPurpose::Outreach { attempt: 1 }, "key-headers");
    let recipient = recipient_of(&permit);

    let receipt = channel.send(&permit).await.unwrap();

    assert_eq!(receipt.provider, "smtp");
    assert_eq!(
        receipt.provider_message_id,
        format!("{}@kalify.example", permit.entry().message_id)
    );
    let received = server.received();
    assert_eq!(received.len(), 1);
    let message = &received[0];
    assert_eq!(message.from, FROM);
    assert_eq!(message.to, vec![recipient.as_str().to_owned()]);

    let parsed = parse_email(&message.data).unwrap();
    assert_eq!(
        parsed.message_id.as_deref(),
        Some(receipt.provider_message_id.as_str())
    );
    assert_eq!(parsed.from.as_ref().map(EmailAddress::as_str), Some(FROM));
    assert_eq!(parsed.from_name.as_deref(), Some("Léa from Acme"));
    assert_eq!(parsed.to, vec![recipient.clone()]);
    assert_eq!(parsed.subject.as_deref(), Some("Votre projet à Lyon"));
    assert_eq!(parsed.date, Some(time(10)));
    assert!(parsed.text.starts_with(TEXT), "{:?}", parsed.text);
    assert_eq!(
        parsed.visible_text, TEXT,
        "the unsubscribe footer sits under the signature line"
    );
    assert!(
        message
            .header("Content-Type")
            .unwrap()
            .to_ascii_lowercase()
            .contains("text/plain; charset=utf-8")
    );
}

#[tokio::test]
async fn marketing_mail_has_one_click_unsubscribe() {
    let server = SmtpTestServer::start();
    let channel = channel_for(&server);
    let permit = permit(SendPurpose::Reply, "key-unsubscribe");
    let recipient = recipient_of(&permit);

    channel.send(&permit).await.unwrap();

    let message = &server.received()[0];
    assert_eq!(
        message.header("List-Unsubscribe-Post").as_deref(),
        Some("List-Unsubscribe=One-Click")
    );
    let list = message.header("List-Unsubscribe").unwrap();
    let (https, mailto) = list.split_once(", ").unwrap();
    let token = https
        .strip_prefix("<https://kalify.example/unsubscribe?token=")
        .and_then(|rest| rest.strip_suffix('>'))
        .unwrap_or_else(|| panic!("unexpected https URI {https}"));
    assert_eq!(
        mailto,
        format!("<mailto:unsubscribe@kalify.example?subject=unsubscribe-{token}>")
    );
    assert!(
        !list.contains(recipient.as_str()),
        "the address must not show in the link"
    );

    let (org, address) = verify_unsubscribe_token(&Secret::new(UNSUBSCRIBE_KEY), token).unwrap();
    assert_eq!(org, permit.entry().org_id);
    assert_eq!(address, recipient);

    let parsed = parse_email(&message.data).unwrap();
    assert!(
        parsed
            .text
            .contains(&format!("https://kalify.example/unsubscribe?token={token}")),
        "{}",
        parsed.text
    );
    assert!(parsed.text.contains("\n-- \n"), "{}", parsed.text);
    assert!(!parsed.text.contains('\r'), "line ends are normalised");
}

#[tokio::test]
async fn transactional_mail_has_no_unsubscribe() {
    let server = SmtpTestServer::start();
    let channel = channel_for(&server);

    for (index, purpose) in [
        SendPurpose::OptOutConfirmation,
        SendPurpose::OptInConfirmation,
        SendPurpose::Help,
    ]
    .into_iter()
    .enumerate()
    {
        channel
            .send(&permit(purpose, &format!("key-transactional-{index}")))
            .await
            .unwrap();
    }

    for message in server.received() {
        assert_eq!(message.header("List-Unsubscribe"), None);
        assert_eq!(message.header("List-Unsubscribe-Post"), None);
        assert!(!message.text().contains("unsubscribe?token="));
    }
}

#[tokio::test]
async fn follow_ups_thread_to_first_message() {
    let server = SmtpTestServer::start();
    let channel = channel_for(&server);
    let first = permit(SendPurpose::Outreach { attempt: 0 }, "key-first");
    let mut follow_up = permit(SendPurpose::Outreach { attempt: 1 }, "key-follow-up");
    // The same conversation as the first message.
    let mut entry = follow_up.entry().clone();
    entry.conversation_id = first.entry().conversation_id;
    let mut prospect = fakes::prospect(entry.org_id);
    prospect.id = entry.prospect_id;
    prospect.email = Some(recipient_of(&follow_up));
    prospect.consents = vec![Consent {
        channel: ChannelKind::Email,
        basis: ConsentBasis::Consent,
        collected_at: time(-60),
        source: "test".into(),
        wording_version: None,
        withdrawn_at: None,
    }];
    follow_up = Gate::default()
        .check(&prospect, entry, false, time(20))
        .unwrap();

    let first_receipt = channel.send(&first).await.unwrap();
    let follow_receipt = channel.send(&follow_up).await.unwrap();

    let root = format!("{}@kalify.example", first.entry().conversation_id);
    assert_eq!(first_receipt.provider_message_id, root);
    assert_eq!(
        follow_receipt.provider_message_id,
        format!("{}@kalify.example", follow_up.entry().message_id)
    );
    let received = server.received();
    assert_eq!(received[0].header("In-Reply-To"), None);
    assert_eq!(received[1].header("In-Reply-To"), Some(format!("<{root}>")));
    assert_eq!(received[1].header("References"), Some(format!("<{root}>")));
}

#[tokio::test]
async fn repeated_key_sends_once() {
    let server = SmtpTestServer::start();
    let channel = channel_for(&server);
    let permit = permit(SendPurpose::Reply, "key-once");

    let first = channel.send(&permit).await.unwrap();
    let again = channel.send(&permit).await.unwrap();

    assert_eq!(first, again);
    assert_eq!(server.received().len(), 1);
}

#[tokio::test]
async fn failed_send_is_not_remembered() {
    let server = SmtpTestServer::start();
    let channel = channel_for(&server);
    let permit = permit(SendPurpose::Reply, "key-retry");

    server.set(Behaviour::RejectData(451, "4.3.0 try again later"));
    let error = channel.send(&permit).await.unwrap_err();
    assert!(error.is_retryable(), "{error:?}");
    server.set(Behaviour::Accept);
    channel.send(&permit).await.unwrap();

    assert_eq!(server.received().len(), 1);
}

#[tokio::test]
async fn auth_plain_sends_credentials() {
    let server = SmtpTestServer::start_with(ServerOptions {
        mechanisms: vec![AuthMechanism::Plain],
        credentials: Some(("mailer".into(), PASSWORD.into())),
        ..ServerOptions::default()
    });
    let channel = builder_for(server.address)
        .with_credentials("mailer", Secret::new(PASSWORD))
        .build()
        .unwrap();

    channel
        .send(&permit(SendPurpose::Reply, "key-plain"))
        .await
        .unwrap();

    assert_eq!(
        server.auth(),
        vec![("PLAIN", "mailer".to_owned(), PASSWORD.to_owned())]
    );
    assert_eq!(server.received().len(), 1);
}

#[tokio::test]
async fn auth_login_when_only_login_offered() {
    let server = SmtpTestServer::start_with(ServerOptions {
        mechanisms: vec![AuthMechanism::Login],
        credentials: Some(("mailer".into(), PASSWORD.into())),
        ..ServerOptions::default()
    });
    let channel = builder_for(server.address)
        .with_credentials("mailer", Secret::new(PASSWORD))
        .build()
        .unwrap();

    channel
        .send(&permit(SendPurpose::Reply, "key-login"))
        .await
        .unwrap();

    assert_eq!(
        server.auth(),
        vec![("LOGIN", "mailer".to_owned(), PASSWORD.to_owned())]
    );
    assert_eq!(server.received().len(), 1);
}

#[tokio::test]
async fn wrong_password_is_unauthenticated() {
    let server = SmtpTestServer::start_with(ServerOptions {
        mechanisms: vec![AuthMechanism::Plain],
        credentials: Some(("mailer".into(), "the-right-one".into())),
        ..ServerOptions::default()
    });
    let channel = builder_for(server.address)
        .with_credentials("mailer", Secret::new(PASSWORD))
        .build()
        .unwrap();

    let error = channel
        .send(&permit(SendPurpose::Reply, "key-bad-auth"))
        .await
        .unwrap_err();

    assert_eq!(error.kind(), ErrorKind::Unauthenticated, "{error:?}");
    assert_eq!(error.retry(), Retry::Permanent);
    assert!(!error.to_string().contains(PASSWORD));
    assert!(!format!("{error:?}").contains(PASSWORD));
    assert!(server.received().is_empty());
}

#[tokio::test]
async fn mailbox_unavailable_is_invalid_input() {
    let server = SmtpTestServer::start();
    let channel = channel_for(&server);

    for (index, code) in [550u16, 551, 553].into_iter().enumerate() {
        server.set(Behaviour::RejectRecipient(
            code,
            "5.1.1 mailbox unavailable",
        ));
        let error = channel
            .send(&permit(SendPurpose::Reply, &format!("key-550-{index}")))
            .await
            .unwrap_err();

        assert_eq!(error.kind(), ErrorKind::InvalidInput, "{code}: {error:?}");
        assert_eq!(error.retry(), Retry::Permanent, "{code}");
        assert!(
            error.context().contains(&("smtp_code", code.to_string())),
            "{error:?}"
        );
        assert!(
            error
                .context()
                .contains(&("enhanced_status", "5.1.1".to_owned())),
            "{error:?}"
        );
    }
}

#[tokio::test]
async fn transient_reply_is_temporary() {
    let server = SmtpTestServer::start();
    let channel = channel_for(&server);

    let cases = [
        Behaviour::RejectData(451, "4.3.0 local error"),
        Behaviour::RejectRecipient(450, "4.2.1 mailbox busy"),
        Behaviour::RejectData(452, "4.3.1 storage"),
    ];
    for (index, behaviour) in cases.into_iter().enumerate() {
        server.set(behaviour.clone());
        let error = channel
            .send(&permit(SendPurpose::Reply, &format!("key-4xx-{index}")))
            .await
            .unwrap_err();

        assert_eq!(
            error.kind(),
            ErrorKind::Unavailable,
            "{behaviour:?}: {error:?}"
        );
        assert_eq!(error.retry(), Retry::Temporary, "{behaviour:?}");
        assert!(error.is_retryable());
    }
}

#[tokio::test]
async fn permanent_reply_is_permanent() {
    let server = SmtpTestServer::start();
    let channel = channel_for(&server);

    server.set(Behaviour::RejectData(554, "5.7.1 message refused"));
    let error = channel
        .send(&permit(SendPurpose::Reply, "key-554"))
        .await
        .unwrap_err();

    assert_eq!(error.kind(), ErrorKind::ContentRejected, "{error:?}");
    assert_eq!(error.retry(), Retry::Permanent);
    assert!(!error.is_retryable());
}

#[tokio::test]
async fn connection_refused_is_retryable() {
    // Bind and drop a listener to find a port with nothing behind it.
    let address = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let channel = builder_for(address).build().unwrap();

    let error = channel
        .send(&permit(SendPurpose::Reply, "key-refused"))
        .await
        .unwrap_err();

    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error:?}");
    assert!(error.is_retryable());
}

#[tokio::test]
async fn silent_server_times_out() {
    // A listener that accepts and never sends the greeting.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let holder = std::thread::spawn(move || {
        let accepted = listener.accept();
        std::thread::sleep(Duration::from_secs(2));
        drop(accepted);
    });
    let channel = builder_for(address)
        .with_timeout(Duration::from_millis(300))
        .build()
        .unwrap();

    let error = channel
        .send(&permit(SendPurpose::Reply, "key-timeout"))
        .await
        .unwrap_err();

    assert_eq!(error.kind(), ErrorKind::Timeout, "{error:?}");
    assert!(error.is_retryable());
    let _ = holder.join();
}

#[tokio::test]
async fn sms_recipient_is_invalid_input() {
    let server = SmtpTestServer::start();
    let channel = channel_for(&server);
    let org = fakes::org();
    let prospect = fakes::prospect(org);
    let conversation = fakes::conversation(&prospect, None);
    let message = fakes::outbound(&conversation, time(10));
    let mut entry = fakes::outbox_entry(
        &message,
        ContactPoint::Phone(prospect.phone.clone().unwrap()),
    );
    entry.purpose = SendPurpose::Help;
    let permit = Gate::default()
        .check(&prospect, entry, false, time(10))
        .unwrap();

    let error = channel.send(&permit).await.unwrap_err();

    assert_eq!(error.kind(), ErrorKind::InvalidInput);
    assert!(server.received().is_empty());
}

#[tokio::test]
async fn secrets_never_shown() {
    let server = SmtpTestServer::start_with(ServerOptions {
        mechanisms: vec![AuthMechanism::Plain],
        credentials: Some(("mailer".into(), "something-else".into())),
        ..ServerOptions::default()
    });
    let channel = builder_for(server.address)
        .with_credentials("mailer", Secret::new(PASSWORD))
        .build()
        .unwrap();
    let secrets = [PASSWORD, UNSUBSCRIBE_KEY, INBOUND_SECRET];
    let logs = CapturedLogs::new();

    let errors = logs
        .capture(async {
            let mut errors = Vec::new();
            errors.extend(
                channel
                    .send(&permit(SendPurpose::Reply, "key-secret-1"))
                    .await
                    .err(),
            );
            let refused = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap();
            let other = builder_for(refused)
                .with_credentials("mailer", Secret::new(PASSWORD))
                .build()
                .unwrap();
            errors.extend(
                other
                    .send(&permit(SendPurpose::Reply, "key-secret-2"))
                    .await
                    .err(),
            );
            errors
        })
        .await;

    assert_eq!(errors.len(), 2);
    let mut shown = vec![format!("{channel:?}"), format!("{channel}")];
    for error in &errors {
        shown.push(error.to_string());
        shown.push(format!("{error:?}"));
    }
    shown.extend(logs.records().into_iter().map(|record| record.text));
    for text in &shown {
        for secret in secrets {
            assert!(!text.contains(secret), "a secret shows in {text}");
        }
    }
}

#[tokio::test]
async fn starttls_sends_over_tls() {
    let (config, certificate) = self_signed_tls();
    let server = SmtpTestServer::start_with(ServerOptions {
        mechanisms: vec![AuthMechanism::Plain],
        credentials: Some(("mailer".into(), PASSWORD.into())),
        tls: ServerTls::StartTls(config),
    });
    let channel = builder_for(server.address)
        .with_security(SmtpSecurity::StartTls)
        .with_root_certificate_pem(certificate)
        .with_credentials("mailer", Secret::new(PASSWORD))
        .build()
        .unwrap();

    channel
        .send(&permit(SendPurpose::Reply, "key-starttls"))
        .await
        .unwrap();

    assert_eq!(
        server.auth(),
        vec![("PLAIN", "mailer".to_owned(), PASSWORD.to_owned())]
    );
    assert_eq!(server.received().len(), 1);
}

#[tokio::test]
async fn implicit_tls_sends_over_tls() {
    let (config, certificate) = self_signed_tls();
    let server = SmtpTestServer::start_with(ServerOptions {
        tls: ServerTls::Implicit(config),
        ..ServerOptions::default()
    });
    let channel = builder_for(server.address)
        .with_security(SmtpSecurity::ImplicitTls)
        .with_root_certificate_pem(certificate)
        .build()
        .unwrap();

    channel
        .send(&permit(SendPurpose::Reply, "key-implicit-tls"))
        .await
        .unwrap();

    assert_eq!(server.received().len(), 1);
}

#[tokio::test]
async fn untrusted_certificate_sends_nothing() {
    let (config, _certificate) = self_signed_tls();
    let server = SmtpTestServer::start_with(ServerOptions {
        tls: ServerTls::Implicit(config),
        ..ServerOptions::default()
    });
    let channel = builder_for(server.address)
        .with_security(SmtpSecurity::ImplicitTls)
        .build()
        .unwrap();

    let error = channel
        .send(&permit(SendPurpose::Reply, "key-untrusted"))
        .await
        .unwrap_err();

    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error:?}");
    assert!(server.received().is_empty());
}

#[tokio::test]
async fn starttls_missing_sends_no_credentials() {
    let server = SmtpTestServer::start_with(ServerOptions {
        mechanisms: vec![AuthMechanism::Plain],
        credentials: Some(("mailer".into(), PASSWORD.into())),
        ..ServerOptions::default()
    });
    let channel = builder_for(server.address)
        .with_security(SmtpSecurity::StartTls)
        .with_credentials("mailer", Secret::new(PASSWORD))
        .build()
        .unwrap();

    let error = channel
        .send(&permit(SendPurpose::Reply, "key-downgrade"))
        .await
        .unwrap_err();

    assert_eq!(error.retry(), Retry::Permanent, "{error:?}");
    assert!(
        server.auth().is_empty(),
        "the password must not be sent in clear"
    );
    assert!(server.received().is_empty());
}

// ---------------------------------------------------------------------------
// Inbound.

fn signed(body: &[u8]) -> WebhookRequest {
    let mut request = unsigned(body);
    request.headers.insert(
        SIGNATURE_HEADER.to_owned(),
        sign_inbound(&Secret::new(INBOUND_SECRET), body),
    );
    request
}

fn unsigned(body: &[u8]) -> WebhookRequest {
    WebhookRequest {
        method: "POST".into(),
        url: "https://kalify.example/inbound/email".into(),
        headers: [("content-type".to_owned(), "message/rfc822".to_owned())].into(),
        body: body.to_vec(),
    }
}

const REPLY: &str = "From: Camille Martin <camille@prospect.example>\r\n\
To: Kalify Sales <sales@kalify.example>\r\n\
Subject: Re: Votre projet\r\n\
Message-ID: <reply-42@prospect.example>\r\n\
In-Reply-To: <root@kalify.example>\r\n\
Date: Mon, 05 Jan 2026 09:30:00 +0100\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
Notre budget est d'environ 30 k=E2=82=AC.\r\n\
\r\n\
Le lun. 5 janv. 2026 =C3=A0 08:00, Kalify Sales <sales@kalify.example> a =C3=A9crit :\r\n\
> Quel est votre budget ?\r\n";

#[test]
fn reply_becomes_message_event() {
    let channel = builder_for("127.0.0.1:2525".parse().unwrap())
        .build()
        .unwrap();

    let events = channel.parse_webhook(&signed(REPLY.as_bytes())).unwrap();

    let [InboundEvent::Message(message)] = events.as_slice() else {
        panic!("{events:?}")
    };
    assert_eq!(message.channel, ChannelKind::Email);
    assert_eq!(message.provider, "smtp");
    assert_eq!(message.provider_message_id, "reply-42@prospect.example");
    assert_eq!(
        message.from,
        ContactPoint::Email(EmailAddress::parse("camille@prospect.example").unwrap())
    );
    assert_eq!(message.text, "Notre budget est d'environ 30 k€.");
    assert_eq!(message.at, time(30) - chrono::Duration::hours(1));
}

#[test]
fn unsigned_request_is_unauthenticated() {
    let channel = builder_for("127.0.0.1:2525".parse().unwrap())
        .build()
        .unwrap();

    let error = channel
        .parse_webhook(&unsigned(REPLY.as_bytes()))
        .unwrap_err();

    assert_eq!(error.kind(), ErrorKind::Unauthenticated);
}

#[test]
fn html_only_reply_is_read() {
    let channel = builder_for("127.0.0.1:2525".parse().unwrap())
        .build()
        .unwrap();
    let raw = "From: camille@prospect.example\r\nSubject: Re: Votre projet\r\nMessage-ID: <html-1@prospect.example>\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><head><style>div{}</style></head><body><div dir=\"ltr\">Oui, d&eacute;cision en <b>mars</b>.</div><div><br></div><div class=\"gmail_quote\"><div class=\"gmail_attr\">Le lun. 5 janv. 2026, Kalify &lt;sales@kalify.example&gt; a &eacute;crit&nbsp;:<br></div><blockquote class=\"gmail_quote\">Quand d&eacute;cidez-vous ?</blockquote></div><script>track()</script></body></html>";

    let events = channel.parse_webhook(&signed(raw.as_bytes())).unwrap();

    let [InboundEvent::Message(message)] = events.as_slice() else {
        panic!("{events:?}")
    };
    assert_eq!(message.text, "Oui, décision en mars.");
}

#[test]
fn auto_replies_are_not_messages() {
    let channel = builder_for("127.0.0.1:2525".parse().unwrap())
        .build()
        .unwrap();
    let cases = [
        (
            "Auto-Submitted: auto-replied\r\nSubject: Re: Votre projet\r\n",
            "auto_submitted",
        ),
        (
            "X-Autoreply: yes\r\nSubject: Re: Votre projet\r\n",
            "auto_reply_header",
        ),
        ("Precedence: bulk\r\nSubject: News\r\n", "precedence"),
        (
            "Subject: =?utf-8?Q?R=C3=A9ponse_automatique_:_Votre_projet?=\r\n",
            "out_of_office_subject",
        ),
        (
            "Subject: Out of Office: back on Monday\r\n",
            "out_of_office_subject",
        ),
        ("Subject: Absence du bureau\r\n", "out_of_office_subject"),
        (
            "Subject: Automatic reply: Votre projet\r\n",
            "out_of_office_subject",
        ),
    ];
    for (index, (headers, reason)) in cases.into_iter().enumerate() {
        let raw = format!(
            "From: camille@prospect.example\r\nMessage-ID: <auto-{index}@prospect.example>\r\n{headers}Content-Type: text/plain\r\n\r\nJe suis absente jusqu'au 12.\r\n"
        );

        let events = channel.parse_webhook(&signed(raw.as_bytes())).unwrap();

        let [InboundEvent::AutoReply(notice)] = events.as_slice() else {
            panic!("{headers}: {events:?}")
        };
        assert_eq!(notice.reason, reason, "{headers}");
        assert_eq!(
            notice.from,
            ContactPoint::Email(EmailAddress::parse("camille@prospect.example").unwrap())
        );
        assert_eq!(
            notice.provider_message_id,
            format!("auto-{index}@prospect.example")
        );
    }

    // Auto-Submitted: no is a person's message.
    let raw = "From: camille@prospect.example\r\nAuto-Submitted: no\r\nSubject: Re: Votre projet\r\n\r\nOui.\r\n";
    let events = channel.parse_webhook(&signed(raw.as_bytes())).unwrap();
    assert!(
        matches!(events.as_slice(), [InboundEvent::Message(_)]),
        "{events:?}"
    );
}

const BOUNCE: &str = "From: Mail Delivery System <MAILER-DAEMON@mx.kalify.example>\r\n\
To: sales@kalify.example\r\n\
Subject: Undelivered Mail Returned to Sender\r\n\
Message-ID: <bounce-7@mx.kalify.example>\r\n\
Auto-Submitted: auto-replied\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=\"B0\"\r\n\
\r\n\
--B0\r\n\
Content-Type: text/plain; charset=us-ascii\r\n\
\r\n\
I'm sorry to have to inform you that your message could not be delivered.\r\n\
--B0\r\n\
Content-Type: message/delivery-status\r\n\
\r\n\
Reporting-MTA: dns; mx.kalify.example\r\n\
\r\n\
Final-Recipient: rfc822; gone@prospect.example\r\n\
Original-Recipient: rfc822;gone@prospect.example\r\n\
Action: failed\r\n\
Status: 5.1.1\r\n\
Diagnostic-Code: smtp; 550 5.1.1 <gone@prospect.example>: Recipient address\r\n\
    rejected: User unknown\r\n\
\r\n\
Final-Recipient: rfc822; slow@prospect.example\r\n\
Action: delayed\r\n\
Status: 4.4.7\r\n\
\r\n\
Final-Recipient: rfc822; fine@prospect.example\r\n\
Action: delivered\r\n\
Status: 2.0.0\r\n\
--B0\r\n\
Content-Type: text/rfc822-headers\r\n\
\r\n\
From: sales@kalify.example\r\n\
Message-ID: <0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b@kalify.example>\r\n\
Subject: Votre projet\r\n\
--B0--\r\n";

#[test]
fn bounce_becomes_bounce_events() {
    let channel = builder_for("127.0.0.1:2525".parse().unwrap())
        .build()
        .unwrap();

    let events = channel.parse_webhook(&signed(BOUNCE.as_bytes())).unwrap();

    let notices: Vec<_> = events
        .iter()
        .map(|event| match event {
            InboundEvent::Bounce(notice) => notice,
            other => panic!("expected only bounces, got {other:?}"),
        })
        .collect();
    assert_eq!(notices.len(), 2, "the delivered recipient is no failure");
    let failed = notices[0];
    assert_eq!(
        failed.recipient,
        Some(ContactPoint::Email(
            EmailAddress::parse("gone@prospect.example").unwrap()
        ))
    );
    assert!(failed.permanent);
    assert_eq!(failed.status_code.as_deref(), Some("5.1.1"));
    assert_eq!(failed.reason, "delivery_failed");
    assert_eq!(
        failed.original_message_id.as_deref(),
        Some("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b@kalify.example")
    );
    assert_eq!(failed.provider_message_id, "bounce-7@mx.kalify.example");
    let delayed = notices[1];
    assert!(!delayed.permanent);
    assert_eq!(delayed.status_code.as_deref(), Some("4.4.7"));
    assert_eq!(delayed.reason, "delivery_delayed");

    let parsed = parse_email(BOUNCE.as_bytes()).unwrap();
    assert!(
        matches!(parsed.kind, EmailKind::Bounce(_)),
        "{:?}",
        parsed.kind
    );
}

#[test]
fn bounce_without_report_is_not_permanent() {
    let channel = builder_for("127.0.0.1:2525".parse().unwrap())
        .build()
        .unwrap();
    let raw = "From: MAILER-DAEMON@mx.prospect.example\r\nSubject: Mail delivery failed: returning message to sender\r\nMessage-ID: <b-2@mx.prospect.example>\r\n\r\nThis message was created automatically by mail delivery software.\r\n";

    let events = channel.parse_webhook(&signed(raw.as_bytes())).unwrap();

    let [InboundEvent::Bounce(notice)] = events.as_slice() else {
        panic!("{events:?}")
    };
    assert!(!notice.permanent);
    assert_eq!(notice.recipient, None);
    assert_eq!(notice.reason, "delivery_failed_unstructured");
}

#[test]
fn mailto_unsubscribe_is_opt_out() {
    let channel = builder_for("127.0.0.1:2525".parse().unwrap())
        .build()
        .unwrap();
    let recipient = EmailAddress::parse("Camille.Martin@Prospect.example").unwrap();
    let token = kalify_channels::email::unsubscribe_token(
        &Secret::new(UNSUBSCRIBE_KEY),
        fakes::org(),
        &recipient,
    );
    let raw = format!(
        "From: other-address@prospect.example\r\nTo: unsubscribe@kalify.example\r\nSubject: unsubscribe-{token}\r\nMessage-ID: <u-1@prospect.example>\r\n\r\n"
    );

    let events = channel.parse_webhook(&signed(raw.as_bytes())).unwrap();

    let [InboundEvent::OptOut(notice)] = events.as_slice() else {
        panic!("{events:?}")
    };
    assert_eq!(notice.contact, ContactPoint::Email(recipient));
    assert_eq!(notice.reason, "list_unsubscribe_mailto");

    // A forged token is read as an ordinary message.
    let forged = "From: camille@prospect.example\r\nSubject: unsubscribe-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n\r\nunsubscribe\r\n";
    let events = channel.parse_webhook(&signed(forged.as_bytes())).unwrap();
    assert!(
        matches!(events.as_slice(), [InboundEvent::Message(_)]),
        "{events:?}"
    );
}

#[test]
fn oversized_and_garbage_rejected() {
    let channel = builder_for("127.0.0.1:2525".parse().unwrap())
        .with_max_inbound_bytes(1024)
        .build()
        .unwrap();

    let big = format!(
        "From: a@prospect.example\r\nSubject: big\r\n\r\n{}",
        "x".repeat(2048)
    );
    let error = channel.parse_webhook(&signed(big.as_bytes())).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidInput);
    assert!(error.message().contains("too large"), "{error}");

    for garbage in [
        &b""[..],
        b"\xff\xfe\xfd",
        b"\r\n\r\n",
        b"Subject: no sender\r\n\r\nhello",
    ] {
        let error = channel.parse_webhook(&signed(garbage)).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidInput, "{garbage:?}");
    }
}

// ---------------------------------------------------------------------------
// The shared channel conformance suite.
//
// The suite's receipt cases expect the provider to choose the message id;
// an SMTP server does not, so `send_success_returns_receipt`,
// `send_repeated_key_returns_first_receipt` and `send_failure_is_not_remembered`
// are replaced by the tests above, and SMTP has no rate-limit reply with a
// delay, so `send_rate_limited_is_retryable` does not apply.

struct SmtpHarness {
    server: SmtpTestServer,
    channel: SmtpEmailChannel,
    recipient: EmailAddress,
}

impl SmtpHarness {
    fn start() -> SmtpHarness {
        let server = SmtpTestServer::start_with(ServerOptions {
            mechanisms: vec![AuthMechanism::Plain],
            credentials: Some(("mailer".into(), PASSWORD.into())),
            ..ServerOptions::default()
        });
        let channel = builder_for(server.address)
            .with_credentials("mailer", Secret::new(PASSWORD))
            .build()
            .unwrap();
        SmtpHarness {
            server,
            channel,
            recipient: fakes::email(fakes::next_number()),
        }
    }
}

#[async_trait]
impl ChannelHarness for SmtpHarness {
    fn channel(&self) -> &dyn Channel {
        &self.channel
    }

    fn recipient(&self) -> ContactPoint {
        ContactPoint::Email(self.recipient.clone())
    }

    fn secrets(&self) -> Vec<String> {
        vec![
            PASSWORD.to_owned(),
            UNSUBSCRIBE_KEY.to_owned(),
            INBOUND_SECRET.to_owned(),
        ]
    }

    fn signature_header(&self) -> String {
        SIGNATURE_HEADER.to_owned()
    }

    /// Accepts every message. The SMTP server names no message id, so the
    /// channel's own id is used.
    async fn mount_success(&self, _provider_message_id: &str) {
        self.server.set(Behaviour::Accept);
    }

    async fn mount_rate_limited(&self, _retry_after_secs: u64) {
        self.server.set(Behaviour::RejectData(
            451,
            "4.7.1 rate limited, try again later",
        ));
    }

    async fn mount_server_error(&self) {
        self.server.set(Behaviour::RejectData(
            451,
            "4.3.0 local error in processing",
        ));
    }

    async fn mount_invalid_recipient(&self) {
        self.server
            .set(Behaviour::RejectRecipient(550, "5.1.1 mailbox unavailable"));
    }

    async fn mount_opted_out(&self) -> bool {
        false
    }

    async fn reset(&self) {
        self.server.set(Behaviour::Accept);
    }

    fn signed_webhook(&self) -> WebhookRequest {
        signed(REPLY.as_bytes())
    }

    fn unsigned_webhook(&self) -> WebhookRequest {
        unsigned(REPLY.as_bytes())
    }
}

macro_rules! suite_cases {
    ($($case:ident),* $(,)?) => {
        mod suite {
            use super::*;
            $(
                #[tokio::test]
                async fn $case() {
                    let harness = SmtpHarness::start();
                    channel_suite::$case(&harness).await;
                }
            )*
        }
    };
}

suite_cases!(
    send_server_error_is_retryable,
    send_invalid_recipient_is_permanent,
    send_opted_out_is_reported,
    webhook_signed_parses,
    webhook_unsigned_is_rejected,
    webhook_missing_signature_is_rejected,
    webhook_wrong_signature_is_rejected,
    webhook_tampered_body_is_rejected,
    webhook_replay_parses_same_ids,
    secrets_hidden_in_debug_and_errors,
    logs_hide_secrets_and_contact_data,
);
