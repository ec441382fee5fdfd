//! The typed `fleet` section lives with the rest of the plugin config
//! ([`crate::config::FleetConfig`], parsed and validated by [`crate::config::Config::parse`]);
//! these are its names under `fleet::`, so the dependency runs one way (fleet → config).

pub use crate::config::{generated_member, valid_member, FleetConfig};
