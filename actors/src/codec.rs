//! The record codec: serde structs encoded with bincode inside a versioned envelope.
//!
//! This is the only module that calls bincode. An envelope is the record's
//! version as two little-endian bytes followed by the bincode payload, so a
//! later build can recognise an older layout and migrate it instead of
//! misreading it.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::store::StoreError;

/// A stored record type. Bump `VERSION` whenever the serialised layout changes,
/// and add new enum variants only at the end.
pub trait Record: Serialize + DeserializeOwned {
    /// Name used in error messages, such as "client".
    const KIND: &'static str;
    const VERSION: u16;
}

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

pub fn encode<T: Record>(record: &T) -> Result<Vec<u8>, StoreError> {
    let mut bytes = T::VERSION.to_le_bytes().to_vec();
    bincode::serde::encode_into_std_write(record, &mut bytes, config())
        .map_err(|error| StoreError::Codec(format!("cannot encode {} record: {error}", T::KIND)))?;
    Ok(bytes)
}

pub fn decode<T: Record>(bytes: &[u8]) -> Result<T, StoreError> {
    let (version, payload) = match bytes {
        [low, high, payload @ ..] => (u16::from_le_bytes([*low, *high]), payload),
        _ => return Err(StoreError::Codec(format!("{} record is shorter than its envelope", T::KIND))),
    };
    if version != T::VERSION {
        return Err(StoreError::Codec(format!(
            "{} record has version {version}, this build reads version {}",
            T::KIND,
            T::VERSION
        )));
    }

    let (record, read) = bincode::serde::decode_from_slice(payload, config())
        .map_err(|error| StoreError::Codec(format!("cannot decode {} record: {error}", T::KIND)))?;
    if read != payload.len() {
        return Err(StoreError::Codec(format!("{} record has trailing bytes", T::KIND)));
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Sample {
        name: String,
        count: u32,
    }

    impl Record for Sample {
        const KIND: &'static str = "sample";
        const VERSION: u16 = 3;
    }

    #[test]
    fn record_round_trips_through_envelope() {
        let sample = Sample { name: "a".into(), count: 7 };
        let bytes = encode(&sample).unwrap();
        assert_eq!(&bytes[..2], &3u16.to_le_bytes());
        assert_eq!(decode::<Sample>(&bytes).unwrap(), sample);
    }

    #[test]
    fn other_version_is_rejected_with_both_versions_named() {
        let mut bytes = encode(&Sample { name: "a".into(), count: 7 }).unwrap();
        bytes[0] = 9;
        let message = decode::<Sample>(&bytes).unwrap_err().to_string();
        assert!(message.contains("version 9"), "{message}");
        assert!(message.contains("version 3"), "{message}");
    }

    #[test]
    fn truncated_record_is_rejected() {
        assert!(decode::<Sample>(&[3]).is_err());
        let bytes = encode(&Sample { name: "abc".into(), count: 7 }).unwrap();
        assert!(decode::<Sample>(&bytes[..bytes.len() - 1]).is_err());
    }
}
