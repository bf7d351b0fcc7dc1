//! The e-mail notifier: one short plain-text e-mail per notification,
//! over SMTP with the connection settings of the e-mail channel.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use async_trait::async_trait;
use chrono::SecondsFormat;
use kalify_core::contact::EmailAddress;
use kalify_core::ports::{Notification, Notifier, Store};
use kalify_core::{Error, ErrorKind, Result};
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use crate::email::SmtpConfig;
use crate::email::config::Connection;
use crate::email::smtp;

/// The adapter name in errors and logs.
const ADAPTER: &str = "smtp_notify";

/// Sends each notification as a plain-text e-mail over SMTP. Build it with
/// [`EmailNotifier::builder`].
///
/// The e-mail goes to the member of the notification, read with
/// [`Store::get_member`] when a member store is set. It goes to the
/// fallback address when the notification has no member, when no store is
/// set, when the store does not have the member, and when SMTP does not
/// accept the member's address. The subject is
/// [`NotificationKind::summary`](kalify_core::conversation::NotificationKind::summary),
/// and the body is [`Notification::text`] followed by the ids.
///
/// It uses the connection settings of [`SmtpConfig`] (host, port,
/// security, credentials, `From`, timeout, root certificates) and ignores
/// the unsubscribe and inbound settings, which apply to prospects' mail.
///
/// # Errors of `notify`
///
/// | failure | kind | retry |
/// |---|---|---|
/// | 4xx reply | `Unavailable` | temporary |
/// | 530, 534, 535, 538 (authentication) | `Unauthenticated` | permanent |
/// | 550, 551, 553 (mailbox unavailable or not allowed) | `InvalidInput` | permanent |
/// | 552, 554 (message refused) | `ContentRejected` | permanent |
/// | other 5xx reply | `Unexpected` | permanent |
/// | no reply within the timeout | `Timeout` | temporary |
/// | refused or lost connection, TLS failure | `Unavailable` | temporary |
/// | client-side stop, such as STARTTLS not offered | `ConfigInvalid` | permanent |
/// | the member store fails | the store's error | the store's |
///
/// Errors carry the SMTP reply code as context, never the reply text or an
/// address.
pub struct EmailNotifier {
    connection: Connection,
    from: Mailbox,
    fallback: Address,
    members: Option<Arc<dyn Store>>,
    transport: OnceLock<AsyncSmtpTransport<Tokio1Executor>>,
}

impl EmailNotifier {
    /// Starts a builder that connects with `smtp` and writes to `fallback`
    /// when no member address applies.
    pub fn builder(smtp: SmtpConfig, fallback: EmailAddress) -> EmailNotifierBuilder {
        EmailNotifierBuilder::new(smtp, fallback)
    }

    /// Creates the lettre transport on first use. It must run inside a
    /// Tokio runtime, because lettre's connection pool starts a task.
    fn transport(&self) -> Result<&AsyncSmtpTransport<Tokio1Executor>> {
        if let Some(transport) = self.transport.get() {
            return Ok(transport);
        }
        let transport =
            smtp::transport(&self.connection).map_err(|error| error.with_adapter(ADAPTER))?;
        // Two first sends may race, and the loser's transport is dropped unused.
        Ok(self.transport.get_or_init(|| transport))
    }

    /// Returns the recipient of `notification`, and whether it is the member's address.
    ///
    /// # Errors
    /// The member store's error, unless it is `NotFound`.
    async fn recipient(&self, notification: &Notification) -> Result<(Address, bool)> {
        let (Some(store), Some(member_id)) = (&self.members, notification.member) else {
            return Ok((self.fallback.clone(), false));
        };
        let member = match store.get_member(notification.org_id, member_id).await {
            Ok(member) => member,
            Err(error) if error.kind() == ErrorKind::NotFound => {
                tracing::info!(target: "kalify::notify", adapter = ADAPTER, member_id = %member_id, "member not found, so the notification goes to the fallback address");
                return Ok((self.fallback.clone(), false));
            }
            Err(error) => return Err(error.with_context("member_id", member_id)),
        };
        match member.email.as_str().parse::<Address>() {
            Ok(address) => Ok((address, true)),
            Err(_) => {
                tracing::warn!(target: "kalify::notify", adapter = ADAPTER, member_id = %member_id, "the member's e-mail address is not accepted by SMTP, so the notification goes to the fallback address");
                Ok((self.fallback.clone(), false))
            }
        }
    }
}

/// Builds the e-mail of `notification` to `to`.
fn message(from: &Mailbox, to: Address, notification: &Notification) -> Result<Message> {
    let time = |at: kalify_core::Timestamp| at.to_rfc3339_opts(SecondsFormat::Secs, true);
    let mut body = format!("{}\n\n", notification.text());
    body.push_str(&format!("Event: {}\n", notification.kind.as_str()));
    body.push_str(&format!("Prospect: {}\n", notification.prospect_id));
    if let Some(conversation_id) = notification.conversation_id {
        body.push_str(&format!("Conversation: {conversation_id}\n"));
    }
    if let Some(score) = notification.score {
        body.push_str(&format!("Score: {score}\n"));
    }
    if let Some(due_at) = notification.due_at {
        body.push_str(&format!("Due: {}\n", time(due_at)));
    }
    body.push_str(&format!("Org: {}\n", notification.org_id));

    Message::builder()
        .from(from.clone())
        .to(Mailbox::new(None, to))
        .subject(notification.kind.summary())
        .header(ContentType::TEXT_PLAIN)
        .body(body)
        .map_err(|error| {
            Error::unexpected("failed to build the notification e-mail")
                .with_adapter(ADAPTER)
                .with_operation("notify")
                .with_source(error)
        })
}

impl fmt::Debug for EmailNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmailNotifier")
            .field("host", &self.connection.host)
            .field("port", &self.connection.port)
            .field("security", &self.connection.security.as_str())
            .field("authenticated", &self.connection.credentials.is_some())
            .field("members", &self.members.is_some())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Notifier for EmailNotifier {
    /// Sends `notification` once.
    ///
    /// # Errors
    /// As listed on [`EmailNotifier`].
    async fn notify(&self, notification: &Notification) -> Result<()> {
        let kind = notification.kind.as_str();
        let (to, to_member) = self
            .recipient(notification)
            .await
            .map_err(|error| error.with_context("kind", kind))?;
        let message = message(&self.from, to, notification)?;
        let transport = self.transport()?;

        let started = Instant::now();
        let result = transport.send(message).await;
        let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        match result {
            Ok(_) => {
                tracing::debug!(target: "kalify::notify", adapter = ADAPTER, kind, to_member, elapsed_ms, "notification e-mail accepted by the SMTP server");
                Ok(())
            }
            Err(error) => {
                let timed_out = started.elapsed() >= self.connection.timeout;
                let error =
                    crate::email::smtp::map_smtp_error(error, timed_out).with_context("kind", kind);
                tracing::debug!(target: "kalify::notify", adapter = ADAPTER, kind, elapsed_ms, error = %error, "notification e-mail failed");
                Err(error)
            }
        }
    }
}

/// Builds an [`EmailNotifier`].
///
/// ```no_run
/// use std::sync::Arc;
/// use kalify_channels::email::SmtpConfig;
/// use kalify_channels::notify::EmailNotifier;
/// use kalify_core::contact::EmailAddress;
/// use kalify_core::ports::Store;
/// use kalify_core::Secret;
///
/// # fn example(store: Arc<dyn Store>) -> kalify_core::Result<()> {
/// let mut smtp = SmtpConfig::default();
/// smtp.host = "smtp.example.com".into();
/// smtp.username = Some("mailer".into());
/// smtp.password = Some(Secret::new("app-password"));
/// smtp.from_address = "kalify@example.com".into();
/// let notifier = EmailNotifier::builder(smtp, EmailAddress::parse("sales-team@example.com")?)
///     .with_members(store)
///     .build()?;
/// # Ok(()) }
/// ```
pub struct EmailNotifierBuilder {
    smtp: SmtpConfig,
    fallback: EmailAddress,
    members: Option<Arc<dyn Store>>,
}

impl EmailNotifierBuilder {
    /// Creates a builder that connects with `smtp` and writes to `fallback`
    /// when no member address applies.
    pub fn new(smtp: SmtpConfig, fallback: EmailAddress) -> Self {
        EmailNotifierBuilder {
            smtp,
            fallback,
            members: None,
        }
    }

    /// Sends notifications about a member to that member's address, read from `store`.
    pub fn with_members(mut self, store: Arc<dyn Store>) -> Self {
        self.members = Some(store);
        self
    }

    /// Sends in clear, without TLS. [`build`](Self::build) accepts it only
    /// for a loopback host (`localhost`, `127.0.0.0/8`, `::1`), such as a
    /// test server or a relay on the same machine.
    pub fn with_plaintext_dangerous(mut self) -> Self {
        self.smtp.plaintext_dangerous = true;
        self
    }

    /// Checks the settings and creates the notifier. No connection is made:
    /// the first notification connects.
    ///
    /// # Errors
    /// `ConfigInvalid`, naming the setting, when the host or `From` address
    /// is missing or invalid, the port or timeout is zero, or only one of
    /// user name and password is set. Also `ConfigInvalid` when plaintext is
    /// set for a host off the loopback interface, a root certificate is not
    /// PEM, or SMTP does not accept the fallback address.
    pub fn build(self) -> Result<EmailNotifier> {
        let smtp = self.smtp;
        let connection = Connection::check(&smtp, "set SmtpConfig::host")
            .map_err(|error| error.with_adapter(ADAPTER))?;

        let from_address = EmailAddress::parse(&smtp.from_address)
            .ok()
            .and_then(|address| address.as_str().parse::<Address>().ok())
            .ok_or_else(|| {
                config_error("the From address is missing or invalid; set SmtpConfig::from_address")
            })?;
        // Control characters, CR and LF among them, become spaces so that
        // the display name cannot start a new header.
        let from_name = smtp
            .from_name
            .map(|name| {
                let words: Vec<&str> = name
                    .split(|c: char| c.is_whitespace() || c.is_control())
                    .filter(|word| !word.is_empty())
                    .collect();
                words.join(" ")
            })
            .filter(|name| !name.is_empty());
        let fallback = self
            .fallback
            .as_str()
            .parse::<Address>()
            .map_err(|_| config_error("the fallback address is not accepted by SMTP"))?;

        Ok(EmailNotifier {
            connection,
            from: Mailbox::new(from_name, from_address),
            fallback,
            members: self.members,
            transport: OnceLock::new(),
        })
    }
}

impl fmt::Debug for EmailNotifierBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmailNotifierBuilder")
            .field("smtp", &self.smtp)
            .field("members", &self.members.is_some())
            .finish_non_exhaustive()
    }
}

fn config_error(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::ConfigInvalid, message)
        .with_adapter(ADAPTER)
        .with_operation("build")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::email::SmtpSecurity;
    use crate::email::config::Security;
    use kalify_core::Secret;

    fn smtp(host: &str) -> SmtpConfig {
        SmtpConfig {
            host: host.to_owned(),
            from_address: "kalify@example.com".to_owned(),
            ..SmtpConfig::default()
        }
    }

    fn fallback() -> EmailAddress {
        EmailAddress::parse("team@example.com").unwrap()
    }

    #[test]
    fn ports_follow_security() {
        let starttls = EmailNotifier::builder(smtp("smtp.example.com"), fallback())
            .build()
            .unwrap();
        let connection = &starttls.connection;
        assert_eq!(
            (connection.port, connection.security),
            (587, Security::StartTls)
        );
        let mut config = smtp("smtp.example.com");
        config.security = SmtpSecurity::ImplicitTls;
        let implicit = EmailNotifier::builder(config, fallback()).build().unwrap();
        let connection = &implicit.connection;
        assert_eq!(
            (connection.port, connection.security),
            (465, Security::ImplicitTls)
        );
        let plain = EmailNotifier::builder(smtp("[::1]"), fallback())
            .with_plaintext_dangerous()
            .build()
            .unwrap();
        let connection = &plain.connection;
        assert_eq!(
            (
                connection.port,
                connection.security,
                connection.host.as_str()
            ),
            (25, Security::PlaintextDangerous, "::1")
        );
    }

    #[test]
    fn invalid_settings_rejected() {
        let mut no_password = smtp("smtp.example.com");
        no_password.username = Some("mailer".into());
        let mut zero_timeout = smtp("smtp.example.com");
        zero_timeout.timeout = Duration::ZERO;
        let mut bad_pem = smtp("smtp.example.com");
        bad_pem.root_certificates_pem.push(b"not pem".to_vec());
        let mut no_from = smtp("smtp.example.com");
        no_from.from_address = String::new();
        let cases = [
            ("no host", EmailNotifier::builder(smtp(" "), fallback())),
            ("no from", EmailNotifier::builder(no_from, fallback())),
            (
                "plaintext off loopback",
                EmailNotifier::builder(smtp("10.0.0.5"), fallback()).with_plaintext_dangerous(),
            ),
            (
                "one credential",
                EmailNotifier::builder(no_password, fallback()),
            ),
            (
                "zero timeout",
                EmailNotifier::builder(zero_timeout, fallback()),
            ),
            ("bad pem", EmailNotifier::builder(bad_pem, fallback())),
        ];
        for (name, builder) in cases {
            match builder.build() {
                Ok(notifier) => panic!("{name}: built {notifier:?}"),
                Err(error) => assert_eq!(error.kind(), ErrorKind::ConfigInvalid, "{name}: {error}"),
            }
        }
    }

    #[test]
    fn debug_hides_password() {
        let mut config = smtp("smtp.example.com");
        config.username = Some("mailer".into());
        config.password = Some(Secret::new("hunter2-password"));
        let builder = EmailNotifier::builder(config, fallback());
        assert!(!format!("{builder:?}").contains("hunter2"));
        let notifier = builder.build().unwrap();
        assert!(!format!("{notifier:?}").contains("hunter2"));
    }
}
