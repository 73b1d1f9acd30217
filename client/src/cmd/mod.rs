//! One module per subcommand.

pub mod anchor;
pub mod audit;
pub mod block;
pub mod fingerprint;
pub mod key;
pub mod parcel;
pub mod record;
pub mod status;
pub mod verify;
