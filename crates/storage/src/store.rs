//! A thin handle over `object_store`, so callers deal in keys and bytes whatever the backend.

use anyhow::Context;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use object_store::{GetOptions, GetRange, ObjectStore, PutPayload, WriteMultipart, path::Path};
use std::sync::Arc;

#[derive(Debug, Clone)]
pub enum StorageConfig {
    Local {
        root: std::path::PathBuf,
    },
    S3 {
        bucket: String,
        endpoint: Option<String>,
        region: String,
        access_key_id: Option<String>,
        secret_access_key: Option<String>,
    },
    Memory,
}

#[derive(Clone)]
pub struct ObjectStorage {
    inner: Arc<dyn ObjectStore>,
    label: &'static str,
}

impl ObjectStorage {
    pub fn open(cfg: &StorageConfig) -> anyhow::Result<Self> {
        Ok(match cfg {
            StorageConfig::Local { root } => {
                std::fs::create_dir_all(root)
                    .with_context(|| format!("cannot create storage dir {}", root.display()))?;
                let fs = object_store::local::LocalFileSystem::new_with_prefix(root)?;
                ObjectStorage {
                    inner: Arc::new(fs),
                    label: "local",
                }
            }
            StorageConfig::S3 {
                bucket,
                endpoint,
                region,
                access_key_id,
                secret_access_key,
            } => {
                let mut b = object_store::aws::AmazonS3Builder::new()
                    .with_bucket_name(bucket)
                    .with_region(region);
                if let Some(e) = endpoint {
                    b = b
                        .with_endpoint(e)
                        .with_allow_http(e.starts_with("http://"))
                        .with_virtual_hosted_style_request(false);
                }
                if let (Some(k), Some(s)) = (access_key_id, secret_access_key) {
                    b = b.with_access_key_id(k).with_secret_access_key(s);
                }
                ObjectStorage {
                    inner: Arc::new(b.build()?),
                    label: "s3",
                }
            }
            StorageConfig::Memory => ObjectStorage {
                inner: Arc::new(object_store::memory::InMemory::new()),
                label: "memory",
            },
        })
    }

    pub fn backend(&self) -> &'static str {
        self.label
    }

    pub async fn put(&self, key: &str, data: Bytes) -> anyhow::Result<()> {
        self.inner
            .put(&Path::from(key), PutPayload::from(data))
            .await?;
        Ok(())
    }

    /// `Ok(None)` when the object does not exist.
    pub async fn get(&self, key: &str) -> anyhow::Result<Option<Bytes>> {
        match self.inner.get(&Path::from(key)).await {
            Ok(r) => Ok(Some(r.bytes().await?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Deleting a missing object is not an error: the goal state is reached either way.
    pub async fn delete(&self, key: &str) -> anyhow::Result<()> {
        match self.inner.delete(&Path::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Starts writing `key` in parts, so an upload of any size is never held in memory: the
    /// object appears only when `finish` completes, and `abort` (or dropping the writer) leaves
    /// nothing behind.
    pub async fn writer(&self, key: &str) -> anyhow::Result<Writer> {
        let upload = self.inner.put_multipart(&Path::from(key)).await?;
        let chunk = if self.label == "s3" {
            S3_PART
        } else {
            LOCAL_PART
        };
        Ok(Writer {
            inner: WriteMultipart::new_with_chunk_size(upload, chunk),
        })
    }

    /// The object's bytes (or those of `range`, start inclusive, end exclusive) as a stream;
    /// `Ok(None)` when the object does not exist.
    pub async fn read(
        &self,
        key: &str,
        range: Option<std::ops::Range<u64>>,
    ) -> anyhow::Result<Option<BoxStream<'static, anyhow::Result<Bytes>>>> {
        let opts = GetOptions {
            range: range.map(GetRange::Bounded),
            ..Default::default()
        };
        match self.inner.get_opts(&Path::from(key), opts).await {
            Ok(r) => Ok(Some(r.into_stream().map_err(anyhow::Error::from).boxed())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Used by readiness checks: listing one prefix proves credentials and reachability.
    pub async fn check(&self) -> anyhow::Result<()> {
        use futures_util::StreamExt;
        let mut s = self.inner.list(Some(&Path::from("health")));
        if let Some(r) = s.next().await {
            r?;
        }
        Ok(())
    }
}

/// Part size of streamed writes: S3's smallest part is 5 MiB. A local part is only a write at an
/// offset of the staging file, so small parts keep an upload's memory low (each upload holds
/// the part being filled and at most two in flight) at no cost in speed.
const S3_PART: usize = 5 * 1024 * 1024;
const LOCAL_PART: usize = 512 * 1024;
const PARTS_IN_FLIGHT: usize = 2;

/// An object being written part by part.
pub struct Writer {
    inner: WriteMultipart,
}

impl Writer {
    pub async fn write(&mut self, chunk: &[u8]) -> anyhow::Result<()> {
        self.inner.wait_for_capacity(PARTS_IN_FLIGHT).await?;
        self.inner.write(chunk);
        Ok(())
    }

    pub async fn finish(self) -> anyhow::Result<()> {
        self.inner.finish().await?;
        Ok(())
    }

    pub async fn abort(self) -> anyhow::Result<()> {
        self.inner.abort().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_round_trip_and_idempotent_delete() {
        let dir = std::env::temp_dir().join(format!("etx-store-{}", std::process::id()));
        let s = ObjectStorage::open(&StorageConfig::Local { root: dir.clone() }).unwrap();
        s.put("avatars/a.png", Bytes::from_static(b"abc"))
            .await
            .unwrap();
        assert_eq!(
            s.get("avatars/a.png").await.unwrap().unwrap(),
            Bytes::from_static(b"abc")
        );
        s.delete("avatars/a.png").await.unwrap();
        assert!(s.get("avatars/a.png").await.unwrap().is_none());
        s.delete("avatars/a.png").await.unwrap();
        let _ = std::fs::remove_dir_all(dir);
    }

    async fn read_all(
        s: &ObjectStorage,
        key: &str,
        range: Option<std::ops::Range<u64>>,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        let mut r = s.read(key, range).await.unwrap().unwrap();
        while let Some(b) = r.next().await {
            out.extend_from_slice(&b.unwrap());
        }
        out
    }

    #[tokio::test]
    async fn streamed_writes_appear_whole_on_finish_and_not_at_all_on_abort() {
        let dir = std::env::temp_dir().join(format!("etx-store-w-{}", std::process::id()));
        for s in [
            ObjectStorage::open(&StorageConfig::Local { root: dir.clone() }).unwrap(),
            ObjectStorage::open(&StorageConfig::Memory).unwrap(),
        ] {
            // Larger than one part, written in odd-sized pieces.
            let data: Vec<u8> = (0..(S3_PART * 2 + 12_345))
                .map(|i| (i % 251) as u8)
                .collect();
            let mut w = s.writer("files/big").await.unwrap();
            assert!(
                s.get("files/big").await.unwrap().is_none(),
                "not visible before finish"
            );
            for piece in data.chunks(65_537) {
                w.write(piece).await.unwrap();
            }
            w.finish().await.unwrap();
            assert_eq!(read_all(&s, "files/big", None).await, data);
            assert_eq!(read_all(&s, "files/big", Some(10..20)).await, &data[10..20]);

            let mut w = s.writer("files/gone").await.unwrap();
            w.write(&data[..1000]).await.unwrap();
            w.abort().await.unwrap();
            assert!(s.get("files/gone").await.unwrap().is_none());
            assert!(s.read("files/gone", None).await.unwrap().is_none());
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}
