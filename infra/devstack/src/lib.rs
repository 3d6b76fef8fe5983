//! The local cloud's building blocks, shared by the `devstack` command, the integration tests
//! and the benchmark: moto from the project's venv, a Lambda Runtime API, function processes,
//! and the local deployment's settings.

pub mod lambda_process;
pub mod local;
pub mod moto;
pub mod runtime_api;
pub mod template;
