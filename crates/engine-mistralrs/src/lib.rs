//! The engine on mistral.rs.
