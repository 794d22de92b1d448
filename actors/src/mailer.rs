//! The Mailer actor: owns outgoing mail. It writes RFC 5322 messages to the
//! outbox directory, or queues them for an SMTP relay when one is configured.
//! It never logs a message body, because bodies carry sign-in links.
//!
//! SMTP delivery runs in the background: a caller's request returns once the
//! message is queued, and each attempt runs on tokio's blocking pool, so a slow
//! relay holds up neither the caller nor this actor. Temporary failures (4xx
//! replies, connection and TLS errors) are retried with exponential backoff.
//! A permanent failure (a 5xx reply) ends delivery and is logged as an error.
//! The outbox is written before the request returns, because it is local and
//! quick, and readers of the outbox can then count on the file being there.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Context, Handler, Message, ResponseFuture};
use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Body, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{FileTransport, SmtpTransport, Transport};
use tokio::sync::Semaphore;

use crate::secret::{random_id, Secret};

/// Destination of outgoing mail.
#[derive(Debug, Clone)]
pub enum MailTransport {
    /// One `.eml` file per message in this directory.
    Outbox(PathBuf),
    Smtp(SmtpRelay),
}

/// An SMTP relay and how delivery to it is retried.
#[derive(Clone)]
pub struct SmtpRelay {
    /// An SMTP URL as lettre reads it: `smtps://host` (TLS from the start),
    /// `smtp://host?tls=required` (STARTTLS) or `smtp://host` (unencrypted, for a local relay).
    /// It may carry `user:password@`.
    pub url: String,
    /// Password for the URL's user, when the URL carries none.
    pub password: Option<Secret>,
    pub retry: RetryPolicy,
    /// Limit on one SMTP session, connection included.
    pub timeout: Duration,
}

impl std::fmt::Debug for SmtpRelay {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SmtpRelay")
            .field("url", &redacted_url(&self.url))
            .field("password", &self.password)
            .field("retry", &self.retry)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Returns the URL with any password replaced, for logs and `Debug`.
pub fn redacted_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            // Setting a password fails only for URLs that cannot carry one, and this one carries one.
            let _ = parsed.set_password(Some("redacted"));
            parsed.to_string()
        }
        Ok(parsed) => parsed.to_string(),
        Err(_) => "<unparsable URL>".to_string(),
    }
}

/// How often and how patiently a temporarily failing delivery is retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Wait after the first failure; each later wait doubles, up to `max_delay`.
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        // Waits of 10 s, 20 s, 40 s, 80 s, 160 s and 300 s: the last attempt comes about ten
        // minutes in, while a sign-in link, which lives 15 minutes, is still worth delivering.
        RetryPolicy { max_attempts: 7, first_delay: Duration::from_secs(10), max_delay: Duration::from_secs(300) }
    }
}

impl RetryPolicy {
    fn delay_after(&self, attempt: u32) -> Duration {
        let doubled = self.first_delay.saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)));
        doubled.min(self.max_delay)
    }
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

/// SMTP sessions open at once; more messages wait their turn rather than open more connections.
const SMTP_SESSIONS: usize = 4;

enum Sender {
    Outbox(PathBuf),
    // Boxed: the transport is large, and there is one sender per mailer.
    Smtp { transport: Box<SmtpTransport>, retry: RetryPolicy, sessions: Arc<Semaphore> },
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
                Sender::Outbox(dir)
            }
            MailTransport::Smtp(relay) => Sender::Smtp {
                transport: Box::new(smtp_transport(&relay)?),
                retry: relay.retry,
                sessions: Arc::new(Semaphore::new(SMTP_SESSIONS)),
            },
        };
        Ok(Mailer { from: config.from, sender })
    }
}

fn smtp_transport(relay: &SmtpRelay) -> Result<SmtpTransport, MailError> {
    let invalid = |reason: String| MailError::Delivery(format!("invalid SMTP URL {}: {reason}", redacted_url(&relay.url)));
    let parsed = url::Url::parse(&relay.url).map_err(|error| invalid(error.to_string()))?;
    let mut builder = SmtpTransport::from_url(&relay.url).map_err(|error| invalid(error.to_string()))?;

    if let Some(password) = &relay.password {
        if parsed.password().is_some() {
            return Err(invalid("it carries a password and UCCA_SMTP_PASSWORD is set too; keep the password in one place".into()));
        }
        if parsed.username().is_empty() {
            return Err(invalid("UCCA_SMTP_PASSWORD is set but the URL names no user, as in smtps://user@host".into()));
        }
        // The user is percent-encoded in the URL; a literal '+' stays a '+', unlike in form encoding.
        let user = url::form_urlencoded::parse(format!("u={}", parsed.username().replace('+', "%2B")).as_bytes())
            .next()
            .map(|(_, user)| user.into_owned())
            .unwrap_or_default();
        builder = builder.credentials(Credentials::new(user, password.expose().to_string()));
    }
    Ok(builder.timeout(Some(relay.timeout)).build())
}

impl Actor for Mailer {
    type Context = Context<Self>;
}

/// RFC 5322 section 2.1.1 limits a line to 998 characters before its CRLF.
const MAX_LINE_LEN: usize = 998;

/// Encodes ASCII text as 7bit when every line fits, so a long link stays whole
/// and readable in the raw message, where lettre alone would switch to
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

/// Sends one message to an address the caller has validated: plain text, and
/// HTML as its alternative when given. Replies once the message is written to
/// the outbox or queued for SMTP; delivery over SMTP happens afterwards.
#[derive(Message)]
#[rtype(result = "Result<MailAccepted, MailError>")]
pub struct SendMail {
    pub to: String,
    pub subject: String,
    pub text: String,
    /// Must be escaped by the caller.
    pub html: Option<String>,
}

/// State of an accepted message: written to the outbox, or queued for SMTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailAccepted {
    Written { message_id: String },
    Queued { message_id: String },
}

impl Handler<SendMail> for Mailer {
    type Result = ResponseFuture<Result<MailAccepted, MailError>>;

    fn handle(&mut self, message: SendMail, _: &mut Self::Context) -> Self::Result {
        let built = self.build(message);
        let (email, recipient) = match built {
            Ok(built) => built,
            Err(error) => return Box::pin(async move { Err(error) }),
        };

        match &self.sender {
            Sender::Outbox(dir) => {
                let dir = dir.clone();
                Box::pin(async move { write_to_outbox(dir, email, recipient).await })
            }
            Sender::Smtp { transport, retry, sessions } => {
                let message_id = recipient.message_id.clone();
                tracing::info!(recipient_domain = %recipient.domain, message_id = %message_id, "mail queued for SMTP delivery");
                let delivery = Delivery { transport: SmtpTransport::clone(transport), retry: *retry, sessions: sessions.clone(), recipient };
                actix::spawn(delivery.run(email));
                Box::pin(async move { Ok(MailAccepted::Queued { message_id }) })
            }
        }
    }
}

/// Recipient details and message id of one message, as logs may name them.
struct Recipient {
    domain: String,
    /// The full address, only to remove it from relay replies before they are logged.
    address: String,
    message_id: String,
}

impl Mailer {
    fn build(&self, message: SendMail) -> Result<(lettre::Message, Recipient), MailError> {
        let to: Mailbox = message.to.parse().map_err(|_| MailError::Address("recipient".into()))?;
        let recipient_domain = to.email.domain().to_string();
        let message_id = format!("<{}@{}>", random_id(16), self.from.email.domain());
        let recipient = Recipient { domain: recipient_domain, address: to.email.to_string(), message_id: message_id.clone() };

        let plain = SinglePart::builder().header(ContentType::TEXT_PLAIN).body(seven_bit_body(message.text));
        let builder = lettre::Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(message.subject)
            .message_id(Some(message_id));
        let email = match message.html {
            // Plain text first: RFC 2046 section 5.1.4 orders alternatives from plainest to richest.
            Some(html) => {
                let html = SinglePart::builder().header(ContentType::TEXT_HTML).body(seven_bit_body(html));
                builder.multipart(MultiPart::alternative().singlepart(plain).singlepart(html))
            }
            None => builder.singlepart(plain),
        }
        .map_err(|error| MailError::Build(error.to_string()))?;
        Ok((email, recipient))
    }
}

async fn write_to_outbox(dir: PathBuf, email: lettre::Message, recipient: Recipient) -> Result<MailAccepted, MailError> {
    let written = tokio::task::spawn_blocking(move || {
        let transport = FileTransport::new(&dir);
        transport.send(&email).map(|id| dir.join(format!("{id}.eml")))
    })
    .await;
    let file = match written {
        Ok(Ok(file)) => file,
        Ok(Err(error)) => return Err(MailError::Delivery(error.to_string())),
        Err(error) => return Err(MailError::Delivery(format!("outbox writer failed: {error}"))),
    };
    tracing::info!(recipient_domain = %recipient.domain, message_id = %recipient.message_id, file = %file.display(), "mail written to outbox");
    Ok(MailAccepted::Written { message_id: recipient.message_id })
}

/// One message on its way to the relay.
struct Delivery {
    transport: SmtpTransport,
    retry: RetryPolicy,
    sessions: Arc<Semaphore>,
    recipient: Recipient,
}

/// Result of one delivery attempt.
enum Outcome {
    Sent(String),
    Temporary(String),
    Permanent(String),
}

impl Delivery {
    // NOTE: queued messages live only in memory, so a restart drops mail that is still being retried.
    async fn run(self, email: lettre::Message) {
        let email = Arc::new(email);
        let (domain, message_id) = (self.recipient.domain.as_str(), self.recipient.message_id.as_str());
        let max_attempts = self.retry.max_attempts.max(1);

        for attempt in 1..=max_attempts {
            match self.attempt(&email).await {
                Outcome::Sent(code) => {
                    tracing::info!(recipient_domain = %domain, message_id = %message_id, attempt, code = %code, "mail sent over SMTP");
                    return;
                }
                Outcome::Permanent(error) => {
                    tracing::error!(recipient_domain = %domain, message_id = %message_id, attempt, error = %error, "mail delivery failed permanently");
                    return;
                }
                Outcome::Temporary(error) if attempt == max_attempts => {
                    tracing::error!(recipient_domain = %domain, message_id = %message_id, attempt, error = %error, "mail delivery failed; no attempts left");
                }
                Outcome::Temporary(error) => {
                    let delay = self.retry.delay_after(attempt);
                    tracing::warn!(recipient_domain = %domain, message_id = %message_id, attempt, error = %error, retry_in_ms = delay.as_millis() as u64, "mail delivery failed temporarily; retrying");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    async fn attempt(&self, email: &Arc<lettre::Message>) -> Outcome {
        // The semaphore is never closed, so acquiring fails only if that changes; sending unthrottled is then the lesser harm.
        let _session = self.sessions.clone().acquire_owned().await.ok();
        let (transport, email) = (self.transport.clone(), email.clone());
        let sent = tokio::task::spawn_blocking(move || transport.send(&email)).await;

        let error = match sent {
            Ok(Ok(response)) => return Outcome::Sent(response.code().to_string()),
            Ok(Err(error)) => error,
            Err(error) => return Outcome::Permanent(format!("delivery task failed: {error}")),
        };
        // Relay replies often quote the recipient; the logs name only its domain.
        let text = error.to_string().replace(&self.recipient.address, "<recipient>");
        if error.is_permanent() || error.is_client() {
            Outcome::Permanent(text)
        } else {
            Outcome::Temporary(text)
        }
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

    #[test]
    fn retry_delays_double_up_to_the_maximum() {
        let policy = RetryPolicy { max_attempts: 10, first_delay: Duration::from_secs(10), max_delay: Duration::from_secs(60) };
        let delays: Vec<u64> = (1..=5).map(|attempt| policy.delay_after(attempt).as_secs()).collect();
        assert_eq!(delays, [10, 20, 40, 60, 60]);
    }

    #[test]
    fn passwords_are_redacted_from_smtp_urls() {
        assert_eq!(redacted_url("smtps://mailer:hunter2@smtp.example.org"), "smtps://mailer:redacted@smtp.example.org");
        assert_eq!(redacted_url("smtp://127.0.0.1:2525"), "smtp://127.0.0.1:2525");
        let relay = SmtpRelay {
            url: "smtps://mailer:hunter2@smtp.example.org".into(),
            password: None,
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(30),
        };
        assert!(!format!("{relay:?}").contains("hunter2"));
    }

    #[test]
    fn message_is_multipart_with_a_seven_bit_plain_part_first() {
        let mailer = Mailer::new(MailConfig {
            from: "ucca-auth <no-reply@example.org>".parse().unwrap(),
            transport: MailTransport::Outbox(tempfile::tempdir().unwrap().path().to_path_buf()),
        })
        .unwrap();
        let link = format!("https://id.example.org/auth/verify?token={}", "a".repeat(64));
        let message = SendMail {
            to: "ada@example.com".into(),
            subject: "Your sign-in link".into(),
            text: format!("Open this link:\n{link}\n"),
            html: Some(format!("<p><a href=\"{link}\">Sign in</a></p>")),
        };
        let (email, recipient) = mailer.build(message).unwrap();
        let raw = String::from_utf8(email.formatted()).unwrap();

        assert!(raw.contains("multipart/alternative"), "{raw}");
        let plain = raw.find("Content-Type: text/plain").expect("plain part");
        let html = raw.find("Content-Type: text/html").expect("HTML part");
        assert!(plain < html, "plain part must come first");
        assert!(raw.lines().any(|line| line == link), "link is not whole on one line: {raw}");
        assert!(recipient.message_id.ends_with("@example.org>"), "{}", recipient.message_id);
        assert_eq!(recipient.domain, "example.com");
    }
}
