//! Support shared by the integration tests: the fake Ollama upstream and the harness that
//! starts the real app in front of it.

pub mod fake_ollama;
pub mod harness;
