//! The Mailer actor: owns outgoing mail. It writes RFC 5322 messages to the
//! outbox directory, or hands them to an SMTP relay when one is configured.
//! It never logs a message body, because bodies carry sign-in links.

use std::path::PathBuf;

use actix::{Actor, Handler, Message, SyncContext};
use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Body, Mailbox};
use lettre::{FileTransport, SmtpTransport, Transport};

/// Where mail goes.
#[derive(Debug, Clone)]
pub enum MailTransport {
    /// One `.eml` file per message in this directory.
    Outbox(PathBuf),
    /// An SMTP URL as lettre reads it, such as `smtp://localhost:2525`.
    Smtp(String),
}

#[derive(Debug, Clone)]
pub struct MailConfig {
    pub from: Mailbox,
    pub transport: MailTransport,
}

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("invalid mail address: {0}")]
    Address(String),
    #[error("cannot build mail message: {0}")]
    Build(String),
    #[error("cannot deliver mail: {0}")]
    Delivery(String),
}

enum Sender {
    Outbox(FileTransport, PathBuf),
    Smtp(SmtpTransport),
}

pub struct Mailer {
    from: Mailbox,
    sender: Sender,
}

impl Mailer {
    pub fn new(config: MailConfig) -> Result<Mailer, MailError> {
        let sender = match config.transport {
            MailTransport::Outbox(dir) => {
                std::fs::create_dir_all(&dir)
                    .map_err(|error| MailError::Delivery(format!("cannot create outbox {}: {error}", dir.display())))?;
                Sender::Outbox(FileTransport::new(&dir), dir)
            }
            MailTransport::Smtp(url) => {
                let transport = SmtpTransport::from_url(&url)
                    .map_err(|error| MailError::Delivery(format!("invalid SMTP URL: {error}")))?
                    .build();
                Sender::Smtp(transport)
            }
        };
        Ok(Mailer { from: config.from, sender })
    }
}

impl Actor for Mailer {
    type Context = SyncContext<Self>;
}

/// RFC 5322 section 2.1.1 limits a line to 998 characters before its CRLF.
const MAX_LINE_LEN: usize = 998;

/// Encodes ASCII text as 7bit when every line fits, so a long link stays whole
/// and readable in the raw message; lettre alone would switch to
/// quoted-printable at 76 characters. Other text falls back to lettre's choice.
fn seven_bit_body(text: String) -> Body {
    let normalized = text.replace("\r\n", "\n").replace('\n', "\r\n");
    let fits = normalized.is_ascii()
        && !normalized.contains('\0')
        && normalized.split("\r\n").all(|line| line.len() <= MAX_LINE_LEN && !line.contains('\r'));
    if fits {
        Body::dangerous_pre_encoded(normalized.into_bytes(), ContentTransferEncoding::SevenBit)
    } else {
        Body::new(text)
    }
}

/// Sends one plain-text message to an address the caller has validated.
#[derive(Message)]
#[rtype(result = "Result<(), MailError>")]
pub struct SendMail {
    pub to: String,
    pub subject: String,
    pub text: String,
}

impl Handler<SendMail> for Mailer {
    type Result = Result<(), MailError>;

    fn handle(&mut self, message: SendMail, _: &mut Self::Context) -> Self::Result {
        let to: Mailbox = message.to.parse().map_err(|_| MailError::Address("recipient".into()))?;
        let domain = to.email.domain().to_string();
        let body = seven_bit_body(message.text);
        let email = lettre::Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(message.subject)
            .message_id(None)
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|error| MailError::Build(error.to_string()))?;

        match &self.sender {
            Sender::Outbox(transport, dir) => {
                let id = transport.send(&email).map_err(|error| MailError::Delivery(error.to_string()))?;
                tracing::info!(recipient_domain = %domain, file = %dir.join(format!("{id}.eml")).display(), "mail written to outbox");
            }
            Sender::Smtp(transport) => {
                let response = transport.send(&email).map_err(|error| MailError::Delivery(error.to_string()))?;
                tracing::info!(recipient_domain = %domain, code = %response.code(), "mail sent over SMTP");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_ascii_line_stays_seven_bit() {
        let body = seven_bit_body(format!("link:\nhttps://example.org/{}\n", "a".repeat(200)));
        assert_eq!(body.encoding(), ContentTransferEncoding::SevenBit);
        assert!(String::from_utf8(body.into_vec()).unwrap().contains(&"a".repeat(200)));
    }

    #[test]
    fn non_ascii_text_is_left_to_lettre() {
        assert_ne!(seven_bit_body("café\n".into()).encoding(), ContentTransferEncoding::SevenBit);
    }
}
