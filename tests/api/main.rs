//! Integration tests of the whole server over real HTTP on loopback, one binary for every suite.

mod helpers;

mod flow;
