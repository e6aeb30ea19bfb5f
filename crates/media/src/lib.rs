//! The upload component's domain logic, as plain functions over bytes and strings so it
//! is unit-tested natively:
//!
//! * [`multipart`]: an incremental `multipart/form-data` parser that never holds more
//!   than one input chunk (plus a delimiter's length) of a part's body;
//! * container sniffing: which video container a file's first bytes announce;
//! * [`UploadPolicy`]: which name, extension, content and size an upload may have, with
//!   the client's filename sanitised;
//! * [`FormFields`]: the text fields a form carries before its file (the webhook's
//!   `callback_url`), each held up to its bound;
//! * [`job`]: the public shapes of the runner's jobs (`spinmesh_jobs`) and who sees them.

mod container;
mod error;
mod fields;
mod filename;
pub mod job;
pub mod multipart;
mod policy;

pub use container::SNIFF_LEN;
pub use error::Error;
pub use fields::FormFields;
pub use policy::UploadPolicy;
