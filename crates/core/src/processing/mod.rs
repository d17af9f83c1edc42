//! Data processing of uploaded files: engines that turn one input file into derived outputs.
//! Each engine is synchronous, streams its input and keeps memory bounded; callers run it on a
//! blocking thread and pass a progress callback and a cancellation check.

pub mod bar;
