//! duet's plan compiler.
pub mod diagnostic;
pub mod source;
pub mod yaml;
