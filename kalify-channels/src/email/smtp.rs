//! Building outbound messages, the lettre transport, and SMTP error mapping.

use std::sync::LazyLock;
use std::time::SystemTime;

use kalify_core::contact::{ContactPoint, EmailAddress};
use kalify_core::conversation::SendPurpose;
use kalify_core::gate::SendPermit;
use kalify_core::ports::OutboxEntry;
use kalify_core::{Error, ErrorKind, Result, Retry};
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, Tokio1Executor};
use regex::Regex;

use crate::email::config::{Connection, Security, Settings};
use crate::email::unsubscribe::{unsubscribe_mailto, unsubscribe_token, unsubscribe_url};

/// A message ready for the transport, with its `Message-ID` without angle brackets.
pub(crate) struct Outgoing {
    pub(crate) message: Message,
    pub(crate) message_id: String,
}

/// Builds the e-mail for `permit`.
///
/// Threading: the first campaign message of a conversation (outreach
/// attempt 0) gets the `Message-ID` `<CONVERSATION_ID@DOMAIN>`. Every other
/// message gets `<MESSAGE_ID@DOMAIN>`, with `In-Reply-To` and `References`
/// set to that first id, so mail clients show one thread per conversation.
/// Both ids are derived from the outbox entry, so a retried delivery sends
/// the same `Message-ID` and receivers can drop the duplicate.
///
/// # Errors
/// `InvalidInput` when the recipient is not an e-mail address or is not
/// accepted as an SMTP address.
pub(crate) fn build_message(settings: &Settings, permit: &SendPermit) -> Result<Outgoing> {
    let entry = permit.entry();
    let ContactPoint::Email(recipient) = &entry.to else {
        return Err(Error::invalid_input(format!(
            "the e-mail channel sends only to e-mail addresses, not to a {} contact point",
            entry.to.channel()
        ))
        .with_adapter("smtp")
        .with_operation("send")
        .with_context("outbox_id", entry.id));
    };
    let to = mailbox(None, recipient).map_err(|error| error.with_context("outbox_id", entry.id))?;
    let from_name = Some(header_text(&entry.sender_name, 78))
        .filter(|name| !name.is_empty())
        .or_else(|| settings.from_name.clone());
    let from = mailbox(from_name, &settings.from)?;

    let domain = settings.from.domain();
    let thread_root = format!("{}@{domain}", entry.conversation_id);
    let first_message = matches!(entry.purpose, SendPurpose::Outreach { attempt: 0 });
    let message_id = if first_message {
        thread_root.clone()
    } else {
        format!("{}@{domain}", entry.message_id)
    };

    let subject = entry
        .subject
        .as_deref()
        .map(|subject| header_text(subject, 250))
        .filter(|subject| !subject.is_empty())
        .unwrap_or_else(|| settings.from_name.clone().unwrap_or_default());

    let mut builder = Message::builder()
        .from(from)
        .to(to)
        .subject(subject)
        .date(SystemTime::from(permit.checked_at()))
        .message_id(Some(format!("<{message_id}>")));
    if !first_message {
        builder = builder
            .in_reply_to(format!("<{thread_root}>"))
            .references(format!("<{thread_root}>"));
    }

    let mut body = entry.text.clone();
    if !entry.purpose.is_transactional() {
        let token = unsubscribe_token(&settings.unsubscribe_key, entry.org_id, recipient);
        let https = unsubscribe_url(&settings.unsubscribe_url, &token);
        let mailto = unsubscribe_mailto(&settings.unsubscribe_mailto, &token);

        // RFC 2369 lists the URIs in angle brackets; RFC 8058 one-click
        // needs the https URI and the List-Unsubscribe-Post header.
        builder = builder
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("List-Unsubscribe"),
                format!("<{https}>, <{mailto}>"),
            ))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("List-Unsubscribe-Post"),
                "List-Unsubscribe=One-Click".to_owned(),
            ));

        // The visible link goes under the usual "-- " signature line, so
        // mail clients leave it out of quoted replies.
        body = format!(
            "{}\n\n-- \n{}\n",
            body.trim_end(),
            settings.unsubscribe_footer.replace("{url}", &https)
        );
    }

    let message = builder
        .header(ContentType::TEXT_PLAIN)
        .body(body)
        .map_err(|error| {
            Error::invalid_input("failed to build the e-mail")
                .with_adapter("smtp")
                .with_operation("send")
                .with_context("outbox_id", entry.id)
                .with_source(error)
        })?;
    Ok(Outgoing {
        message,
        message_id,
    })
}

fn mailbox(name: Option<String>, address: &EmailAddress) -> Result<Mailbox> {
    let address = address.as_str().parse::<lettre::Address>().map_err(|_| {
        // The address itself stays out of the error, which may be logged.
        Error::invalid_input("the e-mail address is not accepted by SMTP")
            .with_adapter("smtp")
            .with_operation("send")
    })?;
    Ok(Mailbox::new(name, address))
}

/// Makes `text` safe for a header: control characters (CR and LF
/// included, which could start a new header) become spaces, runs of white
/// space collapse, and the result is cut to `max_chars`.
pub(crate) fn header_text(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars * 4));
    for word in text
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|word| !word.is_empty())
    {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    match out.char_indices().nth(max_chars) {
        Some((cut, _)) => out[..cut].trim_end().to_owned(),
        None => out,
    }
}

/// Creates the lettre transport. It must run inside a Tokio runtime,
/// because lettre's connection pool starts a cleanup task.
pub(crate) fn transport(connection: &Connection) -> Result<AsyncSmtpTransport<Tokio1Executor>> {
    let mut builder =
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(connection.host.as_str())
            .port(connection.port)
            .timeout(Some(connection.timeout));

    let tls_parameters = || -> Result<TlsParameters> {
        let mut parameters = TlsParameters::builder(connection.host.clone());
        for pem in &connection.root_certificates_pem {
            let certificate = Certificate::from_pem(pem).map_err(config_error)?;
            parameters = parameters.add_root_certificate(certificate);
        }
        parameters.build_rustls().map_err(config_error)
    };
    builder = match connection.security {
        Security::StartTls => builder.tls(Tls::Required(tls_parameters()?)),
        Security::ImplicitTls => builder.tls(Tls::Wrapper(tls_parameters()?)),
        Security::PlaintextDangerous => builder.tls(Tls::None),
    };

    if let Some((username, password)) = &connection.credentials {
        builder = builder
            .credentials(Credentials::new(
                username.clone(),
                password.expose().to_owned(),
            ))
            .authentication(vec![Mechanism::Plain, Mechanism::Login]);
    }
    Ok(builder.build())
}

fn config_error(error: lettre::transport::smtp::Error) -> Error {
    Error::new(
        ErrorKind::ConfigInvalid,
        "failed to set up TLS for the SMTP server",
    )
    .with_adapter("smtp")
    .with_operation("connect")
    .with_source(error)
}

/// The first RFC 3463 enhanced status code in a server reply, such as `5.1.1`.
static ENHANCED_STATUS: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b").ok());

/// Maps a lettre SMTP error to a kalify error.
///
/// | failure | kind | retry |
/// |---|---|---|
/// | 530, 534, 535, 538 (authentication) | `Unauthenticated` | permanent |
/// | 550, 551, 553 (mailbox unavailable or not allowed) | `InvalidInput` | permanent |
/// | 552, 554 (size or content refused) | `ContentRejected` | permanent |
/// | other 5xx | `Unexpected` | permanent |
/// | 4xx | `Unavailable` | temporary |
/// | timeout | `Timeout` | temporary |
/// | refused or lost connection, TLS failure, unreadable reply | `Unavailable` | temporary |
/// | client-side refusal (such as no STARTTLS offered) | `ConfigInvalid` | permanent |
///
/// The server's reply text is left out, because it often repeats the
/// recipient address; the reply code and the enhanced status code are
/// kept as context.
///
/// `timed_out` says that the send ran for the whole command time limit:
/// lettre 0.11 reports a read that hit the limit as an incomplete
/// response, without the I/O timeout in its source chain.
pub(crate) fn map_smtp_error(error: lettre::transport::smtp::Error, timed_out: bool) -> Error {
    let base = |kind: ErrorKind, message: &str| {
        Error::new(kind, message)
            .with_adapter("smtp")
            .with_operation("send")
    };

    if let Some(code) = error.status() {
        let code = u16::from(code);
        let text = error.to_string();
        let enhanced = ENHANCED_STATUS
            .as_ref()
            .and_then(|regex| regex.find(&text))
            .map(|found| found.as_str().to_owned());
        let mapped = match code {
            530 | 534 | 535 | 538 => base(
                ErrorKind::Unauthenticated,
                "the SMTP server rejected the credentials",
            ),
            550 | 551 | 553 => base(
                ErrorKind::InvalidInput,
                "the SMTP server rejected the recipient mailbox",
            ),
            552 | 554 => base(
                ErrorKind::ContentRejected,
                "the SMTP server refused the message",
            ),
            500..=599 => base(ErrorKind::Unexpected, "the SMTP server refused the request"),
            _ => base(
                ErrorKind::Unavailable,
                "the SMTP server reported a temporary failure",
            ),
        };
        let retry = if error.is_transient() {
            Retry::Temporary
        } else {
            Retry::Permanent
        };
        let mapped = mapped.with_retry(retry).with_context("smtp_code", code);
        return match enhanced {
            Some(enhanced) => mapped.with_context("enhanced_status", enhanced),
            None => mapped,
        };
    }
    if error.is_timeout() || timed_out {
        return base(
            ErrorKind::Timeout,
            "timed out waiting for the SMTP server's reply",
        )
        .with_source(error);
    }
    if error.is_client() {
        return base(
            ErrorKind::ConfigInvalid,
            "the SMTP client refused to go on; check the security mode and credentials",
        )
        .with_source(error);
    }
    if error.is_tls() {
        return base(
            ErrorKind::Unavailable,
            "the TLS session with the SMTP server failed",
        )
        .with_source(error);
    }
    base(ErrorKind::Unavailable, "failed to reach the SMTP server").with_source(error)
}

/// Returns the short name of a send purpose, for logs.
pub(crate) fn purpose_name(entry: &OutboxEntry) -> &'static str {
    match entry.purpose {
        SendPurpose::Outreach { .. } => "outreach",
        SendPurpose::Reply => "reply",
        SendPurpose::Closing => "closing",
        SendPurpose::Qualified => "qualified",
        SendPurpose::HandoffAck => "handoff_ack",
        SendPurpose::OptOutConfirmation => "opt_out_confirmation",
        SendPurpose::OptInConfirmation => "opt_in_confirmation",
        SendPurpose::Help => "help",
        SendPurpose::MemberMessage => "member_message",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_text_drops_line_breaks() {
        assert_eq!(
            header_text("Evil\r\nBcc: victim@example.com", 200),
            "Evil Bcc: victim@example.com"
        );
        assert_eq!(header_text("  Marie \t Dupont\u{0} ", 200), "Marie Dupont");
        assert_eq!(header_text("Émilie Château", 6), "Émilie");
        assert_eq!(header_text("", 10), "");
    }
}
