//! The ucca-auth binary's library half: settings and start-up, so tests build the same application `main` runs.
#![forbid(unsafe_code)]

pub mod settings;
pub mod startup;
