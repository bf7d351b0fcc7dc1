//! Configuration of the SMTP e-mail channel and its builder.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use kalify_core::contact::EmailAddress;
use kalify_core::ports::{Clock, SystemClock};
use kalify_core::{Error, ErrorKind, Result, Secret};

use crate::email::SmtpEmailChannel;
use crate::email::inbound::DEFAULT_MAX_EMAIL_BYTES;

/// The encryption of the connection to the SMTP server.
///
/// Plaintext is not a variant: it is set only by
/// [`SmtpEmailChannelBuilder::with_plaintext_dangerous`], for a server on
/// the loopback interface.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum SmtpSecurity {
    /// Connect in clear and require STARTTLS before anything else is sent
    /// (RFC 3207), usually on the submission port 587. The default.
    #[default]
    StartTls,
    /// TLS from the first byte (RFC 8314), usually on port 465.
    ImplicitTls,
}

/// The text appended to marketing e-mails under a `-- ` line; `{url}` is
/// replaced by the unsubscribe link. English and French, because the
/// channel does not know the prospect's language.
pub const DEFAULT_UNSUBSCRIBE_FOOTER: &str =
    "To stop receiving these e-mails: {url}\nPour ne plus recevoir ces e-mails : {url}";

/// Settings of [`SmtpEmailChannel`]. Build the channel with
/// [`SmtpEmailChannelBuilder`], which checks them.
///
/// `Debug` shows the secrets as `[redacted]`.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SmtpConfig {
    /// The SMTP server's host name; TLS certificates are checked against it.
    pub host: String,
    /// The port; `None` means 587 for STARTTLS, 465 for implicit TLS and 25 in plaintext.
    pub port: Option<u16>,
    /// The encryption of the connection.
    pub security: SmtpSecurity,
    /// The user name for SMTP AUTH (PLAIN or LOGIN), if the server requires it.
    pub username: Option<String>,
    /// The password for SMTP AUTH.
    pub password: Option<Secret>,
    /// The `From` address. Message-IDs use its domain.
    pub from_address: String,
    /// The display name used when an outbox entry has no sender name.
    pub from_name: Option<String>,
    /// The time limit of each SMTP command, and of connecting.
    pub timeout: Duration,
    /// The HMAC key of unsubscribe tokens: at least 32 bytes, and kept for
    /// as long as sent messages can be read, because changing it breaks
    /// their links.
    pub unsubscribe_key: Option<Secret>,
    /// The `https` URL of the one-click unsubscribe endpoint; the channel
    /// appends a `token` query parameter.
    pub unsubscribe_url: Option<String>,
    /// The mailbox of `mailto` unsubscribe requests, whose subject is `unsubscribe-TOKEN`.
    pub unsubscribe_mailto: Option<String>,
    /// The visible unsubscribe text of marketing e-mails; it must contain `{url}`.
    pub unsubscribe_footer: String,
    /// Extra trusted root certificates in PEM, for a relay with a private CA.
    pub root_certificates_pem: Vec<Vec<u8>>,
    /// When set, `parse_webhook` requires the header
    /// `x-kalify-signature: sha256=<hex HMAC-SHA256 of the body>`.
    pub inbound_secret: Option<Secret>,
    /// The largest inbound message `parse_webhook` reads, in bytes.
    pub max_inbound_bytes: usize,
    pub(crate) plaintext_dangerous: bool,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            host: String::new(),
            port: None,
            security: SmtpSecurity::StartTls,
            username: None,
            password: None,
            from_address: String::new(),
            from_name: None,
            timeout: Duration::from_secs(30),
            unsubscribe_key: None,
            unsubscribe_url: None,
            unsubscribe_mailto: None,
            unsubscribe_footer: DEFAULT_UNSUBSCRIBE_FOOTER.to_owned(),
            root_certificates_pem: Vec::new(),
            inbound_secret: None,
            max_inbound_bytes: DEFAULT_MAX_EMAIL_BYTES,
            plaintext_dangerous: false,
        }
    }
}

/// Builds a [`SmtpEmailChannel`].
///
/// ```no_run
/// use kalify_channels::SmtpEmailChannelBuilder;
/// use kalify_channels::email::SmtpSecurity;
/// use kalify_core::Secret;
///
/// # fn example() -> kalify_core::Result<()> {
/// let channel = SmtpEmailChannelBuilder::new()
///     .with_host("smtp.example.com")
///     .with_security(SmtpSecurity::StartTls)
///     .with_credentials("mailer", Secret::new("app-password"))
///     .with_from("sales@example.com", "Example Sales")
///     .with_unsubscribe(
///         Secret::new("a random key of at least thirty-two bytes"),
///         "https://example.com/unsubscribe",
///         "unsubscribe@example.com",
///     )
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default)]
pub struct SmtpEmailChannelBuilder {
    config: SmtpConfig,
    clock: Option<Arc<dyn Clock>>,
}

impl SmtpEmailChannelBuilder {
    /// Creates a builder with the defaults of [`SmtpConfig`].
    pub fn new() -> Self {
        SmtpEmailChannelBuilder::default()
    }

    /// Creates a builder from a whole configuration.
    pub fn from_config(config: SmtpConfig) -> Self {
        SmtpEmailChannelBuilder {
            config,
            clock: None,
        }
    }

    /// Reads the configuration from environment variables:
    ///
    /// | variable | sets |
    /// |---|---|
    /// | `KALIFY_SMTP_HOST` | the host |
    /// | `KALIFY_SMTP_PORT` | the port |
    /// | `KALIFY_SMTP_SECURITY` | `starttls` (default) or `tls` |
    /// | `KALIFY_SMTP_PLAINTEXT_DANGEROUS` | `true` to send without TLS, as [`with_plaintext_dangerous`](Self::with_plaintext_dangerous) does; [`build`](Self::build) accepts it only for a loopback host |
    /// | `KALIFY_SMTP_CA_FILE` | the path of a PEM file whose certificates are trusted as extra roots, as [`with_root_certificate_pem`](Self::with_root_certificate_pem) does |
    /// | `KALIFY_SMTP_USERNAME`, `KALIFY_SMTP_PASSWORD` | the AUTH credentials |
    /// | `KALIFY_SMTP_FROM`, `KALIFY_SMTP_FROM_NAME` | the `From` address and display name |
    /// | `KALIFY_SMTP_TIMEOUT_SECS` | the command time limit in seconds |
    /// | `KALIFY_UNSUBSCRIBE_KEY`, `KALIFY_UNSUBSCRIBE_URL`, `KALIFY_UNSUBSCRIBE_MAILTO` | the unsubscribe key, URL and mailbox |
    ///
    /// Unset and blank variables keep the defaults of [`SmtpConfig`].
    ///
    /// # Errors
    /// `ConfigInvalid` when a number, the security mode or the plaintext
    /// flag cannot be read, when `KALIFY_SMTP_PLAINTEXT_DANGEROUS=true` is
    /// set together with `KALIFY_SMTP_SECURITY`, or when the CA file cannot
    /// be read or contains no PEM certificate.
    pub fn from_env() -> Result<Self> {
        SmtpEmailChannelBuilder::from_variables(|name| std::env::var(name).ok())
    }

    /// Reads the configuration as [`from_env`](Self::from_env) does, from
    /// the variables that `lookup` returns.
    fn from_variables(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let var = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());
        let mut config = SmtpConfig::default();
        if let Some(host) = var("KALIFY_SMTP_HOST") {
            config.host = host;
        }
        if let Some(port) = var("KALIFY_SMTP_PORT") {
            config.port = Some(port.trim().parse().map_err(|_| {
                config_error(format!(
                    "invalid KALIFY_SMTP_PORT {port:?}: expected a port number such as 587"
                ))
            })?);
        }
        let security = var("KALIFY_SMTP_SECURITY");
        if let Some(security) = &security {
            config.security = match security.trim().to_ascii_lowercase().as_str() {
                "starttls" => SmtpSecurity::StartTls,
                "tls" | "implicit" | "implicit_tls" | "smtps" => SmtpSecurity::ImplicitTls,
                _ => {
                    return Err(config_error(format!(
                        "invalid KALIFY_SMTP_SECURITY {security:?}: expected starttls or tls; for plaintext to a loopback host, set KALIFY_SMTP_PLAINTEXT_DANGEROUS=true instead"
                    )));
                }
            };
        }
        if let Some(flag) = var("KALIFY_SMTP_PLAINTEXT_DANGEROUS") {
            config.plaintext_dangerous = parse_flag("KALIFY_SMTP_PLAINTEXT_DANGEROUS", &flag)?;
        }
        if let (true, Some(security)) = (config.plaintext_dangerous, &security) {
            return Err(config_error(format!(
                "KALIFY_SMTP_PLAINTEXT_DANGEROUS=true conflicts with KALIFY_SMTP_SECURITY={security:?}: unset one of them"
            )));
        }
        if let Some(path) = var("KALIFY_SMTP_CA_FILE") {
            config
                .root_certificates_pem
                .push(read_ca_file(path.trim())?);
        }
        config.username = var("KALIFY_SMTP_USERNAME");
        config.password = var("KALIFY_SMTP_PASSWORD").map(Secret::new);
        if let Some(from) = var("KALIFY_SMTP_FROM") {
            config.from_address = from;
        }
        config.from_name = var("KALIFY_SMTP_FROM_NAME");
        if let Some(seconds) = var("KALIFY_SMTP_TIMEOUT_SECS") {
            let seconds: u64 = seconds.trim().parse().map_err(|_| {
                config_error(format!("invalid KALIFY_SMTP_TIMEOUT_SECS {seconds:?}: expected whole seconds such as 30"))
            })?;
            config.timeout = Duration::from_secs(seconds);
        }
        config.unsubscribe_key = var("KALIFY_UNSUBSCRIBE_KEY").map(Secret::new);
        config.unsubscribe_url = var("KALIFY_UNSUBSCRIBE_URL");
        config.unsubscribe_mailto = var("KALIFY_UNSUBSCRIBE_MAILTO");
        Ok(SmtpEmailChannelBuilder::from_config(config))
    }

    /// Sets the SMTP server's host name.
    pub fn with_host(mut self, host: impl Into<String>) -> Self {
        self.config.host = host.into();
        self
    }

    /// Sets the port, instead of the default of the security mode.
    pub fn with_port(mut self, port: u16) -> Self {
        self.config.port = Some(port);
        self
    }

    /// Sets the encryption of the connection, and turns plaintext off.
    pub fn with_security(mut self, security: SmtpSecurity) -> Self {
        self.config.security = security;
        self.config.plaintext_dangerous = false;
        self
    }

    /// Sends in clear, without TLS. [`build`](Self::build) accepts it only
    /// for a loopback host (`localhost`, `127.0.0.0/8`, `::1`), such as a
    /// test server or a relay on the same machine.
    pub fn with_plaintext_dangerous(mut self) -> Self {
        self.config.plaintext_dangerous = true;
        self
    }

    /// Sets the SMTP AUTH user name and password.
    pub fn with_credentials(mut self, username: impl Into<String>, password: Secret) -> Self {
        self.config.username = Some(username.into());
        self.config.password = Some(password);
        self
    }

    /// Sets the `From` address and the display name used when an outbox
    /// entry has no sender name.
    pub fn with_from(
        mut self,
        address: impl Into<String>,
        display_name: impl Into<String>,
    ) -> Self {
        self.config.from_address = address.into();
        self.config.from_name = Some(display_name.into());
        self
    }

    /// Sets the time limit of connecting and of each SMTP command.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout = timeout;
        self
    }

    /// Sets the unsubscribe key, the `https` one-click URL and the `mailto` mailbox.
    pub fn with_unsubscribe(
        mut self,
        key: Secret,
        url: impl Into<String>,
        mailto: impl Into<String>,
    ) -> Self {
        self.config.unsubscribe_key = Some(key);
        self.config.unsubscribe_url = Some(url.into());
        self.config.unsubscribe_mailto = Some(mailto.into());
        self
    }

    /// Sets the visible unsubscribe text of marketing e-mails; `{url}` is
    /// replaced by the link.
    pub fn with_unsubscribe_footer(mut self, footer: impl Into<String>) -> Self {
        self.config.unsubscribe_footer = footer.into();
        self
    }

    /// Trusts an extra root certificate, in PEM, for a relay with a private CA.
    pub fn with_root_certificate_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.config.root_certificates_pem.push(pem.into());
        self
    }

    /// Requires inbound webhook requests to carry
    /// `x-kalify-signature: sha256=<hex>`, the HMAC-SHA256 of the body
    /// with `secret` (see [`sign_inbound`](crate::email::sign_inbound)).
    pub fn with_inbound_secret(mut self, secret: Secret) -> Self {
        self.config.inbound_secret = Some(secret);
        self
    }

    /// Sets the largest inbound message read, in bytes.
    pub fn with_max_inbound_bytes(mut self, bytes: usize) -> Self {
        self.config.max_inbound_bytes = bytes;
        self
    }

    /// Sets the clock that dates inbound messages without a usable `Date`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Checks the configuration and creates the channel. No connection is
    /// made: the first send connects.
    ///
    /// # Errors
    /// `ConfigInvalid`, naming the setting, when the host or `From` address
    /// is missing or invalid, only one of user name and password is set,
    /// the unsubscribe key is shorter than 32 bytes, the unsubscribe URL is
    /// not `https`, plaintext is asked for a host off the loopback
    /// interface, or a root certificate cannot be read.
    pub fn build(self) -> Result<SmtpEmailChannel> {
        let settings = Settings::check(self.config)?;
        let clock = self.clock.unwrap_or_else(|| Arc::new(SystemClock));
        Ok(SmtpEmailChannel::from_settings(settings, clock))
    }
}

/// A checked configuration.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) connection: Connection,
    pub(crate) from: EmailAddress,
    pub(crate) from_name: Option<String>,
    pub(crate) unsubscribe_key: Secret,
    pub(crate) unsubscribe_url: String,
    pub(crate) unsubscribe_mailto: EmailAddress,
    pub(crate) unsubscribe_footer: String,
    pub(crate) inbound_secret: Option<Secret>,
    pub(crate) max_inbound_bytes: usize,
}

/// The encryption actually used, plaintext included.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Security {
    StartTls,
    ImplicitTls,
    PlaintextDangerous,
}

impl Security {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Security::StartTls => "starttls",
            Security::ImplicitTls => "tls",
            Security::PlaintextDangerous => "plaintext",
        }
    }
}

/// The shortest unsubscribe key accepted, in bytes: the output size of SHA-256.
const MIN_KEY_BYTES: usize = 32;

/// The checked settings of the connection to an SMTP server, shared by the
/// e-mail channel and the e-mail notifier. `Debug` shows the password as
/// `[redacted]`.
#[derive(Clone, Debug)]
pub(crate) struct Connection {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) security: Security,
    pub(crate) credentials: Option<(String, Secret)>,
    pub(crate) timeout: Duration,
    pub(crate) root_certificates_pem: Vec<Vec<u8>>,
}

impl Connection {
    /// Checks the host, encryption, port, credentials, timeout and root
    /// certificates of `config`. `host_help` is the hint, in the error for a missing host, of where to set it.
    ///
    /// # Errors
    /// `ConfigInvalid`, naming the setting.
    pub(crate) fn check(config: &SmtpConfig, host_help: &str) -> Result<Connection> {
        let host = config
            .host
            .trim()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        if host.is_empty() {
            return Err(config_error(format!(
                "the SMTP host is missing; {host_help}"
            )));
        }
        if host
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '/')
        {
            return Err(config_error(format!(
                "invalid SMTP host {host:?}: expected a host name or IP address"
            )));
        }

        let security = match (config.plaintext_dangerous, config.security) {
            (true, _) => {
                if !is_loopback(&host) {
                    return Err(config_error(format!(
                        "plaintext SMTP is allowed only to a loopback host, not {host:?}; use StartTls or ImplicitTls"
                    )));
                }
                Security::PlaintextDangerous
            }
            (false, SmtpSecurity::StartTls) => Security::StartTls,
            (false, SmtpSecurity::ImplicitTls) => Security::ImplicitTls,
        };
        let port = config.port.unwrap_or(match security {
            Security::StartTls => 587,
            Security::ImplicitTls => 465,
            Security::PlaintextDangerous => 25,
        });
        if port == 0 {
            return Err(config_error("invalid SMTP port 0"));
        }

        let credentials = match (&config.username, &config.password) {
            (Some(username), Some(password)) if !username.is_empty() => {
                Some((username.clone(), password.clone()))
            }
            (None, None) => None,
            _ => {
                return Err(config_error(
                    "SMTP credentials need both a user name and a password; set both or neither",
                ));
            }
        };
        if config.timeout.is_zero() {
            return Err(config_error("the SMTP timeout must be longer than zero"));
        }
        for pem in &config.root_certificates_pem {
            check_root_certificate(pem)?;
        }

        Ok(Connection {
            host,
            port,
            security,
            credentials,
            timeout: config.timeout,
            root_certificates_pem: config.root_certificates_pem.clone(),
        })
    }
}

impl Settings {
    fn check(config: SmtpConfig) -> Result<Settings> {
        let connection = Connection::check(&config, "set it with with_host or KALIFY_SMTP_HOST")?;

        let from = EmailAddress::parse(&config.from_address).map_err(|error| {
            config_error(
                "the From address is missing or invalid; set it with with_from or KALIFY_SMTP_FROM",
            )
            .with_source(error)
        })?;
        if from.as_str().len() > 254 || from.as_str().parse::<lettre::Address>().is_err() {
            return Err(config_error(format!(
                "invalid From address {:?} for SMTP",
                from.as_str()
            )));
        }
        let from_name = config
            .from_name
            .map(|name| super::smtp::header_text(&name, 78))
            .filter(|n| !n.is_empty());

        let unsubscribe_key = config.unsubscribe_key.ok_or_else(|| {
            config_error("the unsubscribe key is missing; set it with with_unsubscribe or KALIFY_UNSUBSCRIBE_KEY")
        })?;
        if unsubscribe_key.expose().len() < MIN_KEY_BYTES {
            return Err(config_error(format!(
                "the unsubscribe key is too short: it needs at least {MIN_KEY_BYTES} bytes of random data"
            )));
        }
        let unsubscribe_url = config
            .unsubscribe_url
            .map(|url| url.trim().to_owned())
            .unwrap_or_default();
        if !unsubscribe_url.starts_with("https://")
            || unsubscribe_url.len() <= "https://".len()
            || unsubscribe_url
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"' | '#'))
        {
            return Err(config_error(format!(
                "invalid unsubscribe URL {unsubscribe_url:?}: expected an https URL without a fragment, such as https://example.com/unsubscribe (RFC 8058 requires https)"
            )));
        }
        let unsubscribe_mailto = config
            .unsubscribe_mailto
            .as_deref()
            .map(EmailAddress::parse)
            .transpose()
            .map_err(|error| config_error("invalid unsubscribe mailbox").with_source(error))?
            .ok_or_else(|| {
                config_error("the unsubscribe mailbox is missing; set it with with_unsubscribe")
            })?;
        if !config.unsubscribe_footer.contains("{url}") {
            return Err(config_error(
                "the unsubscribe footer must contain {url}, the place of the link",
            ));
        }

        if config.max_inbound_bytes == 0 {
            return Err(config_error(
                "the inbound size limit must be larger than zero",
            ));
        }

        Ok(Settings {
            connection,
            from,
            from_name,
            unsubscribe_key,
            unsubscribe_url,
            unsubscribe_mailto,
            unsubscribe_footer: config.unsubscribe_footer,
            inbound_secret: config.inbound_secret,
            max_inbound_bytes: config.max_inbound_bytes,
        })
    }
}

/// Checks that `pem` contains at least one certificate that lettre can read.
fn check_root_certificate(pem: &[u8]) -> Result<()> {
    // lettre accepts PEM text without any certificate in it, so the marker
    // is checked first.
    if !pem
        .windows(27)
        .any(|window| window == b"-----BEGIN CERTIFICATE-----")
    {
        return Err(config_error(
            "invalid root certificate: expected a PEM CERTIFICATE block",
        ));
    }
    lettre::transport::smtp::client::Certificate::from_pem(pem).map_err(|error| {
        config_error("invalid root certificate: expected PEM").with_source(error)
    })?;
    Ok(())
}

/// Reads the PEM file named by `KALIFY_SMTP_CA_FILE` and checks that it
/// contains a certificate, so that the error names the file.
fn read_ca_file(path: &str) -> Result<Vec<u8>> {
    let pem = std::fs::read(path).map_err(|error| {
        config_error(format!(
            "failed to read KALIFY_SMTP_CA_FILE {path:?}: {error}"
        ))
        .with_source(error)
    })?;
    check_root_certificate(&pem).map_err(|error| {
        config_error(format!(
            "invalid KALIFY_SMTP_CA_FILE {path:?}: {}",
            error.message()
        ))
    })?;
    Ok(pem)
}

/// Reads a boolean environment variable: `true`, `1`, `yes` or `on`, and
/// `false`, `0`, `no` or `off`, in any case.
fn parse_flag(name: &str, value: &str) -> Result<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(config_error(format!(
            "invalid {name} {value:?}: expected true or false"
        ))),
    }
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn config_error(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::ConfigInvalid, message)
        .with_adapter("smtp")
        .with_operation("build")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> SmtpEmailChannelBuilder {
        SmtpEmailChannelBuilder::new()
            .with_host("smtp.example.com")
            .with_from("sales@example.com", "Sales")
            .with_unsubscribe(
                Secret::new("k".repeat(32)),
                "https://example.com/unsubscribe",
                "unsubscribe@example.com",
            )
    }

    #[test]
    fn valid_config_builds() {
        let channel = valid().build().unwrap();
        assert!(format!("{channel}").contains("smtp.example.com"));
    }

    #[test]
    fn default_ports_follow_security() {
        let starttls = Settings::check(valid().config).unwrap();
        assert_eq!(starttls.connection.port, 587);
        let tls = Settings::check(valid().with_security(SmtpSecurity::ImplicitTls).config).unwrap();
        assert_eq!(tls.connection.port, 465);
    }

    #[test]
    fn plaintext_only_on_loopback() {
        for host in ["127.0.0.1", "localhost", "::1", "[::1]", "127.3.2.1"] {
            let settings =
                Settings::check(valid().with_host(host).with_plaintext_dangerous().config).unwrap();
            assert_eq!(
                settings.connection.security,
                Security::PlaintextDangerous,
                "{host}"
            );
        }
        for host in ["smtp.example.com", "10.0.0.5", "192.168.1.2"] {
            let error = valid()
                .with_host(host)
                .with_plaintext_dangerous()
                .build()
                .unwrap_err();
            assert_eq!(error.kind(), ErrorKind::ConfigInvalid, "{host}");
        }
    }

    #[test]
    fn invalid_settings_rejected() {
        let cases = [
            ("no host", valid().with_host("")),
            ("bad from", valid().with_from("not-an-address", "x")),
            (
                "short key",
                valid().with_unsubscribe(
                    Secret::new("short"),
                    "https://example.com/u",
                    "u@example.com",
                ),
            ),
            (
                "http url",
                valid().with_unsubscribe(
                    Secret::new("k".repeat(32)),
                    "http://example.com/u",
                    "u@example.com",
                ),
            ),
            (
                "bad mailto",
                valid().with_unsubscribe(
                    Secret::new("k".repeat(32)),
                    "https://example.com/u",
                    "nope",
                ),
            ),
            ("footer", valid().with_unsubscribe_footer("no link")),
            ("zero timeout", valid().with_timeout(Duration::ZERO)),
            (
                "bad pem",
                valid().with_root_certificate_pem(b"not pem".to_vec()),
            ),
        ];
        for (name, builder) in cases {
            match builder.build() {
                Ok(channel) => panic!("{name}: built {channel:?}"),
                Err(error) => assert_eq!(error.kind(), ErrorKind::ConfigInvalid, "{name}: {error}"),
            }
        }
        let mut config = valid().config;
        config.username = Some("user".into());
        let error = SmtpEmailChannelBuilder::from_config(config)
            .build()
            .unwrap_err();
        assert!(error.message().contains("both"), "{error}");
    }

    /// Returns the variables of a valid configuration, for `from_variables`.
    fn base_variables() -> Vec<(&'static str, String)> {
        vec![
            ("KALIFY_SMTP_HOST", "smtp.example.com".to_owned()),
            ("KALIFY_SMTP_FROM", "sales@example.com".to_owned()),
            ("KALIFY_UNSUBSCRIBE_KEY", "k".repeat(32)),
            (
                "KALIFY_UNSUBSCRIBE_URL",
                "https://example.com/unsubscribe".to_owned(),
            ),
            (
                "KALIFY_UNSUBSCRIBE_MAILTO",
                "unsubscribe@example.com".to_owned(),
            ),
        ]
    }

    /// Runs `from_variables` on `base_variables` with `overrides` set on top.
    fn from_variables(overrides: &[(&'static str, &str)]) -> Result<SmtpEmailChannelBuilder> {
        let mut variables: std::collections::HashMap<&str, String> =
            base_variables().into_iter().collect();
        for (name, value) in overrides {
            variables.insert(name, (*value).to_owned());
        }
        SmtpEmailChannelBuilder::from_variables(|name| variables.get(name).cloned())
    }

    /// A file under the temporary directory, removed when dropped.
    struct TempFile(std::path::PathBuf);

    impl TempFile {
        fn new(name: &str, contents: &[u8]) -> TempFile {
            let path = std::env::temp_dir()
                .join(format!("kalify-smtp-config-{}-{name}", std::process::id()));
            std::fs::write(&path, contents).unwrap();
            TempFile(path)
        }

        fn path(&self) -> &str {
            self.0.to_str().unwrap()
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn variables_set_every_setting() {
        let builder = from_variables(&[
            ("KALIFY_SMTP_PORT", " 2525 "),
            ("KALIFY_SMTP_SECURITY", "TLS"),
            ("KALIFY_SMTP_USERNAME", "mailer"),
            ("KALIFY_SMTP_PASSWORD", "app-password"),
            ("KALIFY_SMTP_FROM_NAME", "Sales"),
            ("KALIFY_SMTP_TIMEOUT_SECS", "12"),
        ])
        .unwrap();

        let config = &builder.config;
        assert_eq!(config.host, "smtp.example.com");
        assert_eq!(config.port, Some(2525));
        assert_eq!(config.security, SmtpSecurity::ImplicitTls);
        assert!(!config.plaintext_dangerous);
        assert_eq!(config.username.as_deref(), Some("mailer"));
        assert_eq!(
            config.password.as_ref().map(Secret::expose),
            Some("app-password")
        );
        assert_eq!(config.from_address, "sales@example.com");
        assert_eq!(config.from_name.as_deref(), Some("Sales"));
        assert_eq!(config.timeout, Duration::from_secs(12));
        assert!(config.root_certificates_pem.is_empty());
        assert!(builder.build().is_ok());
    }

    #[test]
    fn blank_variables_keep_defaults() {
        let builder = from_variables(&[
            ("KALIFY_SMTP_PORT", " "),
            ("KALIFY_SMTP_SECURITY", ""),
            ("KALIFY_SMTP_PLAINTEXT_DANGEROUS", ""),
            ("KALIFY_SMTP_CA_FILE", "  "),
        ])
        .unwrap();

        assert_eq!(builder.config.port, None);
        assert_eq!(builder.config.security, SmtpSecurity::StartTls);
        assert!(!builder.config.plaintext_dangerous);
        assert!(builder.config.root_certificates_pem.is_empty());
    }

    #[test]
    fn plaintext_variable_on_loopback() {
        for (host, flag) in [("127.0.0.1", "true"), ("localhost", "1"), ("::1", "YES")] {
            let builder = from_variables(&[
                ("KALIFY_SMTP_HOST", host),
                ("KALIFY_SMTP_PLAINTEXT_DANGEROUS", flag),
            ])
            .unwrap();
            assert!(builder.config.plaintext_dangerous, "{host}");

            let settings = Settings::check(builder.config).unwrap();
            assert_eq!(
                settings.connection.security,
                Security::PlaintextDangerous,
                "{host}"
            );
            assert_eq!(settings.connection.port, 25, "{host}");
        }
    }

    #[test]
    fn plaintext_variable_off_loopback_rejected() {
        for host in ["smtp.example.com", "10.0.0.5", "127.0.0.1.example.com"] {
            let builder = from_variables(&[
                ("KALIFY_SMTP_HOST", host),
                ("KALIFY_SMTP_PLAINTEXT_DANGEROUS", "true"),
            ])
            .unwrap();

            let error = builder.build().unwrap_err();

            assert_eq!(error.kind(), ErrorKind::ConfigInvalid, "{host}");
            assert!(error.message().contains("loopback"), "{host}: {error}");
        }
    }

    #[test]
    fn plaintext_variable_false_keeps_tls() {
        let builder = from_variables(&[
            ("KALIFY_SMTP_HOST", "127.0.0.1"),
            ("KALIFY_SMTP_PLAINTEXT_DANGEROUS", "off"),
        ])
        .unwrap();

        let settings = Settings::check(builder.config).unwrap();
        assert_eq!(settings.connection.security, Security::StartTls);
    }

    #[test]
    fn plaintext_variable_invalid_values() {
        let error = from_variables(&[("KALIFY_SMTP_PLAINTEXT_DANGEROUS", "maybe")]).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::ConfigInvalid);
        assert!(
            error.message().contains("KALIFY_SMTP_PLAINTEXT_DANGEROUS"),
            "{error}"
        );

        let error = from_variables(&[
            ("KALIFY_SMTP_HOST", "127.0.0.1"),
            ("KALIFY_SMTP_PLAINTEXT_DANGEROUS", "true"),
            ("KALIFY_SMTP_SECURITY", "starttls"),
        ])
        .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::ConfigInvalid);
        assert!(error.message().contains("conflicts"), "{error}");

        let error = from_variables(&[("KALIFY_SMTP_SECURITY", "plaintext")]).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::ConfigInvalid);
        assert!(
            error.message().contains("KALIFY_SMTP_PLAINTEXT_DANGEROUS"),
            "{error}"
        );
    }

    #[test]
    fn ca_file_variable_adds_root() {
        let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
        let pem = certified.cert.pem();
        let file = TempFile::new("root.pem", pem.as_bytes());

        let builder = from_variables(&[("KALIFY_SMTP_CA_FILE", file.path())]).unwrap();

        assert_eq!(builder.config.root_certificates_pem, vec![pem.into_bytes()]);
        assert!(builder.build().is_ok());
    }

    #[test]
    fn ca_file_variable_missing_file() {
        let path = std::env::temp_dir().join(format!(
            "kalify-smtp-config-{}-absent.pem",
            std::process::id()
        ));
        let path = path.to_str().unwrap();

        let error = from_variables(&[("KALIFY_SMTP_CA_FILE", path)]).unwrap_err();

        assert_eq!(error.kind(), ErrorKind::ConfigInvalid);
        assert!(error.message().contains("failed to read"), "{error}");
        assert!(error.message().contains(path), "{error}");
    }

    #[test]
    fn ca_file_variable_without_certificate() {
        let file = TempFile::new("not-a-certificate.pem", b"-----BEGIN PRIVATE KEY-----\n");

        let error = from_variables(&[("KALIFY_SMTP_CA_FILE", file.path())]).unwrap_err();

        assert_eq!(error.kind(), ErrorKind::ConfigInvalid);
        assert!(error.message().contains("KALIFY_SMTP_CA_FILE"), "{error}");
        assert!(error.message().contains("CERTIFICATE"), "{error}");
    }

    #[test]
    fn debug_hides_secrets() {
        let builder = valid().with_credentials("user", Secret::new("hunter2-password"));
        let text = format!("{builder:?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!text.contains(&"k".repeat(32)), "{text}");
        let channel = builder.build().unwrap();
        assert!(!format!("{channel:?}").contains("hunter2"));
    }
}
