//! Phone verification, run by the Accounts actor: each user's verified number,
//! the code pending for a new number, and the toll-fraud limits on sending
//! codes. Sending the text message is the Sms actor's work, not this module's.
//!
//! A code is 6 digits, lives 10 minutes and allows 5 attempts. Only its
//! SHA-256, taken over the user id, the number and the code, is stored. A
//! 6-digit code is easy to find from its hash offline, so the attempt limit,
//! not the hash, is what protects a pending code. The hash only keeps codes
//! out of backups and exports.

use std::net::IpAddr;

use actix::{Handler, Message};
use rand::rngs::OsRng;
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::accounts::Accounts;
use crate::clock::UnixTime;
use crate::codec::Record;
use crate::ratelimit::{self, Admission, Limit, LimitWindow};
use crate::secret::{Digest32, Secret};
use crate::store::{Change, Store, StoreError, Table};

/// Digits in a verification code.
pub const CODE_DIGITS: usize = 6;
/// How long a code can be used, in seconds, unless configured otherwise.
pub const CODE_TTL: u64 = 10 * 60;

/// Rules for sending and checking verification codes.
#[derive(Debug, Clone)]
pub struct PhoneConfig {
    /// How long a code can be used, in seconds.
    pub code_ttl: u64,
    /// Attempts allowed per code, right or wrong.
    pub max_attempts: u32,
    /// Country calling codes whose numbers may receive codes, as digits without `+`, such as `61`.
    pub allowed_country_codes: Vec<String>,
    /// Codes sent to one number.
    pub per_number: Limit,
    /// Codes requested from one IP address.
    pub per_ip: Limit,
    /// Codes requested by one account.
    pub per_user: Limit,
    /// Codes sent by this server in one UTC day, to every number together.
    pub daily_cap: u64,
}

impl Default for PhoneConfig {
    fn default() -> Self {
        PhoneConfig {
            code_ttl: CODE_TTL,
            max_attempts: 5,
            // Australia only: toll fraud pumps messages to premium ranges abroad,
            // so each further country is an operator's deliberate choice.
            allowed_country_codes: vec!["61".to_string()],
            per_number: Limit::per_hour(3),
            per_ip: Limit::per_hour(10),
            per_user: Limit::per_day(10),
            daily_cap: 200,
        }
    }
}

/// A phone number in E.164 form: `+`, a country calling code and the national number, 8 to 15 digits in all.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhoneNumber(String);

/// Reason a text is not a usable phone number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumberProblem {
    /// Not `+` followed by 8 to 15 digits (spaces, dots, dashes and brackets aside).
    NotE164,
    /// An Australian number that is not a mobile number (+61 4 followed by 8 digits).
    NotAustralianMobile,
}

impl PhoneNumber {
    /// Reads a number written with a leading `+`, ignoring spaces, dots, dashes and brackets.
    pub fn parse(raw: &str) -> Result<PhoneNumber, NumberProblem> {
        let trimmed = raw.trim();
        let rest = trimmed.strip_prefix('+').ok_or(NumberProblem::NotE164)?;
        let mut digits = String::with_capacity(rest.len());
        for c in rest.chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '.' | '-' | '(' | ')' => {}
                _ => return Err(NumberProblem::NotE164),
            }
        }
        // E.164 allows at most 15 digits; no country's numbers are shorter than 8 in all.
        if !(8..=15).contains(&digits.len()) || digits.starts_with('0') {
            return Err(NumberProblem::NotE164);
        }
        // Text messages reach mobiles, and every Australian mobile number is 04xx xxx xxx nationally.
        if let Some(national) = digits.strip_prefix("61") {
            if national.len() != 9 || !national.starts_with('4') {
                return Err(NumberProblem::NotAustralianMobile);
            }
        }
        Ok(PhoneNumber(format!("+{digits}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Returns the number with all but its first three and last two digits hidden, for logs.
    pub fn masked(&self) -> String {
        let digits = &self.0[1..];
        let shown_tail = &digits[digits.len() - 2..];
        let hidden = digits.len() - 5;
        format!("+{}{}{shown_tail}", &digits[..3], "*".repeat(hidden))
    }

    /// Checks whether the number starts with one of `codes`. Calling codes form a
    /// prefix code (no code begins another), so a prefix match finds the country.
    pub fn has_country_code(&self, codes: &[String]) -> bool {
        codes.iter().any(|code| !code.is_empty() && self.0[1..].starts_with(code.as_str()))
    }
}

impl std::fmt::Debug for PhoneNumber {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "PhoneNumber({})", self.masked())
    }
}

/// A user's phone: the verified number, and the code pending for a number being added.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PhoneRecord {
    pub verified: Option<VerifiedPhone>,
    pub pending: Option<PendingCode>,
}

impl Record for PhoneRecord {
    const KIND: &'static str = "phone";
    const VERSION: u16 = 1;
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerifiedPhone {
    pub number: PhoneNumber,
    pub verified_at: UnixTime,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingCode {
    pub number: PhoneNumber,
    /// SHA-256 of the code with the user id and number as context; see [`code_digest`].
    pub code: Digest32,
    pub expires_at: UnixTime,
    /// Attempts made so far, right or wrong.
    pub attempts: u32,
}

impl PendingCode {
    /// Checks whether the code can still be entered: it has not expired and attempts remain.
    fn is_usable(&self, now: UnixTime, max_attempts: u32) -> bool {
        now < self.expires_at && self.attempts < max_attempts
    }
}

/// Computes the digest stored for a code. The user id and number bind it, so
/// one digest cannot be replayed for another account or another number.
fn code_digest(user_id: &str, number: &PhoneNumber, code: &str) -> Digest32 {
    let mut hasher = Sha256::new();
    hasher.update(b"ucca-auth phone code\0");
    hasher.update(user_id.as_bytes());
    hasher.update(b"\0");
    hasher.update(number.as_str().as_bytes());
    hasher.update(b"\0");
    hasher.update(code.as_bytes());
    Digest32(hasher.finalize().into())
}

fn generate_code() -> Secret {
    let value: u32 = OsRng.gen_range(0..10u32.pow(CODE_DIGITS as u32));
    Secret::from_presented(format!("{value:0width$}", width = CODE_DIGITS))
}

/// The phone trees: `phones` by user id, and `phone_limits` with the counters of the toll-fraud limits.
pub struct PhoneBook {
    store: Store,
    config: PhoneConfig,
    phones: Table<PhoneRecord>,
    limits: Table<LimitWindow>,
}

impl PhoneBook {
    pub(crate) fn new(store: Store, config: PhoneConfig) -> Result<PhoneBook, StoreError> {
        Ok(PhoneBook { phones: store.table("phones")?, limits: store.table("phone_limits")?, store, config })
    }

    /// Checks the limits in order, counting each that admits; the first that refuses ends the check.
    /// A refusal therefore still counts against the limits checked before it, which errs on the side of sending less.
    fn admit(&self, user_id: &str, number: &PhoneNumber, ip: Option<IpAddr>, now: UnixTime) -> Result<Option<PhoneLimit>, StoreError> {
        let number_key = format!("number/{}", hex_digest(number.as_str()));
        let mut checks = vec![(PhoneLimit::Account, format!("user/{user_id}"), self.config.per_user), (PhoneLimit::Number, number_key, self.config.per_number)];
        if let Some(ip) = ip {
            checks.push((PhoneLimit::Ip, format!("ip/{ip}"), self.config.per_ip));
        }
        checks.push((PhoneLimit::DailyCap, "day".to_string(), Limit::per_day(self.config.daily_cap)));

        for (kind, key, limit) in checks {
            if let Admission::Limited { .. } = ratelimit::admit(&self.limits, key.as_bytes(), limit, now)? {
                return Ok(Some(kind));
            }
        }
        Ok(None)
    }

    /// Deletes what has expired: ended limit windows. Returns how many records went.
    pub(crate) fn sweep(&self, now: UnixTime) -> Result<usize, StoreError> {
        ratelimit::sweep(&self.limits, now)
    }

    /// Removes a user's phone record; returns whether there was one. The caller commits.
    pub(crate) fn forget(&self, user_id: &str) -> Result<bool, StoreError> {
        self.phones.modify(user_id.as_bytes(), |current| match current {
            Some(_) => (Change::Remove, true),
            None => (Change::Keep, false),
        })
    }
}

fn hex_digest(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// The toll-fraud limit that rejected a code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhoneLimit {
    Number,
    Ip,
    Account,
    DailyCap,
}

impl PhoneLimit {
    pub fn as_str(self) -> &'static str {
        match self {
            PhoneLimit::Number => "per-number",
            PhoneLimit::Ip => "per-IP",
            PhoneLimit::Account => "per-account",
            PhoneLimit::DailyCap => "daily cap",
        }
    }
}

/// Creates a verification code for a number a signed-in user wants to add, replacing any pending one.
#[derive(Debug, Message)]
#[rtype(result = "Result<CodeIssue, StoreError>")]
pub struct IssuePhoneCode {
    pub user_id: String,
    pub number: PhoneNumber,
    /// The caller's address, for the per-IP limit; `None` skips that limit.
    pub ip: Option<IpAddr>,
    pub now: UnixTime,
}

#[derive(Debug)]
pub enum CodeIssue {
    /// A code to send now; it is stored only as a digest.
    Issued { code: Secret, expires_at: UnixTime },
    /// The number's country calling code is not in the allow-list.
    CountryNotAllowed,
    /// The number is already this user's verified number; nothing was sent.
    AlreadyVerified,
    Limited(PhoneLimit),
}

impl Handler<IssuePhoneCode> for Accounts {
    type Result = Result<CodeIssue, StoreError>;

    fn handle(&mut self, message: IssuePhoneCode, _: &mut Self::Context) -> Self::Result {
        let book = self.phone_book();
        if !message.number.has_country_code(&book.config.allowed_country_codes) {
            return Ok(CodeIssue::CountryNotAllowed);
        }
        let current = book.phones.get(message.user_id.as_bytes())?;
        if current.as_ref().and_then(|phone| phone.verified.as_ref()).is_some_and(|verified| verified.number == message.number) {
            return Ok(CodeIssue::AlreadyVerified);
        }
        if let Some(limit) = book.admit(&message.user_id, &message.number, message.ip, message.now)? {
            tracing::info!(target: "ucca::security", user_id = %message.user_id, number = %message.number.masked(), limit = limit.as_str(), "phone code rejected by a limit");
            return Ok(CodeIssue::Limited(limit));
        }

        let code = generate_code();
        let expires_at = message.now + book.config.code_ttl;
        let pending = PendingCode {
            code: code_digest(&message.user_id, &message.number, code.expose()),
            number: message.number.clone(),
            expires_at,
            attempts: 0,
        };
        book.phones.modify(message.user_id.as_bytes(), |current| {
            let record = PhoneRecord { pending: Some(pending.clone()), ..current.unwrap_or_default() };
            (Change::Put(record), ())
        })?;
        book.store.commit()?;

        tracing::info!(target: "ucca::security", user_id = %message.user_id, number = %message.number.masked(), "phone code issued");
        Ok(CodeIssue::Issued { code, expires_at })
    }
}

/// Checks a code the user typed; the right code within its lifetime and attempts makes the number the verified one.
#[derive(Debug, Message)]
#[rtype(result = "Result<CodeCheck, StoreError>")]
pub struct VerifyPhoneCode {
    pub user_id: String,
    /// Six digits, as the caller has checked.
    pub code: Secret,
    pub now: UnixTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeCheck {
    Verified { number: PhoneNumber },
    Wrong { attempts_left: u32 },
    /// Every attempt was used; a new code is needed.
    NoAttemptsLeft,
    Expired,
    NothingPending,
}

impl Handler<VerifyPhoneCode> for Accounts {
    type Result = Result<CodeCheck, StoreError>;

    fn handle(&mut self, message: VerifyPhoneCode, _: &mut Self::Context) -> Self::Result {
        let book = self.phone_book();
        let max_attempts = book.config.max_attempts;
        // Each attempt is counted by the same compare-and-swap that decides it, so concurrent guesses share the limit.
        let outcome = book.phones.modify(message.user_id.as_bytes(), |current| {
            let Some(mut record) = current else { return (Change::Keep, CodeCheck::NothingPending) };
            let Some(mut pending) = record.pending.take() else { return (Change::Keep, CodeCheck::NothingPending) };
            if message.now >= pending.expires_at {
                return (Change::Keep, CodeCheck::Expired);
            }
            if pending.attempts >= max_attempts {
                return (Change::Keep, CodeCheck::NoAttemptsLeft);
            }

            pending.attempts += 1;
            let presented = code_digest(&message.user_id, &pending.number, message.code.expose());
            if presented.matches(&pending.code) {
                let number = pending.number.clone();
                record.verified = Some(VerifiedPhone { number: number.clone(), verified_at: message.now });
                return (Change::Put(record), CodeCheck::Verified { number });
            }
            let attempts_left = max_attempts - pending.attempts;
            record.pending = Some(pending);
            (Change::Put(record), CodeCheck::Wrong { attempts_left })
        })?;

        match &outcome {
            CodeCheck::Verified { number } => {
                book.store.commit()?;
                tracing::info!(target: "ucca::security", user_id = %message.user_id, number = %number.masked(), "phone number verified");
            }
            CodeCheck::Wrong { attempts_left } => {
                book.store.commit()?;
                tracing::info!(target: "ucca::security", user_id = %message.user_id, attempts_left, "wrong phone code");
            }
            CodeCheck::NoAttemptsLeft => {
                tracing::info!(target: "ucca::security", user_id = %message.user_id, "phone code rejected: no attempts left");
            }
            CodeCheck::Expired | CodeCheck::NothingPending => {}
        }
        Ok(outcome)
    }
}

/// A user's phone as the account page shows it.
#[derive(Debug, Message)]
#[rtype(result = "Result<PhoneStatus, StoreError>")]
pub struct GetPhone {
    pub user_id: String,
    pub now: UnixTime,
}

#[derive(Debug, Clone, Default)]
pub struct PhoneStatus {
    pub verified: Option<VerifiedPhone>,
    /// The number awaiting its code, while the code can still be used.
    pub pending: Option<PendingNumber>,
}

#[derive(Debug, Clone)]
pub struct PendingNumber {
    pub number: PhoneNumber,
    pub expires_at: UnixTime,
    pub attempts_left: u32,
}

impl Handler<GetPhone> for Accounts {
    type Result = Result<PhoneStatus, StoreError>;

    fn handle(&mut self, message: GetPhone, _: &mut Self::Context) -> Self::Result {
        let book = self.phone_book();
        let Some(record) = book.phones.get(message.user_id.as_bytes())? else { return Ok(PhoneStatus::default()) };
        let pending = record
            .pending
            .filter(|pending| pending.is_usable(message.now, book.config.max_attempts))
            .map(|pending| PendingNumber {
                attempts_left: book.config.max_attempts - pending.attempts,
                number: pending.number,
                expires_at: pending.expires_at,
            });
        Ok(PhoneStatus { verified: record.verified, pending })
    }
}

/// Removes a user's verified number and any pending code, when the user has a
/// verified number or a code that can still be entered. Otherwise nothing changes.
#[derive(Debug, Message)]
#[rtype(result = "Result<PhoneRemoval, StoreError>")]
pub struct RemovePhone {
    pub user_id: String,
    pub now: UnixTime,
}

/// Outcome of [`RemovePhone`]: the part of the user's phone record it removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhoneRemoval {
    /// The verified number, with any code pending for a new number.
    Verified,
    /// No number was verified, so the number waiting for its code was removed and the code no longer works.
    Pending,
    /// The user had neither a verified number nor a code that can still be entered, so nothing changed.
    Nothing,
}

impl Handler<RemovePhone> for Accounts {
    type Result = Result<PhoneRemoval, StoreError>;

    fn handle(&mut self, message: RemovePhone, _: &mut Self::Context) -> Self::Result {
        let book = self.phone_book();
        let max_attempts = book.config.max_attempts;
        let removal = book.phones.modify(message.user_id.as_bytes(), |current| match current {
            Some(record) if record.verified.is_some() => (Change::Remove, PhoneRemoval::Verified),
            Some(record) if record.pending.as_ref().is_some_and(|pending| pending.is_usable(message.now, max_attempts)) => {
                (Change::Remove, PhoneRemoval::Pending)
            }
            // A spent or expired code stays until a new code replaces it or the account is deleted, and is never shown.
            _ => (Change::Keep, PhoneRemoval::Nothing),
        })?;
        if removal != PhoneRemoval::Nothing {
            book.store.commit()?;
            tracing::info!(target: "ucca::security", user_id = %message.user_id, removed = ?removal, "phone number removed");
        }
        Ok(removal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_read_in_e164_form() {
        let cases = [
            ("Australian mobile with spaces", "+61 412 345 678", Ok("+61412345678")),
            ("Australian mobile with dashes and brackets", "+61 (4) 1234-5678", Ok("+61412345678")),
            ("US number", "+1 202 555 0143", Ok("+12025550143")),
            ("no plus sign", "0412 345 678", Err(NumberProblem::NotE164)),
            ("letters", "+61 41234567a", Err(NumberProblem::NotE164)),
            ("too short", "+6141234", Err(NumberProblem::NotE164)),
            ("too long", "+6141234567890123", Err(NumberProblem::NotE164)),
            ("leading zero after plus", "+0412345678", Err(NumberProblem::NotE164)),
            ("Australian landline", "+61 2 9876 5432", Err(NumberProblem::NotAustralianMobile)),
            ("Australian mobile one digit short", "+61 412 345 67", Err(NumberProblem::NotAustralianMobile)),
        ];
        for (description, raw, expected) in cases {
            assert_eq!(PhoneNumber::parse(raw).as_ref().map(PhoneNumber::as_str).map_err(|problem| *problem), expected, "{description}");
        }
    }

    #[test]
    fn masking_keeps_country_prefix_and_last_two_digits() {
        let number = PhoneNumber::parse("+61412345678").unwrap();
        assert_eq!(number.masked(), "+614******78");
        assert_eq!(format!("{number:?}"), "PhoneNumber(+614******78)");
    }

    #[test]
    fn country_codes_match_as_prefixes() {
        let number = PhoneNumber::parse("+61412345678").unwrap();
        assert!(number.has_country_code(&["61".into()]));
        assert!(!number.has_country_code(&["1".into(), "64".into()]));
        assert!(!number.has_country_code(&["".into()]));
    }

    #[test]
    fn codes_are_six_digits_and_bound_to_user_and_number() {
        let code = generate_code();
        assert_eq!(code.expose().len(), CODE_DIGITS);
        assert!(code.expose().bytes().all(|b| b.is_ascii_digit()));

        let number = PhoneNumber::parse("+61412345678").unwrap();
        let other = PhoneNumber::parse("+61412345679").unwrap();
        let digest = code_digest("user-a", &number, "123456");
        assert!(digest.matches(&code_digest("user-a", &number, "123456")));
        assert!(!digest.matches(&code_digest("user-b", &number, "123456")));
        assert!(!digest.matches(&code_digest("user-a", &other, "123456")));
    }
}
