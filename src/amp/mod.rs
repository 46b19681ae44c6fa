//! AMP cache rendezvous: path decoding and armor encoding (docs/protocol.md §7).
//!
//! Censored clients reach the broker through an AMP cache, which only issues
//! GETs and only serves AMP HTML. So the client's message rides in the URL
//! path ([`decode_path`], §7.1) and the broker's JSON answer rides inside an
//! AMP page ([`encode_armor`], §7.2). Both are pure functions; the HTTP side
//! (status 200, `Content-Type: text/html`, `Cache-Control: max-age=15`)
//! lives with the routes.

pub mod armor;
pub mod path;

pub use armor::encode as encode_armor;
pub use path::{decode_path, PathError};
