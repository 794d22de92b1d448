//! Integration tests of the whole server over real HTTP on loopback, one binary for every suite.

mod helpers;
mod process;

mod accounts;
mod authorize_errors;
mod billing;
mod browser;
mod crash;
mod flow;
mod forward_auth;
mod lifecycle;
mod mail;
mod mcp;
mod operations;
mod quotas;
mod refresh;
mod registration;
mod scopes;
mod secrecy;
mod token_errors;
