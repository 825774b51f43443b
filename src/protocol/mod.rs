//! Sans-IO wire layer: frame splitting, startup packets, and lazy views of the
//! few messages pgswitch inspects. Nothing here touches a socket, so every rule
//! is unit-tested on byte slices.
//!
//! - [`frame`]: walks a stream of tagged messages, forwarding bodies it does not
//!   need without copying them, and enforcing per-message size caps from the
//!   header alone.
//! - [`startup`]: the untagged first packet (StartupMessage, SSLRequest,
//!   GSSENCRequest, CancelRequest).
//! - [`messages`]: builders for the backend messages pgswitch writes itself
//!   (errors, auth, ParameterStatus) and parsers for the ones it reads.

pub mod frame;
pub mod io;
pub mod messages;
pub mod startup;

pub use frame::{FrameError, Item, Splitter};
