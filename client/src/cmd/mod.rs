//! One module per subcommand.

pub mod fingerprint;
pub mod verify;
