//! Test harness: moto server, fixtures.
