//! The wsgate server: HTTP routing, content negotiation, handlers.

pub mod protobuf;
