//! A thin handle over `object_store`, so callers deal in keys and bytes whatever the backend.

use anyhow::Context;
use bytes::Bytes;
use object_store::{ObjectStore, PutPayload, path::Path};
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
}
