//! Where uploaded objects live (local disk, S3-compatible, or memory) and how untrusted images
//! are checked and re-encoded before they are stored.

pub mod image_upload;
mod store;

pub use image_upload::{
    AvatarError, ProcessedImage, check_avatar_header, process_avatar, process_avatar_bounded,
    sniff_image,
};
pub use store::{ObjectStorage, StorageConfig};
