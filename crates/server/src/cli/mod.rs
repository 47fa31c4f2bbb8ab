//! Client-side subcommands that talk to a running server.

pub mod workspace;
