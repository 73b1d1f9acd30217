//! One module per subcommand.

pub mod block;
pub mod fingerprint;
pub mod status;
pub mod verify;
