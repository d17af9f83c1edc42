//! Data processing of uploaded files: engines that turn one input file into derived outputs.
//! Each engine is synchronous, streams its input and keeps memory bounded; callers run it on a
//! blocking thread and pass a progress callback and a cancellation check. `platform` is the
//! asynchronous connector that delivers results to the external ETX/CTX platform.

pub mod bar;
pub mod platform;
