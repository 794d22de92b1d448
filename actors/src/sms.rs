//! The Sms actor: owns outgoing text messages. It posts each message to a
//! gateway that speaks Twilio's Messages API, or writes it to the outbox
//! directory when no gateway is configured. It never logs a message body,
//! because bodies carry verification codes, and it logs numbers masked.
//!
//! The HTTP client is ureq, a blocking client, which suits a sync actor: each
//! worker thread sends one message at a time and nothing else waits on it.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use actix::{Actor, Handler, Message, SyncContext};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::phone::PhoneNumber;
use crate::secret::{random_id, Secret};

/// Destination of outgoing text messages.
#[derive(Debug, Clone)]
pub enum SmsTransport {
    /// One `.txt` file per message in this directory.
    Outbox(PathBuf),
    /// A gateway that speaks Twilio's Messages API.
    Twilio(TwilioConfig),
}

/// An account on a Twilio-compatible gateway.
#[derive(Debug, Clone)]
pub struct TwilioConfig {
    /// Scheme, host and optional port, such as `https://api.twilio.com`; the API path is appended.
    pub base_url: String,
    /// Letters and digits only, checked at start-up, because it becomes part of the request path.
    pub account_sid: String,
    pub auth_token: Secret,
    /// The sender: an E.164 number or an alphanumeric sender id the account owns.
    pub from: String,
}

#[derive(Debug, Clone)]
pub struct SmsConfig {
    pub transport: SmsTransport,
    /// Limit on one request to the gateway, connection included.
    pub timeout: Duration,
}

impl SmsConfig {
    /// Text messages written to the outbox directory, for servers without a gateway.
    pub fn outbox(dir: PathBuf) -> SmsConfig {
        SmsConfig { transport: SmsTransport::Outbox(dir), timeout: Duration::from_secs(10) }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SmsError {
    /// The gateway rejected the message, such as for a number it cannot reach.
    #[error("SMS gateway rejected the message with HTTP {status}")]
    Rejected { status: u16, code: Option<i64> },
    /// The gateway could not be reached or failed; the message may be sent again later.
    #[error("SMS gateway is unavailable: {0}")]
    Unavailable(String),
    #[error("cannot write the text message to the outbox: {0}")]
    Outbox(String),
}

/// Attempts per message when the gateway cannot be reached or returns HTTP 429.
const MAX_ATTEMPTS: u32 = 3;
/// Wait before the second attempt; each later attempt waits four times as long.
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(250);

pub struct Sms {
    transport: SmsTransport,
    agent: ureq::Agent,
}

impl Sms {
    pub fn new(config: SmsConfig) -> Result<Sms, SmsError> {
        if let SmsTransport::Outbox(dir) = &config.transport {
            std::fs::create_dir_all(dir)
                .map_err(|error| SmsError::Outbox(format!("cannot create outbox {}: {error}", dir.display())))?;
        }
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(config.timeout))
            // 4xx and 5xx responses are returned rather than raised, so the gateway's error code can be logged.
            .http_status_as_error(false)
            // The request carries credentials; a redirect must not carry them elsewhere.
            .max_redirects(0)
            .build()
            .into();
        Ok(Sms { transport: config.transport, agent })
    }
}

impl Actor for Sms {
    type Context = SyncContext<Self>;
}

/// Sends one text message to a number the caller has validated and cleared with the toll-fraud limits.
#[derive(Debug, Message)]
#[rtype(result = "Result<SmsSent, SmsError>")]
pub struct SendSms {
    pub to: PhoneNumber,
    /// Redacted in `Debug`, because it carries a code.
    pub body: Secret,
}

/// A message handed over: the gateway's message id, or the outbox file name.
#[derive(Debug, Clone)]
pub struct SmsSent {
    pub id: String,
}

impl Handler<SendSms> for Sms {
    type Result = Result<SmsSent, SmsError>;

    fn handle(&mut self, message: SendSms, _: &mut Self::Context) -> Self::Result {
        match &self.transport {
            SmsTransport::Outbox(dir) => write_to_outbox(dir, &message),
            SmsTransport::Twilio(gateway) => self.post_with_retry(gateway, &message),
        }
    }
}

fn write_to_outbox(dir: &std::path::Path, message: &SendSms) -> Result<SmsSent, SmsError> {
    let name = format!("sms-{}.txt", random_id(8));
    let text = format!("To: {}\r\n\r\n{}\r\n", message.to.as_str(), message.body.expose());
    // Written under a temporary name and renamed, so a reader never sees half a message.
    let temporary = dir.join(format!(".{name}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temporary, dir.join(&name))
    };
    write().map_err(|error| SmsError::Outbox(error.to_string()))?;
    tracing::info!(to = %message.to.masked(), file = %dir.join(&name).display(), "text message written to outbox");
    Ok(SmsSent { id: name })
}

/// One attempt's result: sent, worth another attempt, or final.
enum Attempt {
    Sent(SmsSent),
    Retry(String),
    Failed(SmsError),
}

impl Sms {
    fn post_with_retry(&self, gateway: &TwilioConfig, message: &SendSms) -> Result<SmsSent, SmsError> {
        let mut delay = FIRST_RETRY_DELAY;
        let mut attempt = 1;
        loop {
            match self.post(gateway, message) {
                Attempt::Sent(sent) => {
                    tracing::info!(to = %message.to.masked(), message_id = %sent.id, attempt, "text message accepted by the gateway");
                    return Ok(sent);
                }
                Attempt::Failed(error) => {
                    tracing::error!(to = %message.to.masked(), %error, attempt, "text message failed");
                    return Err(error);
                }
                Attempt::Retry(reason) if attempt >= MAX_ATTEMPTS => {
                    tracing::error!(to = %message.to.masked(), reason = %reason, attempt, "text message failed; giving up");
                    return Err(SmsError::Unavailable(reason));
                }
                Attempt::Retry(reason) => {
                    tracing::warn!(to = %message.to.masked(), reason = %reason, attempt, delay_ms = delay.as_millis() as u64, "text message failed temporarily; retrying");
                    std::thread::sleep(delay);
                    delay *= 4;
                    attempt += 1;
                }
            }
        }
    }

    /// Posts the message form to `{base}/2010-04-01/Accounts/{sid}/Messages.json` with HTTP Basic authentication.
    fn post(&self, gateway: &TwilioConfig, message: &SendSms) -> Attempt {
        let url = format!("{}/2010-04-01/Accounts/{}/Messages.json", gateway.base_url.trim_end_matches('/'), gateway.account_sid);
        let credentials = STANDARD.encode(format!("{}:{}", gateway.account_sid, gateway.auth_token.expose()));
        let form = [("To", message.to.as_str()), ("From", gateway.from.as_str()), ("Body", message.body.expose())];
        let sent = self.agent.post(&url).header("Authorization", format!("Basic {credentials}")).send_form(form);

        let mut response = match sent {
            Ok(response) => response,
            // Nothing reached the gateway, so another attempt cannot send the message twice.
            Err(error @ (ureq::Error::ConnectionFailed | ureq::Error::HostNotFound)) => return Attempt::Retry(error.to_string()),
            Err(ureq::Error::Timeout(ureq::Timeout::Resolve | ureq::Timeout::Connect)) => {
                return Attempt::Retry("connecting to the gateway timed out".to_string());
            }
            // Any other failure may come after the gateway accepted the message; retrying could send the code twice.
            Err(error) => return Attempt::Failed(SmsError::Unavailable(error.to_string())),
        };

        let status = response.status().as_u16();
        // The body is small JSON; an unreadable one only loses the ids that the log would show.
        let body: serde_json::Value = response
            .body_mut()
            .with_config()
            .limit(64 * 1024)
            .read_to_string()
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or(serde_json::Value::Null);
        match status {
            200..=299 => {
                let id = body["sid"].as_str().unwrap_or("unknown").to_string();
                Attempt::Sent(SmsSent { id })
            }
            // Twilio documents that a request answered 429 (error 20429, too many concurrent requests) is not processed and is safe to retry.
            429 => Attempt::Retry("the gateway asked to slow down (HTTP 429)".to_string()),
            // A gateway fault is not about the number. The gateway may still have
            // queued the message, so it is not sent again.
            500..=599 => Attempt::Failed(SmsError::Unavailable(format!("the gateway returned HTTP {status}"))),
            _ => {
                // Only the numeric code is kept: Twilio's error text can quote the number.
                let code = body["code"].as_i64();
                Attempt::Failed(SmsError::Rejected { status, code })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbox_message_has_number_and_body() {
        let dir = tempfile::tempdir().unwrap();
        let message = SendSms { to: PhoneNumber::parse("+61412345678").unwrap(), body: Secret::from_presented("Code 123456") };
        let sent = write_to_outbox(dir.path(), &message).unwrap();

        let text = std::fs::read_to_string(dir.path().join(&sent.id)).unwrap();
        assert!(sent.id.ends_with(".txt"), "{}", sent.id);
        assert!(text.starts_with("To: +61412345678\r\n"), "{text}");
        assert!(text.contains("Code 123456"), "{text}");
    }

    #[test]
    fn send_request_debug_hides_the_body() {
        let message = SendSms { to: PhoneNumber::parse("+61412345678").unwrap(), body: Secret::from_presented("Code 123456") };
        let printed = format!("{message:?}");
        assert!(!printed.contains("123456"), "{printed}");
        assert!(!printed.contains("412345678"), "{printed}");
    }
}
