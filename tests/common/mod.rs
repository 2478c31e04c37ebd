//! Shared support for the integration tests.

pub mod fake_ollama;
