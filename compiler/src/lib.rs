//! duet's plan compiler.
pub mod diagnostic;
pub mod schema;
pub mod source;
pub mod suggest;
pub mod yaml;
